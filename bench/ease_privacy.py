"""User-level DP federated EASE: test NDCG@10 at several ε, with a plot.

For each ε (δ given): the noise multiplier z of one Gaussian release
(`privacy.accounting.noise_for_epsilon`, sampling probability 1, one round),
a per-user history cap, and λ = `lambda_ratio` × 2·z·cap·√M (the noise
matrix's spectral-norm scale; the ratio 1.25 and cap 64 are the best ε = 5
setting on the validation split, BENCHMARKS.md). Each run goes through the
task and the training loop (`bench/engine.py`); the non-private federated
EASE and popularity (not DP) are drawn as reference lines. One JSON line per
run; the plot goes to --output_dir/ease_privacy.png.

  /work/main/.venv/bin/python bench/ease_privacy.py --data_dir=/work/shared/data/ml-1m \\
      --output_dir=/work/runs/ease_privacy
"""

import argparse
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import engine  # noqa: E402  (bench/engine.py)
import jsonl_log  # noqa: E402  (bench/jsonl_log.py)
from tff_movierec.data.movielens import load_movielens  # noqa: E402
from tff_movierec.metrics import protocols  # noqa: E402
from tff_movierec.privacy import accounting  # noqa: E402
from tff_movierec.reporting import plots  # noqa: E402

TASK = "movielens_ease"


def _final_ndcg(experiment) -> float:
  return float(engine.metrics(experiment)["eval/ndcg@10"].iloc[-1])


def _popularity_ndcg(data_dir: str, seed: int) -> float:
  data = load_movielens(data_dir)
  protocol = protocols.build("recbole_ml1m", data.ratings, data.num_users, data.num_movies,
                             seed=seed)
  counts = np.asarray(protocol.train.sum(axis=0)).ravel()
  return protocol.evaluate(
      lambda users: np.broadcast_to(counts, (len(users), len(counts))), (10,))["ndcg@10"]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_dir", required=True)
  parser.add_argument("--output_dir", required=True)
  parser.add_argument("--epsilons", default="1,2,5,10")
  parser.add_argument("--delta", type=float, default=1e-6)
  parser.add_argument("--cap", type=int, default=64)
  parser.add_argument("--lambda_ratio", type=float, default=1.25)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  os.makedirs(args.output_dir, exist_ok=True)
  log_path = os.path.join(args.output_dir, "ease_privacy.jsonl")
  common = {"data_dir": args.data_dir, "root_output_dir": args.output_dir, "seed": args.seed}
  num_movies = load_movielens(args.data_dir).num_movies
  rows = []
  for epsilon in [float(e) for e in args.epsilons.split(",")]:
    z = accounting.noise_for_epsilon(epsilon, 1.0, 1, args.delta)
    reg = round(args.lambda_ratio * 2 * z * args.cap * math.sqrt(num_movies), -2)
    _, _, experiment = engine.run_task(TASK, dict(
        common, experiment_name=f"eps{epsilon:g}", aggregator="dp_fixed",
        noise_multiplier=z, max_user_history=args.cap, ease_l2=reg, dp_delta=args.delta),
        log=lambda line: None)
    metrics = engine.metrics(experiment)
    rows.append(jsonl_log.append_record({
        "bench": "ease_privacy", "epsilon": float(metrics["privacy/epsilon"].iloc[-1]),
        "target_epsilon": epsilon, "delta": args.delta, "noise_multiplier": round(z, 4),
        "cap": args.cap, "ease_l2": reg, "test_ndcg@10": round(_final_ndcg(experiment), 4)},
        log_path))
  _, _, plain = engine.run_task(TASK, dict(common, experiment_name="no_dp"),
                                log=lambda line: None)
  reference = {"federated EASE, no DP": _final_ndcg(plain),
               "popularity (not DP)": _popularity_ndcg(args.data_dir, args.seed)}
  jsonl_log.append_record({"bench": "ease_privacy", "references": reference}, log_path)
  path = plots.privacy_utility([r["epsilon"] for r in rows], [r["test_ndcg@10"] for r in rows],
                               os.path.join(args.output_dir, "ease_privacy.png"), "ndcg@10",
                               args.delta, reference)
  print(f"plot: {path}")


if __name__ == "__main__":
  main()
