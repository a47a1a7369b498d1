"""Client dataset preprocessing: shuffle -> repeat -> take -> batch -> map.

Shuffling is vectorized: a client's examples are gathered into one set of
column tensors, and each batch is a `tf.gather` of a random permutation's
slice. Every epoch visits the examples in a fresh uniformly random order (an
unbounded shuffle buffer), while the per-example work is a single cheap
`batch` pass instead of a trip through a shuffle buffer (on 2 cores a
10,000-element buffer ran at 156k examples/s, batching alone at 461k;
BENCHMARKS.md, issue 4).
"""

import dataclasses
from typing import Callable, Optional, Tuple

import numpy as np
import tensorflow as tf

from tff_movierec.errors import require

# Examples are copied into the column tensors this many at a time; small
# chunks batch fastest, and concatenating them costs little next to training.
_COLLECT_CHUNK = 1024
# A stateless random seed: two integers.
Seed = Tuple[int, int]


@dataclasses.dataclass(frozen=True)
class ClientSpec:
  """How each client iterates over its data in one round.

  Attributes:
    num_epochs: passes over the client's data per round (>= 1).
    batch_size: examples per batch (>= 1).
    shuffle: whether each epoch visits the examples in a fresh random order.
    max_elements: if set, at most this many examples per round (after repeat).
  """

  num_epochs: int = 1
  batch_size: int = 256
  shuffle: bool = True
  max_elements: Optional[int] = None

  def __post_init__(self):
    require(self.num_epochs >= 1, "num_epochs", self.num_epochs, "must be >= 1.")
    require(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1.")
    require(self.max_elements is None or self.max_elements >= 1, "max_elements",
            self.max_elements, "must be >= 1 (or None for no limit).")


def collect_columns(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """Dataset of examples -> a dataset of one element: the same structure with
  every tensor stacked along a new first dimension [N, ...] (N may be 0).
  Works for any finite dataset, also of unknown cardinality."""
  chunks = dataset.batch(_COLLECT_CHUNK)
  empty = tf.nest.map_structure(
      lambda spec: tf.zeros([0] + spec.shape[1:].as_list(), spec.dtype), chunks.element_spec)

  def append(columns, chunk):
    return tf.nest.map_structure(lambda a, b: tf.concat([a, b], 0), columns, chunk)

  return tf.data.Dataset.range(1).map(lambda _: chunks.reduce(empty, append))


def shuffled_batches(dataset: tf.data.Dataset, batch_size: int, num_epochs: int = 1,
                     max_elements: Optional[int] = None,
                     seed: Optional[Seed] = None) -> tf.data.Dataset:
  """Dataset of examples -> batches of `batch_size` (the last may be smaller)
  over `num_epochs` passes, each pass in a fresh uniformly random order,
  truncated to `max_elements` examples if given.

  `seed`: None draws a new order each time the dataset is iterated (under a
  global TensorFlow seed, a reproducible sequence of orders); a pair of ints
  fixes the order (a stateless draw), so a training loop that wants a fresh
  but reproducible order each round passes a seed derived from (experiment
  seed, round, client), see `round_seed`.
  """

  def batches_of(columns, pair):
    size = tf.shape(tf.nest.flatten(columns)[0], out_type=tf.int64)[0]
    keys = tf.random.stateless_uniform(tf.stack([num_epochs, size]), seed=pair)
    order = tf.reshape(tf.argsort(keys, axis=1), [-1])
    if max_elements is not None:
      order = order[:max_elements]
    total = tf.size(order, out_type=tf.int64)

    def gather(start):
      rows = order[start:tf.minimum(start + batch_size, total)]
      return tf.nest.map_structure(lambda column: tf.gather(column, rows), columns)

    return tf.data.Dataset.range(0, total, batch_size).map(gather)

  if seed is None:  # A fresh pair at every iteration.
    pairs = tf.data.Dataset.random(rerandomize_each_iteration=True).batch(2).take(1)
  else:
    pairs = tf.data.Dataset.from_tensors(tf.constant(seed, tf.int64))
  return tf.data.Dataset.zip((collect_columns(dataset), pairs)).flat_map(batches_of)


def round_seed(seed: int, round_num: int, client_index: int) -> Seed:
  """The stateless shuffle seed of one client in one round."""
  state = np.random.SeedSequence([seed, round_num, client_index]).generate_state(2)
  return int(state[0]), int(state[1])


def build_preprocess_fn(
    spec: ClientSpec, batch_map_fn: Callable
) -> Callable[..., tf.data.Dataset]:
  """Returns (dataset, seed=None) -> dataset: shuffle, repeat, take, batch, map.

  `batch_map_fn` turns a batched element dict into what the model consumes
  (e.g. an (x, y) tuple). `seed`: see `shuffled_batches`.
  """

  def preprocess(dataset: tf.data.Dataset, seed: Optional[Seed] = None) -> tf.data.Dataset:
    if spec.shuffle:
      batches = shuffled_batches(dataset, spec.batch_size, spec.num_epochs,
                                 spec.max_elements, seed)
    else:
      dataset = dataset.repeat(spec.num_epochs)
      if spec.max_elements is not None:
        dataset = dataset.take(spec.max_elements)
      batches = dataset.batch(spec.batch_size)
    return batches.map(batch_map_fn, num_parallel_calls=tf.data.AUTOTUNE)

  return preprocess
