"""The `movielens_ranking` task on synthetic data: it trains through the engine,
evaluates RMSE/MAE on the server, exports a ranking model that loads and
rates from the user's history, honours the engine's common flags (privacy
aggregators, --workers) and refuses bad or foreign flags; and the ranking
model's pieces (history ratings, the biased rating head, the L2 term). That
the export rates like the trained model is tested in test_recommend.py."""

import json
import os

from absl import flags
from absl.testing import flagsaver
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import run_experiment
from tasks import registry
from tff_movierec.data.movielens import load_movielens
from tff_movierec.data.synthetic import write_synthetic_movielens
from tff_movierec.metrics import protocols
from tff_movierec.retrieval import examples, experiment, export, ranking, training, towers
from tff_movierec.retrieval.config import TowerConfig
from tff_movierec.training import managers
from worker_processes import assert_same_metrics, computed_columns

FLAGS = flags.FLAGS
TASK = "movielens_ranking"
SMOKE = dict(num_clients=3, clients_per_round=3, embedding_dim=4, client_batch_size=32,
             rounds_per_eval=1, total_rounds=2)


@pytest.fixture(autouse=True)
def parsed_flags():
  if not FLAGS.is_parsed():
    FLAGS(["run_experiment"])
  yield


def _main(tmp_path, **overrides):
  values = dict(SMOKE, task=TASK, use_synthetic_data=True, root_output_dir=str(tmp_path),
                **overrides)
  with flagsaver.flagsaver(**values):
    run_experiment.main(["run_experiment"])
  return os.path.join(str(tmp_path), values.get("experiment_name") or TASK)


def _error(tmp_path, capsys, **overrides):
  """Runs main expecting a clean error; returns (exit code, stderr)."""
  capsys.readouterr()
  with pytest.raises(SystemExit) as e:
    _main(tmp_path, **overrides)
  return e.value.code, capsys.readouterr().err


def _metrics(output_dir):
  return pd.read_csv(os.path.join(output_dir, "metrics.csv"))


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
  """The experiment folder of a 2-round run at the smoke settings."""
  tmp_path = tmp_path_factory.mktemp("plain")
  if not FLAGS.is_parsed():  # module fixtures start before the autouse one
    FLAGS(["run_experiment"])
  return _main(tmp_path, hidden_units=["4"], factor_l2=0.01)


def test_trains_evaluates_rmse_on_the_server_and_reads_only_its_flags(plain_run):
  metrics = _metrics(plain_run)
  assert metrics["round_num"].tolist() == [1, 2]
  assert np.isfinite(metrics["train/loss"]).all()
  assert ((metrics["eval/rmse"] > 0) & (metrics["eval/rmse"] < 4)).all()
  assert (metrics["eval/mae"] <= metrics["eval/rmse"]).all()
  assert metrics["eval/rmse"].iloc[1] != metrics["eval/rmse"].iloc[0]
  # Every held-out rating of the test split (synthetic: 60 users).
  assert (metrics["eval/num_examples"] > 0).all()
  hparams = managers.read_hparams(os.path.join(plain_run, "hparams.csv"))
  assert set(hparams) == set(registry.TASKS[TASK].all_reads)
  assert {"workers", "aggregator", "hidden_units", "factor_l2"} <= set(hparams)


def test_export_loads_and_rates_from_the_history(plain_run):
  ranking_dir = os.path.join(plain_run, "export", export.RANKING_DIR)
  with open(os.path.join(ranking_dir, export.RANKING_FILE), encoding="utf-8") as f:
    description = json.load(f)
  assert description["kind"] == "ranking" and description["min_history_rating"] == 1.0
  assert description["query_features"] == sorted(
      ["history", "history_rating", "gender", "age", "occupation"])
  rater = tf.saved_model.load(os.path.join(ranking_dir, export.RANKING_MODEL_DIR))
  features = {"history": tf.constant([[0, 3, -1], [5, -1, -1]], tf.int32),
              "history_rating": tf.constant([[5.0, 1.0, 0.0], [4.0, 0.0, 0.0]]),
              "movie": tf.constant([7, 7], tf.int32)}
  for name in ("gender", "age", "occupation"):
    features[name] = tf.constant([0, 1], tf.int32)
  ratings = rater.rate(features).numpy()
  assert ratings.shape == (2,) and np.all((ratings >= 1) & (ratings <= 5))
  assert ratings[0] != ratings[1]  # the histories matter


def test_same_command_same_metrics_other_seed_other_metrics(plain_run, tmp_path):
  again = _metrics(_main(tmp_path, hidden_units=["4"], factor_l2=0.01, experiment_name="a"))
  pd.testing.assert_frame_equal(computed_columns(again), computed_columns(_metrics(plain_run)))
  other = _metrics(_main(tmp_path, hidden_units=["4"], factor_l2=0.01, experiment_name="b",
                         seed=1))
  assert not computed_columns(other).equals(computed_columns(again))


def test_dp_aggregator_clips_noises_and_reports_epsilon_on_the_validation_split(tmp_path):
  # Updates clipped to a norm of 1e-9 leave the model where it started.
  output = _main(tmp_path, aggregator="dp_fixed", noise_multiplier=1.0, clip_norm=1e-9,
                 client_weighting="uniform", server_optimizer="sgd", server_learning_rate=1.0,
                 total_rounds=3, eval_split="validation")
  metrics = _metrics(output)
  assert metrics["privacy/epsilon"].is_monotonic_increasing
  assert metrics["privacy/epsilon"].iloc[0] > 0
  assert metrics["eval/rmse"].nunique() == 1
  # Evaluated on the ratings carved from training (the task's synthetic data).
  data = load_movielens(write_synthetic_movielens(str(tmp_path / "d"), seed=0, num_users=60,
                                                  num_movies=50, ratings_per_user=25))
  protocol = experiment.with_validation(protocols.build(
      "holdout", data.ratings, data.num_users, data.num_movies))
  assert (metrics["eval/num_examples"] == len(protocol.valid_ratings)).all()


