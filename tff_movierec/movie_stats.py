"""Per-movie rating statistics released by a federated sum over clients.

Each client computes, from its own training ratings, the vectors of per-movie
rating sums and counts (float32 [M] each); `tff.federated_sum` adds them up and
only the totals reach the server. From the totals the server derives the
public features the rating model uses: a shrunk per-movie mean and the log
count. The server never reads an individual rating.
"""

import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff


@dataclasses.dataclass(frozen=True)
class MovieStats:
  """Aggregates of the training ratings.

  Attributes:
    sums: float32 [M], sum of ratings per movie.
    counts: float32 [M], number of ratings per movie.
  """

  sums: np.ndarray
  counts: np.ndarray

  @property
  def global_mean(self) -> float:
    return float(self.sums.sum() / max(self.counts.sum(), 1.0))

  def shrunk_means(self, shrinkage: float = 10.0) -> np.ndarray:
    """float32 [M]: (sum + k * global_mean) / (count + k)."""
    return ((self.sums + shrinkage * self.global_mean) /
            (self.counts + shrinkage)).astype(np.float32)

  def log_counts(self) -> np.ndarray:
    """float32 [M]: log(1 + count)."""
    return np.log1p(self.counts).astype(np.float32)


def build_movie_stats_computation(element_spec, num_movies: int) -> tff.Computation:
  """Returns the federated computation {dataset}@CLIENTS -> <sums, counts>@SERVER.

  Args:
    element_spec: element spec of an unbatched client dataset with int32
      `movie` and float32 `rating` entries (other entries are ignored).
    num_movies: M.

  Type signature: ({element}*@CLIENTS -> <float32[M], float32[M]>@SERVER).
  """

  sequence_type = tff.SequenceType(tff.types.tensorflow_to_type(element_spec))

  @tff.tensorflow.computation(sequence_type)
  def client_sums(dataset):
    zeros = tf.zeros([num_movies], tf.float32)
    return dataset.batch(4096).reduce((zeros, zeros), _add_batch(num_movies))

  @tff.federated_computation(tff.FederatedType(sequence_type, tff.CLIENTS))
  def federated_stats(datasets):
    return tff.federated_sum(tff.federated_map(client_sums, datasets))

  return federated_stats


def _add_batch(num_movies):
  """Returns the reduce step that adds a batch's ratings and counts to the state."""

  def step(state, batch):
    sums, counts = state
    movies = tf.cast(batch["movie"], tf.int32)
    ratings = tf.cast(batch["rating"], tf.float32)
    return (sums + tf.math.unsorted_segment_sum(ratings, movies, num_movies),
            counts + tf.math.unsorted_segment_sum(tf.ones_like(ratings), movies, num_movies))

  return step


def federated_movie_stats(client_data: tff.simulation.datasets.ClientData,
                          num_movies: int) -> MovieStats:
  """Runs the federated sum over every client of `client_data`."""
  datasets = [client_data.create_tf_dataset_for_client(c) for c in client_data.client_ids]
  computation = build_movie_stats_computation(client_data.element_type_structure, num_movies)
  sums, counts = computation(datasets)
  return MovieStats(np.asarray(sums, np.float32), np.asarray(counts, np.float32))
