"""Tests of the TFRS two-tower models, their TFF wrapping and their export."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tff_movierec.data.movielens import load_movielens
from tff_movierec.data.partitions import PartitionSpec
from tff_movierec.data.synthetic import write_synthetic_movielens
from tff_movierec.errors import ConfigError
from tff_movierec.metrics import protocols
from tff_movierec.retrieval import (evaluation, examples, experiment, export, federated,
                                    round_histories, training, towers)
from tff_movierec.retrieval.config import RetrievalTaskConfig, TowerConfig
from tff_movierec.retrieval.ranking import RankingTaskConfig
from tff_movierec.training import algorithms, initialization
from tff_movierec.training.optimizers import OptimizerSpec
from tff_movierec.training.round_datasets import RoundDatasets

TOWERS = TowerConfig(embedding_dim=8, history_length=6)
TASK = RetrievalTaskConfig(logq_correction=True)
TRAIN = training.TrainConfig(rounds=2, batch_size=32, learning_rate=0.02)
PARTITION = PartitionSpec("dirichlet", 3)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("synthetic"))
  return load_movielens(write_synthetic_movielens(directory, num_users=45, num_movies=50,
                                                  ratings_per_user=20))


@pytest.fixture(scope="module")
def protocol(data):
  return protocols.build("recbole_ml1m", data.ratings, data.num_users, data.num_movies)


@pytest.fixture(scope="module")
def centralized(data, protocol):
  rounds = []
  model = training.train_centralized(
      "retrieval", data, protocol, TOWERS, TASK, TRAIN,
      on_round=lambda r, m: rounds.append((r, m)))
  return model, rounds


def _train_fed_avg(kind, data, protocol, rounds, client_optimizer, server_optimizer,
                   client_weighting="num_examples", seed=0):
  """FedAvg of a two-tower model on every client, as the retrieval task runs it:
  `federated_setup` + `algorithms.build_fed_avg`, seeded initial weights,
  per-round seeded client shuffles; evaluated on the server after the last round.

  Returns (setup, initial tfrs model, trained tfrs model, [(round, metrics)]).
  """
  task_config = TASK if kind == "retrieval" else RankingTaskConfig()
  setup = training.federated_setup(kind, data, protocol, TOWERS, task_config, PARTITION,
                                   training.ClientSpec(batch_size=TRAIN.batch_size), seed)
  process = algorithms.build_fed_avg(setup.model_fn, client_weighting, client_optimizer,
                                     server_optimizer)
  client_data_fn = RoundDatasets(setup.client_data, setup.preprocess, seed)
  state = initialization.seeded_initial_state(process, setup.model_fn, seed)
  initial, trained = setup.model_fn(), setup.model_fn()
  process.get_model_weights(state).assign_weights_to(initial)
  history = []
  for round_num in range(1, rounds + 1):
    output = process.next(state, client_data_fn(setup.client_ids, round_num))
    state = output.state
    metrics = {"train_" + k: float(v) for k, v in output.metrics["client_work"]["train"].items()}
    if round_num == rounds:
      process.get_model_weights(state).assign_weights_to(trained)
      metrics.update(training.evaluate_model(kind, trained.tfrs_model, data, protocol, "valid"))
    history.append((round_num, metrics))
  return setup, initial.tfrs_model, trained.tfrs_model, history


@pytest.fixture(scope="module")
def federated_run(data, protocol):
  # The settings of the removed `train_federated` with TRAIN: Adam on the
  # clients and on the server, both at 0.02.
  return _train_fed_avg("retrieval", data, protocol, TRAIN.rounds,
                        OptimizerSpec("adam", 0.02, role="client"),
                        OptimizerSpec("adam", 0.02, role="server"))


def _stats(data, protocol):
  return training.pooled_movie_stats(protocol.train_ratings, data.num_movies)


def test_training_history_holds_the_users_other_movies_only(protocol, data):
  train = protocol.train_ratings
  arrays = examples.training_examples(train, data.users, history_length=6, seed=1)
  movies_of = train.groupby("user")["movie"].apply(set)
  for row in range(len(arrays["movie"])):
    user, movie = arrays["user"][row], arrays["movie"][row]
    history = arrays["history"][row]
    own = movies_of[user] - {movie}
    assert movie not in history  # no label leak (each user rates a movie once)
    assert set(history[history >= 0]) <= own
    if len(own) <= 6:
      assert sorted(history[history >= 0]) == sorted(own)
    assert arrays["gender"][row] == data.users["gender"].iloc[user]


def test_user_queries_hold_all_known_movies(protocol, data):
  queries = examples.user_queries(protocol.train_ratings, data.users, np.array([3, 0]))
  for row, user in enumerate([3, 0]):
    expected = set(protocol.train_ratings.loc[protocol.train_ratings["user"] == user, "movie"])
    history = queries["history"][row]
    assert set(history[history >= 0]) == expected
    assert (history >= 0).sum() == len(expected)


def test_masked_mean_embedding_ignores_padding():
  layer = towers.MaskedMeanEmbedding(5, 3)
  result = layer(tf.constant([[1, 2, -1], [-1, -1, -1]])).numpy()
  table = layer.embedding.embeddings.numpy()
  np.testing.assert_allclose(result[0], (table[1] + table[2]) / 2, rtol=1e-6)
  np.testing.assert_allclose(result[1], np.zeros(3))


def test_retrieval_loss_is_the_in_batch_softmax(data, protocol):
  config = RetrievalTaskConfig(logq_correction=False, remove_accidental_hits=False)
  model = training.build_model("retrieval", data, _stats(data, protocol), TOWERS, config)
  arrays = examples.training_examples(protocol.train_ratings, data.users, 6)
  _, first = np.unique(arrays["movie"], return_index=True)
  rows = first[:8]  # distinct movies
  batch = training.to_batch(TOWERS)({k: tf.constant(v[rows]) for k, v in arrays.items()})
  scores = (model.query_embeddings(batch["x"]).numpy()
            @ model.candidate_embeddings(batch["x"]).numpy().T)
  log_softmax = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
  expected = -np.mean(np.diag(log_softmax))
  np.testing.assert_allclose(model.compute_loss(batch).numpy(), expected, rtol=1e-5)


def _whole_train_batch(protocol, data):
  arrays = examples.training_examples(protocol.train_ratings, data.users, 6, seed=5)
  return training.to_batch(TOWERS)({k: tf.constant(v) for k, v in arrays.items()})


def test_centralized_training_lowers_loss_and_reports_metrics(centralized, data, protocol):
  model, rounds = centralized
  assert [r for r, _ in rounds] == [1, 2]
  batch = _whole_train_batch(protocol, data)
  untrained = training.build_model("retrieval", data, _stats(data, protocol), TOWERS, TASK)
  assert model.compute_loss(batch).numpy() < untrained.compute_loss(batch).numpy()
  metrics = rounds[-1][1]
  for name in ("valid_recall@10", "valid_ndcg@10", "valid_hr@10"):
    assert 0.0 <= metrics[name] <= 1.0
  assert metrics["valid_num_users"] > 0


def test_variable_model_forward_pass_is_the_tfrs_loss(data, protocol):
  model = training.build_model("retrieval", data, _stats(data, protocol), TOWERS, TASK,
                               with_metrics=False)
  arrays = examples.training_examples(protocol.train_ratings, data.users, 6)
  batch = training.to_batch(TOWERS)({k: tf.constant(v[:16]) for k, v in arrays.items()})
  wrapped = federated.TfrsVariableModel(model, None)
  output = wrapped.forward_pass(batch)
  np.testing.assert_allclose(output.loss.numpy(), model.compute_loss(batch).numpy(), rtol=1e-6)
  assert int(output.num_examples) == 16
  assert wrapped.trainable_variables == model.trainable_variables
  reported = wrapped.report_local_unfinalized_metrics()
  finalized = wrapped.metric_finalizers()["loss"](reported["loss"]).numpy()
  np.testing.assert_allclose(finalized, output.loss.numpy(), rtol=1e-6)


@pytest.mark.parametrize("use_user_id", [False, True])
def test_only_the_user_id_variant_ships_per_user_rows(data, protocol, use_user_id):
  tower_config = TowerConfig(embedding_dim=8, history_length=6, use_user_id=use_user_id)
  model = training.build_model("retrieval", data, _stats(data, protocol), tower_config, TASK)
  per_user = [v.name for v in model.trainable_variables if v.shape[0] == data.num_users]
  assert bool(per_user) == use_user_id


def test_federated_setup_holds_the_clients_and_a_tff_model(federated_run, data, protocol):
  setup, _, _, _ = federated_run
  assert setup.client_ids == ["0", "1", "2"]
  total = sum(len(setup.client_data.create_tf_dataset_for_client(c)) for c in setup.client_ids)
  assert total == len(protocol.train_ratings)
  model = setup.model_fn()
  assert isinstance(model, federated.TfrsVariableModel)
  batch = next(iter(setup.preprocess(
      setup.client_data.create_tf_dataset_for_client(setup.client_ids[0]))))
  assert int(tf.shape(batch["y"])[0]) == TRAIN.batch_size
  assert np.isfinite(model.forward_pass(batch).loss.numpy())
  metrics = training.evaluate_model("retrieval", model.tfrs_model, data, protocol, "valid")
  assert 0.0 <= metrics["valid_ndcg@10"] <= 1.0


def test_federated_training_updates_the_global_towers(federated_run, data, protocol):
  _, untrained, model, rounds = federated_run
  assert [r for r, _ in rounds] == [1, 2]
  assert all(np.isfinite(m["train_loss"]) for _, m in rounds)
  # Every client trained in every round, on all of its examples.
  assert all(m["train_num_examples"] == len(protocol.train_ratings) for _, m in rounds)
  assert 0.0 <= rounds[-1][1]["valid_ndcg@10"] <= 1.0
  batch = _whole_train_batch(protocol, data)
  assert model.compute_loss(batch).numpy() < untrained.compute_loss(batch).numpy()
  assert not np.allclose(evaluation.candidate_matrix(model, data.num_movies),
                         evaluation.candidate_matrix(untrained, data.num_movies))
  assert not any("top_k" in v.name or "identifiers" in v.name for v in model.variables)


def test_federated_ranking_model_trains(data, protocol):
  _, untrained, model, rounds = _train_fed_avg(
      "ranking", data, protocol, 1, OptimizerSpec("adam", 0.05, role="client"),
      OptimizerSpec("adam", 0.01, role="server"), client_weighting="uniform")
  assert np.isfinite(rounds[0][1]["train_loss"]) and np.isfinite(rounds[0][1]["valid_rmse"])
  assert any(not np.allclose(a, b) for a, b in
             zip(model.trainable_variables, untrained.trainable_variables))


_LOAD_EXPORT = """
import json, sys
import tensorflow as tf
model_dir, history = sys.argv[1], json.loads(sys.argv[2])
index = tf.saved_model.load(model_dir + "/index")
candidates = tf.saved_model.load(model_dir + "/candidate_tower")
features = {"history": tf.constant([history], tf.int32)}
for name in ("gender", "age", "occupation"):
  features[name] = tf.constant([0], tf.int32)
