"""Tests of next-movie sequences, the sequence network, its task and metrics."""

import math

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from tasks import movielens_next_movie
from tff_movierec import sequences
from tff_movierec.data import movielens
from tff_movierec.data import synthetic
from tff_movierec.data.download import DataError
from tff_movierec.errors import ConfigError
from tff_movierec.training import algorithms
from tff_movierec.training.optimizers import OptimizerSpec

NUM_MOVIES = 10
PAD = NUM_MOVIES


def _ratings(rows):
  """Frame of (user, movie, timestamp) rows in file order."""
  return pd.DataFrame(rows, columns=["user", "movie", "timestamp"])


@pytest.fixture(scope="module")
def hand_split():
  # User 0 rates 1, 2, 3, 5, 4, 6 in time order; 2 and 3 tie in time and keep
  # file order. User 1 rates 8 then 7 (file order is reversed). User 2 has one
  # rating, user 3 none.
  ratings = _ratings([
      (0, 5, 30), (1, 7, 5), (0, 1, 10), (0, 2, 20), (2, 9, 3), (0, 3, 20),
      (1, 8, 1), (0, 4, 40), (0, 6, 50),
  ])
  return sequences.leave_last_out(sequences.user_sequences(ratings, 4), NUM_MOVIES)


def test_sequences_are_in_time_then_file_order(hand_split):
  seqs = hand_split.sequences
  np.testing.assert_array_equal(seqs.offsets, [0, 6, 8, 9, 9])
  np.testing.assert_array_equal(seqs.movies, [1, 2, 3, 5, 4, 6, 8, 7, 9])
  assert np.all(np.diff(seqs.timestamps[:6]) >= 0)


def test_test_targets_are_each_users_last_movie(hand_split):
  test = hand_split.test
  np.testing.assert_array_equal(test.user, [0, 1])
  np.testing.assert_array_equal(test.target, [6, 7])
  np.testing.assert_array_equal(test.position, [5, 1])
  np.testing.assert_array_equal(test.history, [[2, 3, 5, 4], [PAD, PAD, PAD, 8]])


def test_train_windows_and_padding(hand_split):
  train = hand_split.train
  np.testing.assert_array_equal(train.user, [0, 0, 0, 0])
  np.testing.assert_array_equal(train.target, [2, 3, 5, 4])
  np.testing.assert_array_equal(train.history, [
      [PAD, PAD, PAD, 1], [PAD, PAD, 1, 2], [PAD, 1, 2, 3], [1, 2, 3, 5]])


