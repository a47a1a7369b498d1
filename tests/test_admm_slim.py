"""ADMM-SLIM on tiny synthetic interaction matrices."""

import numpy as np
import pandas as pd
import pytest

from tff_movierec.baselines import admm_slim
from tff_movierec.baselines.ease import ease_weights

NUM_USERS, NUM_MOVIES = 120, 25


@pytest.fixture(scope="module")
def interactions():
  rng = np.random.default_rng(0)
  popularity = rng.uniform(0.05, 0.5, size=NUM_MOVIES)
  return (rng.random((NUM_USERS, NUM_MOVIES)) < popularity).astype(np.float64)


@pytest.fixture(scope="module")
def gram(interactions):
  return interactions.T @ interactions


def _last(gram, **kwargs):
  params = {"l1": 0.0, "l2": 5.0, "rho": 10.0, "iterations": 300, "nonnegative": False}
  params.update(kwargs)
  return admm_slim.admm_slim_weights(gram, **params)


@pytest.mark.parametrize("dropout", [0.0, 0.4])
def test_without_l1_or_sign_constraint_it_reaches_closed_form_ease(gram, dropout):
  state = _last(gram, dropout=dropout, rho=50.0)
  np.testing.assert_allclose(state.weights, ease_weights(gram, 5.0, dropout), atol=1e-9)
  assert (state.weights < 0).any()  # the unconstrained solution has negative weights


@pytest.mark.parametrize("nonnegative", [False, True])
def test_diagonal_is_exactly_zero(gram, nonnegative):
  for state in admm_slim.admm_slim_iterates(gram, 1.0, 5.0, 10.0, 5, nonnegative):
    assert np.all(np.diag(state.weights) == 0.0)


def test_nonnegative_weights_when_asked(gram):
  assert np.all(_last(gram, l1=0.5, nonnegative=True, iterations=20).weights >= 0.0)


def test_larger_l1_gives_sparser_weights(gram):
  zeros = [np.mean(_last(gram, l1=l1, iterations=100).weights == 0.0) for l1 in (0.1, 2.0, 8.0)]
  assert zeros[0] < zeros[1] < zeros[2]


@pytest.mark.parametrize("dropout,alpha", [(0.0, 0.0), (0.3, 0.0), (0.0, 0.5)])
def test_constrained_solution_satisfies_optimality_conditions(gram, dropout, alpha):
  # KKT of ½‖X − XB‖² + ½ Σ_i Λ_i‖B_i,:‖² + λ1‖B‖₁, B ≥ 0, diag(B) = 0, off
  # the diagonal, with gradient g = (G + diag(Λ))B − G: g + λ1 = 0 where
  # B > 0 and g + λ1 >= 0 where B = 0.
  l1, l2 = 2.0, 5.0
  penalty = (l2 * (np.diag(gram) / np.diag(gram).mean()) ** alpha
             + dropout / (1 - dropout) * np.diag(gram))
  weights = _last(gram, l1=l1, nonnegative=True, rho=20.0, iterations=3000,
                  penalty=admm_slim.l2_penalty(np.diag(gram), l2, alpha, dropout)).weights
  gradient = (gram + np.diag(penalty)) @ weights - gram + l1
  off_diagonal = ~np.eye(NUM_MOVIES, dtype=bool)
  positive = (weights > 0) & off_diagonal
  assert positive.sum() > NUM_MOVIES and (off_diagonal & (weights == 0)).sum() > 0
  assert np.abs(gradient[positive]).max() < 1e-6
  assert gradient[off_diagonal & (weights == 0)].min() > -1e-6


def test_residuals_shrink_and_tolerance_stops_early(gram):
  states = list(admm_slim.admm_slim_iterates(gram, 1.0, 5.0, 10.0, 200))
  assert states[-1].primal_residual < 1e-3 * states[0].primal_residual
  stopped = admm_slim.admm_slim_weights(gram, 1.0, 5.0, 10.0, 200, tolerance=1e-4)
  assert stopped.iteration < 200
  assert max(stopped.primal_residual, stopped.dual_residual) <= (
      1e-4 * np.linalg.norm(stopped.weights))


def test_float32_matches_float64(gram):
  exact = _last(gram, l1=0.5, nonnegative=True, iterations=50).weights
  single = _last(gram, l1=0.5, nonnegative=True, iterations=50, dtype=np.float32).weights
  assert single.dtype == np.float32
  np.testing.assert_allclose(single, exact, atol=1e-4)


