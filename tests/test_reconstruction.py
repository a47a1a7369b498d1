"""FedRecon matrix factorization: data, global/local split, training, evaluation."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from tff_movierec import reconstruction
from tff_movierec.data import movielens, splits, synthetic
from tff_movierec.errors import ConfigError
from tff_movierec.reconstruction import client_datasets, model, regularization
from tff_movierec.training import initialization, sampling
from tff_movierec.training.optimizers import OptimizerSpec
from tasks import movielens_fedrecon

DIM = 4


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  folder = str(tmp_path_factory.mktemp("movielens"))
  synthetic.write_synthetic_movielens(folder, num_users=40, num_movies=50,
                                      ratings_per_user=20, seed=3)
  return movielens.load_movielens(folder)


@pytest.fixture(scope="module")
def task(data):
  return movielens_fedrecon.recon_task_from_data(data, cold_start_fraction=0.2)


@pytest.fixture(scope="module")
def recon_config():
  return reconstruction.ReconConfig(
      reconstruction_steps=5,
      server_optimizer=OptimizerSpec("adam", 0.05, role="server"),
      client_optimizer=OptimizerSpec("sgd", 0.5, role="client"),
      reconstruction_optimizer=OptimizerSpec("sgd", 0.5, role="local"))


@pytest.fixture(scope="module")
def model_fn(task):
  return reconstruction.model_fn_for(
      reconstruction.MFConfig(num_movies=task.num_movies, embedding_dim=DIM, init_stddev=0.3))


@pytest.fixture(scope="module")
def training(model_fn, recon_config):
  return reconstruction.build_training_process(model_fn, recon_config)


@pytest.fixture(scope="module")
def evaluation(model_fn, recon_config):
  return reconstruction.build_evaluation_process(model_fn, recon_config)


def _rows(dataset):
  return [(m.numpy().tolist(), r.numpy().tolist()) for m, r in dataset]


# ---- the user embedding stays on the client ---------------------------------

def test_server_model_holds_exactly_the_movie_side(task, training):
  weights = training.get_model_weights(training.initialize())
  shapes = [tuple(np.shape(w)) for w in weights.trainable]
  assert shapes == [(task.num_movies, DIM), (task.num_movies,), ()]
  assert list(weights.non_trainable) == []
  assert (DIM,) not in shapes  # no user-embedding-shaped tensor reaches the server
  state_type = str(training.next.type_signature.parameter[0])
  assert f"float32[{DIM}]" not in state_type


def test_variables_are_split_into_movie_side_global_and_user_side_local(task):
  for genres in (None, task.genres):
    config = reconstruction.MFConfig(num_movies=task.num_movies, embedding_dim=DIM,
                                     use_genres=genres is not None)
    mf = reconstruction.build_reconstruction_model(config, genres)
    names = lambda variables: [v.name.split(":")[0] for v in variables]
    expected = ["movie_embedding", "movie_bias", "global_bias"]
    if genres is not None:
      expected += ["genre_embedding", "genre_bias"]
    assert names(mf.global_trainable_variables) == expected
    assert names(mf.local_trainable_variables) == ["user_embedding", "user_bias"]
    assert mf.global_non_trainable_variables == mf.local_non_trainable_variables == []
    output = mf.forward_pass((tf.constant([0, 3, 3]), tf.constant([4.0, 2.0, 1.0])))
    assert output.predictions.shape == [3]
    assert int(output.num_examples) == 3


# ---- client datasets ---------------------------------------------------------

def test_training_datasets_split_each_users_ratings_in_two_disjoint_parts():
  ratings = pd.DataFrame({"user": [0] * 6 + [2], "movie": [5, 1, 2, 3, 4, 0, 7],
                          "rating": [1.0, 2.0, 3.0, 4.0, 5.0, 1.0, 3.0]})
  users = client_datasets.training_datasets(ratings, reconstruction_fraction=0.5, seed=0)
  assert users.client_ids == ["0", "2"]
  (recon_movies, _), (post_movies, _) = _rows(users.dataset("0"))
  assert len(recon_movies) == 3 and len(post_movies) == 3
  assert sorted(recon_movies + post_movies) == [0, 1, 2, 3, 4, 5]
  assert users.part_sizes("0") == (3, 3)
  # A single rating serves both stages.
  assert _rows(users.dataset("2")) == [([7], [3.0]), ([7], [3.0])]


def test_evaluation_datasets_reconstruct_from_train_and_score_held_out():
  train = pd.DataFrame({"user": [1, 1, 4], "movie": [0, 1, 2], "rating": [1.0, 2.0, 3.0]})
  test = pd.DataFrame({"user": [1], "movie": [9], "rating": [5.0]})
  users = client_datasets.evaluation_datasets(train, test)
  assert users.client_ids == ["1"]
  assert _rows(users.dataset("1")) == [([0, 1], [1.0, 2.0]), ([9], [5.0])]
  with pytest.raises(ValueError, match="user 7 has held-out ratings but none"):
    client_datasets.evaluation_datasets(train, pd.DataFrame(
        {"user": [7], "movie": [0], "rating": [1.0]}))


def test_loss_is_keras_mean_squared_error_in_value_and_gradient():
  ratings = tf.constant([4.0, 1.0, 5.0, 3.0])
  predictions = tf.Variable([3.5, 2.0, 4.0, 3.0])
  values, gradients = [], []
  for loss in (model.loss_fn(), tf.keras.losses.MeanSquaredError()):
    with tf.GradientTape() as tape:
      value = loss(y_true=ratings, y_pred=predictions)
    values.append(value.numpy())
    gradients.append(tape.gradient(value, predictions).numpy())
  assert values[0] == values[1] == pytest.approx(0.5625)
  np.testing.assert_array_equal(gradients[0], gradients[1])
  with pytest.raises(ValueError, match="no sample_weight"):
    model.loss_fn()(ratings, predictions, sample_weight=tf.ones([4]))


def test_split_fn_turns_off_tf_data_graph_rewrites():
  dataset = tf.data.Dataset.from_tensors(([1], [1.0])).repeat(2)
  for part in client_datasets.split_fn(2, 1)(dataset):
    options = part.options()
    assert options.experimental_optimization.apply_default_optimizations is False
    assert options.autotune.enabled is False


def test_split_fn_repeats_each_batch():
  dataset = tf.data.Dataset.from_tensors(([1], [1.0])).concatenate(
      tf.data.Dataset.from_tensors(([2], [2.0])))
  first, second = client_datasets.split_fn(3, 2)(dataset)
  assert [m.numpy().tolist() for m, _ in first] == [[1]] * 3
  assert [m.numpy().tolist() for m, _ in second] == [[2]] * 2


def test_task_holds_out_unseen_users_and_keeps_the_canonical_holdout(data, task):
  seen = {int(c) for c in task.train.client_ids}
  unseen = {int(c) for c in task.eval_unseen.client_ids}
  assert not seen & unseen
  assert len(seen | unseen) == data.num_users
  assert set(task.eval_seen.client_ids) == set(task.train.client_ids)
  test_ratings = sum(task.eval_seen.part_sizes(c)[1] for c in task.eval_seen.client_ids)
  test_ratings += sum(task.eval_unseen.part_sizes(c)[1] for c in task.eval_unseen.client_ids)
  assert test_ratings == pytest.approx(0.1 * len(data.ratings), abs=data.num_users)


# ---- training and evaluation -------------------------------------------------

def test_training_fits_the_training_ratings(data, task, model_fn, training, evaluation):
  train, _ = splits.per_user_holdout(data.ratings, 0.1, seed=0)
  train = train[train["user"].isin([int(c) for c in task.train.client_ids])]
  fit = client_datasets.evaluation_datasets(train, train)
  state = initialization.seeded_initial_state(training, model_fn, 0)
  before = reconstruction.evaluate(evaluation, training.get_model_weights(state), fit)
  unseen_before = reconstruction.evaluate(evaluation, training.get_model_weights(state),
                                          task.eval_unseen)
  sampler = sampling.ClientSampler(task.train.client_ids, 10, "uniform", seed=0)
  for round_num in range(1, 16):
    ids = sampler(round_num)
    output = training.next(state, task.train.datasets(ids))
    state = output.state
    train_metrics = output.metrics["client_work"]["train"]
    assert {"loss", "rmse", "mae", "examples"} <= set(train_metrics)
    assert all(np.isfinite(train_metrics[name]) for name in ("loss", "rmse", "mae"))
    # `examples` counts the post-reconstruction ratings the round trained on.
    assert train_metrics["examples"] == sum(task.train.part_sizes(c)[1] for c in ids)
  after = reconstruction.evaluate(evaluation, training.get_model_weights(state), fit)
  assert after["rmse"] < before["rmse"] - 0.05
  assert after["num_clients"] == len(task.train)
  # Users never trained on are served by the trained movie side too.
  unseen = reconstruction.evaluate(evaluation, training.get_model_weights(state),
                                   task.eval_unseen)
  assert unseen["num_clients"] == len(task.eval_unseen)
  assert unseen["rmse"] < unseen_before["rmse"]


def test_evaluation_pools_ratings_across_chunks(task, training, evaluation):
  weights = training.get_model_weights(training.initialize())
  whole = reconstruction.evaluate(evaluation, weights, task.eval_seen)
  chunked = reconstruction.evaluate(evaluation, weights, task.eval_seen, chunk_size=7)
  assert chunked["rmse"] == pytest.approx(whole["rmse"], rel=1e-5)
  assert chunked["num_ratings"] == whole["num_ratings"]


@pytest.mark.parametrize("l2", [0.0, 0.2])
def test_evaluation_matches_a_direct_reconstruction(task, model_fn, training, l2):
  """Re-derives one user's held-out RMSE by running reconstruction in plain TF."""
  config = reconstruction.ReconConfig(
      reconstruction_steps=5,
      reconstruction_optimizer=OptimizerSpec("sgd", 0.5, role="local"),
      reconstruction_l2=l2)
  evaluation = reconstruction.build_evaluation_process(model_fn, config)
  weights = training.get_model_weights(training.initialize())
  client = task.eval_seen.client_ids[0]
  via_tff = reconstruction.evaluate(evaluation, weights, task.eval_seen, [client])
  (train_movies, train_ratings), (test_movies, test_ratings) = list(
      task.eval_seen.dataset(client))
  movie_embedding, movie_bias, global_bias = weights.trainable
  user, bias = tf.zeros([DIM]), tf.constant(0.0)
  predict = lambda movies, u, b: (global_bias + b + tf.gather(movie_bias, movies)
                                  + tf.linalg.matvec(tf.gather(movie_embedding, movies), u))
  for _ in range(config.reconstruction_steps):
    with tf.GradientTape() as tape:
      tape.watch([user, bias])
      loss = tf.reduce_mean(tf.square(predict(train_movies, user, bias) - train_ratings))
      loss += l2 * (tf.reduce_sum(tf.square(user)) + tf.square(bias))
    grad_user, grad_bias = tape.gradient(loss, [user, bias])
    user -= config.reconstruction_optimizer.learning_rate * grad_user
    bias -= config.reconstruction_optimizer.learning_rate * grad_bias
  errors = predict(test_movies, user, bias) - test_ratings
  assert via_tff["rmse"] == pytest.approx(float(tf.sqrt(tf.reduce_mean(errors**2))), rel=1e-4)


