"""Centralized baselines on small synthetic data, and run_centralized."""

import os

import numpy as np
import pandas as pd
import pytest

from tff_movierec import baselines
from tff_movierec.baselines import knn, svd
from tff_movierec.centralized import run_centralized
from tff_movierec.data import splits
from tff_movierec.data.movielens import load_movielens
from tff_movierec.data.synthetic import write_synthetic_movielens
from tff_movierec.metrics.rating import rating_metrics

RATING_MODELS = [name for name, cls in baselines.MODELS.items() if cls.predicts_ratings]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("synthetic"))
  return load_movielens(write_synthetic_movielens(
      directory, num_users=80, num_movies=60, ratings_per_user=30, seed=1))


@pytest.fixture(scope="module")
def holdout(data):
  return splits.per_user_holdout(data.ratings, 0.1, seed=0)


@pytest.fixture(scope="module")
def fitted(data, holdout):
  train, _ = holdout
  return {name: baselines.make(name).fit(train, data.num_users, data.num_movies)
          for name in baselines.MODELS}


def _test_rmse(model, test):
  return rating_metrics(test["rating"], model.predict(test["user"].to_numpy(),
                                                      test["movie"].to_numpy()))["rmse"]


@pytest.mark.parametrize("name", ["popularity", "user_average", "bias_baseline", "svd",
                                  "user_knn", "item_knn"])
def test_personalized_models_beat_global_mean(name, fitted, holdout):
  _, test = holdout
  assert _test_rmse(fitted[name], test) < _test_rmse(fitted["global_mean"], test)


@pytest.mark.parametrize("name", ["bias_baseline", "svd", "item_knn"])
def test_collaborative_models_beat_popularity(name, fitted, holdout):
  _, test = holdout
  assert _test_rmse(fitted[name], test) < _test_rmse(fitted["popularity"], test)


@pytest.mark.parametrize("name", list(baselines.MODELS))
def test_shapes_and_ranges(name, fitted, data, holdout):
  _, test = holdout
  model = fitted[name]
  scores = model.score_all(np.array([0, 3, 5]))
  assert scores.shape == (3, data.num_movies) and np.isfinite(scores).all()
  if model.predicts_ratings:
    predictions = model.predict(test["user"].to_numpy(), test["movie"].to_numpy())
    assert predictions.shape == (len(test),)
    assert predictions.min() >= 1.0 and predictions.max() <= 5.0
  else:
    with pytest.raises(NotImplementedError):
      model.predict(np.array([0]), np.array([0]))


def test_unseen_users_and_movies_get_fallbacks(data):
  seen = data.ratings[(data.ratings["user"] > 0) & (data.ratings["movie"] > 0)]
  for name in RATING_MODELS:
    model = baselines.make(name).fit(seen, data.num_users, data.num_movies)
    predictions = model.predict(np.array([0, 1, 0]), np.array([1, 0, 0]))
    assert np.isfinite(predictions).all(), name


def test_pearson_baseline_hand_computed():
  # Two items, three users; residuals over co-raters (users 0 and 1 only).
  residuals = np.array([[1.0, 2.0], [-1.0, -1.0], [3.0, 0.0]], np.float32)
  rated = np.array([[1, 1], [1, 1], [1, 0]], np.float32)
  similarity = knn.pearson_baseline(residuals, rated, shrinkage=1.0)
  raw = (1 * 2 + 1 * 1) / np.sqrt((1 + 1) * (4 + 1))
  assert similarity[0, 1] == pytest.approx(raw * 1 / (1 + 1), rel=1e-6)
  assert similarity[0, 1] == similarity[1, 0] and similarity[0, 0] == 0


def test_solve_rows_matches_per_row_ridge():
  rng = np.random.default_rng(0)
  indptr = np.array([0, 3, 3, 7])
  partners = rng.integers(0, 5, size=7)
  targets = rng.normal(size=7)
  features = rng.normal(size=(5, 2))
  solution = svd.solve_rows(indptr, partners, targets, features, reg=0.5)
  for row in (0, 2):
    x = features[partners[indptr[row]:indptr[row + 1]]]
    n = len(x)
    expected = np.linalg.solve(x.T @ x + 0.5 * n * np.eye(2), x.T @ targets[indptr[row]:indptr[row + 1]])
    np.testing.assert_allclose(solution[row], expected, rtol=1e-8)
  np.testing.assert_array_equal(solution[1], 0.0)


