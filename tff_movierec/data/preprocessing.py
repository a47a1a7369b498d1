"""Client dataset preprocessing: shuffle -> repeat -> take -> batch -> map."""

import dataclasses
from typing import Callable, Optional

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class ClientSpec:
  """How each client iterates over its data in one round.

  Attributes:
    num_epochs: passes over the client's data per round (>= 1).
    batch_size: examples per batch (>= 1).
    shuffle_buffer_size: shuffle buffer; 0 or 1 disables shuffling.
    max_elements: if set, at most this many examples per round (after repeat).
  """

  num_epochs: int = 1
  batch_size: int = 256
  shuffle_buffer_size: int = 10_000
  max_elements: Optional[int] = None

  def __post_init__(self):
    if self.num_epochs < 1:
      raise ValueError(f"--client_epochs={self.num_epochs}: must be >= 1.")
    if self.batch_size < 1:
      raise ValueError(f"--client_batch_size={self.batch_size}: must be >= 1.")
    if self.shuffle_buffer_size < 0:
      raise ValueError(f"--shuffle_buffer_size={self.shuffle_buffer_size}: must be >= 0.")
    if self.max_elements is not None and self.max_elements < 1:
      raise ValueError(f"--max_client_examples={self.max_elements}: must be >= 1.")


def build_preprocess_fn(
    spec: ClientSpec, batch_map_fn: Callable, seed: Optional[int] = None
) -> Callable[[tf.data.Dataset], tf.data.Dataset]:
  """Returns dataset -> dataset: shuffle, repeat, take, batch, then map.

  `batch_map_fn` turns a batched element dict into what the model consumes
  (e.g. an (x, y) tuple).
  """

  def preprocess(dataset: tf.data.Dataset) -> tf.data.Dataset:
    if spec.shuffle_buffer_size > 1:
      dataset = dataset.shuffle(spec.shuffle_buffer_size, seed=seed,
                                reshuffle_each_iteration=True)
    dataset = dataset.repeat(spec.num_epochs)
    if spec.max_elements is not None:
      dataset = dataset.take(spec.max_elements)
    return dataset.batch(spec.batch_size).map(
        batch_map_fn, num_parallel_calls=tf.data.AUTOTUNE)

  return preprocess
