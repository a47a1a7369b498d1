"""Rating and ranking metrics against hand-computed values; protocols."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from tff_movierec.metrics import ablation, protocols, ranking
from tff_movierec.metrics.rating import rating_metrics


def test_rating_metrics_hand_computed():
  result = rating_metrics(np.array([1.0, 2.0, 3.0, 4.0]), np.array([[2.0], [2.0], [2.0], [5.0]]))
  # errors 1, 0, -1, 1; mean y 2.5, SST 5.
  assert result["mae"] == pytest.approx(0.75)
  assert result["mse"] == pytest.approx(0.75)
  assert result["rmse"] == pytest.approx(math.sqrt(0.75))
  assert result["r2"] == pytest.approx(1 - 3 / 5)
  assert result["mape"] == pytest.approx(100 * (1 + 0 + 1 / 3 + 1 / 4) / 4)


def test_rating_metrics_reject_bad_input():
  with pytest.raises(ValueError, match="values"):
    rating_metrics(np.ones(3), np.ones(2))
  with pytest.raises(ValueError, match="NaN"):
    rating_metrics(np.ones(2), np.array([1.0, np.nan]))


def test_top_k_orders_by_score_and_breaks_ties_by_index():
  scores = np.array([[0.5, 0.9, 0.5, 0.1, 0.5],
                     [1.0, 1.0, 1.0, 1.0, 1.0]])
  np.testing.assert_array_equal(ranking.top_k(scores, 3), [[1, 0, 2], [0, 1, 2]])
  np.testing.assert_array_equal(ranking.top_k(scores, 9)[0], [1, 0, 2, 4, 3])


def _evaluate(scores, relevant, exclude, k_values=(2,)):
  scores = np.asarray(scores, float)
  return ranking.evaluate_full_ranking(
      lambda users: scores[users], sparse.csr_matrix(np.asarray(relevant, float)),
      sparse.csr_matrix(np.asarray(exclude, float)), k_values, batch_size=1)


def test_full_ranking_hand_computed():
  # User 0: movie 1 excluded (train); ranking of the rest: 3, 2, 0, 4.
  # Relevant {2, 4}. Top 2 = [3, 2]: 1 hit at rank 2.
  # User 1: no relevant movie -> excluded from the averages.
  # User 2: relevant {0}; ranking 0 first (tie with 1 broken by index).
  scores = [[0.1, 0.9, 0.5, 0.8, 0.0], [1, 2, 3, 4, 5], [0.7, 0.7, 0.2, 0.1, 0.0]]
  relevant = [[0, 0, 1, 0, 1], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]]
  exclude = [[0, 1, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
  result = _evaluate(scores, relevant, exclude)
  assert result["num_users"] == 2
  user0_ndcg = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
  assert result["recall@2"] == pytest.approx((1 / 2 + 1) / 2)
  assert result["ndcg@2"] == pytest.approx((user0_ndcg + 1) / 2)
  assert result["hr@2"] == pytest.approx(1.0)
  assert result["precision@2"] == pytest.approx((1 / 2 + 1 / 2) / 2)
  assert result["mrr@2"] == pytest.approx((1 / 2 + 1) / 2)


def test_k_larger_than_candidates_and_ideal_dcg_uses_min_k_relevant():
  # 3 movies, 2 excluded: one candidate (movie 2), which is relevant.
  result = _evaluate([[0.9, 0.8, 0.1]], [[0, 0, 1]], [[1, 1, 0]], k_values=(5,))
  assert result["recall@5"] == 1.0 and result["ndcg@5"] == 1.0 and result["hr@5"] == 1.0
  assert result["precision@5"] == pytest.approx(1 / 5)
  # 3 relevant, K = 2: both top-2 are hits -> NDCG 1 (ideal DCG over 2, not 3),
  # recall 2/3 (hits / |relevant|).
  result = _evaluate([[3.0, 2.0, 1.0]], [[1, 1, 1]], [[0, 0, 0]])
  assert result["ndcg@2"] == pytest.approx(1.0)
  assert result["recall@2"] == pytest.approx(2 / 3)


def test_excluded_movies_never_count_as_hits():
  # Movie 0 is both relevant and excluded (malformed input): never a hit.
  result = _evaluate([[5.0, 1.0]], [[1, 1]], [[1, 0]], k_values=(2,))
  assert result["recall@2"] == pytest.approx(0.5)


def test_nan_scores_are_rejected():
  with pytest.raises(ValueError, match="NaN"):
    _evaluate([[np.nan, 1.0]], [[1, 0]], [[0, 0]])


def _frame(rows):
  return pd.DataFrame(rows, columns=["user", "movie", "rating"]).astype(
      {"user": np.int32, "movie": np.int32, "rating": np.float32})


def test_k_core_iterates_until_stable():
  # 2-core. User 2 has one rating (dropped); that leaves movie 2 with one
  # rating (dropped), which leaves user 1 with one rating (dropped), which
  # leaves movie 1 with one rating... Only users 0, 3 and movies 0, 3 remain.
  rows = [(0, 0, 5), (0, 3, 4), (3, 0, 4), (3, 3, 3), (1, 1, 4), (1, 2, 4),
          (0, 1, 3), (2, 2, 5)]
  core = protocols.k_core(_frame(rows), 2)
  assert sorted(map(tuple, core[["user", "movie"]].to_numpy().tolist())) == [
      (0, 0), (0, 3), (3, 0), (3, 3)]


def test_per_user_ratio_split_counts_match_recbole():
  rows = [(user, movie, 4) for user, n in ((0, 10), (1, 19), (2, 25)) for movie in range(n)]
  train, valid, test = protocols.per_user_ratio_split(_frame(rows), seed=3)
  for frame, expected in ((train, [8, 17, 21]), (valid, [1, 1, 2]), (test, [1, 1, 2])):
    assert frame.groupby("user").size().tolist() == expected
  assert len(pd.concat([train, valid, test]).drop_duplicates()) == len(rows)


def test_protocols_mask_seen_movies_and_pick_relevant_items():
  rng = np.random.default_rng(0)
  rows = [(u, m, rng.integers(1, 6)) for u in range(30) for m in range(20) if rng.random() < 0.7]
  ratings = _frame(rows)
  holdout = protocols.holdout(ratings, 30, 20)
  # An oracle that scores the held-out ratings (and train items highest,
  # which must be masked) ranks every relevant movie first.
  oracle = (holdout.test.toarray() + 10 * holdout.train.toarray())
  result = holdout.evaluate(lambda users: oracle[users], (5,))
  assert result["hr@5"] == 1.0
  assert result["num_users"] == len(set(holdout.test_ratings.query("rating >= 4").user))
  recbole = protocols.recbole_ml1m(ratings, 30, 20, core=5)
  assert recbole.test_ratings["rating"].min() >= 3
  oracle = recbole.test.toarray() + 10 * (recbole.train + recbole.valid).toarray()
  assert recbole.evaluate(lambda users: oracle[users], (20,))["recall@20"] == 1.0
  variant = protocols.seed_variant(ratings, 30, 20)
  # Ranking only test items: a constant score still finds every relevant item
  # within K >= |test items|.
  result = variant.evaluate(lambda users: np.zeros((len(users), 20)), (20,))
  assert result["recall@20"] == 1.0 and result["precision@20"] < 1.0


def test_ablate_reports_change_of_metric():
  effects = {"genre": 0.05, "age": 0.01}
  table = ablation.ablate(
      lambda disabled: {"mae": 0.7 + sum(effects[g] for g in disabled)}, ["genre", "age"])
  assert table["disabled"].tolist() == ["none", "genre", "age"]
  np.testing.assert_allclose(table["delta_mae"], [0.0, 0.05, 0.01])
