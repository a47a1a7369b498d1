"""Exact reconstruction: the user solve, its gradient, grouping, evaluation, the task."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from tasks import movielens_recon
from tasks.definition import Hparams
from tff_movierec import tff_runtime
from tff_movierec.baselines.svd import solve_rows
from tff_movierec.errors import ConfigError
from tff_movierec.reconstruction import exact, user_groups

NUM_MOVIES, DIM = 30, 4


def _ratings(seed: int = 0, users: int = 25) -> pd.DataFrame:
  rng = np.random.default_rng(seed)
  rows = [(u, m, float(rng.integers(1, 6))) for u in range(users)
          for m in rng.choice(NUM_MOVIES, int(rng.integers(2, 15)), replace=False)]
  return pd.DataFrame(rows, columns=["user", "movie", "rating"])


@pytest.fixture(scope="module")
def ratings():
  return user_groups.UserRatings(_ratings())


def _config(**overrides):
  values = dict(num_movies=NUM_MOVIES, embedding_dim=DIM, user_l2=0.1, item_l2=0.05,
                implicit=True)
  values.update(overrides)
  return exact.ExactConfig(**values)


def _weights(config, seed=1):
  """Initial weights with non-zero biases and implicit factors."""
  weights = exact.initial_weights(config, seed)
  rng = np.random.default_rng(seed)
  trainable = [np.asarray(w) for w in weights.trainable]
  trainable[1] = rng.normal(0, 0.3, NUM_MOVIES).astype(np.float32)
  if config.implicit:
    trainable[3] = rng.normal(0, 0.2, (NUM_MOVIES, DIM)).astype(np.float32)
  return trainable


PUBLIC = np.random.default_rng(7).random((NUM_MOVIES, 3)).astype(np.float32)


@pytest.mark.parametrize("public", [None, PUBLIC])
def test_the_user_solve_is_the_ridge_solution_of_als(ratings, public):
  """The user regresses on [F[m], Q[m], 1] (F: the public features, if any)."""
  config = _config(implicit=False)
  weights = _weights(config)
  (group,) = user_groups.pack(ratings, ratings.client_ids, len(ratings),
                             max_length_ratio=None)
  rated = exact._Gathered([tf.constant(w) for w in weights], tf.constant(group["movies"]),
                          None if public is None else tf.constant(public))
  solved = exact.solve_users(weights, rated, tf.constant(group["ratings"]), config.user_l2)
  # The same regressions with the ALS baseline's solver, one row per user.
  rows = [ratings.pad([c]) for c in sorted(ratings.client_ids, key=ratings.count)]
  movies = np.concatenate([m[0][m[0] >= 0] for m, _ in rows])
  values = np.concatenate([r[0][m[0] >= 0] for m, r in rows])
  indptr = np.r_[0, np.cumsum([int((m >= 0).sum()) for m, _ in rows])]
  features = np.hstack(([] if public is None else [public]) +
                       [weights[0], np.ones((NUM_MOVIES, 1))])
  expected = solve_rows(indptr, movies, values - weights[2] - weights[1][movies], features,
                        config.user_l2)
  np.testing.assert_allclose(solved.numpy(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("uniform, public, bias_feature",
                         [(False, None, False), (True, None, False), (True, PUBLIC, True)])
def test_the_update_is_the_gradient_of_the_objective_minimized_over_users(ratings, uniform,
                                                                           public, bias_feature):
  """Envelope theorem: holding x at its solution gives the gradient of
  min_x [L(x, θ) + user_l2 n |x|^2], which autodiff through the solve also gives
  (with public features, x also holds the user's weights on them)."""
  config = _config(uniform_weighting=uniform, movie_bias_feature=bias_feature)
  weights = [tf.constant(w) for w in _weights(config)]
  (group,) = user_groups.pack(ratings, ratings.client_ids, len(ratings),
                             max_length_ratio=None)
  group = {k: tf.constant(v) for k, v in group.items()}
  features = None if public is None else tf.constant(public)
  gradient, weight, _ = exact.client_gradient(config, weights, group, features)

  with tf.GradientTape() as tape:
    tape.watch(weights)
    rated = exact._Gathered(weights, group["movies"], features, bias_feature)
    users = exact.solve_users(weights, rated, group["ratings"], config.user_l2)  # not stopped
    errors = (group["ratings"] - exact._predict(weights[2], rated, users,
                                                exact._implicit_term(rated))) * rated.mask
    counts = tf.reduce_sum(rated.mask, axis=1)
    norms = (tf.reduce_sum(rated.q ** 2, -1) + rated.bias ** 2 + tf.reduce_sum(rated.y ** 2, -1))
    per_user = (tf.reduce_sum(errors ** 2 + config.item_l2 * norms * rated.mask, axis=1)
                + config.user_l2 * counts * tf.reduce_sum(users ** 2, axis=1))
    objective = (tf.reduce_mean(per_user / counts) if uniform
                 else tf.reduce_sum(per_user) / tf.reduce_sum(counts))
  expected = [tf.convert_to_tensor(g) for g in tape.gradient(objective, weights)]
  assert float(weight) == (len(ratings) if uniform else ratings.total(ratings.client_ids))
  for got, want in zip(gradient, expected):
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=2e-3, atol=2e-5)
  assert np.abs(gradient[3].numpy()).max() > 0  # the implicit factors are trained


