"""The rating networks, as functional Keras models: the seed's feature-fused
FFNN (`seed_ffnn`) and the same network with a matrix-factorization path
beside it (`fused_mf`, the default).

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

`seed_ffnn`: embeddings of user, movie and demographics are concatenated with
the genre and numeric features and passed through Dense(256) -> Dense(128) ->
Dense(1) with ReLU and dropout (hashed masks by default, see
hashed_dropout.py); the output adds the numeric baseline
`user_mean + movie_mean - global_mean` so that the network learns a residual.

`fused_mf` adds to that output a biased dot product, as NeuMF puts a
generalized MF path beside its MLP (He et al., 2017) and as biased MF predicts
(Koren et al., 2009):

  rating = baseline + MLP residual + <p_u, q_i> + b_u + b_i

with user factors p_u [mf_dim] and bias b_u (user layers: kept on the client
with a local user embedding) and movie factors q_i and bias b_i (global).
Training adds `factor_penalty`, the per-rating L2 of SGD matrix factorization.

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
# The factor path of `fused_mf`: the user's rows (factors and bias) are user
# layers like the user embedding, kept on the client when it is local.
USER_FACTOR_LAYERS = ("user_factors", "user_bias")
MODELS = ("fused_mf", "seed_ffnn")
# The MF path's layers and the input indexing their rows.
_FACTOR_ROWS = (("user_factors", "user"), ("movie_factors", "movie"), ("user_bias", "user"),
                ("movie_bias", "movie"))
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
    model: "fused_mf" (the MLP and a biased MF path) or "seed_ffnn" (the MLP).
    mf_dim: size of the factors of the MF path (fused_mf).
    factor_l2: L2 weight of the factors and biases in a batch (fused_mf).
  """

  user_embedding: str = "local"
  embedding_dim: int = 32
  hidden_units: Tuple[int, ...] = (256, 128)
  dropout: float = 0.2
  drop_features: Tuple[str, ...] = ()
  dropout_masks: str = "hashed"
  model: str = "fused_mf"
  mf_dim: int = 64
  factor_l2: float = 0.05

  def __post_init__(self):
    require(self.user_embedding in USER_EMBEDDING_MODES, "user_embedding",
            self.user_embedding, f"expected one of {USER_EMBEDDING_MODES}.")
    require(self.embedding_dim >= 1, "embedding_dim", self.embedding_dim, "must be >= 1.")
    require(bool(self.hidden_units) and min(self.hidden_units) >= 1, "hidden_units",
            self.hidden_units, "need at least one size, all >= 1.")
    require(0.0 <= self.dropout < 1.0, "dropout", self.dropout, "must be in [0, 1).")
    require(self.dropout_masks in DROPOUT_MASKS, "dropout_masks", self.dropout_masks,
            f"expected one of {DROPOUT_MASKS}.")
    require(self.model in MODELS, "model", self.model, f"expected one of {MODELS}.")
    require(self.mf_dim >= 1, "mf_dim", self.mf_dim, "must be >= 1.")
    require(self.factor_l2 >= 0.0, "factor_l2", self.factor_l2, "must be >= 0.")
    unknown = sorted(set(self.drop_features) - set(FEATURE_GROUPS))
    require(not unknown, "drop_features", ",".join(self.drop_features),
            f"unknown group(s) {unknown}; the groups are {', '.join(FEATURE_GROUPS)}.")

  def uses(self, group: str) -> bool:
    """Whether the network reads feature group `group` (see FEATURE_GROUPS)."""
    return group not in self.drop_features

  @property
  def has_mf_path(self) -> bool:
    """fused_mf's MF path exists when both IDs are read (a dropped user or
    movie ID drops it, as in the seed's ablation)."""
    return (self.model == "fused_mf" and self.user_embedding != "none" and
            self.uses("movie_id"))

  @property
  def penalizes_factors(self) -> bool:
    """Whether training adds `factor_penalty` (an MF path and factor_l2 > 0)."""
    return self.has_mf_path and self.factor_l2 > 0

  def user_layers(self) -> Tuple[str, ...]:
    """Names of the layers holding per-user rows (the client's, if local)."""
    if self.user_embedding == "none":
      return ()
    return (USER_EMBEDDING_LAYER,) + (USER_FACTOR_LAYERS if self.has_mf_path else ())


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