def test_l2_regularized_optimizer_adds_the_penalty_gradient():
  from tff_movierec.reconstruction.regularization import L2Regularized
  optimizer = L2Regularized(tff.learning.optimizers.build_sgdm(0.5), l2=0.1)
  weights = (tf.constant([1.0, -2.0]), tf.constant(3.0))
  state = optimizer.initialize(tf.nest.map_structure(
      lambda w: tf.TensorSpec(w.shape, w.dtype), weights))
  _, updated = optimizer.next(state, weights, (tf.constant([0.0, 1.0]), tf.constant(0.0)))
  np.testing.assert_allclose(updated[0], [1.0 - 0.5 * 0.2, -2.0 - 0.5 * (1.0 - 0.4)])
  np.testing.assert_allclose(updated[1], 3.0 - 0.5 * 0.6)
  assert optimizer.get_hparams(state)["learning_rate"] == 0.5


def test_server_weight_decay_shrinks_the_movie_side():
  config = reconstruction.ReconConfig(
      server_optimizer=OptimizerSpec("adam", 0.1, role="server"), server_weight_decay=0.5)
  optimizer = config.server()
  weights = (tf.constant([2.0, -4.0]),)
  state = optimizer.initialize((tf.TensorSpec([2], tf.float32),))
  _, updated = optimizer.next(state, weights, (tf.zeros([2]),))
  np.testing.assert_allclose(updated[0], [2.0 * 0.95, -4.0 * 0.95], rtol=1e-6)


