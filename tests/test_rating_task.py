"""The rating task: federated movie statistics, examples, model, processes."""

import os
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from tasks import movielens_rating
from tff_movierec import movie_stats
from tff_movierec.data import movielens, partitions, preprocessing, splits, synthetic
from tff_movierec.errors import ConfigError
from tff_movierec.models import rating_ffnn
from tff_movierec.training import algorithms
from tff_movierec.training.optimizers import OptimizerSpec


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  directory = synthetic.write_synthetic_movielens(str(tmp_path_factory.mktemp("ml")))
  return movielens.load_movielens(directory)


@pytest.fixture(scope="module")
def split(data):
  return splits.per_user_holdout(data.ratings, 0.2, seed=0)


def _task(data, split, user_embedding):
  train, test = split
  user_to_client = partitions.iid(data.num_users, 3, seed=0)
  # No factor penalty: fed_recon and fedavg (built by TFF) refuse one, as
  # `configure` knows.
  config = rating_ffnn.RatingModelConfig(user_embedding, 4, (8,), 0.0, factor_l2=0.0)
  return movielens_rating.create_rating_task_from_data(
      data, train, test, user_to_client, preprocessing.ClientSpec(1, 16, shuffle=False), config)


def test_federated_movie_stats_equal_pooled_counts(data, split):
  train, _ = split
  task = _task(data, split, "none")
  stats = movie_stats.federated_movie_stats(task.train_data, data.num_movies)
  expected_counts = np.bincount(train["movie"], minlength=data.num_movies)
  expected_sums = np.bincount(train["movie"], weights=train["rating"],
                              minlength=data.num_movies)
  np.testing.assert_array_equal(stats.counts, expected_counts)
  np.testing.assert_allclose(stats.sums, expected_sums, rtol=1e-6)
  assert stats.global_mean == pytest.approx(train["rating"].mean(), rel=1e-6)
  unrated = expected_counts == 0
  np.testing.assert_allclose(stats.shrunk_means()[unrated], stats.global_mean, rtol=1e-6)


def test_user_means_use_only_that_users_ratings(data, split):
  train, _ = split
  means = movielens_rating.user_means(train, data.num_users, 3.0)
  user = int(train["user"].iloc[0])
  own = train[train["user"] == user]["rating"]
  k = movielens_rating.USER_MEAN_SHRINKAGE
  assert means[user] == pytest.approx((own.sum() + k * 3.0) / (len(own) + k))


def test_clients_hold_exactly_their_users_ratings(data, split):
  train, test = split
  task = _task(data, split, "none")
  user_to_client = partitions.iid(data.num_users, 3, seed=0)
  for client in task.train_data.client_ids:
    users = {int(e["user"]) for e in task.train_data.create_tf_dataset_for_client(client)}
    assert users == set(np.flatnonzero(user_to_client == int(client))) & set(train["user"])
  total = sum(int(task.test_data.create_tf_dataset_for_client(c).cardinality())
              for c in task.test_data.client_ids)
  assert total == len(test)


def test_local_user_embedding_is_not_a_global_weight(data, split):
  task = _task(data, split, "local")
  model = task.reconstruction_model_fn()
  global_names = [v.name for v in model.global_trainable_variables]
  local_names = [v.name for v in model.local_trainable_variables]
  assert any(rating_ffnn.USER_EMBEDDING_LAYER in name for name in local_names)
  assert not any(rating_ffnn.USER_EMBEDDING_LAYER in name for name in global_names)
  process = algorithms.build_training_process(task, algorithms.AlgorithmConfig("fed_recon"))
  state = process.initialize()
  shapes = [np.shape(w) for w in process.get_model_weights(state).trainable]
  assert (data.num_users, 4) not in shapes
  datasets = [task.train_preprocess(task.train_data.create_tf_dataset_for_client(c))
              for c in task.train_data.client_ids]
  output = process.next(state, datasets)
  new_shapes = [np.shape(w) for w in process.get_model_weights(output.state).trainable]
  assert new_shapes == shapes