scores, movies = index.top_k(features, tf.constant(5, tf.int32))
vectors = candidates.embed({"movie": tf.constant([0, 1], tf.int32)})
print(json.dumps({"scores": scores.numpy()[0].tolist(), "movies": movies.numpy()[0].tolist(),
                  "dim": int(vectors.shape[1])}))
"""


def test_export_loads_in_a_fresh_process_and_matches(centralized, data, tmp_path):
  model, _ = centralized
  export.export_model(model, data, str(tmp_path), min_history_rating=3.0)
  with open(tmp_path / "vocabulary.json", encoding="utf-8") as f:
    vocabulary = json.load(f)
  assert len(vocabulary["movies"]) == data.num_movies
  assert vocabulary["movies"][0]["title"] == data.movies["title"].iloc[0]
  history = [1, 4, 9]
  result = subprocess.run(
      [sys.executable, "-c", _LOAD_EXPORT, str(tmp_path), json.dumps(history)],
      capture_output=True, text=True, timeout=300, check=True,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  loaded = json.loads(result.stdout.strip().splitlines()[-1])
  features = {"history": np.array([history], np.int32), "gender": np.array([0], np.int32),
              "age": np.array([0], np.int32), "occupation": np.array([0], np.int32)}
  scores = (model.query_embeddings(features).numpy()
            @ evaluation.candidate_matrix(model, data.num_movies).T)[0]
  expected = np.argsort(-scores, kind="stable")[:5]
  assert loaded["movies"] == expected.tolist()
  np.testing.assert_allclose(loaded["scores"], scores[expected], rtol=1e-4)
  assert loaded["dim"] == TOWERS.embedding_dim


def test_federated_movie_stats_equal_the_pooled_ones(data, protocol):
  setup = training.federated_setup("retrieval", data, protocol, TOWERS, TASK, PARTITION,
                                   training.ClientSpec())
  pooled = _stats(data, protocol)
  np.testing.assert_allclose(setup.movie_stats.counts, pooled.counts)
  np.testing.assert_allclose(setup.movie_stats.sums, pooled.sums, rtol=1e-6)


def test_corpus_negatives_make_the_softmax_cover_every_movie(data, protocol):
  config = RetrievalTaskConfig(corpus_negatives=True)
  model = training.build_model("retrieval", data, _stats(data, protocol), TOWERS, config)
  arrays = examples.training_examples(protocol.train_ratings, data.users, 6)
  rows = np.arange(12)
  batch = training.to_batch(TOWERS)({k: tf.constant(v[rows]) for k, v in arrays.items()})
  movies = arrays["movie"][rows]
  queries = model.query_embeddings(batch["x"]).numpy()
  corpus = evaluation.candidate_matrix(model, data.num_movies)
  expected = []
  for i, movie in enumerate(movies):
    # Negatives: in-batch positives of other movies, and every other movie.
    negatives = np.r_[corpus[movies[movies != movie]], np.delete(corpus, movie, axis=0)]
    logits = np.r_[queries[i] @ corpus[movie], negatives @ queries[i]]
    expected.append(np.log(np.exp(logits).sum()) - logits[0])
  np.testing.assert_allclose(model.compute_loss(batch).numpy(), np.mean(expected), rtol=1e-4)


def _client_examples(datasets):
  """[{"movie": int [n], "history": int [n, L]}] of each client's examples (batched
  datasets, concatenated in their order)."""
  return [{name: np.concatenate([batch["x"][name].numpy() for batch in dataset])
           for name in ("movie", "history")} for dataset in datasets]


def _sorted_rows(movies, histories):
  rows = np.c_[movies, histories]
  return rows[np.lexsort(rows.T[::-1])]


def test_resampled_histories_change_every_round_and_stay_the_users_own(data, protocol):
  setup = training.federated_setup("retrieval", data, protocol, TOWERS, TASK, PARTITION,
                                   training.ClientSpec(batch_size=TRAIN.batch_size), seed=3)
  resampled = round_histories.ResampledHistoryDatasets(
      protocol.train_ratings, data.users, setup.user_to_client, TOWERS.history_length,
      setup.preprocess, seed=3)
  first, again, second = (_client_examples(resampled(setup.client_ids, r)) for r in (1, 1, 2))
  replayed = _client_examples(RoundDatasets(setup.client_data, setup.preprocess, 3)(
      setup.client_ids, 1))
  for client in range(len(setup.client_ids)):
    # The same interactions on the same clients, in the same (seeded) order;
    # the same round draws the same histories.
    np.testing.assert_array_equal(first[client]["movie"], replayed[client]["movie"])
    np.testing.assert_array_equal(first[client]["history"], again[client]["history"])
  assert any(not np.array_equal(a["history"], b["history"]) for a, b in zip(first, second))
  # Round 2's histories are `training_examples`'s draw with the round's seed:
  # each holds only its user's other movies.
  arrays = examples.training_examples(protocol.train_ratings, data.users,
                                      TOWERS.history_length, round_histories.history_seed(3, 2))
  np.testing.assert_array_equal(
      _sorted_rows(np.concatenate([c["movie"] for c in second]),
                   np.concatenate([c["history"] for c in second])),
      _sorted_rows(arrays["movie"], arrays["history"]))
  movies_of = protocol.train_ratings.groupby("user")["movie"].apply(set)
  for movie, user, history in zip(arrays["movie"], arrays["user"], arrays["history"]):
    assert movie not in history and set(history[history >= 0]) <= movies_of[user] - {movie}


@pytest.mark.parametrize("history_length, clients, message, field", [
    (0, 45, r"^history_length=0: must be >= 1\.$", "history_length"),
    (6, 44, r"^user_to_client has 44 entries: it must give the client of each of the 45 "
     r"users\.$", "user_to_client"),
])
def test_resampled_histories_refuse_bad_settings(data, protocol, history_length, clients,
                                                  message, field):
  with pytest.raises(ConfigError, match=message) as error:
    round_histories.ResampledHistoryDatasets(
        protocol.train_ratings, data.users, np.zeros(clients, np.int32), history_length,
        preprocess=lambda dataset, seed=None: dataset, seed=0)
  assert error.value.fields == (field,)


def test_holdout_gets_a_validation_split_carved_from_train(data):
  holdout = protocols.build("holdout", data.ratings, data.num_users, data.num_movies)
  carved = experiment.with_validation(holdout)
  assert len(carved.valid_ratings) > 0 and carved.test_ratings.equals(holdout.test_ratings)
  assert len(carved.train_ratings) + len(carved.valid_ratings) == len(holdout.train_ratings)
  assert (carved.train + carved.valid - holdout.train).nnz == 0


def test_run_experiment_reports_test_metrics_and_exports(tmp_path):
  rounds = []
  result = experiment.run_experiment(
      None, protocol="holdout", embedding_dim=8, rounds=1,
      batch_size=32, use_synthetic_data=True, export_dir=str(tmp_path),
      on_round=lambda r, m: rounds.append(r))
  assert rounds == [1]
  assert 0.0 <= result["test_ndcg@10"] <= 1.0 and result["test_num_users"] > 0
  assert (tmp_path / "vocabulary.json").exists()


@pytest.mark.parametrize("build, message, fields", [
    (lambda: TowerConfig(embedding_dim=0), r"^embedding_dim=0: must be >= 1\.$",
     ("embedding_dim",)),
    (lambda: TowerConfig(use_user_id=False, use_demographics=False, use_history=False),
     r"^use_user_id=False, use_demographics=False, use_history=False: the query tower "
     r"needs at least one of them set\.$",
     ("use_user_id", "use_demographics", "use_history")),
    (lambda: TowerConfig(history_length=0), r"^history_length=0: must be >= 1\.$",
     ("history_length",)),
    (lambda: TowerConfig(demographic_dim=0), r"^demographic_dim=0: must be >= 1\.$",
     ("demographic_dim",)),
    (lambda: TowerConfig(hidden_units=(16, 0)),
     r"^hidden_units=\(16, 0\): sizes must be >= 1\.$", ("hidden_units",)),
    (lambda: RetrievalTaskConfig(temperature=0.0), r"^temperature=0\.0: must be > 0\.$",
     ("temperature",)),
])
def test_config_errors_name_the_field(build, message, fields):
  with pytest.raises(ConfigError, match=message) as error:
    build()
  assert error.value.fields == fields
  assert isinstance(error.value, ValueError)
