"""stateful_local: client-held user embeddings that persist and never reach the server."""

import asyncio

import numpy as np
import pytest
import tensorflow_federated as tff

from tasks import movielens_rating
from tff_movierec.data import movielens, partitions, preprocessing, splits, synthetic
from tff_movierec.errors import ConfigError
from tff_movierec.models import rating_ffnn
from tff_movierec.training import algorithms, evaluation, stateful_local
from tff_movierec.training.optimizers import OptimizerSpec

_DIM = 4


@pytest.fixture(scope="module")
def task(tmp_path_factory):
  directory = synthetic.write_synthetic_movielens(str(tmp_path_factory.mktemp("ml")))
  data = movielens.load_movielens(directory)
  train, test = splits.per_user_holdout(data.ratings, 0.2, seed=0)
  return movielens_rating.create_rating_task_from_data(
      data, train, test, partitions.iid(data.num_users, 3, seed=0),
      preprocessing.ClientSpec(1, 16, shuffle=False),
      rating_ffnn.RatingModelConfig("local", _DIM, (8,), 0.0))


@pytest.fixture(scope="module")
def config():
  return algorithms.AlgorithmConfig(
      "stateful_local", client_optimizer=OptimizerSpec("sgd", 0.05),
      server_optimizer=OptimizerSpec("adam", 0.01),
      # The synthetic clients' batches are unshuffled: nearly all of a batch is
      # one user's, whose MF rows then take the whole step.
      local_optimizer=OptimizerSpec("sgd", 0.5))


@pytest.fixture(scope="module")
def process(task, config):
  return algorithms.build_training_process(task, config)


def _client_data(task, clients):
  """(client id, preprocessed dataset) pairs, what `next` takes."""
  return [(c, task.train_preprocess(task.train_data.create_tf_dataset_for_client(c)))
          for c in clients]


def _users_of(task, client):
  return {int(x["user"]) for x in task.train_data.create_tf_dataset_for_client(client)}


def _table(local):
  """[U, sum of widths]: every local table (user embedding, factors, bias)."""
  return np.concatenate([np.asarray(t) for t in local.trainable], axis=1)


def test_server_state_holds_no_user_rows(task, process):
  state = process.initialize()
  local = state["local"]["0"]
  num_users = _table(local).shape[0]
  assert len(local.trainable) == len(rating_ffnn.RatingModelConfig().user_layers())
  weights = process.get_model_weights(state)
  shapes = [np.shape(w) for w in list(weights.trainable) + list(weights.non_trainable)]
  assert not [shape for shape in shapes if shape and shape[0] == num_users]


def test_round_changes_only_the_sampled_clients_own_rows(task, process):
  state = process.initialize()
  before = {c: _table(state["local"][c]).copy() for c in state["local"]}
  output = process.next(state, _client_data(task, ["0", "1"]))
  after = {c: _table(output.state["local"][c]) for c in before}
  np.testing.assert_array_equal(after["2"], before["2"])  # Not sampled: untouched.
  for client in ("0", "1"):
    own = sorted(_users_of(task, client))
    others = sorted(set(range(len(before[client]))) - set(own))
    assert np.abs(after[client][own] - before[client][own]).sum() > 0
    np.testing.assert_array_equal(after[client][others], before[client][others])
  train = output.metrics["client_work"]["train"]
  assert train["examples"] == sum(
      len(task.train_data.create_tf_dataset_for_client(c)) for c in ("0", "1"))
  assert 0 < train["mae"] and train["mae"] ** 2 <= train["loss"] + 1e-9


def test_training_lowers_loss_and_evaluation_uses_local_weights(task, config, process):
  state = process.initialize()
  clients = list(task.train_data.client_ids)
  losses = []
  for _ in range(4):
    output = process.next(state, _client_data(task, clients))
    state = output.state
    losses.append(output.metrics["client_work"]["train"]["loss"])
  assert losses[-1] < losses[0]
  evaluate = evaluation.federated_evaluation(task, config, preprocessing.ClientSpec(), process)
  table = evaluate.table(state)
  assert list(table["client"]) == clients + [evaluation.POOLED]
  pooled = evaluate.pooled(state)
  assert pooled["mae"] == pytest.approx(table.iloc[-1]["mae"])
  # Scoring with another client's local table changes the predictions.
  held_out = evaluation._held_out(task, "0")  # pylint: disable=protected-access
  weights = process.get_model_weights(state)
  _, own = stateful_local.predict(task, weights, state["local"]["0"], held_out)
  _, fresh = stateful_local.predict(task, weights, process.initialize()["local"]["0"],
                                    held_out)
  assert np.abs(own - fresh).max() > 0


def test_checkpoint_restores_local_weights(task, process, tmp_path):
  initial = process.initialize()
  state = process.next(initial, _client_data(task, ["1"])).state
  assert np.abs(_table(state["local"]["1"]) - _table(initial["local"]["1"])).sum() > 0
  manager = tff.program.FileProgramStateManager(str(tmp_path))
  asyncio.run(manager.save(state, 1))
  loaded, version = asyncio.run(manager.load_latest(process.initialize()))
  assert version == 1
  for client in state["local"]:
    np.testing.assert_array_equal(_table(loaded["local"][client]),
                                  _table(state["local"][client]))


def test_unweighted_aggregator_needs_uniform_weighting(task):
  with pytest.raises(ConfigError, match=r"^uniform_weighting=False: an unweighted "
                     r"aggregator \(DP\) needs uniform client weighting; use "
                     r"client_weighting='uniform'\.$") as error:
    algorithms.build_training_process(
        task, algorithms.AlgorithmConfig("stateful_local"),
        tff.aggregators.UnweightedMeanFactory())
  assert error.value.fields == ("uniform_weighting", "client_weighting")


def test_initialize_draws_the_weights_from_the_seed(task, process):
  def weights(state):
    local = [w for c in sorted(state["local"]) for w in state["local"][c].trainable]
    return [np.asarray(w) for w in process.get_model_weights(state).trainable] + [
        np.asarray(w) for w in local]

  first, again, other = process.initialize(0), process.initialize(0), process.initialize(1)
  assert sorted(first["local"]) == sorted(task.train_data.client_ids)
  for a, b in zip(weights(first), weights(again)):
    np.testing.assert_array_equal(a, b)
  assert any(not np.array_equal(a, b) for a, b in zip(weights(first), weights(other)))
  # The local tables differ with the seed too (not just the global weights).
  assert not np.array_equal(_table(first["local"]["0"]), _table(other["local"]["0"]))