def test_fedavg_with_global_user_embedding_sends_the_table(data, split):
  task = _task(data, split, "global")
  process = algorithms.build_training_process(task, algorithms.AlgorithmConfig("fedavg"))
  shapes = [np.shape(w) for w in process.get_model_weights(process.initialize()).trainable]
  assert (data.num_users, 4) in shapes


def test_algorithm_rejects_mismatched_model(data, split):
  with pytest.raises(ConfigError, match=r"^algorithm='fed_recon' needs a model with "
                     r"client-local layers") as error:
    algorithms.AlgorithmConfig("fed_recon").check_task(_task(data, split, "none"))
  assert error.value.fields == ("algorithm", "user_embedding")
  with pytest.raises(ConfigError, match=r"^algorithm='fedavg' would send the local layers") \
      as error:
    algorithms.AlgorithmConfig("fedavg").check_task(_task(data, split, "local"))
  assert error.value.fields == ("algorithm", "user_embedding")


def test_model_output_shape(data, split):
  task = _task(data, split, "global")
  x, y = next(iter(task.eval_preprocess(task.test_data.create_tf_dataset_for_client("0"))))
  prediction = task.keras_model_fn()(x)
  assert prediction.shape == y.shape and y.shape[1] == 1
  assert prediction.dtype == tf.float32


def test_evaluation_reconstructs_with_training_batches(data, split):
  task = _task(data, split, "local")
  dataset = task.eval_preprocess(task.test_data.create_tf_dataset_for_client("0"))
  recon, held_out = algorithms.split_by_holdout(dataset, reconstruction_batch_size=16,
                                                held_out_batch_size=1024)
  recon_batches = [x for x, _ in recon]
  assert max(int(tf.shape(x["movie"])[0]) for x in recon_batches) == 16
  recon_marks = np.concatenate([x[algorithms.HOLDOUT_KEY].numpy() for x in recon_batches])
  held_out_marks = np.concatenate([x[algorithms.HOLDOUT_KEY].numpy() for x, _ in held_out])
  train_count = int(task.train_data.create_tf_dataset_for_client("0").cardinality())
  assert len(recon_marks) == train_count and not recon_marks.any()
  total = sum(int(tf.shape(x["movie"])[0]) for x, _ in dataset)
  assert len(held_out_marks) == total - train_count > 0 and held_out_marks.all()
  # Shuffled like training data: not in stored order.
  stored = np.concatenate([x["movie"].numpy() for x, _ in dataset])[:train_count]
  shuffled = np.concatenate([x["movie"].numpy() for x in recon_batches])
  assert sorted(stored) == sorted(shuffled) and list(stored) != list(shuffled)


@pytest.mark.parametrize("kwargs, message, fields", [
    (dict(user_embedding="shared"),
     r"^user_embedding='shared': expected one of \('local', 'global', 'none'\)\.$",
     ("user_embedding",)),
    (dict(embedding_dim=0), r"^embedding_dim=0: must be >= 1\.$", ("embedding_dim",)),
    (dict(hidden_units=()), r"^hidden_units=\(\): need at least one size, all >= 1\.$",
     ("hidden_units",)),
    (dict(hidden_units=(8, 0)), r"^hidden_units=\(8, 0\): need at least one size",
     ("hidden_units",)),
    (dict(dropout=1.0), r"^dropout=1\.0: must be in \[0, 1\)\.$", ("dropout",)),
    (dict(dropout_masks="tf"),
     r"^dropout_masks='tf': expected one of \('hashed', 'keras'\)\.$", ("dropout_masks",)),
])
def test_model_config_errors_name_the_field(kwargs, message, fields):
  with pytest.raises(ConfigError, match=message) as error:
    rating_ffnn.RatingModelConfig(**kwargs)
  assert error.value.fields == fields