@pytest.fixture(scope="module")
def processes():
  tff_runtime.install()
  optimizer = tff.learning.optimizers.build_adam(0.05)
  return {uniform: exact.ExactReconstructionProcess(_config(uniform_weighting=uniform),
                                                    optimizer)
          for uniform in (False, True)}


@pytest.mark.parametrize("uniform", [False, True])
def test_users_grouped_in_one_call_aggregate_like_one_client_each(ratings, processes, uniform):
  process = processes[uniform]
  state = process.initialize(seed=2)
  ids = ratings.client_ids
  single = process.next(state, user_groups.pack(ratings, ids, 1))
  grouped = process.next(state, user_groups.pack(ratings, ids, 7))
  # Adam's first step is about lr * sign(g): where g is near 0, float rounding
  # of the sums moves a weight by a few 1e-6 (lr = 0.05).
  for a, b in zip(single.state["model"].trainable, grouped.state["model"].trainable):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  single, grouped = single.metrics["client_work"]["train"], grouped.metrics["client_work"]["train"]
  assert dict(single) == pytest.approx(dict(grouped), rel=1e-6)
  assert grouped["examples"] == ratings.total(ids)


def test_training_lowers_the_error_and_evaluation_pools_scored_ratings(processes):
  frame = _ratings(seed=4, users=40)
  scored_rows = frame.groupby("user").head(1)
  train = user_groups.UserRatings(frame.drop(scored_rows.index))
  scored = user_groups.UserRatings(scored_rows)
  process = processes[False]
  state = process.initialize(seed=0)
  losses = []
  for _ in range(15):
    output = process.next(state, user_groups.pack(train, train.client_ids, 8))
    state, losses = output.state, losses + [output.metrics["client_work"]["train"]["loss"]]
  assert losses[-1] < 0.8 * losses[0]
  weights = process.get_model_weights(state)
  # The server holds movie-side weights only: nothing with a row per user.
  assert [np.shape(w) for w in weights.trainable] == [
      (NUM_MOVIES, DIM), (NUM_MOVIES,), (), (NUM_MOVIES, DIM)]
  assert not weights.non_trainable
  metrics = process.evaluate(weights, user_groups.pack(train, scored.client_ids, 8, scored))
  assert metrics["num_ratings"] == len(scored_rows)
  # The same figure from one user at a time, pooled by hand.
  squared = absolute = 0.0
  for client_id in scored.client_ids:
    one = process.evaluate(weights, user_groups.pack(train, [client_id], 1, scored))
    squared += one["rmse"] ** 2 * one["num_ratings"]
    absolute += one["mae"] * one["num_ratings"]
  assert metrics["rmse"] == pytest.approx(np.sqrt(squared / len(scored_rows)), rel=1e-5)
  assert metrics["mae"] == pytest.approx(absolute / len(scored_rows), rel=1e-5)


