"""User-level DP for movielens_recon: held-out RMSE of all users against ε.

For each ε of --epsilons, runs
  run_experiment.py --task=movielens_recon --privacy=user_dp --target_epsilon=ε
through the one training loop (bench/engine.py), and once the task without
DP (its defaults: ε = ∞). ε is the loop's `privacy/epsilon` after the last
round (metrics.csv); the RMSE is the task's final evaluation of every
training user (final_eval.csv). On the same holdout it fits the two
centralized references drawn as lines: the bias baseline (user and movie
biases, `baselines.BiasBaseline` with the centralized table's settings) and
ALS-WR (`baselines.svd.SVD`, 32 factors, λ 0.08).

Writes to --output_dir: dp_recon.csv, dp_recon.md (a Markdown table),
dp_recon.png (RMSE against ε) and dp_recon.jsonl (one line per run, stamped
with the load average and UTC time), plus one experiment folder per run.
A folder that already holds a run is refused (runs are timed), except for an
ε that dp_recon.jsonl already reports for the same seed and split: its row is
reused (so an interrupted sweep is completed by running it again).

  .venv/bin/python bench/dp_recon.py --data_dir=/work/shared/data/ml-1m \
      --epsilons=1,2,5,10,inf --seed=0 --output_dir=output/dp_recon
Smoke run: --synthetic --rounds=2 --epsilons=5,inf.
"""

import argparse
import csv
import json
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import engine  # noqa: E402  (bench/engine.py)
import jsonl_log  # noqa: E402  (bench/jsonl_log.py)
from tasks import common  # noqa: E402
from tff_movierec import baselines  # noqa: E402
from tff_movierec.baselines.svd import SVD  # noqa: E402
from tff_movierec.reconstruction import holdout  # noqa: E402

TASK = "movielens_recon"
PRESET = "user_dp"


def _parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  engine.add_data_arguments(parser)
  parser.add_argument("--epsilons", default="1,2,5,10,inf",
                      help="comma-separated targets; inf = the task without DP")
  parser.add_argument("--delta", type=float, default=1e-6)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--validation", action="store_true",
                      help="score the validation ratings carved from the training ratings")
  parser.add_argument("--rounds", type=int, help="total_rounds of the DP runs (default: "
                      "the preset's)")
  args = parser.parse_args()
  engine.check_data_arguments(parser, args)
  return args


def _settings(args, epsilon: float) -> dict:
  settings = {"use_synthetic_data": args.synthetic, "root_output_dir": args.output_dir,
              "experiment_name": f"eps{epsilon:g}", "seed": args.seed,
              "eval_split": "validation" if args.validation else "test"}
  if args.data_dir:
    settings["data_dir"] = args.data_dir
  if math.isfinite(epsilon):
    settings.update(privacy=PRESET, target_epsilon=epsilon, dp_delta=args.delta)
    if args.rounds:
      settings.update(total_rounds=args.rounds, server_lr_decay_rounds=args.rounds)
    if args.synthetic:
      settings["clients_per_round"] = 0  # the preset's full participation
  elif args.rounds:
    settings["total_rounds"] = args.rounds
  return settings


def _references(args) -> dict:
  """RMSE of the centralized references on the runs' holdout."""
  hp = engine.hparams(TASK, _settings(args, math.inf))
  data = common.load_movielens(hp)
  split = holdout.user_holdout(data, hp["test_fraction"], seed=args.seed,
                               validation=args.validation)
  scored = split.seen_test
  results = {}
  for name, model in (
      ("bias baseline (centralized)",
       baselines.make("bias_baseline")),
      ("ALS-WR (centralized, k 32)", SVD(factors=32, reg=0.08, sweeps=12))):
    model.fit(split.seen_train, data.num_users, data.num_movies)
    predictions = np.clip(model.predict(scored["user"].to_numpy(), scored["movie"].to_numpy()),
                          1.0, 5.0)
    results[name] = round(float(np.sqrt(np.mean(
        (predictions - scored["rating"].to_numpy()) ** 2))), 4)
  return results


