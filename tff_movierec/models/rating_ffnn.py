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

Feature groups (`FEATURE_GROUPS`) can be dropped, for the seed's feature
ablation: a dropped group's inputs are not read, and a dropped mean leaves the
baseline (global_mean stands in for it). The user ID is the `user_embedding`
setting ("none" drops it). With every group dropped the network sees a
constant column and learns one rating.
"""

import dataclasses
from typing import Dict, Tuple

import tensorflow as tf

from tff_movierec.errors import require
from tff_movierec.models import hashed_dropout

USER_EMBEDDING_MODES = ("local", "global", "none")
USER_EMBEDDING_LAYER = "user_embedding"
DEMOGRAPHICS = ("gender", "age", "occupation")
# Feature group -> the inputs it reads (besides the user ID, see user_embedding).
FEATURE_GROUPS = {
    "movie_id": ("movie",),
    "demographics": DEMOGRAPHICS,
    "genres": ("genres",),
    "user_mean": ("user_mean",),
    "movie_mean": ("movie_mean",),
    "popularity": ("movie_log_count",),
}
DROPOUT_MASKS = ("hashed", "keras")
_DTYPES = {"user": tf.int32, "movie": tf.int32, **{name: tf.int32 for name in DEMOGRAPHICS}}


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
    drop_features: feature groups (keys of FEATURE_GROUPS) left out.
  """

  user_embedding: str = "local"
  embedding_dim: int = 32
  hidden_units: Tuple[int, ...] = (256, 128)
  dropout: float = 0.2
  drop_features: Tuple[str, ...] = ()
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
    unknown = sorted(set(self.drop_features) - set(FEATURE_GROUPS))
    require(not unknown, "drop_features", ",".join(self.drop_features),
            f"unknown group(s) {unknown}; the groups are {', '.join(FEATURE_GROUPS)}.")

  def uses(self, group: str) -> bool:
    """Whether the network reads feature group `group` (see FEATURE_GROUPS)."""
    return group not in self.drop_features


class BaselinePlusResidual(tf.keras.layers.Layer):
  """[B, 1] residual (and the [B] means in use) -> residual + global_mean +
  sum over the means of (mean - global_mean). No weights."""

  def __init__(self, global_mean: float, **kwargs):
    super().__init__(**kwargs)
    self.global_mean = float(global_mean)

  def call(self, inputs):
    residual, means = inputs[0], inputs[1:]
    baseline = self.global_mean + sum(mean - self.global_mean for mean in means)
    return residual + (tf.expand_dims(baseline, -1) if means else baseline)

  def get_config(self):
    return dict(super().get_config(), global_mean=self.global_mean)


class ConstantColumn(tf.keras.layers.Layer):
  """[B] -> float32 [B, 1] of ones: the only feature when every group is
  dropped (the next Dense layer's weights then learn a constant)."""

  def call(self, inputs):
    return tf.ones_like(tf.expand_dims(tf.cast(inputs, tf.float32), -1))


def input_names(config: RatingModelConfig) -> Tuple[str, ...]:
  """The inputs the network reads (a subset of the module docstring's)."""
  names = ("user",) if config.user_embedding != "none" else ()
  for group, inputs in FEATURE_GROUPS.items():
    if config.uses(group):
      names += inputs
  return names or ("movie",)


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
  names = input_names(config)
  inputs = {name: tf.keras.Input(shape=(num_genres,) if name == "genres" else (),
                                 dtype=_DTYPES.get(name, tf.float32), name=name)
            for name in names}
  dim = config.embedding_dim
  parts = []
  if config.user_embedding != "none":
    parts.append(tf.keras.layers.Embedding(
        vocabulary_sizes["user"], dim, name=USER_EMBEDDING_LAYER,
        embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=0.01))(
            inputs["user"]))
  if config.uses("movie_id"):
    parts.append(tf.keras.layers.Embedding(vocabulary_sizes["movie"], dim,
                                           name="movie_embedding")(inputs["movie"]))
  if config.uses("genres"):
    parts.append(inputs["genres"])
  if config.uses("demographics"):
    for name in DEMOGRAPHICS:
      width = min(8, vocabulary_sizes[name])
      parts.append(tf.keras.layers.Embedding(
          vocabulary_sizes[name], width, name=f"{name}_embedding")(inputs[name]))
  numeric = [name for name in ("user_mean", "movie_mean", "movie_log_count") if name in inputs]
  for name in numeric:
    parts.append(tf.keras.layers.Reshape((1,), name=f"{name}_column")(inputs[name]))
  if not parts:
    parts.append(ConstantColumn(name="constant")(inputs["movie"]))
  hidden = (tf.keras.layers.Concatenate(name="fused_features")(parts) if len(parts) > 1
            else parts[0])
  dropout = (hashed_dropout.HashedDropout if config.dropout_masks == "hashed"
             else tf.keras.layers.Dropout)
  for index, units in enumerate(config.hidden_units):
    hidden = tf.keras.layers.Dense(units, activation="relu", name=f"hidden_{index}")(hidden)
    hidden = dropout(config.dropout, name=f"dropout_{index}")(hidden)
  residual = tf.keras.layers.Dense(1, name="rating_residual")(hidden)
  means = [inputs[name] for name in ("user_mean", "movie_mean") if name in inputs]
  output = BaselinePlusResidual(global_mean, name="rating")([residual] + means)
  return tf.keras.Model(inputs=inputs, outputs=output, name="rating_ffnn")