def test_pack_sorts_users_by_ratings_and_pads_with_minus_one(ratings):
  groups = user_groups.pack(ratings, ratings.client_ids, 4)
  assert sum(len(g["movies"]) for g in groups) == len(ratings)
  assert max(len(g["movies"]) for g in groups) == 4
  widths = [g["movies"].shape[1] for g in groups]
  assert widths == sorted(widths)
  for group in groups:  # the longest history at most 1.5 x the shortest
    lengths = (group["movies"] >= 0).sum(axis=1)
    assert lengths.max() <= user_groups.MAX_LENGTH_RATIO * lengths.min()
  assert sum(int((g["movies"] >= 0).sum()) for g in groups) == ratings.total(ratings.client_ids)
  assert all(((g["movies"] < 0) == (g["ratings"] == 0)).all() for g in groups)
  with pytest.raises(ValueError, match=r"users \['999'\] have no ratings"):
    user_groups.pack(ratings, ["999"], 4)


def test_pack_closes_a_group_before_a_much_longer_history():
  counts = {"a": 10, "b": 12, "c": 15, "d": 16, "e": 40}
  ratings = user_groups.UserRatings(pd.DataFrame({
      "user": np.repeat(np.arange(5), list(counts.values())).astype(np.int32),
      "movie": np.concatenate([np.arange(c) for c in counts.values()]).astype(np.int32),
      "rating": np.full(sum(counts.values()), 3.0, np.float32)}))
  sizes = [len(g["movies"]) for g in user_groups.pack(ratings, ratings.client_ids, 8)]
  assert sizes == [3, 1, 1]  # 10, 12, 15 | 16 > 1.5 x 10 | 40 > 1.5 x 16
  assert [len(g["movies"]) for g in user_groups.pack(
      ratings, ratings.client_ids, 8, max_length_ratio=None)] == [5]


def _hparams(**overrides):
  values = {name: None for name in movielens_recon.TASK.all_reads}
  values.update(test_fraction=0.1, eval_split="test", cold_start_fraction=0.0,
                client_sampling="poisson", clients_per_round=10, embedding_dim=4,
                user_l2=0.08, item_l2=0.08, implicit_feedback=False, server_optimizer="adam",
                server_learning_rate=0.01, server_momentum=0.0, server_beta_1=0.9,
                server_beta_2=0.999,
                server_lr_decay_rounds=0, aggregator="none", client_weighting="num_examples",
                seed=0, client_data_source="auto")
  values.update(overrides)
  return Hparams("movielens_recon", values)


def test_grouping_defaults_to_one_user_per_call_under_dp_and_refuses_more():
  assert movielens_recon.configure(_hparams()).users_per_client_call == (
      movielens_recon.DEFAULT_USERS_PER_CLIENT_CALL)
  dp = dict(aggregator="dp_fixed", noise_multiplier=0.5, clip_norm=0.1,
            client_weighting="uniform")
  assert movielens_recon.configure(_hparams(**dp)).users_per_client_call == 1
  with pytest.raises(ConfigError, match="a client must hold one user") as error:
    movielens_recon.configure(_hparams(users_per_client_call=8, **dp))
  assert set(error.value.fields) == {"users_per_client_call", "aggregator"}
  with pytest.raises(ConfigError, match="user_l2"):
    movielens_recon.configure(_hparams(user_l2=0.0))


def test_a_dp_aggregator_gets_one_user_per_client_and_their_uniform_mean(ratings, processes):
  """With no noise and a clip no update reaches, DP's sum / clients equals the
  plain uniform mean over users."""
  ids = ratings.client_ids
  dp = tff.aggregators.DifferentiallyPrivateFactory.gaussian_fixed(
      noise_multiplier=0.0, clients_per_round=len(ids), clip=1e6)
  private = exact.ExactReconstructionProcess(
      _config(uniform_weighting=True), tff.learning.optimizers.build_adam(0.05), dp)
  with pytest.raises(ConfigError, match="uniform"):
    exact.ExactReconstructionProcess(_config(), tff.learning.optimizers.build_adam(0.05), dp)
  state = private.initialize(seed=2)
  got = private.next(state, user_groups.pack(ratings, ids, 1)).state["model"].trainable
  plain = processes[True]
  want = plain.next(plain.initialize(seed=2), user_groups.pack(ratings, ids, 5))
  # Adam's first step divides by |gradient|: atol covers coordinates whose
  # gradient is ~0 and differs only by float rounding.
  for a, b in zip(got, want.state["model"].trainable):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