class ClipToScale(tf.keras.layers.Layer):
  """[B, 1] ratings -> the same, clipped to [low, high] outside training (as
  rating predictors are scored; training sees the unclipped value, whose
  gradient does not vanish outside the scale). No weights."""

  def __init__(self, low: float, high: float, **kwargs):
    super().__init__(**kwargs)
    self.low, self.high = float(low), float(high)

  def call(self, inputs, training=None):
    if training:
      return inputs
    return tf.clip_by_value(inputs, self.low, self.high)

  def get_config(self):
    return dict(super().get_config(), low=self.low, high=self.high)


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
                       num_genres: int, global_mean: float,
                       rating_scale: Tuple[float, float] = (1.0, 5.0)) -> tf.keras.Model:
  """Returns a new functional Keras rating model (uncompiled).

  Args:
    config: the architecture.
    vocabulary_sizes: number of values of `user`, `movie`, `gender`, `age`,
      `occupation` (see features.vocabulary_sizes).
    num_genres: width of the `genres` input.
    global_mean: mean training rating, the constant of the residual baseline
      (a public aggregate).
    rating_scale: (lowest, highest) rating; predictions are clipped to it
      outside training.
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
  if config.has_mf_path:
    residual = tf.keras.layers.Add(name="mlp_plus_mf")(
        [residual] + _biased_dot_product(config, vocabulary_sizes, inputs))
  means = [inputs[name] for name in ("user_mean", "movie_mean") if name in inputs]
  output = BaselinePlusResidual(global_mean, name="unclipped_rating")([residual] + means)
  output = ClipToScale(*rating_scale, name="rating")(output)
  return tf.keras.Model(inputs=inputs, outputs=output, name=config.model)


def factor_penalty(config: RatingModelConfig, model: tf.keras.Model,
                   x: Dict[str, tf.Tensor]) -> tf.Tensor:
  """float32 []: factor_l2 x the batch mean of the squared norms of the MF
  rows (p_u, q_i, b_u, b_i) the batch `x` reads; 0 for seed_ffnn.

  It is the per-rating L2 term of SGD matrix factorization: a row is
  penalized each time one of its ratings is in a batch. Training loops add it
  to the loss (it is not a Keras loss of the model: TFF's model wrappers drop
  those, and only the rows in the batch should be read).
  """
  if not config.penalizes_factors:
    return tf.constant(0.0)
  squares = [tf.reduce_sum(tf.square(tf.gather(model.get_layer(layer).embeddings, x[key])))
             for layer, key in _FACTOR_ROWS]
  batch_size = tf.cast(tf.shape(x["movie"])[0], tf.float32)
  return config.factor_l2 * tf.add_n(squares) / batch_size


def _biased_dot_product(config: RatingModelConfig, vocabulary_sizes: Dict[str, int],
                        inputs: Dict[str, tf.Tensor]) -> list:
  """The MF path of fused_mf: [<p_u, q_i>, b_u, b_i], each float32 [B, 1]."""

  def rows(name, key, width, stddev):
    initializer = (tf.keras.initializers.RandomNormal(stddev=stddev) if stddev
                   else tf.keras.initializers.Zeros())
    return tf.keras.layers.Embedding(vocabulary_sizes[key], width, name=name,
                                     embeddings_initializer=initializer)(inputs[key])

  user_factors = rows("user_factors", "user", config.mf_dim, 0.01)
  movie_factors = rows("movie_factors", "movie", config.mf_dim, 0.01)
  dot = tf.keras.layers.Dot(axes=-1, name="factor_dot")([user_factors, movie_factors])
  return [dot, rows("user_bias", "user", 1, 0.0), rows("movie_bias", "movie", 1, 0.0)]
