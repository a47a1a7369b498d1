"""Cross-device MovieLens task for Federated Reconstruction.

One client per user (the `natural` partition: 6,040 clients on ML-1M).
Ratings are split with the canonical per-user holdout
(`splits.per_user_holdout(ratings, 0.1, seed)`); optionally a fraction of
users is held out entirely (`splits.cold_start_users`) to measure how the
trained movie side serves users never seen in training. Every user, seen or
not, is evaluated by reconstructing its embedding from its training ratings
and scoring its held-out ratings.
"""

import dataclasses
import tempfile
from typing import Optional

import numpy as np

from tff_movierec.data import features, movielens, splits, synthetic
from tff_movierec.reconstruction.client_datasets import (
    UserDatasets, evaluation_datasets, training_datasets)


@dataclasses.dataclass(frozen=True)
class ReconTask:
  """Data of the FedRecon task.

  Attributes:
    train: training clients (users not held out), two-batch datasets
      (reconstruction part, post-reconstruction part).
    eval_seen: the same users: (all training ratings, held-out ratings).
    eval_unseen: held-out users: (training ratings, held-out ratings), or
      None when no users are held out.
    num_movies: M.
    genres: float32 [M, 18] genre multi-hot table.
    description: one line for logs.
  """

  train: UserDatasets
  eval_seen: UserDatasets
  eval_unseen: Optional[UserDatasets]
  num_movies: int
  genres: np.ndarray
  description: str = ""

  @property
  def num_train_clients(self) -> int:
    return len(self.train)


def recon_task_from_data(data: movielens.MovieLens, test_fraction: float = 0.1,
                         cold_start_fraction: float = 0.0,
                         reconstruction_fraction: float = 0.5,
                         seed: int = 0) -> ReconTask:
  """Builds the task from loaded MovieLens data.

  Args:
    data: the ratings and movies.
    test_fraction: per-user held-out fraction (canonical: 0.1).
    cold_start_fraction: fraction of users kept out of training (0 = none).
    reconstruction_fraction: share of a training user's ratings used for
      reconstruction in training rounds (the rest trains the movie side).
    seed: seed of the holdout, the cold-start draw and the split.
  """
  train, test = splits.per_user_holdout(data.ratings, test_fraction, seed=seed)
  unseen_users = np.array([], np.int32)
  if cold_start_fraction > 0:
    if not cold_start_fraction < 1:
      raise ValueError(f"--cold_start_fraction={cold_start_fraction}: must be in [0, 1).")
    _, unseen = splits.cold_start_users(data.ratings, cold_start_fraction, seed=seed)
    unseen_users = np.unique(unseen["user"].to_numpy())
  elif cold_start_fraction < 0:
    raise ValueError(f"--cold_start_fraction={cold_start_fraction}: must be in [0, 1).")
  is_unseen = lambda frame: np.isin(frame["user"].to_numpy(), unseen_users)
  seen_train, seen_test = train[~is_unseen(train)], test[~is_unseen(test)]
  eval_unseen = None
  if len(unseen_users):
    eval_unseen = evaluation_datasets(train[is_unseen(train)], test[is_unseen(test)])
  return ReconTask(
      train=training_datasets(seen_train, reconstruction_fraction, seed=seed),
      eval_seen=evaluation_datasets(seen_train, seen_test),
      eval_unseen=eval_unseen,
      num_movies=data.num_movies,
      genres=features.genre_multi_hot(data),
      description=(
          f"MovieLens FedRecon: {seen_train['user'].nunique()} training clients "
          f"(one per user), {len(unseen_users)} unseen users, "
          f"{len(seen_train)} training ratings, per-user holdout {test_fraction}"))


def load_recon_task(data_dir: Optional[str] = None, ratings_path: Optional[str] = None,
                    synthetic_data: bool = False, test_fraction: float = 0.1,
                    cold_start_fraction: float = 0.0, reconstruction_fraction: float = 0.5,
                    seed: int = 0) -> ReconTask:
  """Loads MovieLens (or writes and loads a small synthetic one) and builds the task.

  With `synthetic_data`, a 60-user MovieLens-format data set is generated in
  a temporary folder (for smoke tests; `data_dir` is ignored).
  """
  if synthetic_data:
    with tempfile.TemporaryDirectory(prefix="movielens_synthetic_") as folder:
      data = movielens.load_movielens(synthetic.write_synthetic_movielens(folder, seed=seed))
  else:
    data = movielens.load_movielens(data_dir, ratings_path)
  return recon_task_from_data(data, test_fraction, cold_start_fraction,
                              reconstruction_fraction, seed)
