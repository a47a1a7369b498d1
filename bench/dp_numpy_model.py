"""A numpy model of movielens_recon under user-level DP, for choosing its design.

Not the project's TFF code (bench/dp_recon.py measures that): the same scheme
in plain numpy, fast enough to compare designs on the validation split. Each
round every training user
  1. solves its local weights x_u exactly (ridge `user_l2` per rating) against
     the movie side: its bias, its weights on the public movie features F
     (genres, year; `features.public_movie_features`), with --bias_feature its
     weight on the movie bias, and its factors for the --factors movie factors;
  2. computes the gradient of its mean squared error (1/n_u) over its ratings
     with respect to the global bias, the movie biases and the movie factors,
     and clips it to L2 norm --clip.
With --participation q < 1 only a Poisson sample of the users (each with
probability q) takes part in a round. The server adds Gaussian noise of std
z * clip to the sum, divides by the expected number of users (q times the
users) and takes an SGD-with-momentum step (learning rate cosine-decayed to
0 with --decay). z is calibrated by dp_accounting's RDP accountant so that ε
after --rounds Poisson-sampled Gaussian releases (q = 1: every user, every
round) is --epsilon at δ = --delta.
The RMSE is that of the scored ratings of every user, each user solved from
its training ratings, predictions clipped to [1, 5].

The gradient here is of the error (no factor 2), so --clip 0.05 and --lr 90
are the TFF task's clip_norm 0.1 and server_learning_rate 45.

  .venv/bin/python bench/dp_numpy_model.py --data_dir=/work/shared/data/ml-1m \
      --grid='{"factors": [0, 4], "bias_feature": [true]}'
Every option of --grid takes a list; the others are the defaults below.
"""

import argparse
import itertools
import json
import time

import dp_accounting
import numpy as np
import scipy.sparse as sp

from tff_movierec.data import features, movielens
from tff_movierec.reconstruction import holdout

DEFAULTS = dict(epsilon=5.0, rounds=60, factors=0, clip=0.05, lr=90.0, momentum=0.9,
                user_l2=0.1, public_features=True, bias_feature=True, decay=True,
                participation=1.0, delta=1e-6, seed=0)


class Ratings:
  """Training ratings as CSR (users x movies) and the scored ratings."""

  def __init__(self, data: movielens.MovieLens, seed: int, validation: bool):
    split = holdout.user_holdout(data, seed=seed, validation=validation)
    train, scored = split.seen_train, split.seen_test
    self.num_users, self.num_movies = data.num_users, data.num_movies
    user, movie = train["user"].to_numpy(), train["movie"].to_numpy()
    order = np.lexsort((movie, user))  # by user: the rows of `csr`, in its data order
    self.user, self.movie = user[order], movie[order]
    self.rating = train["rating"].to_numpy(np.float64)[order]
    self.counts = np.bincount(self.user, minlength=self.num_users)
    indptr = np.r_[0, np.cumsum(self.counts)]
    self.csr = sp.csr_matrix((self.rating, self.movie, indptr),
                             shape=(self.num_users, self.num_movies))
    self.scored = (scored["user"].to_numpy(), scored["movie"].to_numpy(),
                   scored["rating"].to_numpy(np.float64))


def solve_users(r: Ratings, item: np.ndarray, bias: np.ndarray, global_bias: float,
                user_l2: float) -> np.ndarray:
  """x_u = [weights on `item` columns, b_u], float64 [U, K + 1]."""
  width = item.shape[1] + 1
  solved = np.zeros((r.num_users, width))
  for u in range(r.num_users):
    start, end = r.csr.indptr[u], r.csr.indptr[u + 1]
    movies = r.csr.indices[start:end]
    design = np.ones((end - start, width))
    design[:, :-1] = item[movies]
    gram = design.T @ design + user_l2 * (end - start) * np.eye(width)
    solved[u] = np.linalg.solve(gram, design.T @ (r.csr.data[start:end] - global_bias
                                                   - bias[movies]))
  return solved


def noise_multiplier(epsilon: float, rounds: int, participation: float, delta: float
                     ) -> float:
  if np.isinf(epsilon):
    return 0.0
  return dp_accounting.calibrate_dp_mechanism(
      dp_accounting.rdp.RdpAccountant,
      lambda z: dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(
          participation, dp_accounting.GaussianDpEvent(z)), rounds),
      epsilon, delta)


