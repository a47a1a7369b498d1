"""Per-user client datasets for Federated Reconstruction.

Every client dataset has exactly two batches, each holding a whole part of the
user's ratings as `(movie int32 [n], rating float32 [n])`:

  training:   batch 0 = reconstruction part, batch 1 = post-reconstruction
              part (a fixed random split of the user's training ratings);
  evaluation: batch 0 = all training ratings (reconstruct from them),
              batch 1 = held-out ratings (score them).

`split_fn` turns such a dataset into FedRecon's (reconstruction,
post-reconstruction) pair by position, repeating each part for the requested
number of full-batch steps. One batch per part keeps the per-client work to a
handful of large steps and makes the split exact without any per-example
filtering inside TFF. The datasets are built once, in memory, and reused
every round.
"""

from typing import Callable, Dict, List, Tuple

import numpy as np
import pandas as pd
import tensorflow as tf

from tff_movierec.errors import require

SplitFn = Callable[[tf.data.Dataset], Tuple[tf.data.Dataset, tf.data.Dataset]]


class UserDatasets:
  """Immutable map from client id (`str(user index)`) to its two-batch dataset."""

  def __init__(self, datasets: Dict[str, tf.data.Dataset],
               part_sizes: Dict[str, Tuple[int, int]]):
    self._datasets = datasets
    self._part_sizes = part_sizes
    self.client_ids: List[str] = sorted(datasets, key=int)

  def __len__(self) -> int:
    return len(self.client_ids)

  def dataset(self, client_id: str) -> tf.data.Dataset:
    return self._datasets[client_id]

  def datasets(self, client_ids) -> List[tf.data.Dataset]:
    return [self._datasets[c] for c in client_ids]

  def part_sizes(self, client_id: str) -> Tuple[int, int]:
    """Number of ratings in batch 0 and in batch 1 of the client's dataset."""
    return self._part_sizes[client_id]


def _two_batch_dataset(first: Tuple[np.ndarray, np.ndarray],
                       second: Tuple[np.ndarray, np.ndarray]) -> tf.data.Dataset:
  return tf.data.Dataset.from_tensors(first).concatenate(
      tf.data.Dataset.from_tensors(second))


def ratings_by_user(ratings: pd.DataFrame) -> Dict[int, Tuple[np.ndarray, np.ndarray]]:
  """{user: (movies int32 [n], ratings float32 [n])}, each user's ratings in the
  frame's order (views into one sorted copy); {} for an empty frame."""
  if ratings.empty:
    return {}
  users = ratings["user"].to_numpy()
  order = np.argsort(users, kind="stable")
  movies = ratings["movie"].to_numpy(np.int32)[order]
  values = ratings["rating"].to_numpy(np.float32)[order]
  sorted_users = users[order]
  starts = np.r_[0, np.flatnonzero(np.diff(sorted_users)) + 1]
  ends = np.r_[starts[1:], len(order)]
  return {int(sorted_users[s]): (movies[s:e], values[s:e]) for s, e in zip(starts, ends)}


def training_datasets(train: pd.DataFrame, reconstruction_fraction: float = 0.5,
                      seed: int = 0) -> UserDatasets:
  """One client per user of `train`: (reconstruction, post-reconstruction) batches.

  Each user's ratings are split at random (fixed by `seed`) into
  round(fraction * n) reconstruction ratings, clipped to [1, n - 1]. A user
  with a single rating uses it for both parts.
  """
  require(0.0 < reconstruction_fraction < 1.0, "reconstruction_fraction",
          reconstruction_fraction, "must be in (0, 1).")
  rng = np.random.default_rng(seed)
  datasets, sizes = {}, {}
  for user, (movies, values) in ratings_by_user(train).items():
    n = len(movies)
    if n == 1:
      parts = ((movies, values), (movies, values))
    else:
      perm = rng.permutation(n)
      cut = int(np.clip(round(reconstruction_fraction * n), 1, n - 1))
      recon, post = np.sort(perm[:cut]), np.sort(perm[cut:])
      parts = ((movies[recon], values[recon]), (movies[post], values[post]))
    datasets[str(user)] = _two_batch_dataset(*parts)
    sizes[str(user)] = (len(parts[0][0]), len(parts[1][0]))
  return UserDatasets(datasets, sizes)


def evaluation_datasets(reconstruct: pd.DataFrame, score: pd.DataFrame) -> UserDatasets:
  """One client per user of `score`: (all of its `reconstruct` ratings, its `score` ratings).

  Raises ValueError if a user to score has no ratings to reconstruct from.
  """
  known = ratings_by_user(reconstruct)
  datasets, sizes = {}, {}
  for user, scored in ratings_by_user(score).items():
    if user not in known:
      raise ValueError(f"user {user} has held-out ratings but none to reconstruct from.")
    datasets[str(user)] = _two_batch_dataset(known[user], scored)
    sizes[str(user)] = (len(known[user][0]), len(scored[0]))
  return UserDatasets(datasets, sizes)


def split_fn(first_steps: int, second_steps: int) -> SplitFn:
  """FedRecon dataset split: batch 0 repeated `first_steps` times, batch 1 `second_steps` times.

  tf.data's default graph rewrites and autotuning are turned off on both parts:
  FedRecon iterates each part once per client, and the rewrites (re-done for
  every client, every round) cost more than the two-batch pipelines they tune.
  """
  require(first_steps >= 0, "first_steps", first_steps,
          "must be >= 0 (steps on the reconstruction part).")
  require(second_steps >= 1, "second_steps", second_steps,
          "must be >= 1 (steps on the post-reconstruction part).")

  options = tf.data.Options()
  options.experimental_optimization.apply_default_optimizations = False
  options.autotune.enabled = False

  @tf.autograph.experimental.do_not_convert
  def split(dataset: tf.data.Dataset) -> Tuple[tf.data.Dataset, tf.data.Dataset]:
    dataset = dataset.with_options(options)
    return (dataset.take(1).repeat(first_steps),
            dataset.skip(1).take(1).repeat(second_steps))

  return split
