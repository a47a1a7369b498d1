"""Biased matrix factorization ("SVD") fitted by weighted-λ ALS.

r̂_ui = μ + b_u + b_i + p_u·q_i. Alternating least squares: with the movie
side fixed, every user's [p_u, b_u] is the ridge solution of
(r_ui - μ - b_i) ≈ [q_i, 1]·[p_u, b_u], with ridge λ·n_u (the λ-weighting of
ALS-WR, Zhou et al. 2008, "Large-scale parallel collaborative filtering for
the Netflix prize"), and symmetrically for movies. Each half-sweep is a few
batched dense solves: rows are sorted by their number of ratings and solved
in padded batches, so there is no Python loop over users. The small
products and solves run on one BLAS thread: multi-threaded OpenBLAS on
thousands of 65x65 systems is far slower, catastrophically so on a loaded
machine. Seeded:
only the initial movie factors are random.

Fallback: a user or movie without training ratings has zero factors and zero
bias, so it is predicted by the other side's bias (μ + b_i or μ + b_u).
"""

import numpy as np
import threadpoolctl

from tff_movierec.baselines import base
from tff_movierec.baselines.simple import fit_biases

_BATCH_ELEMENTS = 1 << 21  # padded (row, rating) slots per batched solve


def solve_rows(indptr, partners, targets, partner_features, reg):
  """Per-row ridge regressions, batched.

  Args:
    indptr: int [R + 1], row r owns entries indptr[r]:indptr[r+1] (CSR).
    partners: int [N] partner index of each entry.
    targets: float [N] regression target of each entry.
    partner_features: float [P, D] features of partners.
    reg: ridge strength per rating; row r uses reg * n_r.

  Returns:
    float64 [R, D] solutions (zeros for rows without entries).
  """
  with threadpoolctl.threadpool_limits(1):
    return _solve_rows(indptr, partners, targets, partner_features, reg)


def _solve_rows(indptr, partners, targets, partner_features, reg):
  counts = np.diff(indptr)
  dim = partner_features.shape[1]
  solution = np.zeros((len(counts), dim))
  order = np.argsort(counts, kind="stable")
  order = order[counts[order] > 0]
  start = 0
  while start < len(order):
    # Rows are sorted by count, so the last row of a batch is the widest.
    widths = counts[order[start:]]
    fits = np.arange(1, len(widths) + 1) * widths * dim <= _BATCH_ELEMENTS
    rows = order[start:start + max(1, int(fits.sum()))]
    width = counts[rows[-1]]
    slots = np.arange(width)[None, :]
    mask = slots < counts[rows][:, None]
    entries = np.where(mask, indptr[rows][:, None] + slots, 0)
    features = partner_features[partners[entries]] * mask[..., None]
    gram = np.matmul(features.transpose(0, 2, 1), features)
    gram += (reg * counts[rows])[:, None, None] * np.eye(dim)
    rhs = np.einsum("bnk,bn->bk", features, targets[entries] * mask)
    solution[rows] = np.linalg.solve(gram, rhs[..., None])[..., 0]
    start += len(rows)
  return solution


class SVD(base.RatingModel):
  """Biased MF by ALS-WR. See module docstring."""

  name = "svd"

  def __init__(self, factors: int = 64, reg: float = 0.05, sweeps: int = 12,
               init_scale: float = 0.1, seed: int = 0):
    if factors < 1 or reg <= 0 or sweeps < 1 or init_scale <= 0:
      raise ValueError("factors and sweeps must be >= 1, reg and init_scale > 0.")
    self.factors, self.reg, self.sweeps = factors, reg, sweeps
    self.init_scale, self.seed = init_scale, seed

  def fit(self, train, num_users, num_movies):
    base.check_indices(train, num_users, num_movies)
    users, movies, ratings = base.arrays(train)
    self.mean_, user_bias, item_bias = fit_biases(
        users, movies, ratings, num_users, num_movies, 5.0, 5.0, 5)
    by_user = np.lexsort((movies, users))
    by_movie = np.lexsort((users, movies))
    user_ptr = np.r_[0, np.cumsum(np.bincount(users, minlength=num_users))]
    movie_ptr = np.r_[0, np.cumsum(np.bincount(movies, minlength=num_movies))]
    residual = ratings - self.mean_
    rng = np.random.default_rng(self.seed)
    item_factors = self.init_scale * rng.standard_normal((num_movies, self.factors))
    for _ in range(self.sweeps):
      # Users: features [q_i, 1], target r - μ - b_i, unknowns [p_u, b_u].
      features = np.hstack([item_factors, np.ones((num_movies, 1))])
      solved = solve_rows(user_ptr, movies[by_user],
                          (residual - item_bias[movies])[by_user], features, self.reg)
      user_factors, user_bias = solved[:, :-1], solved[:, -1]
      features = np.hstack([user_factors, np.ones((num_users, 1))])
      solved = solve_rows(movie_ptr, users[by_movie],
                          (residual - user_bias[users])[by_movie], features, self.reg)
      item_factors, item_bias = solved[:, :-1], solved[:, -1]
    self.user_factors_, self.user_bias_ = user_factors, user_bias
    self.item_factors_, self.item_bias_ = item_factors, item_bias
    return self

  def predict(self, users, movies):
    dots = np.einsum("nk,nk->n", self.user_factors_[users], self.item_factors_[movies])
    return self.clip(self.mean_ + self.user_bias_[users] + self.item_bias_[movies] + dots)

  def score_all(self, users):
    return (self.mean_ + self.user_bias_[users][:, None] + self.item_bias_[None, :]
            + self.user_factors_[users] @ self.item_factors_.T)