@pytest.mark.parametrize("kwargs, message, fields", [
    (dict(name="lbfgs", role="server"),
     r"^server_optimizer='lbfgs': expected one of \('sgd', 'adam', 'adagrad', 'yogi'\)\.$",
     ("server_optimizer",)),
    (dict(learning_rate=0.0, role="client"), r"^client_learning_rate=0\.0: must be > 0\.$",
     ("client_learning_rate",)),
    (dict(momentum=1.0, role="client"), r"^client_momentum=1\.0: must be in \[0, 1\)\.$",
     ("client_momentum",)),
    (dict(name="adam", momentum=0.9, role="local"),
     r"^local_momentum=0\.9 applies only to local_optimizer='sgd', not "
     r"local_optimizer='adam'\.$", ("local_momentum", "local_optimizer")),
    (dict(name="adam", beta_1=1.5, role="server"),
     r"^server_beta_1=1\.5: must be in \[0, 1\)\.$", ("server_beta_1",)),
    (dict(name="yogi", beta_2=-0.1, role="server"),
     r"^server_beta_2=-0\.1: must be in \[0, 1\)\.$", ("server_beta_2",)),
    (dict(learning_rate=-1.0), r"^learning_rate=-1\.0: must be > 0\.$", ("learning_rate",)),
    (dict(name="adagrad", momentum=0.5),
     r"^momentum=0\.5 applies only to optimizer='sgd', not optimizer='adagrad'\.$",
     ("momentum", "optimizer")),
])
def test_optimizer_spec_errors_name_the_role_field(kwargs, message, fields):
  with pytest.raises(ConfigError, match=message) as error:
    OptimizerSpec(**kwargs)
  assert error.value.fields == fields
  assert OptimizerSpec("adam", 0.1, role="server").role == "server"
  assert OptimizerSpec().role == ""


_VOCABULARY = {"user": 5, "movie": 7, "gender": 2, "age": 7, "occupation": 21}


def _batch(n=4):
  return {"user": tf.range(n), "movie": tf.range(n), "genres": tf.ones([n, 18]),
          "gender": tf.zeros([n], tf.int32), "age": tf.ones([n], tf.int32),
          "occupation": tf.fill([n], 2), "user_mean": tf.fill([n], 4.0),
          "movie_mean": tf.linspace(2.0, 5.0, n), "movie_log_count": tf.ones([n])}


@pytest.mark.parametrize("drop, absent", [
    (("genres",), {"genres"}),
    (("demographics",), {"gender", "age", "occupation"}),
    (("user_mean", "popularity"), {"user_mean", "movie_log_count"}),
    (("movie_id",), {"movie"}),
])
def test_dropped_feature_groups_are_not_inputs(drop, absent):
  config = rating_ffnn.RatingModelConfig("none", 4, (8,), 0.0, drop_features=drop)
  model = rating_ffnn.build_rating_model(config, _VOCABULARY, 18, 3.5)
  assert set(model.input_names) == set(rating_ffnn.input_names(config))
  assert not absent & set(model.input_names)
  layer_names = {layer.name for layer in model.layers}
  assert ("movie_embedding" in layer_names) == ("movie_id" not in drop)
  assert ("genres" in model.input_names) == ("genres" not in drop)


def test_dropped_movie_id_leaves_no_movie_input_when_nothing_else_needs_it():
  config = rating_ffnn.RatingModelConfig(
      "global", 4, (8,), 0.0, drop_features=tuple(rating_ffnn.FEATURE_GROUPS))
  assert rating_ffnn.input_names(config) == ("user",)


def test_baseline_uses_only_the_means_in_use():
  """With zero residual weights the output is the baseline: global mean plus
  the offsets of the means the network reads (clipped to the 1-5 scale)."""
  batch = _batch()
  for drop, expected in [((), 4.0 + batch["movie_mean"].numpy() - 3.5),
                         (("user_mean",), batch["movie_mean"].numpy()),
                         (("user_mean", "movie_mean"), np.full(4, 3.5))]:
    config = rating_ffnn.RatingModelConfig("none", 4, (8,), 0.0, drop_features=drop)
    model = rating_ffnn.build_rating_model(config, _VOCABULARY, 18, 3.5)
    residual = model.get_layer("rating_residual")
    residual.set_weights([np.zeros_like(w) for w in residual.get_weights()])
    x = {name: batch[name] for name in model.input_names}
    np.testing.assert_allclose(model(x).numpy().reshape(-1), np.clip(expected, 1.0, 5.0),
                               rtol=1e-6)