def _write(rows, references, args):
  path = os.path.join(args.output_dir, "dp_recon")
  with open(path + ".csv", "w", newline="") as f:
    writer = csv.DictWriter(f, list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  split = _split(args)
  with open(path + ".md", "w") as f:
    f.write(f"| target ε | ε spent (δ={args.delta:g}) | noise multiplier | {split} RMSE, "
            "all users | users | rounds | minutes |\n|---|---|---|---|---|---|---|\n")
    for row in rows:
      f.write(f"| {row['target_epsilon']} | {row['epsilon']} | {row['noise_multiplier']} | "
              f"{row['rmse']} | {row['users']} | {row['rounds']} | {row['minutes']} |\n")
    for name, rmse in references.items():
      f.write(f"| {name} | – | – | {rmse} | – | – | – |\n")
  private = [r for r in rows if math.isfinite(r["epsilon"])]
  figure, axis = plt.subplots(figsize=(5.5, 3.8))
  if private:
    axis.plot([r["epsilon"] for r in private], [r["rmse"] for r in private], "o-",
              label=f"--privacy={PRESET}")
    axis.set_xscale("log")
  styles = iter(["--", ":", "-."])
  for r in rows:
    if not math.isfinite(r["epsilon"]):
      axis.axhline(r["rmse"], color="black", linestyle=next(styles),
                   label=f"no DP (ε = ∞) {r['rmse']:.3f}")
  for name, rmse in references.items():
    axis.axhline(rmse, color="gray", linestyle=next(styles), label=f"{name} {rmse:.3f}")
  axis.set_xlabel(f"ε at δ = {args.delta:g} (user-level)")
  axis.set_ylabel(f"{split} RMSE, all users")
  axis.set_title(f"movielens_recon, {'synthetic data' if args.synthetic else 'MovieLens-1M'}"
                 f", seed {args.seed}", fontsize=9)
  axis.legend(fontsize=7)
  figure.tight_layout()
  figure.savefig(path + ".png", dpi=120)
  plt.close(figure)


def _finished(args) -> dict:
  """target ε -> the row dp_recon.jsonl holds for this seed and split."""
  path = os.path.join(args.output_dir, "dp_recon.jsonl")
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    records = [json.loads(line) for line in f if line.strip()]
  return {r["target_epsilon"]: {k: v for k, v in r.items() if k not in ("loadavg", "time")}
          for r in records if r["seed"] == args.seed and r["split"] == _split(args)}


def _split(args) -> str:
  return "validation" if args.validation else "test"


def main():
  args = _parse_args()
  os.makedirs(args.output_dir, exist_ok=True)
  epsilons = [float(e) for e in args.epsilons.split(",")]
  finished = _finished(args)
  for epsilon in epsilons:
    if epsilon not in finished:
      engine.require_fresh(TASK, _settings(args, epsilon))
  references = _references(args)
  print(f"references: {references}", flush=True)
  rows = []
  for epsilon in epsilons:
    if epsilon in finished:
      rows.append(finished[epsilon])
      continue
    result = engine.run_cross_device(TASK, _settings(args, epsilon), f"ε={epsilon:g}")
    dp, final = result.run.dp, result.final
    rows.append(jsonl_log.append_record({
        "target_epsilon": epsilon,
        "epsilon": round(float(result.last["privacy/epsilon"]), 3) if dp else math.inf,
        "noise_multiplier": round(dp.noise_multiplier, 4) if dp else 0.0,
        "rmse": round(float(final.loc["seen", "rmse"]), 4),
        "users": int(final.loc["seen", "num_clients"]),
        "rounds": result.hp["total_rounds"],
        "minutes": result.minutes,
        "seed": args.seed,
        "split": _split(args),
    }, os.path.join(args.output_dir, "dp_recon.jsonl")))
    _write(rows, references, args)


if __name__ == "__main__":
  main()
