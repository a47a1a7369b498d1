"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data").

Closed form: with X the binary [U, M] matrix of training interactions and
P = (XᵀX + λI)⁻¹, the item-item weights are B = I - P·diag(1/diag(P)), i.e.
B_ij = -P_ij / P_jj off the diagonal and 0 on it. Scores are X_u·B.
EASE ranks movies; it does not predict ratings (`predicts_ratings` is False
and `predict` raises). Unseen users score 0 everywhere (all ties, broken by
movie index); unseen movies get score 0.
"""

import numpy as np

from tff_movierec.baselines import base


class EASE(base.RatingModel):
  """Closed-form item-item linear autoencoder; λ = `reg`."""

  name = "ease"
  predicts_ratings = False

  def __init__(self, reg: float = 250.0):
    if reg <= 0:
      raise ValueError(f"reg must be > 0, got {reg}.")
    self.reg = reg

  def fit(self, train, num_users, num_movies):
    base.check_indices(train, num_users, num_movies)
    users, movies, _ = base.arrays(train)
    self.interactions_ = base.csr(users, movies, np.ones(len(users)), num_users, num_movies)
    self.interactions_.data[:] = 1.0  # duplicate (user, movie) rows count once
    gram = (self.interactions_.T @ self.interactions_).toarray()
    gram[np.diag_indices(num_movies)] += self.reg
    inverse = np.linalg.inv(gram)
    self.weights_ = -inverse / np.diag(inverse)[None, :]
    self.weights_[np.diag_indices(num_movies)] = 0.0
    return self

  def predict(self, users, movies):
    raise NotImplementedError("EASE ranks movies and does not predict ratings.")

  def score_all(self, users):
    return np.asarray(self.interactions_[np.asarray(users)] @ self.weights_)