def run(r: Ratings, public: np.ndarray, epsilon, rounds, factors, clip, lr, momentum, user_l2,
        public_features, bias_feature, decay, participation, delta, seed):
  """(RMSE of the scored ratings, noise multiplier) of one configuration."""
  rng = np.random.default_rng(seed)
  fixed = public if public_features else np.zeros((r.num_movies, 0))
  p = fixed.shape[1]
  factors_table = 0.1 * rng.standard_normal((r.num_movies, factors)) / np.sqrt(max(factors, 1))
  bias, global_bias = np.zeros(r.num_movies), 3.5
  z = noise_multiplier(epsilon, rounds, participation, delta)
  velocity = [0.0, np.zeros(r.num_movies), np.zeros((r.num_movies, factors))]

  def item_columns():
    columns = [fixed] + ([bias[:, None]] if bias_feature else []) + [factors_table]
    return np.hstack(columns)

  for t in range(rounds):
    item = item_columns()
    x = solve_users(r, item, bias, global_bias, user_l2)
    weights, user_bias = x[:, :-1], x[:, -1]
    error = r.rating - (global_bias + bias[r.movie] + user_bias[r.user]
                        + np.einsum("nk,nk->n", item[r.movie], weights[r.user]))
    scaled = error / r.counts[r.user]
    g_bias = scaled * (1 + weights[r.user, p]) if bias_feature else scaled
    g_factors = scaled[:, None] * weights[r.user, p + int(bias_feature):]
    norms = (np.bincount(r.user, g_bias ** 2, minlength=r.num_users)
             + np.bincount(r.user, (g_factors ** 2).sum(1), minlength=r.num_users)
             + np.bincount(r.user, scaled, minlength=r.num_users) ** 2)
    sampled = rng.random(r.num_users) < participation
    keep = (np.minimum(1.0, clip / np.sqrt(norms + 1e-12)) * sampled)[r.user]
    sums = [np.sum(scaled * keep) + rng.normal(0, z * clip),
            np.bincount(r.movie, g_bias * keep, minlength=r.num_movies)
            + rng.normal(0, z * clip, r.num_movies),
            np.array([np.bincount(r.movie, g_factors[:, k] * keep, minlength=r.num_movies)
                      for k in range(factors)]).reshape(factors, r.num_movies).T
            + rng.normal(0, z * clip, (r.num_movies, factors))]
    rate = lr * (0.5 * (1 + np.cos(np.pi * t / rounds)) if decay else 1.0)
    velocity = [momentum * v + s / (participation * r.num_users)
                for v, s in zip(velocity, sums)]
    global_bias += rate * velocity[0]
    bias = bias + rate * velocity[1]
    factors_table = factors_table + rate * velocity[2]
  item = item_columns()
  x = solve_users(r, item, bias, global_bias, user_l2)
  users, movies, ratings = r.scored
  predictions = (global_bias + bias[movies] + x[users, -1]
                 + np.einsum("nk,nk->n", item[movies], x[users, :-1]))
  return float(np.sqrt(np.mean((np.clip(predictions, 1, 5) - ratings) ** 2))), z


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_dir", required=True, help="MovieLens-1M folder")
  parser.add_argument("--holdout_seed", type=int, default=0)
  parser.add_argument("--test", action="store_true",
                      help="score the test ratings (default: the validation ratings)")
  parser.add_argument("--grid", default="{}", help="JSON: option -> list of values")
  args = parser.parse_args()
  grid = json.loads(args.grid)
  unknown = sorted(set(grid) - set(DEFAULTS))
  if unknown:
    parser.error(f"--grid: unknown options {unknown}; known: {sorted(DEFAULTS)}")
  data = movielens.load_movielens(args.data_dir)
  ratings = Ratings(data, args.holdout_seed, validation=not args.test)
  public = features.public_movie_features(data).astype(np.float64)
  names = sorted(grid)
  for values in itertools.product(*[grid[name] for name in names]):
    config = {**DEFAULTS, **dict(zip(names, values))}
    start = time.time()
    rmse, z = run(ratings, public, **config)
    print(json.dumps({**config, "noise_multiplier": round(z, 4), "rmse": round(rmse, 4),
                      "seconds": round(time.time() - start)}), flush=True)


if __name__ == "__main__":
  main()