def test_recon_config_builds_its_optimizer_specs():
  config = reconstruction.ReconConfig(
      server_optimizer=OptimizerSpec("yogi", 0.03, role="server"),
      client_optimizer=OptimizerSpec("sgd", 0.7, role="client"),
      reconstruction_optimizer=OptimizerSpec("sgd", 0.2, role="local"))
  specs = (tf.TensorSpec([2], tf.float32),)
  for optimizer, rate in ((config.server(), 0.03), (config.client(), 0.7),
                          (config.reconstruction(), 0.2)):
    state = optimizer.initialize(specs)
    assert optimizer.get_hparams(state)["learning_rate"] == pytest.approx(rate)
  assert isinstance(config.server(), type(OptimizerSpec("yogi", 0.03).build()))
  assert not isinstance(config.reconstruction(), regularization.L2Regularized)
  regularized = reconstruction.ReconConfig(reconstruction_l2=0.1).reconstruction()
  assert isinstance(regularized, regularization.L2Regularized)


@pytest.mark.parametrize("build, message, fields", [
    (lambda: reconstruction.ReconConfig(
        server_optimizer=OptimizerSpec("lbfgs", role="server")),
     r"^server_optimizer='lbfgs': expected one of", ("server_optimizer",)),
    (lambda: reconstruction.ReconConfig(
        reconstruction_optimizer=OptimizerSpec("sgd", 0.0, role="local")),
     r"^local_learning_rate=0\.0: must be > 0\.$", ("local_learning_rate",)),
    (lambda: reconstruction.ReconConfig(reconstruction_steps=0),
     r"^reconstruction_steps=0: must be >= 1\.$", ("reconstruction_steps",)),
    (lambda: reconstruction.ReconConfig(post_reconstruction_steps=0),
     r"^post_reconstruction_steps=0: must be >= 1\.$", ("post_reconstruction_steps",)),
    (lambda: reconstruction.ReconConfig(reconstruction_l2=-0.1),
     r"^reconstruction_l2=-0\.1: must be >= 0\.$", ("reconstruction_l2",)),
    (lambda: reconstruction.ReconConfig(server_weight_decay=-1),
     r"^server_weight_decay=-1: must be >= 0\.$", ("server_weight_decay",)),
    (lambda: reconstruction.ReconConfig(
        server_optimizer=OptimizerSpec("sgd", 1.0, role="server"), server_weight_decay=0.1),
     r"^server_weight_decay=0\.1 needs server_optimizer='adam' \(AdamW\), not 'sgd'\.$",
     ("server_weight_decay", "server_optimizer")),
])
def test_recon_config_errors_name_the_field(build, message, fields):
  with pytest.raises(ConfigError, match=message) as error:
    build()
  assert error.value.fields == fields


