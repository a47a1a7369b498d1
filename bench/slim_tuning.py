"""ADMM-SLIM tuned on the recbole_ml1m validation split, then scored on test.

Grid mode (default): for every (λ1, λ2, ρ, dropout p, popularity exponent α,
centring, sign constraint) of the
grid, runs ADMM on the training Gram matrix and scores the weights after
each --checkpoints iteration count on the validation split (NDCG@10,
Recall@10, HR@10; train masked): the iteration count is tuned for free.

Test mode (--test): the single configuration given (one value per list; the
iterations = the last checkpoint) is fitted once and scored on the test split
(train + valid masked, RecBole's setting) and on the validation split, with
the fit's wall and CPU seconds. One JSON line per measurement.

  OMP_NUM_THREADS=2 /work/main/.venv/bin/python bench/slim_tuning.py \
      --data_dir=/work/shared/data/ml-1m --output=/work/runs/admm_slim/grid.jsonl \
      --l1s=0.5,2,8 --l2s=250,500,1000 --rhos=1000 --checkpoints=25,50,100
  OMP_NUM_THREADS=2 /work/main/.venv/bin/python bench/slim_tuning.py \
      --data_dir=/work/shared/data/ml-1m --output=/work/runs/admm_slim/test.jsonl \
      --test --seed=1 --l1s=2 --l2s=500 --rhos=1000 --checkpoints=100
"""

import argparse
import itertools
import time

import numpy as np

from jsonl_log import append_record  # bench/jsonl_log.py
from tff_movierec.baselines.admm_slim import (AdmmSlim, admm_slim_iterates,
                                              check_hyperparameters, l2_penalty)
from tff_movierec.data.movielens import load_movielens
from tff_movierec.metrics import protocols

METRICS = ("ndcg@10", "recall@10", "hr@10")


def _floats(text):
  return [float(v) for v in text.split(",") if v]


def _metrics(values):
  return {name: round(values[name], 4) for name in METRICS}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_dir", required=True)
  parser.add_argument("--output", required=True, help="JSON-lines file (appended).")
  parser.add_argument("--seed", type=int, default=0, help="seed of the protocol's split")
  parser.add_argument("--l1s", default="0.5,2,8", help="comma-separated λ1 values")
  parser.add_argument("--l2s", default="250,500,1000", help="comma-separated λ2 values")
  parser.add_argument("--rhos", default="1000", help="comma-separated ρ values")
  parser.add_argument("--dropouts", default="0", help="comma-separated EDLAE dropout p")
  parser.add_argument("--alphas", default="0",
                      help="comma-separated popularity exponents of the L2 term")
  parser.add_argument("--centers", default="no", help="comma-separated subset of no,yes")
  parser.add_argument("--signs", default="nonnegative",
                      help="comma-separated subset of nonnegative,free")
  parser.add_argument("--checkpoints", default="25,50,100",
                      help="comma-separated iteration counts to score (increasing)")
  parser.add_argument("--dtype", default="float64", choices=("float64", "float32"))
  parser.add_argument("--test", action="store_true",
                      help="score one configuration on the test split")
  args = parser.parse_args()
  grid = {"l1": _floats(args.l1s), "l2": _floats(args.l2s), "rho": _floats(args.rhos),
          "dropout": _floats(args.dropouts), "popularity_exponent": _floats(args.alphas)}
  signs = [s for s in args.signs.split(",") if s]
  centers = [c for c in args.centers.split(",") if c]
  if set(centers) - {"no", "yes"} or not centers:
    parser.error(f"--centers: expected a subset of no,yes, got {args.centers!r}.")
  checkpoints = sorted({int(v) for v in args.checkpoints.split(",") if v})
  if set(signs) - {"nonnegative", "free"} or not signs:
    parser.error(f"--signs: expected a subset of nonnegative,free, got {args.signs!r}.")
  if not checkpoints or checkpoints[0] < 1:
    parser.error(f"--checkpoints: expected positive integers, got {args.checkpoints!r}.")
  if args.test and (any(len(v) != 1 for v in grid.values()) or len(signs) != 1
                    or len(centers) != 1):
    parser.error("--test scores one configuration: give one value per list.")
  for values in itertools.product(*grid.values()):
    check_hyperparameters(*values[:3], checkpoints[-1], values[3],
                          popularity_exponent=values[4])

  data = load_movielens(args.data_dir)
  protocol = protocols.build("recbole_ml1m", data.ratings, data.num_users, data.num_movies,
                             seed=args.seed)
  grams = {}  # centring -> (AdmmSlim set up on train, gram, diag of the uncentred gram)
  for center in centers:
    model = AdmmSlim(center=center == "yes")  # its own set-up: the movies with interactions
    gram, _ = model.fitted_gram(protocol.train_ratings, data.num_users, data.num_movies)
    grams[center] = model, gram, np.asarray(model.interactions_.sum(axis=0)).ravel()

  for (l1, l2, rho, dropout, alpha), sign, center in itertools.product(
      itertools.product(*grid.values()), signs, centers):
    model, gram, counts = grams[center]
    penalty = l2_penalty(counts, l2, alpha, dropout)
    params = {"l1": l1, "l2": l2, "rho": rho, "dropout": dropout, "alpha": alpha,
              "center": center, "sign": sign, "dtype": args.dtype}
    started, cpu_started = time.perf_counter(), time.process_time()
    evaluation_seconds = evaluation_cpu_seconds = 0.0
    for state in admm_slim_iterates(gram, l1, l2, rho, checkpoints[-1],
                                    sign == "nonnegative", dropout, np.dtype(args.dtype),
                                    penalty):
      if state.iteration not in checkpoints:
        continue
      evaluation_started, evaluation_cpu_started = time.perf_counter(), time.process_time()
      record = {"bench": "slim_tuning", "seed": args.seed, **params,
                "iterations": state.iteration, "movies": len(model.movies_),
                "density": round(float(np.mean(state.weights != 0)), 4),
                "primal_residual": round(state.primal_residual, 4),
                "dual_residual": round(state.dual_residual, 4),
                "fit_seconds": round(evaluation_started - started - evaluation_seconds, 1),
                "fit_cpu_seconds": round(
                    evaluation_cpu_started - cpu_started - evaluation_cpu_seconds, 1)}
      model.weights_ = state.weights
      for split in ("valid", "test") if args.test else ("valid",):
        metrics = protocol.evaluate(model.score_all, (10,), split)
        append_record({**record, "split": split, **_metrics(metrics)}, args.output)
      evaluation_seconds += time.perf_counter() - evaluation_started
      evaluation_cpu_seconds += time.process_time() - evaluation_cpu_started


if __name__ == "__main__":
  main()
