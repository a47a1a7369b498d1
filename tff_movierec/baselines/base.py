"""Interface shared by the centralized models, and helpers for ratings arrays.

Every model is fitted on a ratings frame (`user`, `movie`, `rating`) with
contiguous indices and answers two questions:
  predict(users, movies) -> float64 [N]  rating estimates, clipped to the
                            model's `rating_scale` (ML-1M's [1, 5] unless set)
  score_all(users)       -> float64 [B, M] scores of every movie (higher =
                            recommend first), for full-ranking evaluation
Users or movies without training ratings get the model's documented
fallback (never NaN), which is what cold-start evaluation measures.
"""

import abc
from typing import Tuple

import numpy as np
import pandas as pd
from scipy import sparse


def arrays(ratings: pd.DataFrame) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(users int64 [N], movies int64 [N], ratings float64 [N]) of a frame."""
  return (ratings["user"].to_numpy(np.int64), ratings["movie"].to_numpy(np.int64),
          ratings["rating"].to_numpy(np.float64))


def csr(users, movies, values, num_users, num_movies) -> sparse.csr_matrix:
  """float64 CSR [num_users, num_movies] holding `values`."""
  return sparse.csr_matrix((np.asarray(values, np.float64), (users, movies)),
                           shape=(num_users, num_movies))


def check_indices(ratings: pd.DataFrame, num_users: int, num_movies: int) -> None:
  """Raises ValueError if the frame is empty or has out-of-range indices."""
  if len(ratings) == 0:
    raise ValueError("cannot fit a model on an empty ratings frame.")
  users, movies, values = arrays(ratings)
  if users.min() < 0 or users.max() >= num_users:
    raise ValueError(f"user indices must be in [0, {num_users}).")
  if movies.min() < 0 or movies.max() >= num_movies:
    raise ValueError(f"movie indices must be in [0, {num_movies}).")
  if not np.all(np.isfinite(values)):
    raise ValueError("ratings contain NaN or infinite values.")


class RatingModel(abc.ABC):
  """A centralized model: fit once, then predict ratings and rank movies."""

  name = "model"
  predicts_ratings = True
  # (lowest, highest) rating of the data; set it (e.g. to MovieLens.rating_scale)
  # before predicting on a release with half stars from 0.5.
  rating_scale = (1.0, 5.0)

  @abc.abstractmethod
  def fit(self, train: pd.DataFrame, num_users: int, num_movies: int) -> "RatingModel":
    """Fits on `train` ratings; returns self."""

  @abc.abstractmethod
  def predict(self, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
    """float64 [N] predicted ratings in `rating_scale` for the (user, movie) pairs."""

  @abc.abstractmethod
  def score_all(self, users: np.ndarray) -> np.ndarray:
    """float64 [B, M] ranking scores of every movie for each user."""

  def clip(self, predictions: np.ndarray) -> np.ndarray:
    return np.clip(predictions, *self.rating_scale)
