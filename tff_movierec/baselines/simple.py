"""Non-personalized and bias models.

  GlobalMean    μ for everything.
  Popularity    predict: item mean shrunk toward μ, μ + Σ(r-μ)/(n_i + shrinkage);
                score_all: number of training ratings of the movie
                (most-popular ranking, RecBole's "Pop").
  UserAverage   the user's mean rating (μ for an unseen user); ranks movies by
                popularity counts, since its score is the same for all movies.
  BiasBaseline  μ + b_u + b_i, regularized least squares solved by
                alternating closed-form sweeps (as Koren's baseline
                predictors): b_i = Σ(r - μ - b_u)/(λ_i + n_i),
                b_u = Σ(r - μ - b_i)/(λ_u + n_u).
Fallbacks: an unseen user or movie has zero bias (and zero count).
"""

import numpy as np
import pandas as pd

from tff_movierec.baselines import base


def _sums(index, values, size):
  return np.bincount(index, weights=values, minlength=size)


class GlobalMean(base.RatingModel):
  """Predicts the mean training rating μ; ranks by nothing (all ties)."""

  name = "global_mean"

  def fit(self, train, num_users, num_movies):
    base.check_indices(train, num_users, num_movies)
    self.mean_ = float(train["rating"].mean())
    self.num_movies_ = num_movies
    return self

  def predict(self, users, movies):
    return np.full(len(users), self.mean_)

  def score_all(self, users):
    return np.full((len(users), self.num_movies_), self.mean_)


class Popularity(base.RatingModel):
  """Shrunk item mean (ratings) and training-count popularity (ranking)."""

  name = "popularity"

  def __init__(self, shrinkage: float = 5.0):
    if shrinkage < 0:
      raise ValueError(f"shrinkage must be >= 0, got {shrinkage}.")
    self.shrinkage = shrinkage

  def fit(self, train, num_users, num_movies):
    base.check_indices(train, num_users, num_movies)
    _, movies, ratings = base.arrays(train)
    self.mean_ = float(ratings.mean())
    self.counts_ = np.bincount(movies, minlength=num_movies).astype(np.float64)
    self.item_bias_ = (_sums(movies, ratings - self.mean_, num_movies)
                       / (self.counts_ + self.shrinkage + 1e-12))
    return self

  def predict(self, users, movies):
    return self.clip(self.mean_ + self.item_bias_[movies])

  def score_all(self, users):
    return np.broadcast_to(self.counts_, (len(users), len(self.counts_))).copy()


class UserAverage(base.RatingModel):
  """The user's mean training rating; μ for users without ratings."""

  name = "user_average"

  def fit(self, train, num_users, num_movies):
    base.check_indices(train, num_users, num_movies)
    users, movies, ratings = base.arrays(train)
    self.mean_ = float(ratings.mean())
    counts = np.bincount(users, minlength=num_users)
    sums = _sums(users, ratings, num_users)
    self.user_mean_ = np.where(counts > 0, sums / np.maximum(counts, 1), self.mean_)
    self.movie_counts_ = np.bincount(movies, minlength=num_movies).astype(np.float64)
    return self

  def predict(self, users, movies):
    return self.clip(self.user_mean_[users])

  def score_all(self, users):
    return np.broadcast_to(self.movie_counts_, (len(users), len(self.movie_counts_))).copy()


def fit_biases(users, movies, ratings, num_users, num_movies, user_reg, item_reg,
               sweeps):
  """(μ, b_u [U], b_i [M]) of the regularized bias model (see module doc)."""
  mean = float(ratings.mean())
  residual = ratings - mean
  user_counts = np.bincount(users, minlength=num_users)
  item_counts = np.bincount(movies, minlength=num_movies)
  user_bias = np.zeros(num_users)
  item_bias = np.zeros(num_movies)
  for _ in range(sweeps):
    item_bias = _sums(movies, residual - user_bias[users], num_movies) / (item_reg + item_counts)
    user_bias = _sums(users, residual - item_bias[movies], num_users) / (user_reg + user_counts)
  return mean, user_bias, item_bias


class BiasBaseline(base.RatingModel):
  """μ + b_u + b_i with L2-regularized biases (alternating closed form)."""

  name = "bias_baseline"

  def __init__(self, user_reg: float = 5.0, item_reg: float = 5.0, sweeps: int = 15):
    if user_reg < 0 or item_reg < 0 or sweeps < 1:
      raise ValueError("regularization must be >= 0 and sweeps >= 1.")
    self.user_reg, self.item_reg, self.sweeps = user_reg, item_reg, sweeps

  def fit(self, train, num_users, num_movies):
    base.check_indices(train, num_users, num_movies)
    users, movies, ratings = base.arrays(train)
    self.mean_, self.user_bias_, self.item_bias_ = fit_biases(
        users, movies, ratings, num_users, num_movies, self.user_reg,
        self.item_reg, self.sweeps)
    return self

  def predict(self, users, movies):
    return self.clip(self.mean_ + self.user_bias_[users] + self.item_bias_[movies])

  def score_all(self, users):
    return self.mean_ + self.user_bias_[users][:, None] + self.item_bias_[None, :]
