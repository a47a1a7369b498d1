"""Each round's client datasets: raw data built once, a fresh but reproducible
shuffle per (seed, round, client)."""

import types

import numpy as np
import tensorflow as tf

from tff_movierec.data import preprocessing
from tff_movierec.training.round_datasets import RoundDatasets

SPEC = preprocessing.ClientSpec(num_epochs=1, batch_size=1000)


def _client_data(built):
  def create(client):
    built.append(client)
    return tf.data.Dataset.range(200 * (int(client) + 1))

  return types.SimpleNamespace(client_ids=["0", "1", "2"], create_tf_dataset_for_client=create)


def _orders(datasets):
  return [np.concatenate(list(d.as_numpy_iterator())).tolist() for d in datasets]


def test_orders_are_a_function_of_seed_round_and_client():
  built = []
  datasets = RoundDatasets(_client_data(built), preprocessing.build_preprocess_fn(
      SPEC, lambda batch: batch), seed=7)
  round_3 = _orders(datasets(["0", "2"], 3))
  assert sorted(round_3[1]) == list(range(600))  # a permutation of the client's data
  assert _orders(datasets(["0", "2"], 3)) == round_3  # the same command, the same order
  assert _orders(datasets(["0", "2"], 4)) != round_3  # a fresh order each round
  other_seed = RoundDatasets(_client_data([]), preprocessing.build_preprocess_fn(
      SPEC, lambda batch: batch), seed=8)
  assert _orders(other_seed(["0", "2"], 3)) != round_3
  assert built == ["0", "2"]  # raw client datasets built once


def test_keyed_datasets_come_with_their_client_ids():
  datasets = RoundDatasets(_client_data([]), preprocessing.build_preprocess_fn(
      SPEC, lambda batch: batch), seed=0, keyed=True)
  pairs = datasets(["1", "0"], 1)
  assert [client for client, _ in pairs] == ["1", "0"]
  assert sorted(_orders([pairs[0][1]])[0]) == list(range(400))
