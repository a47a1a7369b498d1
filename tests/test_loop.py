"""training.loop: client sampling and the reuse of preprocessed datasets."""

import types

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from tff_movierec.data.preprocessing import shuffled_batches
from tff_movierec.training import loop


def _task(built):
  """A task whose client k holds range(10 * k); `built` records each build."""

  def preprocess(dataset):
    built.append(dataset)
    return shuffled_batches(dataset, 100)

  train_data = types.SimpleNamespace(
      create_tf_dataset_for_client=lambda c: tf.data.Dataset.range(10 * int(c)))
  return types.SimpleNamespace(train_data=train_data, train_preprocess=preprocess)


def test_training_datasets_are_built_once_per_client():
  built = []
  datasets = loop.TrainingDatasets(_task(built))
  first = datasets(["1", "2"])
  again = datasets(["2", "1", "3"])
  assert len(built) == 3
  assert again[0] is first[1] and again[1] is first[0]
  assert sorted(np.concatenate(list(again[2].as_numpy_iterator()))) == list(range(30))


def test_training_datasets_keep_the_most_recent_clients():
  built = []
  datasets = loop.TrainingDatasets(_task(built), capacity=2)
  datasets(["1", "2"])
  datasets(["1"])  # "2" is now the least recently used
  datasets(["3"])  # evicts "2"
  datasets(["1", "2"])
  assert len(built) == 4


@pytest.fixture(scope="module")
def first_five():
  @tff.tensorflow.computation(tff.SequenceType(tff.TensorType(np.int64, [None])))
  def first(dataset):
    return dataset.reduce(tf.zeros([0], tf.int64), lambda a, b: tf.concat([a, b], 0))[:5]

  return first


def test_a_reused_unseeded_dataset_draws_a_new_order_each_round(first_five):
  dataset = loop.TrainingDatasets(_task([]))(["100"])[0]
  orders = {tuple(first_five(dataset)) for _ in range(3)}
  assert len(orders) == 3


def test_sample_clients_depends_only_on_seed_and_round():
  config = loop.LoopConfig(clients_per_round=3, seed=7)
  ids = [str(k) for k in range(20)]
  assert loop.sample_clients(ids, 4, config) == loop.sample_clients(ids, 4, config)
  assert len(set(loop.sample_clients(ids, 4, config))) == 3
  assert {tuple(loop.sample_clients(ids, r, config)) for r in range(1, 6)} != {
      tuple(loop.sample_clients(ids, 1, config))}
