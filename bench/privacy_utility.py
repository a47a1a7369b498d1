"""Privacy-utility trade-off of user-level DP FedRecon on MovieLens-1M.

For each noise multiplier z, trains FedRecon with a DP aggregator (z = 0: the
non-private baseline, same settings with the plain uniform mean) and reports
the held-out RMSE of training users next to the ε spent at δ = --delta (RDP
accountant, Poisson sampling with q = clients_per_round / training clients;
clients are Poisson-sampled so the accounting matches the training).

Writes to --output_dir: privacy_utility.csv, privacy_utility.md (a Markdown
table) and privacy_utility.png (RMSE against ε), plus one metrics.csv and
TensorBoard folder per run.

The defaults are the best settings measured on ML-1M (BENCHMARKS.md, issue
5): embedding dim 32, init stddev 0.1, 200 rounds of 200 Poisson-sampled
clients, L2 0.01 on the reconstructed user embedding and bias
(--reconstruction_l2), server AdamW (lr 0.02, --server_weight_decay 0.5).

Example (the non-private headline row, RMSE on all 6,040 training users):
  .venv/bin/python bench/privacy_utility.py --data_dir=/work/shared/data/ml-1m \
      --noise_multipliers=0 --eval_every=50 --output_dir=output/privacy_utility
"""

import argparse
import csv
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tff_movierec import tff_runtime  # noqa: E402

tff_runtime.stop_workers_at_exit()

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tasks import movielens_recon  # noqa: E402
from tff_movierec import privacy, reconstruction  # noqa: E402


def _parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_dir", required=True)
  parser.add_argument("--output_dir", required=True)
  parser.add_argument("--noise_multipliers", default="0,0.5,1.0",
                      help="comma-separated; 0 = non-private baseline")
  parser.add_argument("--aggregator", default="dp_adaptive", choices=["dp_fixed", "dp_adaptive"])
  parser.add_argument("--clip_norm", type=float, default=None,
                      help="dp_fixed: the clip; dp_adaptive: the initial clip")
  parser.add_argument("--target_unclipped_quantile", type=float, default=None)
  parser.add_argument("--delta", type=float, default=1e-6)
  parser.add_argument("--rounds", type=int, default=200)
  parser.add_argument("--clients_per_round", type=int, default=200)
  parser.add_argument("--cold_start_fraction", type=float, default=0.0)
  parser.add_argument("--final_eval_clients", type=int, default=None)
  parser.add_argument("--eval_every", type=int, default=0)
  parser.add_argument("--eval_clients", type=int, default=300)
  parser.add_argument("--embedding_dim", type=int, default=32)
  parser.add_argument("--init_stddev", type=float, default=0.1)
  parser.add_argument("--server_optimizer", default="adam")
  parser.add_argument("--server_learning_rate", type=float, default=0.02)
  parser.add_argument("--server_weight_decay", type=float, default=0.5,
                      help="AdamW decay of the movie side (0 = plain Adam)")
  parser.add_argument("--client_learning_rate", type=float, default=1.0)
  parser.add_argument("--reconstruction_learning_rate", type=float, default=0.5)
  parser.add_argument("--reconstruction_l2", type=float, default=0.01,
                      help="L2 penalty on the reconstructed user embedding and bias")
  parser.add_argument("--reconstruction_steps", type=int, default=10)
  parser.add_argument("--post_reconstruction_steps", type=int, default=3)
  parser.add_argument("--seed", type=int, default=0)
  return parser.parse_args()


def _spec(args, noise):
  if noise == 0:
    return privacy.AggregatorSpec(kind="none", client_weighting="uniform")
  return privacy.AggregatorSpec(
      kind=args.aggregator, noise_multiplier=noise, clip_norm=args.clip_norm,
      target_unclipped_quantile=args.target_unclipped_quantile,
      clients_per_round=args.clients_per_round, client_weighting="uniform")


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
  axis.set_title(f"FedRecon MovieLens-1M, {args.rounds} rounds, "
                 f"{args.clients_per_round} clients/round", fontsize=9)
  axis.legend(fontsize=8)
  figure.tight_layout()
  figure.savefig(path + ".png", dpi=120)


def main():
  args = _parse_args()
  os.makedirs(args.output_dir, exist_ok=True)
  task = movielens_recon.load_recon_task(args.data_dir, cold_start_fraction=args.cold_start_fraction,
                                         seed=args.seed)
  print(task.description, flush=True)
  recon = reconstruction.ReconConfig(
      server_optimizer=args.server_optimizer, server_learning_rate=args.server_learning_rate,
      server_weight_decay=args.server_weight_decay,
      client_learning_rate=args.client_learning_rate,
      reconstruction_learning_rate=args.reconstruction_learning_rate,
      reconstruction_l2=args.reconstruction_l2,
      reconstruction_steps=args.reconstruction_steps,
      post_reconstruction_steps=args.post_reconstruction_steps, uniform_weighting=True)
  rows = []
  for noise in [float(z) for z in args.noise_multipliers.split(",")]:
    spec = _spec(args, noise)
    config = reconstruction.ExperimentConfig(
        rounds=args.rounds, clients_per_round=args.clients_per_round, sampling="poisson",
        eval_every=args.eval_every, eval_clients=args.eval_clients,
        final_eval_clients=args.final_eval_clients, embedding_dim=args.embedding_dim,
        init_stddev=args.init_stddev, recon=recon, aggregator=spec,
        dp_delta=args.delta if spec.is_dp else None, seed=args.seed)
    start = time.time()
    run_dir = os.path.join(args.output_dir, f"z{noise:g}")
    final = reconstruction.run_recon_experiment(
        task.train, task.eval_seen, task.num_movies, config, eval_unseen=task.eval_unseen,
        output_dir=run_dir,
        on_round=lambda r, m: print(f"z={noise:g} round {r}", json.dumps(
            {k: round(v, 4) for k, v in m.items()}), flush=True))
    rows.append({
        "noise_multiplier": noise,
        "epsilon": round(final["epsilon"], 3) if spec.is_dp else float("inf"),
        "delta": args.delta if spec.is_dp else "",
        "rmse": round(final["eval/rmse"], 4),
        "unseen_rmse": round(final["unseen/rmse"], 4) if "unseen/rmse" in final else "",
        "eval_clients": int(final["eval/clients"]),
        "rounds": args.rounds, "clients_per_round": args.clients_per_round,
        "minutes": round((time.time() - start) / 60, 1),
        "loadavg": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    })
    print(json.dumps(rows[-1]), flush=True)
    _write(rows, args)


if __name__ == "__main__":
  main()
