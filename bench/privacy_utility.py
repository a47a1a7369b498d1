"""Privacy-utility trade-off of user-level DP FedRecon on MovieLens-1M.

For each noise multiplier z, runs the `movielens_fedrecon` task through the one
training loop (`bench/engine.py`) with a DP aggregator (z = 0: the
non-private baseline, same settings with the plain uniform mean) and reports
the held-out RMSE of training users next to the ε spent at δ = --delta. ε is
the loop's `privacy/epsilon` of the last round in metrics.csv (RDP
accountant, Poisson sampling with q = clients_per_round / training clients;
clients are Poisson-sampled so the accounting matches the training); the
RMSEs are the task's final evaluation (final_eval.csv: seen users, and users
never trained on with --cold_start_fraction).

Writes to --output_dir: privacy_utility.csv, privacy_utility.md (a Markdown
table), privacy_utility.png (RMSE against ε) and privacy_utility.jsonl (one
line per run, stamped with the load average and UTC time), plus one
experiment folder per run (z<z>/: metrics.csv, final_eval.csv, TensorBoard).
A folder that already holds a run is refused (no resuming: runs are timed).

Settings not given take the movielens_fedrecon task's defaults, the best
measured on ML-1M (BENCHMARKS.md, issue 5): embedding dim 32, 200 rounds of
200 Poisson-sampled clients, L2 0.01 on the reconstructed user embedding and
bias, server AdamW (lr 0.02, weight decay 0.5).

Example (the non-private headline row, RMSE on all 6,040 training users):
  .venv/bin/python bench/privacy_utility.py --data_dir=/work/shared/data/ml-1m \
      --noise_multipliers=0 --eval_every=50 --output_dir=output/privacy_utility

Smoke run on small synthetic data:
  .venv/bin/python bench/privacy_utility.py --synthetic --rounds=2 \
      --noise_multipliers=0,1.0 --output_dir=/tmp/privacy_utility
"""

import argparse
import csv
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import engine  # noqa: E402  (bench/engine.py)
import jsonl_log  # noqa: E402  (bench/jsonl_log.py)

TASK = "movielens_fedrecon"
# argparse option -> task setting, passed only when given (else the task's default).
SETTINGS = {
    "rounds": "total_rounds", "clients_per_round": "clients_per_round",
    "cold_start_fraction": "cold_start_fraction", "final_eval_clients": "final_eval_clients",
    "embedding_dim": "embedding_dim", "server_optimizer": "server_optimizer",
    "server_learning_rate": "server_learning_rate",
    "server_weight_decay": "server_weight_decay",
    "client_learning_rate": "client_learning_rate",
    "reconstruction_learning_rate": "local_learning_rate",
    "reconstruction_l2": "reconstruction_l2", "reconstruction_steps": "reconstruction_steps",
    "post_reconstruction_steps": "post_reconstruction_steps",
}


def _parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  engine.add_data_arguments(parser)
  parser.add_argument("--noise_multipliers", default="0,0.5,1.0",
                      help="comma-separated; 0 = non-private baseline")
  parser.add_argument("--aggregator", default="dp_adaptive", choices=["dp_fixed", "dp_adaptive"])
  parser.add_argument("--clip_norm", type=float, default=None,
                      help="dp_fixed: the clip; dp_adaptive: the initial clip")
  parser.add_argument("--target_unclipped_quantile", type=float, default=None)
  parser.add_argument("--delta", type=float, default=1e-6)
  parser.add_argument("--eval_every", type=int, default=0,
                      help="rounds between periodic evaluations (0: only the final one)")
  parser.add_argument("--eval_clients", type=int, default=300,
                      help="users in the periodic evaluations")
  parser.add_argument("--seed", type=int, default=0)
  task = parser.add_argument_group("task settings (default: the movielens_fedrecon task's)")
  for option in ("rounds", "clients_per_round", "final_eval_clients", "embedding_dim",
                 "reconstruction_steps", "post_reconstruction_steps"):
    task.add_argument(f"--{option}", type=int)
  for option in ("cold_start_fraction", "server_learning_rate", "client_learning_rate",
                 "reconstruction_learning_rate"):
    task.add_argument(f"--{option}", type=float)
  task.add_argument("--server_optimizer", choices=["sgd", "adam", "adagrad", "yogi"])
  task.add_argument("--server_weight_decay", type=float,
                    help="AdamW decay of the movie side (0 = plain Adam)")
  task.add_argument("--reconstruction_l2", type=float,
                    help="L2 penalty on the reconstructed user embedding and bias")
  args = parser.parse_args()
  engine.check_data_arguments(parser, args)
  return args


