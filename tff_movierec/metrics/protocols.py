"""Named top-K ranking protocols, reusable by every model.

A `RankingProtocol` holds the (train, valid, test) ratings of one protocol as
frames (to fit models on) and as [U, M] CSR matrices whose values are the
ratings (to evaluate with). `evaluate(score_fn)` ranks all movies for every
user with a relevant held-out movie (see `ranking` for the metric
definitions and edge cases).

Protocols:
  holdout       the canonical per-user 10% holdout (`splits.per_user_holdout`,
                seed 0); relevant = held-out ratings >= 4; candidates = all M
                movies minus the user's train ratings. No validation split:
                models tune on a split carved from train.
  recbole_ml1m  RecBole's published ML-1M setting: ratings >= 3 are implicit
                interactions, 10-core filtering (users and movies with < 10
                interactions removed until stable: 6,040 users, 3,124 movies,
                834,449 interactions on ML-1M), per-user random-order 80/10/10
                split (valid and test get floor(0.1 n) each, as RecBole's
                `split_by_ratio`), full ranking; the test ranking masks train
                and valid interactions, the valid ranking masks train.
                Every held-out interaction is relevant. Users and movies keep
                their indices (filtered ones simply have no interactions).
  seed_variant  NOT a full-ranking protocol: on the canonical holdout, ranks
                only each user's own held-out movies by score, relevant =
                rating >= 3.5. This is what the seed's "Recall@10 0.64 /
                NDCG@10 0.87" appears to measure; it is optimistic (about 16
                candidates per user, ~60% of them relevant) and is reported
                only to explain those numbers.
"""

import dataclasses
from typing import Dict, Iterable, Optional

import numpy as np
import pandas as pd
from scipy import sparse

from tff_movierec.data import splits
from tff_movierec.metrics import ranking

PROTOCOLS = ("holdout", "recbole_ml1m", "seed_variant")
RECBOLE_ML1M_STATS = {"users": 6040, "movies": 3124, "interactions": 834449}


def interaction_matrix(ratings: pd.DataFrame, num_users: int, num_movies: int
                       ) -> sparse.csr_matrix:
  """float32 CSR [num_users, num_movies] with the ratings as values."""
  return sparse.csr_matrix(
      (ratings["rating"].to_numpy(np.float32),
       (ratings["user"].to_numpy(), ratings["movie"].to_numpy())),
      shape=(num_users, num_movies))


def k_core(ratings: pd.DataFrame, k: int) -> pd.DataFrame:
  """Rows of the k-core: repeatedly drops users and movies with < k rows.

  The k-core (largest sub-table in which every user and movie has >= k rows)
  is unique, so the removal order does not matter.
  """
  if k < 1:
    raise ValueError(f"k must be >= 1, got {k}.")
  while True:
    user_counts = ratings.groupby("user")["movie"].transform("size")
    movie_counts = ratings.groupby("movie")["user"].transform("size")
    keep = ((user_counts >= k) & (movie_counts >= k)).to_numpy()
    if keep.all():
      return ratings
    ratings = ratings[keep]


def per_user_ratio_split(ratings: pd.DataFrame, valid_fraction: float = 0.1,
                         test_fraction: float = 0.1, seed: int = 0):
  """Per-user random (train, valid, test), RecBole's `split_by_ratio` counts.

  Each user's rows are shuffled; the last floor(test_fraction * n) go to
  test, the floor(valid_fraction * n) before them to valid, the rest to train.
  """
  rank, count = splits.random_rank_within_user(ratings["user"].to_numpy(), seed)
  num_valid = np.floor(valid_fraction * count + 1e-9).astype(int)
  num_test = np.floor(test_fraction * count + 1e-9).astype(int)
  num_train = count - num_valid - num_test
  part = (rank >= num_train).astype(np.int8) + (rank >= num_train + num_valid)
  return ratings[part == 0], ratings[part == 1], ratings[part == 2]


