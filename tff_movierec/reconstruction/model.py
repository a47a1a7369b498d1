"""Matrix factorization with biases as a partially local reconstruction model.

A rating of movie m by the client's user u is predicted as

    r(u, m) = b + b_m + b_u + <p_u, q_m>,

with q_m = Q[m] (+ G[m] @ W_genre when genre side features are used) and
b_m = B[m] (+ G[m] @ w_genre), G the fixed genre multi-hot table [M, 18].

Global variables, shared through the server (all movie-side):
  `movie_embedding` Q [M, D], `movie_bias` B [M], `global_bias` b [],
  and with genres `genre_embedding` W_genre [18, D], `genre_bias` w_genre [18].
Local variables, which exist only on the client and are re-estimated
("reconstructed") from the client's own ratings each time it participates:
  `user_embedding` p_u [D] and `user_bias` b_u [].
One client holds one user, so the local variables describe that single user;
they are not part of the model weights the server sends or receives.

The model is written directly against `tff.learning.models.ReconstructionModel`
with plain variables and a few gathers: a Keras functional model of the same
function made each client's round about 20% more expensive in the TFF runtime
(bench/recon_speed.py).
"""

import collections
import dataclasses
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_movierec.errors import ConfigError, require
from tff_movierec.metrics import keras_metrics

MOVIE_EMBEDDING = "movie_embedding"
MOVIE_BIAS = "movie_bias"
GLOBAL_BIAS = "global_bias"
GENRE_EMBEDDING = "genre_embedding"
GENRE_BIAS = "genre_bias"
USER_EMBEDDING = "user_embedding"
USER_BIAS = "user_bias"

# What `forward_pass` returns (the fields FedRecon reads).
BatchOutput = collections.namedtuple("BatchOutput", ["predictions", "labels", "num_examples"])


@dataclasses.dataclass(frozen=True)
class MFConfig:
  """Shape and initialization of the factorization.

  Attributes:
    num_movies: M, size of the movie vocabulary (movie indices are 0..M-1).
    embedding_dim: D, dimension of user and movie embeddings.
    init_stddev: standard deviation of the normal initializer of Q.
    initial_global_bias: starting value of b (a fixed prior, not fitted).
    use_genres: add the movies' genre projections to q_m and b_m.
  """

  num_movies: int
  embedding_dim: int = 16
  init_stddev: float = 0.1
  initial_global_bias: float = 3.5
  use_genres: bool = False

  def __post_init__(self):
    require(self.num_movies >= 1, "num_movies", self.num_movies, "must be >= 1.")
    require(self.embedding_dim >= 1, "embedding_dim", self.embedding_dim, "must be >= 1.")
    require(self.init_stddev > 0, "init_stddev", self.init_stddev, "must be > 0.")


def input_spec() -> tuple:
  """Element spec of a client batch: (movie int32 [B], rating float32 [B])."""
  return (tf.TensorSpec([None], tf.int32, name="movie"),
          tf.TensorSpec([None], tf.float32, name="rating"))


class MatrixFactorization(tff.learning.models.ReconstructionModel):
  """The factorization: movie side global, user side local."""

  def __init__(self, config: MFConfig, genres: Optional[np.ndarray] = None):
    if config.use_genres != (genres is not None):
      raise ConfigError(
          f"use_genres={config.use_genres!r} but the genre table was "
          f"{'not ' if genres is None else ''}given: give it exactly when use_genres "
          "is True.", ("use_genres",))
    dim = config.embedding_dim
    self._movie_embedding = tf.Variable(
        tf.random.normal([config.num_movies, dim], stddev=config.init_stddev),
        name=MOVIE_EMBEDDING)
    self._movie_bias = tf.Variable(tf.zeros([config.num_movies]), name=MOVIE_BIAS)
    self._global_bias = tf.Variable(config.initial_global_bias, name=GLOBAL_BIAS)
    self._global = [self._movie_embedding, self._movie_bias, self._global_bias]
    self._genres = None
    if genres is not None:
      genres = np.asarray(genres, np.float32)
      if genres.shape[0] != config.num_movies:
        raise ConfigError(
            f"num_movies={config.num_movies!r} but the genre table has "
            f"{genres.shape[0]} rows: it needs one row per movie.", ("num_movies",))
      self._genres = tf.constant(genres)
      self._genre_embedding = tf.Variable(tf.zeros([genres.shape[1], dim]),
                                          name=GENRE_EMBEDDING)
      self._genre_bias = tf.Variable(tf.zeros([genres.shape[1]]), name=GENRE_BIAS)
      self._global += [self._genre_embedding, self._genre_bias]
    self._user_embedding = tf.Variable(tf.zeros([dim]), name=USER_EMBEDDING)
    self._user_bias = tf.Variable(0.0, name=USER_BIAS)

  @property
  def global_trainable_variables(self):
    return list(self._global)

  @property
  def global_non_trainable_variables(self):
    return []

  @property
  def local_trainable_variables(self):
    return [self._user_embedding, self._user_bias]

  @property
  def local_non_trainable_variables(self):
    return []

  @property
  def input_spec(self):
    return input_spec()

  def forward_pass(self, batch_input, training=True) -> BatchOutput:
    """(movie int32 [B], rating float32 [B]) -> predictions float32 [B].

    Deliberately not a `tf.function`: FedRecon traces it inside its step
    functions, where a nested `tf.function` (and its gradient) becomes separate
    functions that the TF runtime instantiates again for every client.
    """
    del training  # Same computation in training and evaluation.
    movies, ratings = batch_input
    movie_vectors = tf.gather(self._movie_embedding, movies)
    movie_biases = tf.gather(self._movie_bias, movies)
    if self._genres is not None:
      genres = tf.gather(self._genres, movies)
      movie_vectors += genres @ self._genre_embedding
      movie_biases += tf.linalg.matvec(genres, self._genre_bias)
    predictions = (self._global_bias + self._user_bias + movie_biases
                   + tf.linalg.matvec(movie_vectors, self._user_embedding))
    return BatchOutput(predictions, ratings, tf.shape(movies)[0])


def build_reconstruction_model(config: MFConfig,
                               genres: Optional[np.ndarray] = None) -> MatrixFactorization:
  return MatrixFactorization(config, genres)


class MeanSquaredError(tf.keras.losses.Loss):
  """mean((y_pred - y_true)^2) over a batch of ratings [B] -> float32 [].

  The value of `tf.keras.losses.MeanSquaredError()` on rating vectors, without
  Keras' sample-weight and reduction plumbing: that adds about 25 ops to the
  loss and 60 to its gradient in each FedRecon step function, and the TF
  runtime re-instantiates those functions for every client in every round
  (bench/recon_speed.py).
  """

  def __init__(self, name: str = "mean_squared_error"):
    super().__init__(name=name)

  def call(self, y_true, y_pred):
    return tf.reduce_mean(tf.math.squared_difference(y_pred, tf.cast(y_true, y_pred.dtype)))

  def __call__(self, y_true, y_pred, sample_weight=None):
    if sample_weight is not None:
      raise ValueError("MeanSquaredError takes no sample_weight.")
    return self.call(y_true, y_pred)


def loss_fn() -> tf.keras.losses.Loss:
  return MeanSquaredError()


def metrics_fn() -> list:
  """RMSE, MAE and the number of scored ratings (`examples`)."""
  return [tf.keras.metrics.RootMeanSquaredError(name="rmse"),
          tf.keras.metrics.MeanAbsoluteError(name="mae"), keras_metrics.ExampleCount()]