@pytest.mark.parametrize("build, message, fields", [
    (lambda data: model.MFConfig(num_movies=0), r"^num_movies=0: must be >= 1\.$",
     ("num_movies",)),
    (lambda data: model.MFConfig(num_movies=5, embedding_dim=0),
     r"^embedding_dim=0: must be >= 1\.$", ("embedding_dim",)),
    (lambda data: model.MFConfig(num_movies=5, init_stddev=0.0),
     r"^init_stddev=0\.0: must be > 0\.$", ("init_stddev",)),
    (lambda data: model.MatrixFactorization(model.MFConfig(num_movies=5, use_genres=True)),
     r"^use_genres=True but the genre table was not given: give it exactly when "
     r"use_genres is True\.$", ("use_genres",)),
    (lambda data: model.MatrixFactorization(
        model.MFConfig(num_movies=5, use_genres=True), np.zeros((4, 18))),
     r"^num_movies=5 but the genre table has 4 rows: it needs one row per movie\.$",
     ("num_movies",)),
    (lambda data: regularization.L2Regularized(
        tff.learning.optimizers.build_sgdm(0.5), l2=-0.1),
     r"^l2=-0\.1: must be >= 0\.$", ("l2",)),
    (lambda data: client_datasets.training_datasets(data.ratings, 1.0),
     r"^reconstruction_fraction=1\.0: must be in \(0, 1\)\.$",
     ("reconstruction_fraction",)),
    (lambda data: client_datasets.split_fn(-1, 1),
     r"^first_steps=-1: must be >= 0 \(steps on the reconstruction part\)\.$",
     ("first_steps",)),
    (lambda data: client_datasets.split_fn(1, 0),
     r"^second_steps=0: must be >= 1 \(steps on the post-reconstruction part\)\.$",
     ("second_steps",)),
    (lambda data: movielens_fedrecon.recon_task_from_data(data, cold_start_fraction=1.0),
     r"^cold_start_fraction=1\.0: must be in \[0, 1\)\.$", ("cold_start_fraction",)),
    (lambda data: movielens_fedrecon.recon_task_from_data(data, cold_start_fraction=-0.1),
     r"^cold_start_fraction=-0\.1: must be in \[0, 1\)\.$", ("cold_start_fraction",)),
    (lambda data: movielens_fedrecon.recon_task_from_data(data, test_fraction=0.0),
     r"^test_fraction=0\.0: must be in \(0, 1\)\.$", ("test_fraction",)),
])
def test_model_and_data_errors_name_the_field(data, build, message, fields):
  with pytest.raises(ConfigError, match=message) as error:
    build(data)
  assert error.value.fields == fields
  assert isinstance(error.value, ValueError)

