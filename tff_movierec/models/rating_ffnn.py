"""The feature-fused rating network (the seed's FFNN), as a functional Keras model.

Inputs (a dict; B = batch size):
  user        int32 [B]      user index (only if the user embedding is used)
  movie       int32 [B]      movie index
  genres      float32 [B,18] multi-hot genres of the movie
  gender, age, occupation  int32 [B]  encoded demographics of the user
  user_mean   float32 [B]    the user's own (shrunk) mean rating, computed on
                             the client from that client's training ratings
  movie_mean, movie_log_count  float32 [B]  movie statistics released by a
                             federated sum over clients (see movie_stats.py)
Output: float32 [B, 1], the predicted rating.

Embeddings of user, movie and demographics are concatenated with the genre and
numeric features and passed through Dense(256) -> Dense(128) -> Dense(1) with
ReLU and dropout (hashed masks by default, see hashed_dropout.py); the output
adds the numeric baseline `user_mean + movie_mean - global_mean` so that the
network learns a residual.
"""

import dataclasses
from typing import Dict, Tuple

import tensorflow as tf

from tff_movierec.errors import require
from tff_movierec.models import hashed_dropout

USER_EMBEDDING_MODES = ("local", "global", "none")
USER_EMBEDDING_LAYER = "user_embedding"
NUMERIC_FEATURES = ("user_mean", "movie_mean", "movie_log_count")
CATEGORICAL_FEATURES = ("gender", "age", "occupation")
DROPOUT_MASKS = ("hashed", "keras")


@dataclasses.dataclass(frozen=True)
class RatingModelConfig:
  """Architecture of the rating network.

  Attributes:
    user_embedding: "local" (user-ID embedding kept on the client, trained by
      Federated Reconstruction), "global" (an ordinary weight: FedAvg sends
      every participating user's row to the server), or "none".
    embedding_dim: size of the user and movie embeddings.
    hidden_units: sizes of the hidden Dense layers.
    dropout: dropout rate after each hidden layer.
    dropout_masks: "hashed" (`hashed_dropout.HashedDropout`: the rate rounded
      to 1/256, masks from a counter hash; 11% less CPU per TFF round) or
      "keras" (`tf.keras.layers.Dropout`, TF's sampler).
    engineered_features: whether to use the numeric features
      (user_mean, movie_mean, movie_log_count) and the residual baseline.
  """

  user_embedding: str = "local"
  embedding_dim: int = 32
  hidden_units: Tuple[int, ...] = (256, 128)
  dropout: float = 0.2
  engineered_features: bool = True
  dropout_masks: str = "hashed"

  def __post_init__(self):
    require(self.user_embedding in USER_EMBEDDING_MODES, "user_embedding",
            self.user_embedding, f"expected one of {USER_EMBEDDING_MODES}.")
    require(self.embedding_dim >= 1, "embedding_dim", self.embedding_dim, "must be >= 1.")
    require(bool(self.hidden_units) and min(self.hidden_units) >= 1, "hidden_units",
            self.hidden_units, "need at least one size, all >= 1.")
    require(0.0 <= self.dropout < 1.0, "dropout", self.dropout, "must be in [0, 1).")
    require(self.dropout_masks in DROPOUT_MASKS, "dropout_masks", self.dropout_masks,
            f"expected one of {DROPOUT_MASKS}.")


class BaselinePlusResidual(tf.keras.layers.Layer):
  """[B, 1] residual -> residual + user_mean + movie_mean - global_mean, or
  residual + global_mean without the engineered features. No weights."""

  def __init__(self, global_mean: float, engineered_features: bool, **kwargs):
    super().__init__(**kwargs)
    self.global_mean = float(global_mean)
    self.engineered_features = engineered_features

  def call(self, inputs):
    if not self.engineered_features:
      return inputs[0] + self.global_mean
    residual, user_mean, movie_mean = inputs
    return residual + tf.expand_dims(user_mean + movie_mean - self.global_mean, -1)

  def get_config(self):
    return dict(super().get_config(), global_mean=self.global_mean,
                engineered_features=self.engineered_features)


def input_names(config: RatingModelConfig) -> Tuple[str, ...]:
  names = ("movie", "genres") + CATEGORICAL_FEATURES
  if config.user_embedding != "none":
    names = ("user",) + names
  if config.engineered_features:
    names += NUMERIC_FEATURES
  return names


def build_rating_model(config: RatingModelConfig, vocabulary_sizes: Dict[str, int],
                       num_genres: int, global_mean: float) -> tf.keras.Model:
  """Returns a new functional Keras rating model (uncompiled).

  Args:
    config: the architecture.
    vocabulary_sizes: number of values of `user`, `movie`, `gender`, `age`,
      `occupation` (see features.vocabulary_sizes).
    num_genres: width of the `genres` input.
    global_mean: mean training rating, the constant of the residual baseline
      (a public aggregate).
  """
  inputs = {
      "movie": tf.keras.Input(shape=(), dtype=tf.int32, name="movie"),
      "genres": tf.keras.Input(shape=(num_genres,), dtype=tf.float32, name="genres"),
  }
  for name in CATEGORICAL_FEATURES:
    inputs[name] = tf.keras.Input(shape=(), dtype=tf.int32, name=name)
  dim = config.embedding_dim
  parts = [
      tf.keras.layers.Embedding(vocabulary_sizes["movie"], dim, name="movie_embedding")(
          inputs["movie"]),
      inputs["genres"],
  ]
  for name in CATEGORICAL_FEATURES:
    width = min(8, vocabulary_sizes[name])
    parts.append(tf.keras.layers.Embedding(
        vocabulary_sizes[name], width, name=f"{name}_embedding")(inputs[name]))
  if config.user_embedding != "none":
    inputs["user"] = tf.keras.Input(shape=(), dtype=tf.int32, name="user")
    parts.append(tf.keras.layers.Embedding(
        vocabulary_sizes["user"], dim, name=USER_EMBEDDING_LAYER,
        embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=0.01))(
            inputs["user"]))
  if config.engineered_features:
    for name in NUMERIC_FEATURES:
      inputs[name] = tf.keras.Input(shape=(), dtype=tf.float32, name=name)
      parts.append(tf.keras.layers.Reshape((1,), name=f"{name}_column")(inputs[name]))
  hidden = tf.keras.layers.Concatenate(name="fused_features")(parts)
  dropout = (hashed_dropout.HashedDropout if config.dropout_masks == "hashed"
             else tf.keras.layers.Dropout)
  for index, units in enumerate(config.hidden_units):
    hidden = tf.keras.layers.Dense(units, activation="relu", name=f"hidden_{index}")(hidden)
    hidden = dropout(config.dropout, name=f"dropout_{index}")(hidden)
  residual = tf.keras.layers.Dense(1, name="rating_residual")(hidden)
  baseline = BaselinePlusResidual(global_mean, config.engineered_features, name="rating")
  output = baseline([residual, inputs["user_mean"], inputs["movie_mean"]]
                    if config.engineered_features else [residual])
  return tf.keras.Model(inputs=inputs, outputs=output, name="rating_ffnn")
