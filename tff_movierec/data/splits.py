"""Train/test splits of MovieLens ratings.

All functions take and return ratings frames as produced by
`movielens.load_movielens` (columns `user`, `movie`, `rating`[, `timestamp`])
and are deterministic for a given seed. Returned frames keep the original row
index, so a rating can be traced back to its source line.
"""

from typing import Tuple

import numpy as np
import pandas as pd

from tff_movierec.data.movielens import MovieLens
from tff_movierec.errors import require

Split = Tuple[pd.DataFrame, pd.DataFrame]


def random_rank_within_user(users: np.ndarray, seed: int) -> Tuple[np.ndarray, np.ndarray]:
  """A uniformly random order of each user's rows, deterministic for `seed`.

  Args:
    users: int [N], the user of each row.

  Returns:
    (rank, count), int [N] each: the row's position 0..n-1 in its user's random
    order, and n, that user's number of rows.
  """
  rng = np.random.default_rng(seed)
  order = np.lexsort((rng.random(len(users)), users))
  sorted_users = users[order]
  starts = np.r_[0, np.flatnonzero(np.diff(sorted_users)) + 1]
  counts = np.diff(np.r_[starts, len(sorted_users)])
  rank, count = np.empty(len(users), np.int64), np.empty(len(users), np.int64)
  rank[order] = np.arange(len(order)) - np.repeat(starts, counts)
  count[order] = np.repeat(counts, counts)
  return rank, count


def per_user_holdout(
    ratings: pd.DataFrame, test_fraction: float = 0.1, seed: int = 0
) -> Split:
  """Holds out `test_fraction` of each user's ratings at random.

  The canonical evaluation split for rating metrics. Each user with n >= 2
  ratings gets max(1, round(test_fraction * n)) test ratings, capped at n - 1
  so that at least one stays in train; users with a single rating keep it in
  train.

  Returns:
    (train, test) frames partitioning `ratings`.
  """
  require(0.0 < test_fraction < 1.0, "test_fraction", test_fraction, "must be in (0, 1).")
  rank, count = random_rank_within_user(ratings["user"].to_numpy(), seed)
  num_test = np.minimum(np.maximum(np.rint(test_fraction * count), 1), count - 1)
  is_test = rank < num_test
  return ratings[~is_test], ratings[is_test]


def temporal_split(
    data: MovieLens, fractions: Tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> Tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
  """Global time split (train, validation, test), oldest ratings first.

  Ties in time keep file order. Raises DataError if there are no timestamps.
  """
  data.require_timestamps("a temporal split")
  require(len(fractions) == 3 and np.isclose(sum(fractions), 1.0) and min(fractions) >= 0,
          "fractions", fractions,
          "must be 3 non-negative numbers (train, validation, test) summing to 1.")
  ratings = data.ratings
  order = np.argsort(ratings["timestamp"].to_numpy(), kind="stable")
  cut_1 = int(round(fractions[0] * len(order)))
  cut_2 = int(round((fractions[0] + fractions[1]) * len(order)))
  return (ratings.iloc[np.sort(order[:cut_1])],
          ratings.iloc[np.sort(order[cut_1:cut_2])],
          ratings.iloc[np.sort(order[cut_2:])])


def _holdout_by(ratings, column, fraction, seed):
  require(0.0 < fraction < 1.0, "fraction", fraction, "must be in (0, 1).")
  ids = np.unique(ratings[column].to_numpy())
  if len(ids) < 2:
    raise ValueError(f"need at least 2 distinct {column}s to hold some out.")
  rng = np.random.default_rng(seed)
  num_held = min(max(1, int(round(fraction * len(ids)))), len(ids) - 1)
  held = rng.choice(ids, size=num_held, replace=False)
  is_held = np.isin(ratings[column].to_numpy(), held)
  return ratings[~is_held], ratings[is_held]


def cold_start_users(ratings: pd.DataFrame, fraction: float = 0.1, seed: int = 0) -> Split:
  """Holds out `fraction` of users with all their ratings: (seen, unseen)."""
  return _holdout_by(ratings, "user", fraction, seed)


def cold_start_movies(ratings: pd.DataFrame, fraction: float = 0.1, seed: int = 0) -> Split:
  """Holds out `fraction` of rated movies with all their ratings: (seen, unseen)."""
  return _holdout_by(ratings, "movie", fraction, seed)