def test_poisson_sampler_draws_about_k_clients():
  population = [str(i) for i in range(1000)]
  sampler = sampling.ClientSampler(population, 100, "poisson", seed=0)
  sizes = [len(sampler(round_num)) for round_num in range(1, 51)]
  assert 80 < np.mean(sizes) < 120 and len(set(sizes)) > 1
  assert sampler.sampling_probability == pytest.approx(0.1)
  uniform = sampling.ClientSampler(population, 100, "uniform", seed=0)
  assert len(set(uniform(1))) == 100


def test_sampler_is_a_function_of_seed_and_round():
  population = [str(i) for i in range(50)]
  for scheme in sampling.SCHEMES:
    sampler = sampling.ClientSampler(population, 10, scheme, seed=3)
    again = sampling.ClientSampler(population, 10, scheme, seed=3)
    assert sampler(4) == again(4) == sampler(4)
    assert sampler(4) != sampler(5)
    assert sampler(4) != sampling.ClientSampler(population, 10, scheme, seed=4)(4)
    chosen = sampler(4)
    assert set(chosen) <= set(population)
    assert chosen == sorted(chosen, key=population.index)  # population order


@pytest.mark.parametrize("kwargs, message, fields", [
    (dict(clients_per_round=0), r"^clients_per_round=0: must be in \[1, 20\]",
     ("clients_per_round",)),
    (dict(clients_per_round=21), r"^clients_per_round=21: must be in \[1, 20\]",
     ("clients_per_round",)),
    (dict(clients_per_round=5, scheme="random"), r"^client_sampling='random': must be one of",
     ("client_sampling",)),
])
def test_sampler_errors_name_the_field(kwargs, message, fields):
  with pytest.raises(ConfigError, match=message) as error:
    sampling.ClientSampler([str(i) for i in range(20)], **kwargs)
  assert error.value.fields == fields
