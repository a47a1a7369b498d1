"""Neighbourhood models with baseline-corrected similarity (KNNBaseline).

Both models predict r̂_ui = b_ui + Σ_n s·(r - b) / Σ_n s over the k most
similar neighbours n with positive similarity s that have rated the pair's
other side (Koren 2010, "Factor in the neighbors", eq. 3; the same estimator
as Surprise's KNNBaseline), with b_ui = μ + b_u + b_i from `BiasBaseline`.

Similarity is the shrunk Pearson-baseline correlation of the residuals
e = r - b over common raters (items) or common movies (users):
  s_ij = Σ e_i e_j / sqrt(Σ e_i² · Σ e_j²) · (n_ij - 1) / (n_ij - 1 + shrinkage)
with all sums over the n_ij co-rated entries. It is computed with four dense
float32 matrix products (no Python loop over users or movies), so item-KNN
needs O(M²) and user-KNN O(U²) memory.

`predict` picks the k neighbours per (user, movie) pair among those that
rated it, in vectorized chunks of pairs. `score_all` (for ranking) uses each
row's k globally most similar neighbours instead, which makes scoring all
movies one sparse product.

Fallback: without a positive-similarity neighbour the baseline b_ui is used
(so unseen users get μ + b_i and unseen movies μ + b_u).
"""

import numpy as np
from scipy import sparse

from tff_movierec.baselines import base
from tff_movierec.baselines.simple import fit_biases

_CHUNK_ELEMENTS = 1 << 23  # dense (pair, neighbour) cells per prediction chunk


def pearson_baseline(residuals: np.ndarray, rated: np.ndarray, shrinkage: float
                     ) -> np.ndarray:
  """Shrunk Pearson-baseline similarity between the columns.

  Args:
    residuals: float32 [R, C], r - b where rated, 0 elsewhere.
    rated: float32 [R, C], 1 where rated.
    shrinkage: the shrinkage constant (>= 0).

  Returns:
    float32 [C, C] similarities, 0 on the diagonal and for pairs with fewer
    than 2 co-ratings.
  """
  products = residuals.T @ residuals
  squares = (residuals * residuals).T @ rated  # [i, j]: Σ e_i² over co-raters
  common = rated.T @ rated
  denominator = np.sqrt(squares * squares.T)
  similarity = np.divide(products, denominator, out=np.zeros_like(products),
                         where=denominator > 0)
  support = np.maximum(common - 1.0, 0.0)
  similarity *= support / (support + shrinkage + 1e-12)
  np.fill_diagonal(similarity, 0.0)
  return similarity


def _neighbourhood_estimate(similarity, rated, residuals, k):
  """Σ s·e / Σ s over the top-k positive similarities of each row.

  All inputs float [P, N]; returns float64 [P] (0 where no neighbour).
  """
  candidates = np.where((rated > 0) & (similarity > 0), similarity, 0.0)
  k = min(k, candidates.shape[1])
  # Which of several equally similar neighbours is kept is immaterial here,
  # so the cheaper argpartition (deterministic for given input) is used.
  neighbours = np.argpartition(-candidates, k - 1, axis=1)[:, :k]
  weights = np.take_along_axis(candidates, neighbours, axis=1).astype(np.float64)
  values = np.take_along_axis(residuals, neighbours, axis=1).astype(np.float64)
  total = weights.sum(axis=1)
  return np.divide((weights * values).sum(axis=1), total, out=np.zeros_like(total),
                   where=total > 0)


def _keep_top_k(similarity: np.ndarray, k: int) -> sparse.csr_matrix:
  """CSR copy of each row's k largest positive similarities."""
  rows = np.arange(similarity.shape[0])[:, None]
  k = min(k, similarity.shape[1])
  columns = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
  values = similarity[rows, columns]
  kept = sparse.csr_matrix((values.ravel(), (np.broadcast_to(rows, columns.shape).ravel(),
                                             columns.ravel())), shape=similarity.shape)
  kept.data = np.maximum(kept.data, 0.0)
  kept.eliminate_zeros()
  return kept


class _KNNBaseline(base.RatingModel):
  """Shared fitting; `user_based` picks which side the neighbours are on."""

  user_based = False

  def __init__(self, k: int = 40, shrinkage: float = 100.0, user_reg: float = 15.0,
               item_reg: float = 10.0, bias_sweeps: int = 10):
    if k < 1 or shrinkage < 0 or user_reg < 0 or item_reg < 0 or bias_sweeps < 1:
      raise ValueError("k and bias_sweeps must be >= 1; shrinkage and regs >= 0.")
    self.k, self.shrinkage = k, shrinkage
    self.user_reg, self.item_reg, self.bias_sweeps = user_reg, item_reg, bias_sweeps

  def fit(self, train, num_users, num_movies):
    base.check_indices(train, num_users, num_movies)
    users, movies, ratings = base.arrays(train)
    self.mean_, self.user_bias_, self.item_bias_ = fit_biases(
        users, movies, ratings, num_users, num_movies, self.user_reg, self.item_reg,
        self.bias_sweeps)
    residual = ratings - self.mean_ - self.user_bias_[users] - self.item_bias_[movies]
    self.residuals_ = np.zeros((num_users, num_movies), np.float32)
    self.residuals_[users, movies] = residual
    self.rated_ = np.zeros((num_users, num_movies), np.float32)
    self.rated_[users, movies] = 1.0
    if self.user_based:
      self.similarity_ = pearson_baseline(self.residuals_.T, self.rated_.T, self.shrinkage)
    else:
      self.similarity_ = pearson_baseline(self.residuals_, self.rated_, self.shrinkage)
    self.top_k_similarity_ = _keep_top_k(self.similarity_, self.k)
    return self

  def _baseline(self, users, movies):
    return self.mean_ + self.user_bias_[users] + self.item_bias_[movies]

  def predict(self, users, movies):
    users, movies = np.asarray(users), np.asarray(movies)
    estimate = np.zeros(len(users))
    width = self.similarity_.shape[1]
    chunk = max(1, _CHUNK_ELEMENTS // width)
    for start in range(0, len(users), chunk):
      u, m = users[start:start + chunk], movies[start:start + chunk]
      if self.user_based:
        parts = (self.similarity_[u], self.rated_[:, m].T, self.residuals_[:, m].T)
      else:
        parts = (self.similarity_[m], self.rated_[u], self.residuals_[u])
      estimate[start:start + chunk] = _neighbourhood_estimate(*parts, self.k)
    return self.clip(self._baseline(users, movies) + estimate)

  def score_all(self, users):
    users = np.asarray(users)
    kept = self.top_k_similarity_
    if self.user_based:
      neighbours = kept[users]
      numerator = neighbours @ self.residuals_
      denominator = neighbours @ self.rated_
    else:
      numerator = (kept @ self.residuals_[users].T).T
      denominator = (kept @ self.rated_[users].T).T
    estimate = np.divide(numerator, denominator, out=np.zeros_like(numerator),
                         where=denominator > 0)
    baseline = self.mean_ + self.user_bias_[users][:, None] + self.item_bias_[None, :]
    return baseline + estimate


class ItemKNN(_KNNBaseline):
  """Item-based KNNBaseline: neighbours are movies the user rated."""

  name = "item_knn"
  user_based = False


class UserKNN(_KNNBaseline):
  """User-based KNNBaseline: neighbours are users who rated the movie."""

  name = "user_knn"
  user_based = True