def _settings(args, noise):
  """The task settings of the run with noise multiplier `noise`."""
  settings = {"use_synthetic_data": args.synthetic, "root_output_dir": args.output_dir,
              "experiment_name": f"z{noise:g}", "seed": args.seed,
              "rounds_per_eval": args.eval_every, "eval_clients": args.eval_clients,
              "client_sampling": "poisson", "client_weighting": "uniform"}
  if args.data_dir:
    settings["data_dir"] = args.data_dir
  settings.update({setting: getattr(args, option) for option, setting in SETTINGS.items()
                   if getattr(args, option) is not None})
  if noise == 0:
    settings["aggregator"] = "none"
  else:
    settings.update(aggregator=args.aggregator, noise_multiplier=noise, dp_delta=args.delta,
                    clip_norm=args.clip_norm,
                    target_unclipped_quantile=args.target_unclipped_quantile)
  return settings


def _write(rows, args):
  path = os.path.join(args.output_dir, "privacy_utility")
  with open(path + ".csv", "w", newline="") as f:
    writer = csv.DictWriter(f, list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  with open(path + ".md", "w") as f:
    f.write("| noise multiplier | ε (δ={}) | RMSE seen users | RMSE unseen users | rounds | "
            "clients/round | minutes |\n|---|---|---|---|---|---|---|\n".format(args.delta))
    for row in rows:
      f.write(f"| {row['noise_multiplier']} | {row['epsilon']} | {row['rmse']} | "
              f"{row['unseen_rmse']} | {row['rounds']} | {row['clients_per_round']} | "
              f"{row['minutes']} |\n")
  private = sorted((r for r in rows if r["noise_multiplier"] > 0), key=lambda r: r["epsilon"])
  figure, axis = plt.subplots(figsize=(5, 3.5))
  if private:
    axis.plot([r["epsilon"] for r in private], [r["rmse"] for r in private], "o-",
              label=f"{args.aggregator}")
    for r in private:
      axis.annotate(f"z={r['noise_multiplier']}", (r["epsilon"], r["rmse"]),
                    textcoords="offset points", xytext=(4, 4), fontsize=8)
    axis.set_xscale("log")
  for r in rows:
    if r["noise_multiplier"] == 0:
      axis.axhline(r["rmse"], color="gray", linestyle="--", label="non-private")
  axis.set_xlabel(f"ε at δ={args.delta} (user-level)")
  axis.set_ylabel("held-out RMSE (training users)")
  axis.set_title(f"FedRecon {'synthetic data' if args.synthetic else 'MovieLens-1M'}, "
                 f"{rows[0]['rounds']} rounds, {rows[0]['clients_per_round']} clients/round",
                 fontsize=9)
  axis.legend(fontsize=8)
  figure.tight_layout()
  figure.savefig(path + ".png", dpi=120)


def main():
  args = _parse_args()
  os.makedirs(args.output_dir, exist_ok=True)
  noises = [float(z) for z in args.noise_multipliers.split(",")]
  for noise in noises:
    engine.require_fresh(TASK, _settings(args, noise))
  rows = []
  for noise in noises:
    result = engine.run_cross_device(TASK, _settings(args, noise), f"z={noise:g}")
    last, final, hp = result.last, result.final, result.hp
    rows.append(jsonl_log.append_record({
        "noise_multiplier": noise,
        "epsilon": round(last["privacy/epsilon"], 3) if noise else float("inf"),
        "delta": args.delta if noise else "",
        "rmse": round(final.loc["seen", "rmse"], 4),
        "unseen_rmse": round(final.loc["unseen", "rmse"], 4) if "unseen" in final.index else "",
        "eval_clients": int(final.loc["seen", "num_clients"]),
        "rounds": hp["total_rounds"], "clients_per_round": hp["clients_per_round"],
        "minutes": result.minutes,
    }, os.path.join(args.output_dir, "privacy_utility.jsonl")))
    _write(rows, args)


if __name__ == "__main__":
  main()