def test_every_group_dropped_learns_one_constant_rating():
  config = rating_ffnn.RatingModelConfig(
      "none", 4, (8,), 0.0, drop_features=tuple(rating_ffnn.FEATURE_GROUPS))
  model = rating_ffnn.build_rating_model(config, _VOCABULARY, 18, 3.5)
  assert model.input_names == ["movie"]
  prediction = model({"movie": tf.constant([0, 3, 6])}).numpy().reshape(-1)
  assert np.ptp(prediction) == 0.0
  model.compile(tf.keras.optimizers.Adam(0.05), loss="mse")
  model.fit(tf.zeros([64], tf.int32), tf.fill([64, 1], 4.5), epochs=60, verbose=0)
  assert model(tf.constant([1])).numpy()[0, 0] == pytest.approx(4.5, abs=0.05)


def test_unknown_feature_group_is_named():
  with pytest.raises(ConfigError, match=r"^drop_features='genre': unknown group\(s\) \['genre'\]; "
                     r"the groups are movie_id, demographics") as error:
    rating_ffnn.RatingModelConfig(drop_features=("genre",))
  assert error.value.fields == ("drop_features",)


def test_comparison_progress_counts_every_training_batch(data, split, capsys):
  from tff_movierec import progress
  from tff_movierec.training import evaluation
  task = _task(data, split, "none")
  expected = evaluation.comparison_batches(evaluation.train_examples(task), epochs=2,
                                          batch_size=64)
  lines = []
  with progress.Progress("comparison", expected, "batches", log=lines.append,
                         stream=open(os.devnull, "w")) as bar:
    evaluation.local_only_table(task, 2, batch_size=64, progress=bar)
    evaluation.centralized_table(task, 2, batch_size=64, progress=bar)
  assert expected > 2 * 3
  assert re.fullmatch(rf"comparison: {expected}/{expected} batches in \d+ s", lines[0]), lines


def test_comparison_seconds_times_batches_after_the_warmup(data, split):
  from tff_movierec.training import evaluation
  task = _task(data, split, "none")
  counts = evaluation.train_examples(task)
  batches = evaluation.comparison_batches(counts, epochs=2, batch_size=16)
  seconds = evaluation.comparison_seconds(task, counts, 2, batch_size=16, warmup=2, timed=4)
  assert 0 < seconds < batches * 1.0  # well under a second per 16-example batch
  assert evaluation.comparison_seconds(task, counts, 2, batch_size=10_000) == 0.0  # too few


def _fused(user_embedding="global", **kwargs):
  return rating_ffnn.RatingModelConfig(user_embedding, 4, (8,), 0.0, mf_dim=3, **kwargs)


def test_fused_mf_adds_a_biased_dot_product_to_the_seed_network():
  batch = _batch()
  model = rating_ffnn.build_rating_model(_fused(), _VOCABULARY, 18, 3.5)
  x = {name: batch[name] for name in model.input_names}
  without = model(x).numpy()
  user_factors, movie_factors = (model.get_layer(n).embeddings for n in ("user_factors",
                                                                       "movie_factors"))
  user_factors.assign(tf.fill(user_factors.shape, 0.1))
  movie_factors.assign(tf.fill(movie_factors.shape, 0.2))
  model.get_layer("user_bias").embeddings.assign(tf.fill([_VOCABULARY["user"], 1], 0.25))
  model.get_layer("movie_bias").embeddings.assign(tf.fill([_VOCABULARY["movie"], 1], -0.5))
  # <p_u, q_i> + b_u + b_i = 3 x 0.02 + 0.25 - 0.5, where the output is not clipped
  # (less the initial <p_u, q_i>, |.| < 1e-3).
  inside = (without > 1.5) & (without < 4.5)
  assert inside.any()
  np.testing.assert_allclose((model(x).numpy() - without)[inside], 0.06 - 0.25, atol=1e-3)
  seed = rating_ffnn.build_rating_model(
      rating_ffnn.RatingModelConfig("global", 4, (8,), 0.0, model="seed_ffnn"),
      _VOCABULARY, 18, 3.5)
  seed_layers = {layer.name for layer in seed.layers}
  assert not seed_layers & {"user_factors", "movie_factors", "user_bias", "movie_bias"}
  assert seed.count_params() < model.count_params()