@dataclasses.dataclass(frozen=True)
class RankingProtocol:
  """Data of one ranking protocol.

  Attributes:
    name: one of PROTOCOLS.
    train_ratings, valid_ratings, test_ratings: frames (user, movie, rating);
      valid may be empty.
    train, valid, test: float32 CSR [U, M] of the same ratings.
    relevance_threshold: a held-out rating >= this is relevant.
    rank_test_items_only: rank only the user's own held-out movies
      (`seed_variant`) instead of all movies.
  """

  name: str
  train_ratings: pd.DataFrame
  valid_ratings: pd.DataFrame
  test_ratings: pd.DataFrame
  train: sparse.csr_matrix
  valid: sparse.csr_matrix
  test: sparse.csr_matrix
  relevance_threshold: float
  rank_test_items_only: bool = False

  def __post_init__(self):
    if self.name not in PROTOCOLS:
      raise ValueError(f"protocol {self.name!r}: expected one of {PROTOCOLS}.")
    if not self.train.shape == self.valid.shape == self.test.shape:
      raise ValueError("train, valid and test matrices must have one shape.")

  @property
  def num_users(self) -> int:
    return self.train.shape[0]

  @property
  def num_movies(self) -> int:
    return self.train.shape[1]

  def evaluate(self, score_fn: ranking.ScoreFn, k_values: Iterable[int] = (10,),
               split: str = "test", batch_size: int = 256) -> Dict[str, float]:
    """Mean ranking metrics on `split` ("test" or "valid").

    Args:
      score_fn: int [B] user indices -> float [B, M] scores.

    Returns:
      See `ranking.evaluate_full_ranking`.
    """
    if split == "test":
      held_out, seen = self.test, self.train + self.valid
    elif split == "valid":
      held_out, seen = self.valid, self.train
    else:
      raise ValueError(f"split must be 'test' or 'valid', got {split!r}.")
    relevant = held_out.copy()
    relevant.data = (relevant.data >= self.relevance_threshold).astype(np.float32)
    relevant.eliminate_zeros()
    candidates = held_out if self.rank_test_items_only else None
    return ranking.evaluate_full_ranking(
        score_fn, relevant, seen, k_values, batch_size, candidates=candidates)


def _protocol(name, train, valid, test, num_users, num_movies, threshold, **kwargs):
  matrices = [interaction_matrix(f, num_users, num_movies) for f in (train, valid, test)]
  return RankingProtocol(name, train, valid, test, *matrices, threshold, **kwargs)


def holdout(ratings: pd.DataFrame, num_users: int, num_movies: int, seed: int = 0
            ) -> RankingProtocol:
  """The canonical per-user 10% holdout, relevant = rating >= 4."""
  train, test = splits.per_user_holdout(ratings, 0.1, seed=seed)
  return _protocol("holdout", train, test.iloc[:0], test, num_users, num_movies, 4.0)


def seed_variant(ratings: pd.DataFrame, num_users: int, num_movies: int, seed: int = 0
                 ) -> RankingProtocol:
  """The seed's apparent, optimistic variant (see module docstring)."""
  train, test = splits.per_user_holdout(ratings, 0.1, seed=seed)
  return _protocol("seed_variant", train, test.iloc[:0], test, num_users, num_movies,
                   3.5, rank_test_items_only=True)


def recbole_ml1m(ratings: pd.DataFrame, num_users: int, num_movies: int, seed: int = 0,
                 core: int = 10) -> RankingProtocol:
  """RecBole's ML-1M setting (see module docstring)."""
  interactions = k_core(ratings[ratings["rating"] >= 3.0], core)
  train, valid, test = per_user_ratio_split(interactions, 0.1, 0.1, seed=seed)
  return _protocol("recbole_ml1m", train, valid, test, num_users, num_movies, 0.0)


def carve_validation(protocol: RankingProtocol, seed: int) -> RankingProtocol:
  """Same protocol on its train data: valid = a per-user 10% holdout of it.

  For tuning when the protocol has no validation split; test is empty.
  """
  train, valid = splits.per_user_holdout(protocol.train_ratings, 0.1, seed=seed)
  return _protocol(protocol.name, train, valid, valid.iloc[:0], protocol.num_users,
                   protocol.num_movies, protocol.relevance_threshold,
                   rank_test_items_only=protocol.rank_test_items_only)


def build(name: str, ratings: pd.DataFrame, num_users: int, num_movies: int,
          seed: int = 0) -> RankingProtocol:
  """The protocol called `name` (one of PROTOCOLS)."""
  builders = {"holdout": holdout, "recbole_ml1m": recbole_ml1m,
              "seed_variant": seed_variant}
  if name not in builders:
    raise ValueError(f"protocol {name!r}: expected one of {PROTOCOLS}.")
  return builders[name](ratings, num_users, num_movies, seed=seed)


def describe(protocol: RankingProtocol) -> Dict[str, int]:
  """Counts of users, movies and interactions across the three splits."""
  frames = pd.concat([protocol.train_ratings, protocol.valid_ratings,
                      protocol.test_ratings])
  return {"users": int(frames["user"].nunique()),
          "movies": int(frames["movie"].nunique()),
          "interactions": int(len(frames))}