def test_svd_is_seeded(data, holdout):
  train, test = holdout
  first, second = (baselines.make("svd", seed=3).fit(train, data.num_users, data.num_movies)
                   for _ in range(2))
  users, movies = test["user"].to_numpy(), test["movie"].to_numpy()
  np.testing.assert_array_equal(first.predict(users, movies), second.predict(users, movies))


def test_ease_scores_follow_closed_form(data, holdout):
  train, _ = holdout
  model = baselines.make("ease", reg=10.0).fit(train, data.num_users, data.num_movies)
  x = model.interactions_.toarray()
  gram = x.T @ x + 10.0 * np.eye(data.num_movies)
  # EASE minimizes ||X - XB||² + λ||B||² s.t. diag(B) = 0: its gradient
  # vanishes off the diagonal.
  gradient = gram @ model.weights_ - x.T @ x
  off_diagonal = ~np.eye(data.num_movies, dtype=bool)
  assert np.abs(gradient[off_diagonal]).max() < 1e-6
  assert np.all(np.diag(model.weights_) == 0)


def test_bad_input_is_rejected(data):
  frame = pd.DataFrame({"user": [0, 999], "movie": [0, 1], "rating": [4.0, 3.0]})
  with pytest.raises(ValueError, match="user indices"):
    baselines.make("bias_baseline").fit(frame, data.num_users, data.num_movies)
  with pytest.raises(ValueError, match="unknown model"):
    baselines.make("nope")


def test_run_centralized_writes_tables(data, tmp_path):
  table = run_centralized(data, str(tmp_path), seed=0)
  expected = {"model", "rmse", "mae", "r2", "mape", "fit_seconds",
              "holdout_recall@10", "holdout_ndcg@10", "holdout_hr@10"}
  written = pd.read_csv(tmp_path / "results.csv")
  assert expected <= set(written.columns)
  assert written["model"].tolist() == list(baselines.MODELS) == table["model"].tolist()
  rating_rows = written[[baselines.MODELS[m].predicts_ratings for m in written["model"]]]
  assert rating_rows[["rmse", "mae", "r2", "mape"]].notna().all().all()
  assert written.loc[written["model"] == "ease", "rmse"].isna().all()
  for name in ("recbole_ml1m.csv", "cold_start.csv", "ablation.csv", "results.md"):
    assert os.path.getsize(tmp_path / name) > 0
  cold = pd.read_csv(tmp_path / "cold_start.csv")
  assert set(cold["setting"]) == {"unseen_users", "unseen_movies"}


def test_recbole_pop_counts_batches_not_interactions():
  from tff_movierec.baselines.recbole_pop import RecBolePop
  # Movie 0 has 6 interactions, movie 1 has 2; batches of 4 positives: movie
  # 0 is in at most 2 batches, so its score is far below its count.
  frame = pd.DataFrame({"user": np.arange(8), "movie": [0] * 6 + [1] * 2,
                        "rating": np.full(8, 4.0)})
  model = RecBolePop(positives_per_batch=4).fit(frame, 8, 3)
  assert model.counts_[0] == 2 and 1 <= model.counts_[1] <= 2 and model.counts_[2] == 0


def test_tune_rating_model_picks_lowest_validation_rmse(data, holdout):
  from tff_movierec.baselines import tuning
  train, _ = holdout
  best, table = tuning.tune_rating_model("popularity", {"shrinkage": [0.0, 5.0, 1e6]},
                                         train, data.num_users, data.num_movies)
  assert len(table) == 3
  assert best["shrinkage"] == table.loc[table["rmse"].idxmin(), "shrinkage"]
  # Infinite-like shrinkage is the global mean, which a real signal beats.
  assert table["rmse"].iloc[2] > table["rmse"].min()