@pytest.mark.parametrize("config, layers", [
    (_fused("local"), ("user_embedding", "user_factors", "user_bias")),
    (_fused("local", model="seed_ffnn"), ("user_embedding",)),
    # The MF path needs both IDs: the ablation's "no user/movie ID" drop it.
    (_fused("none"), ()),
    (_fused("local", drop_features=("movie_id",)), ("user_embedding",)),
])
def test_user_layers_are_every_per_user_table(config, layers):
  assert config.user_layers() == layers
  assert config.has_mf_path == ("user_factors" in layers)


def test_factor_penalty_is_the_batch_mean_of_the_rows_squared_norms():
  config = _fused(factor_l2=0.5)
  model = rating_ffnn.build_rating_model(config, _VOCABULARY, 18, 3.5)
  for name, value in (("user_factors", 1.0), ("movie_factors", 2.0), ("user_bias", 3.0),
                      ("movie_bias", 0.0)):
    table = model.get_layer(name).embeddings
    table.assign(tf.fill(table.shape, value))
  x = {"user": tf.constant([0, 1, 1, 2]), "movie": tf.constant([0, 1, 2, 3])}
  # Per rating: 3 x 1 + 3 x 4 + 9 + 0 = 24; the mean over 4 ratings x 0.5.
  assert float(rating_ffnn.factor_penalty(config, model, x)) == pytest.approx(12.0)
  no_l2 = _fused(factor_l2=0.0)
  assert float(rating_ffnn.factor_penalty(no_l2, model, x)) == 0.0


def test_predictions_are_clipped_to_the_scale_outside_training():
  config = rating_ffnn.RatingModelConfig("none", 4, (8,), 0.0, model="seed_ffnn")
  model = rating_ffnn.build_rating_model(config, _VOCABULARY, 18, 3.5, rating_scale=(1.0, 5.0))
  residual = model.get_layer("rating_residual")
  residual.set_weights([np.zeros_like(residual.get_weights()[0]), np.array([9.0])])
  batch = _batch()
  x = {name: batch[name] for name in model.input_names}
  assert np.all(model(x, training=False).numpy() == 5.0)
  assert np.all(model(x, training=True).numpy() > 9.0)



def test_server_learning_rate_decays_to_a_tenth_over_the_decay_rounds():
  spec = OptimizerSpec("adam", 0.03, decay_steps=10, role="server")
  rates = [float(spec.learning_rate_at(step)) for step in (0, 5, 10, 20)]
  assert rates == pytest.approx([0.03, 0.03 * 0.55, 0.003, 0.003])
  assert OptimizerSpec("adam", 0.03).learning_rate_at(7) == 0.03
  optimizer = spec.build()
  weights = (tf.constant([1.0]),)
  state = optimizer.initialize(tf.nest.map_structure(tf.TensorSpec.from_tensor, weights))
  for _ in range(10):
    state, weights = optimizer.next(state, weights, (tf.constant([1.0]),))
  assert int(state["round_num"]) == 10
  assert float(state["optimizer"][tff.learning.optimizers.LEARNING_RATE_KEY]) == pytest.approx(0.003)


def test_only_the_penalty_algorithms_take_a_task_with_a_penalty(data, split):
  train, test = split
  task = movielens_rating.create_rating_task_from_data(
      data, train, test, partitions.iid(data.num_users, 3, seed=0),
      preprocessing.ClientSpec(1, 16, shuffle=False), _fused("local", factor_l2=0.1))
  assert task.penalty_fn is not None
  algorithms.AlgorithmConfig("stateful_local").check_task(task)
  with pytest.raises(ConfigError, match=r"^algorithm='fed_recon' cannot apply the task's "
                     r"training penalty") as error:
    algorithms.AlgorithmConfig("fed_recon").check_task(task)
  assert error.value.fields == ("algorithm",)
