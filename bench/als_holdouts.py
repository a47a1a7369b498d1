"""Centralized ALS-WR on the cross-device tasks' holdouts, for comparison.

Fits `baselines.svd.SVD` on the training ratings of
`reconstruction.holdout.user_holdout` (the split of `movielens_recon`: the
canonical per-user holdout of each seed, or with --validation the validation
ratings carved from the training ratings) and prints the RMSE of its clipped
predictions on the scored ratings, one line per seed. Writes nothing else.

  .venv/bin/python bench/als_holdouts.py --data_dir=/work/shared/data/ml-1m \
      --seeds=0,1,2 --factors=32 --reg=0.08 --sweeps=12
"""

import argparse

import numpy as np

from tff_movierec.baselines.svd import SVD
from tff_movierec.data import movielens
from tff_movierec.reconstruction import holdout


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_dir", required=True, help="MovieLens-1M folder")
  parser.add_argument("--seeds", default="0", help="comma-separated holdout seeds")
  parser.add_argument("--validation", action="store_true",
                      help="score the validation ratings (carved from the training ratings)")
  parser.add_argument("--factors", type=int, default=32)
  parser.add_argument("--reg", type=float, default=0.08)
  parser.add_argument("--sweeps", type=int, default=12)
  args = parser.parse_args()
  data = movielens.load_movielens(args.data_dir)
  for seed in (int(s) for s in args.seeds.split(",")):
    split = holdout.user_holdout(data, seed=seed, validation=args.validation)
    model = SVD(factors=args.factors, reg=args.reg, sweeps=args.sweeps).fit(
        split.seen_train, data.num_users, data.num_movies)
    scored = split.seen_test
    predictions = model.predict(scored["user"].to_numpy(), scored["movie"].to_numpy())
    rmse = float(np.sqrt(np.mean((predictions - scored["rating"].to_numpy()) ** 2)))
    print(f"{'validation' if args.validation else 'test'} seed {seed}: factors "
          f"{args.factors}, reg {args.reg}, sweeps {args.sweeps}: RMSE {rmse:.4f}", flush=True)


if __name__ == "__main__":
  main()