@pytest.mark.parametrize("name,kwargs", [
    ("l1", {"l1": -1.0}),
    ("l2", {"l2": -0.5}),
    ("rho", {"rho": 0.0}),
    ("iterations", {"iterations": 0}),
    ("iterations", {"iterations": 2.5}),
    ("dropout", {"dropout": 1.0}),
    ("tolerance", {"tolerance": -1e-3}),
    ("popularity_exponent", {"popularity_exponent": -0.5}),
])
def test_bad_hyperparameters_are_named(name, kwargs):
  with pytest.raises(ValueError, match=f"ADMM-SLIM: {name} must be"):
    admm_slim.AdmmSlim(**kwargs)


def test_bad_gram_shape_or_penalty_is_rejected(gram):
  with pytest.raises(ValueError, match="gram must be a square matrix"):
    admm_slim.admm_slim_weights(np.ones((3, 4)), 1.0, 1.0, 1.0, 2)
  with pytest.raises(ValueError, match=f"penalty must be {NUM_MOVIES} finite values"):
    admm_slim.admm_slim_weights(gram, 1.0, 1.0, 1.0, 2, penalty=-np.ones(NUM_MOVIES))


def test_popularity_exponent_weights_the_l2_term_by_relative_popularity(gram):
  counts = np.diag(gram)
  np.testing.assert_allclose(admm_slim.l2_penalty(counts, 4.0), 4.0)
  weighted = admm_slim.l2_penalty(counts, 4.0, popularity_exponent=0.5, dropout=0.2)
  np.testing.assert_allclose(weighted, 4.0 * np.sqrt(counts / counts.mean()) + 0.25 * counts)
  # The most popular movie is penalized most, the least popular least.
  assert np.argmax(weighted) == np.argmax(counts) and np.argmin(weighted) == np.argmin(counts)


def test_model_scores_are_history_times_weights(interactions):
  users, movies = np.nonzero(interactions)
  frame = pd.DataFrame({"user": users, "movie": movies, "rating": 4.0})
  duplicated = pd.concat([frame, frame.iloc[:10]])  # repeated pairs count once
  # One more user and one more movie, both without interactions.
  model = admm_slim.AdmmSlim(l1=0.5, l2=5.0, rho=10.0, iterations=30).fit(
      duplicated, NUM_USERS + 1, NUM_MOVIES + 1)
  expected = admm_slim.admm_slim_weights(interactions.T @ interactions, 0.5, 5.0, 10.0, 30)
  np.testing.assert_allclose(model.weights_, expected.weights, atol=1e-10)
  scores = model.score_all(np.array([0, 7, NUM_USERS]))
  assert scores.shape == (3, NUM_MOVIES + 1)
  np.testing.assert_allclose(scores[:2, :NUM_MOVIES], interactions[[0, 7]] @ model.weights_,
                             atol=1e-10)
  np.testing.assert_array_equal(scores[:, NUM_MOVIES], 0.0)  # a movie without interactions
  np.testing.assert_array_equal(scores[2], 0.0)  # a user without history
  with pytest.raises(NotImplementedError):
    model.predict(np.array([0]), np.array([0]))


def test_centred_model_fits_the_centred_gram_and_scores_around_the_means(interactions):
  users, movies = np.nonzero(interactions)
  frame = pd.DataFrame({"user": users, "movie": movies, "rating": 4.0})
  params = {"l1": 0.0, "l2": 5.0, "rho": 50.0, "iterations": 300, "nonnegative": False,
            "popularity_exponent": 0.5}
  model = admm_slim.AdmmSlim(center=True, **params).fit(frame, NUM_USERS + 1, NUM_MOVIES)
  means = interactions.sum(axis=0) / (NUM_USERS + 1)  # the user without history counts
  centred = np.vstack([interactions, np.zeros(NUM_MOVIES)]) - means
  np.testing.assert_allclose(admm_slim.centered_gram(interactions.T @ interactions,
                                                     NUM_USERS + 1),
                             centred.T @ centred, atol=1e-9)
  # Without λ1 or signs the fixed point is closed-form EASE on the centred
  # data with the popularity-weighted penalty (from the uncentred counts).
  penalty = 5.0 * np.sqrt(interactions.sum(axis=0) / interactions.sum(axis=0).mean())
  inverse = np.linalg.inv(centred.T @ centred + np.diag(penalty))
  expected = np.eye(NUM_MOVIES) - inverse / np.diag(inverse)
  np.testing.assert_allclose(model.weights_, expected, atol=1e-8)
  scores = model.score_all(np.array([3, NUM_USERS]))
  np.testing.assert_allclose(scores, centred[[3, NUM_USERS]] @ model.weights_ + means,
                             atol=1e-10)
  with pytest.raises(ValueError, match="centering needs num_users >= 1"):
    admm_slim.centered_gram(interactions.T @ interactions, 0)
