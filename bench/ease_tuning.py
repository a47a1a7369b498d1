"""EASE and EDLAE (EASE with dropout) tuned on the recbole_ml1m validation split.

For every (λ, dropout p) of the grid: item-item weights from the training
Gram matrix (what federated EASE's plain or secure sum delivers exactly, see
tests/test_ease.py), NDCG@10 and Recall@10 on the validation split. Then the
best pair on the validation split is scored once on the test split (masking
train + valid, RecBole's setting). One JSON line per measurement.

  /work/main/.venv/bin/python bench/ease_tuning.py \
      --data_dir=/work/shared/data/ml-1m --output=output/ease_tuning.jsonl
"""

import argparse
import itertools
import time

import numpy as np

from jsonl_log import append_record  # bench/jsonl_log.py
from tff_movierec.baselines.ease import ease_weights
from tff_movierec.data.movielens import load_movielens
from tff_movierec.metrics import protocols

REGS = "250,500,1000,2000"
DROPOUTS = "0,0.1,0.2,0.33,0.5"


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_dir", required=True)
  parser.add_argument("--output", required=True, help="JSON-lines file (appended).")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--regs", default=REGS, help="comma-separated λ values")
  parser.add_argument("--dropouts", default=DROPOUTS, help="comma-separated dropout p values")
  args = parser.parse_args()
  regs = [float(v) for v in args.regs.split(",")]
  dropouts = [float(v) for v in args.dropouts.split(",")]
  data = load_movielens(args.data_dir)
  protocol = protocols.build("recbole_ml1m", data.ratings, data.num_users, data.num_movies,
                             seed=args.seed)
  train = protocol.train.tocsr().astype(np.float64)
  train.data[:] = 1.0
  gram = (train.T @ train).toarray()

  def evaluate(weights, split):
    return protocol.evaluate(lambda users: np.asarray(train[users] @ weights), (10,), split)

  best = None
  for reg, dropout in itertools.product(regs, dropouts):
    started = time.time()
    metrics = evaluate(ease_weights(gram, reg, dropout), "valid")
    record = append_record({"bench": "ease_tuning", "split": "valid", "seed": args.seed,
                            "reg": reg, "dropout": dropout,
                            "ndcg@10": round(metrics["ndcg@10"], 4),
                            "recall@10": round(metrics["recall@10"], 4),
                            "seconds": round(time.time() - started, 1)}, args.output)
    if best is None or record["ndcg@10"] > best["ndcg@10"]:
      best = record
  for reg, dropout in {(best["reg"], best["dropout"]), (1000.0, 0.0)}:
    metrics = evaluate(ease_weights(gram, reg, dropout), "test")
    append_record({"bench": "ease_tuning", "split": "test", "seed": args.seed, "reg": reg,
                   "dropout": dropout, "ndcg@10": round(metrics["ndcg@10"], 4),
                   "recall@10": round(metrics["recall@10"], 4),
                   "chosen_on_valid": (reg, dropout) == (best["reg"], best["dropout"])},
                  args.output)


if __name__ == "__main__":
  main()