def test_two_workers_give_the_local_metrics(plain_run, tmp_path, workers):
  remote = _metrics(_main(tmp_path, hidden_units=["4"], factor_l2=0.01,
                          workers=[w.address for w in workers]))
  assert_same_metrics(_metrics(plain_run), remote)


@pytest.mark.parametrize("overrides, message", [
    (dict(ranking_protocol="holdout"), "--ranking_protocol is not read by --task=" + TASK),
    (dict(dropout=0.3), "--dropout is not read by --task=" + TASK),
    (dict(hidden_units=["8", "x"]), "hidden_units=8,x: integers expected"),
    (dict(factor_l2=-1.0), "factor_l2=-1.0: must be >= 0"),
    (dict(clients_per_round=4), "--clients_per_round=4 exceeds --num_clients=3"),
])
def test_bad_or_foreign_flags_fail_before_data_loads(tmp_path, capsys, overrides, message):
  code, err = _error(tmp_path, capsys, **overrides)
  assert code != 0 and message in err, err
  assert not os.path.exists(os.path.join(str(tmp_path), TASK))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("synthetic"))
  return load_movielens(write_synthetic_movielens(directory, num_users=30, num_movies=20,
                                                  ratings_per_user=8))


def test_history_ratings_are_the_users_own_ratings(data):
  arrays = examples.training_examples(data.ratings, data.users, history_length=5, seed=3)
  arrays = ranking.add_history_ratings(arrays, data.ratings, data.num_movies)
  rating_of = {(u, m): r for u, m, r in data.ratings[["user", "movie", "rating"]].itertuples(
      index=False)}
  for user, history, rated in zip(arrays["user"], arrays["history"], arrays["history_rating"]):
    assert np.all(rated[history < 0] == 0)
    assert [rating_of[(user, m)] for m in history[history >= 0]] == rated[history >= 0].tolist()
  with pytest.raises(ValueError, match="did not rate"):
    ranking.history_ratings(np.array([[0]]), np.array([0]), data.ratings.iloc[:0],
                            data.num_movies)


def test_rating_is_mean_plus_biases_plus_dot_product():
  head = towers.build_rating_head(2, initial_rating=3.5)
  query = np.array([[1.0, 2.0, 0.25]], np.float32)   # p_u = (1, 2), b_u = 0.25
  candidate = np.array([[0.5, -1.0, -0.5]], np.float32)  # q_i = (0.5, -1), b_i = -0.5
  np.testing.assert_allclose(head([query, candidate]).numpy(), [[3.5 + 0.25 - 0.5 - 1.5]],
                             rtol=1e-6)
  with_mlp = towers.build_rating_head(2, initial_rating=3.5, hidden_units=(3,))
  # The MLP's output layer starts at zero: the same rating before training.
  np.testing.assert_allclose(with_mlp([query, candidate]).numpy(), [[1.75]], rtol=1e-6)


def test_user_side_comes_from_the_history_and_the_loss_holds_the_l2_term(data):
  protocol = experiment.with_validation(protocols.build(
      "holdout", data.ratings, data.num_users, data.num_movies))
  tower_config = TowerConfig(embedding_dim=4, history_length=5)
  stats = training.pooled_movie_stats(protocol.train_ratings, data.num_movies)
  model = training.build_model("ranking", data, stats, tower_config,
                               ranking.RankingTaskConfig(l2=0.5), with_metrics=False)
  # No per-user row: no variable has one row per user.
  assert not [v.name for v in model.trainable_variables if v.shape[0] == data.num_users]
  arrays = ranking.add_history_ratings(
      examples.training_examples(protocol.train_ratings, data.users, 5), protocol.train_ratings,
      data.num_movies)
  batch = training.to_batch(tower_config, "ranking")(
      {k: tf.constant(v[:16]) for k, v in arrays.items()})
  assert set(batch["x"]) == {"history", "history_rating", "gender", "age", "occupation",
                             "movie"}
  queries = model.query_embeddings(batch["x"]).numpy()
  candidates = model.candidate_embeddings(batch["x"]).numpy()
  predictions = model.rate(queries, candidates, training=True).numpy()
  expected = (np.mean((predictions - batch["y"].numpy()) ** 2)
              + 0.5 * np.mean((queries ** 2).sum(-1) + (candidates ** 2).sum(-1)))
  np.testing.assert_allclose(model.compute_loss(batch, training=True).numpy(), expected,
                             rtol=1e-5)
  # b_u starts as the user's shrunk mean offset; b_i as the movie's shrunk mean - mu.
  history, rated = arrays["history"][:16], arrays["history_rating"][:16]
  valid = history >= 0
  offset = ((rated - stats.global_mean) * valid).sum(1) / (valid.sum(1) + 5.0)
  np.testing.assert_allclose(queries[:, -1], offset, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(candidates[:, -1],
                             (stats.shrunk_means(10.0) - stats.global_mean)[arrays["movie"][:16]],
                             rtol=1e-4, atol=1e-6)
  # Evaluation clips to the rating scale.
  clipped = model.rate(queries, candidates + 100.0).numpy()
  assert np.all((clipped >= 1) & (clipped <= 5))