def test_train_ratings_and_seen_movies_exclude_test_targets(hand_split):
  train_ratings = hand_split.train_ratings()
  assert sorted(zip(train_ratings.user, train_ratings.movie)) == [
      (0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (1, 8), (2, 9)]
  rows, movies = hand_split.seen_before(hand_split.test)
  assert sorted(zip(rows, movies)) == [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (1, 8)]


def test_tuning_split_hides_the_last_movie(hand_split):
  tuning = sequences.leave_last_out(hand_split.sequences, NUM_MOVIES, drop_last=1)
  np.testing.assert_array_equal(tuning.test.target, [4])
  np.testing.assert_array_equal(tuning.test.history, [[1, 2, 3, 5]])
  np.testing.assert_array_equal(tuning.train.target, [2, 3, 5])
  for examples in (tuning.train, tuning.test):
    assert not np.isin([6, 7], examples.history).any()
    assert not np.isin([6, 7], examples.target).any()
  assert not np.isin([6, 7], tuning.train_ratings().movie).any()


def test_sequences_need_timestamps():
  with pytest.raises(ValueError, match="timestamp"):
    sequences.user_sequences(pd.DataFrame({"user": [0], "movie": [0]}), 1)


@pytest.fixture(scope="module")
def synthetic_data(tmp_path_factory):
  directory = tmp_path_factory.mktemp("synthetic")
  return movielens.load_movielens(synthetic.write_synthetic_movielens(str(directory)))


def test_no_future_leakage_on_synthetic_data(synthetic_data):
  ratings = synthetic_data.ratings
  split = sequences.leave_last_out(
      sequences.user_sequences(ratings, synthetic_data.num_users), synthetic_data.num_movies)
  time_of = {(u, m): t for u, m, t in zip(ratings.user, ratings.movie, ratings.timestamp)}
  test_of_user = dict(zip(split.test.user, split.test.target))
  assert len(test_of_user) == synthetic_data.num_users
  for examples in (split.train, split.test):
    for user, history, target in zip(examples.user, examples.history, examples.target):
      target_time = time_of[(user, target)]
      assert all(time_of[(user, m)] <= target_time for m in history if m != split.padding_index)
      assert target not in history
  for user, history, target in zip(split.train.user, split.train.history, split.train.target):
    assert target != test_of_user[user]
    assert test_of_user[user] not in history
    assert time_of[(user, target)] <= time_of[(user, test_of_user[user])]


def test_missing_timestamps_is_a_clear_error(tmp_path):
  synthetic.write_synthetic_movielens(str(tmp_path), ratings_format="csv",
                                      with_timestamps=False)
  data = movielens.load_movielens(str(tmp_path))
  with pytest.raises(DataError, match="no timestamp column, so the next-movie task"):
    movielens_next_movie.create_next_movie_task_from_data(data)


@pytest.mark.parametrize("user_embedding", ["none", "global"])
def test_model_outputs_logits_over_all_movies(user_embedding):
  use_user = user_embedding == "global"
  config = movielens_next_movie.NextMovieModelConfig(user_embedding=user_embedding)
  model = movielens_next_movie.build_next_movie_model(7, NUM_MOVIES, config)
  x = {"history": tf.constant([[PAD, PAD, 1, 2], [3, 4, 5, 6], [PAD] * 4])}
  if use_user:
    x["user"] = tf.constant([0, 6, 3])
  assert sorted(model.input_names) == sorted(x)
  assert model(x).shape == (3, NUM_MOVIES)
  assert ("user_embedding" in [layer.name for layer in model.layers]) == use_user


def test_model_config_validation():
  with pytest.raises(ConfigError, match=r"^dropout=1\.0: must be in \[0, 1\)\.$") as error:
    movielens_next_movie.NextMovieModelConfig(dropout=1.0)
  assert error.value.fields == ("dropout",)
  with pytest.raises(ConfigError, match=r"^history_length=0: must be >= 1\.$") as error:
    movielens_next_movie.NextMovieModelConfig(history_length=0)
  assert error.value.fields == ("history_length",)
  with pytest.raises(ConfigError, match=r"^user_embedding_dim=0: must be >= 1\.$"):
    movielens_next_movie.NextMovieModelConfig(user_embedding_dim=0)
  with pytest.raises(ConfigError, match=r"^user_embedding='local': the next-movie task "
                     r"supports \('none', 'global'\)\.$") as error:
    movielens_next_movie.NextMovieModelConfig(user_embedding="local")
  assert error.value.fields == ("user_embedding",)


def test_keras_rank_metrics_break_ties_by_index():
  logits = tf.constant([[3.0, 3.0, 3.0, 0.0], [3.0, 3.0, 3.0, 0.0], [0.0, 0.0, 0.0, 5.0]])
  targets = tf.constant([2, 1, 0])  # ranks 2, 1, 1
  hit_rate = movielens_next_movie.HitRateAtK(k=2)
  hit_rate.update_state(targets, logits)
  assert hit_rate.result().numpy() == pytest.approx(2 / 3)
  ndcg = movielens_next_movie.NdcgAtK(k=2)
  ndcg.update_state(targets, logits)
  assert ndcg.result().numpy() == pytest.approx(2 / math.log2(3) / 3)


def test_popularity_ranking_by_hand():
  # Training counts: movie 0 three times, movies 1 and 2 twice; test targets
  # 11, 3 and 4 (each user's last movie).
  ratings = _ratings([
      (0, 0, 1), (0, 1, 2), (0, 2, 3), (0, 11, 4),
      (1, 0, 1), (1, 1, 2), (1, 3, 3),
      (2, 0, 1), (2, 2, 2), (2, 4, 3),
  ])
  split = sequences.leave_last_out(sequences.user_sequences(ratings, 3), 12)
  # All movies ranked 0, 1, 2, 3, ..., 11: ranks 11 (miss), 3 and 4.
  everything = movielens_next_movie.evaluate_popularity(split, exclude_seen=False)
  assert everything["hr@10"] == pytest.approx(2 / 3)
  assert everything["ndcg@10"] == pytest.approx((1 / math.log2(5) + 1 / math.log2(6)) / 3)
  # Without each user's seen movies: ranks 8, 1 and 2.
  unseen = movielens_next_movie.evaluate_popularity(split)
  assert unseen["hr@10"] == pytest.approx(1.0)
  assert unseen["ndcg@10"] == pytest.approx(
      (1 / math.log2(10) + 1 / math.log2(3) + 1 / math.log2(4)) / 3)


@pytest.fixture(scope="module")
def task(synthetic_data):
  return movielens_next_movie.create_next_movie_task_from_data(synthetic_data)


@pytest.fixture(scope="module")
def fed_avg(task):
  # What the task's `build` trains with: weighted FedAvg, here Adam on both sides.
  return algorithms.build_fed_avg(task.model_fn, "num_examples",
                                  OptimizerSpec("adam", 1e-2, role="client"),
                                  OptimizerSpec("adam", 1e-2, role="server"))


def test_task_clients_hold_every_example(task):
  assert len(task.train_data.client_ids) == 10
  train_count = sum(
      int(task.train_data.create_tf_dataset_for_client(c).reduce(0, lambda n, _: n + 1))
      for c in task.train_data.client_ids)
  test_count = sum(
      int(task.test_data.create_tf_dataset_for_client(c).reduce(0, lambda n, _: n + 1))
      for c in task.test_data.client_ids)
  assert (train_count, test_count) == (len(task.split.train), len(task.split.test))


def test_model_fn_builds_a_tff_model(task):
  model = task.model_fn()
  assert isinstance(model, tff.learning.models.VariableModel)
  x_spec, y_spec = model.input_spec
  assert sorted(x_spec) == ["history"]
  assert x_spec["history"].shape.as_list() == [None, sequences.HISTORY_LENGTH]
  assert y_spec.shape.as_list() == [None]


def test_global_user_embedding_is_a_model_input(synthetic_data):
  config = movielens_next_movie.NextMovieModelConfig(user_embedding="global")
  task = movielens_next_movie.create_next_movie_task_from_data(
      synthetic_data, model_config=config)
  x_spec, _ = task.model_fn().input_spec
  assert sorted(x_spec) == ["history", "user"]
  assert "user_embedding" in [v.name.split("/")[0] for v in task.model_fn().trainable_variables]


def test_fed_avg_rounds_lower_the_loss(task, fed_avg):
  datasets = [task.train_preprocess(task.train_data.create_tf_dataset_for_client(c))
              for c in task.train_data.client_ids]
  keras_model = task.keras_model_fn()
  keras_model.compile(loss=task.loss_fn())

  def global_loss(state):
    fed_avg.get_model_weights(state).assign_weights_to(keras_model)
    dataset = task.eval_preprocess(
        task.train_data.create_tf_dataset_from_all_clients())
    return keras_model.evaluate(dataset, verbose=0)

  state = fed_avg.initialize()
  initial_loss = global_loss(state)
  for _ in range(3):
    output = fed_avg.next(state, datasets)
    state = output.state
    train = output.metrics["client_work"]["train"]
    assert train["num_examples"] == len(task.split.train)
    assert all(np.isfinite(train[name]) for name in ("loss", "hr_at_10", "ndcg_at_10"))
  assert global_loss(state) < initial_loss - 0.05
  metrics = movielens_next_movie.evaluate_next_movie(keras_model, task)
  assert set(metrics) == {"hr@10", "ndcg@10"}
  assert 0.0 <= metrics["ndcg@10"] <= metrics["hr@10"] <= 1.0


def test_full_ranking_matches_the_keras_metrics(task, fed_avg):
  # fed_avg is requested so that this Keras model is made after TFF's graphs.
  del fed_avg
  keras_model = task.keras_model_fn()
  split = task.split
  logits = keras_model({"history": tf.constant(split.test.history)}, training=False)
  hit_rate, ndcg = movielens_next_movie.next_movie_metrics()
  hit_rate.update_state(split.test.target, logits)
  ndcg.update_state(split.test.target, logits)
  everything = movielens_next_movie.evaluate_next_movie(keras_model, task, exclude_seen=False)
  assert everything["hr@10"] == pytest.approx(hit_rate.result().numpy())
  assert everything["ndcg@10"] == pytest.approx(ndcg.result().numpy())
