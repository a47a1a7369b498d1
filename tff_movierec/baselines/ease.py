"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data").

Closed form: with X the binary [U, M] matrix of training interactions and
P = (XᵀX + Λ)⁻¹, the item-item weights are B = I - P·diag(1/diag(P)), i.e.
B_ij = -P_ij / P_jj off the diagonal and 0 on it. Scores are X_u·B.
Λ = λI for EASE; with dropout p > 0, Λ = λI + p/(1-p)·diag(XᵀX), the
emphasized denoising linear autoencoder with a zero diagonal (EDLAE, Steck
2020, "Autoencoders that don't overfit towards the Identity"): popular
movies are regularized more.
EASE ranks movies; it does not predict ratings (`predicts_ratings` is False
and `predict` raises). Unseen users score 0 everywhere (all ties, broken by
movie index); unseen movies get score 0.
"""

import numpy as np

from tff_movierec.baselines import base


def ease_weights(gram: np.ndarray, reg: float, dropout: float = 0.0) -> np.ndarray:
  """float64 [M, M]: the item-item weights B (zero diagonal) from the Gram
  matrix XᵀX (any float [M, M]; not changed), λ = `reg` and `dropout` p."""
  regularized = np.array(gram, dtype=np.float64)
  diagonal = np.diag_indices(len(regularized))
  regularized[diagonal] += reg + dropout / (1.0 - dropout) * np.clip(
      regularized[diagonal], 0.0, None)
  inverse = np.linalg.inv(regularized)
  weights = -inverse / np.diag(inverse)[None, :]
  weights[np.diag_indices(len(weights))] = 0.0
  return weights


class EASE(base.RatingModel):
  """Closed-form item-item linear autoencoder; λ = `reg`, dropout p (EDLAE)."""

  name = "ease"
  predicts_ratings = False

  def __init__(self, reg: float = 250.0, dropout: float = 0.0):
    if reg <= 0:
      raise ValueError(f"reg must be > 0, got {reg}.")
    if not 0.0 <= dropout < 1.0:
      raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
    self.reg = reg
    self.dropout = dropout

  def fit(self, train, num_users, num_movies):
    base.check_indices(train, num_users, num_movies)
    users, movies, _ = base.arrays(train)
    self.interactions_ = base.csr(users, movies, np.ones(len(users)), num_users, num_movies)
    self.interactions_.data[:] = 1.0  # duplicate (user, movie) rows count once
    self.weights_ = ease_weights((self.interactions_.T @ self.interactions_).toarray(),
                                 self.reg, self.dropout)
    return self

  def predict(self, users, movies):
    raise NotImplementedError("EASE ranks movies and does not predict ratings.")

  def score_all(self, users):
    return np.asarray(self.interactions_[np.asarray(users)] @ self.weights_)
