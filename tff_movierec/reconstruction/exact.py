"""Federated reconstruction with an exact, closed-form user solve.

The model is biased matrix factorization, optionally with SVD++'s implicit
feedback (Koren, 2008, "Factorization meets the neighborhood"):

    r(u, m) = b + B[m] + b_u + [F[m], Q[m], B[m]] . (p_u + [0, z_u, 0]),
    z_u = |N(u)|^-1/2 * sum_{j in N(u)} Y[j]      (implicit feedback only),

with N(u) the movies the user rated (known only on the device). Global
(movie-side) weights, kept by the server: `Q` [M, D], `B` [M], `b` [] and,
with implicit feedback, `Y` [M, D]. Local weights, which never leave the
device: x_u = [p_u, b_u] [K + 1], K = P + D (+ 1 with `movie_bias_feature`).
F [M, P] (P >= 0) are optional public movie features (e.g. genres and year,
`features.public_movie_features`): fixed, known to everyone, so each user
also fits its own weights on them, and they cost no privacy. With `movie_bias_feature`, B[m] is also one of the
user's features: its weight a_u (in p_u) scales the movie bias per user,
r = ... + (1 + a_u) B[m] + ..., how much the user agrees with the crowd.

Each round, every sampled user, on its device:
  1. solves its local weights exactly: x_u is the ridge solution of
     (r - b - B[m] - Q[m].z_u) ~ [F[m], Q[m], (B[m]), 1] . x_u over its n_u
     ratings, with ridge `user_l2` * n_u (the weighted-λ of ALS-WR, Zhou et
     al. 2008), one (K+1)x(K+1) Cholesky solve instead of FedRecon's SGD steps;
  2. computes the gradient of its loss
        L_u = sum_m (r - r(u, m))^2 + item_l2 * sum_m (|Q[m]|^2 + B[m]^2 + |Y[m]|^2)
     with respect to the global weights, x_u held at its solution. Since x_u
     minimizes L_u + user_l2 * n_u * |x_u|^2, this is the exact gradient of
     min_x (the envelope theorem), i.e. of the ALS-WR objective;
  3. sends the gradient (scaled by 1/n_u for uniform weighting) and its weight
     (1, or n_u when weighting by examples) to the aggregator.
The server applies the aggregated gradient with its optimizer (Adam).
Evaluation solves x_u from a user's training ratings in the same way and
scores its held-out ratings (clipped to the rating range).

Several users per TFF client call (`UserGroup`s): with the plain weighted
mean (no clipping, noise or quantization), a TFF client holding users U sends
sum_u w_u g_u / sum_u w_u with weight sum_u w_u, and the server's weighted
mean over such clients equals sum_u w_u g_u / sum_u w_u over all users, the
same aggregate as one TFF client per user (up to float rounding; tested).
Any aggregator that clips, quantizes or adds noise per client is not of this
form, so it needs one user per client (`users_per_client_call = 1`).
"""

import collections
import dataclasses
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_movierec import privacy
from tff_movierec.errors import require
from tff_movierec.training.server_update import ServerUpdate
from tff_movierec.training.stateful_local import finalize

ModelWeights = tff.learning.models.ModelWeights

# Names of the global weights, in the order of `ModelWeights.trainable`.
MOVIE_EMBEDDING, MOVIE_BIAS, GLOBAL_BIAS, IMPLICIT_EMBEDDING = (
    "movie_embedding", "movie_bias", "global_bias", "implicit_embedding")
# Per-client sums released to the server (training and evaluation).
_SUMS = ("squared_error", "absolute_error", "examples")


@dataclasses.dataclass(frozen=True)
class ExactConfig:
  """The model and its objective.

  Attributes:
    num_movies: M (movie indices are 0..M-1).
    embedding_dim: D (0: no learned factors: biases, plus the public
      features' user weights when there are any).
    user_l2: ridge of the user solve, per rating of the user (λ of ALS-WR).
    item_l2: L2 of a movie's Q, B (and Y) rows, per rating of the movie.
    implicit: add SVD++'s implicit-feedback term z_u.
    uniform_weighting: every user counts once in the aggregate (DP needs it)
      instead of by its number of ratings.
    init_stddev: std of the normal initial Q (Y starts at zero).
    initial_global_bias: starting b (a fixed prior, learned from there).
    rating_range: evaluated predictions are clipped to it.
    num_public_features: P, the columns of the public movie features F.
    movie_bias_feature: each user also fits a weight on B[m] (see above).
  """

  num_movies: int
  embedding_dim: int = 64
  user_l2: float = 0.06
  item_l2: float = 0.15
  implicit: bool = True
  uniform_weighting: bool = False
  init_stddev: float = 0.1
  initial_global_bias: float = 3.5
  rating_range: tuple = (1.0, 5.0)
  num_public_features: int = 0
  movie_bias_feature: bool = False

  def __post_init__(self):
    require(self.num_movies >= 1, "num_movies", self.num_movies, "must be >= 1.")
    require(self.embedding_dim >= 0, "embedding_dim", self.embedding_dim,
            "must be >= 0 (0: biases, and the public features if any, only).")
    require(self.user_l2 > 0, "user_l2", self.user_l2,
            "must be > 0 (it makes every user's solve well posed).")
    require(self.item_l2 >= 0, "item_l2", self.item_l2, "must be >= 0.")
    require(self.init_stddev > 0, "init_stddev", self.init_stddev, "must be > 0.")
    require(self.num_public_features >= 0, "num_public_features", self.num_public_features,
            "must be >= 0.")
    low, high = self.rating_range
    require(low < high, "rating_range", self.rating_range, "must be (low, high), low < high.")

  @property
  def weight_names(self) -> List[str]:
    names = [MOVIE_EMBEDDING, MOVIE_BIAS, GLOBAL_BIAS]
    return names + [IMPLICIT_EMBEDDING] if self.implicit else names


def weight_shapes(config: ExactConfig) -> List[tuple]:
  """Shapes of the global weights, in `config.weight_names` order."""
  table = (config.num_movies, config.embedding_dim)
  return [table, (config.num_movies,), ()] + ([table] if config.implicit else [])


def initial_weights(config: ExactConfig, seed: int) -> ModelWeights:
  """Seeded initial global weights (numpy float32), in `config.weight_names` order:
  Q normal, biases zero except b, Y zero."""
  rng = np.random.default_rng(seed)
  shapes = weight_shapes(config)
  trainable = [(config.init_stddev * rng.standard_normal(shapes[0])).astype(np.float32),
               np.zeros(shapes[1], np.float32), np.float32(config.initial_global_bias)]
  trainable += [np.zeros(shape, np.float32) for shape in shapes[3:]]
  return ModelWeights(trainable=trainable, non_trainable=[])


def group_spec(scored: bool) -> collections.OrderedDict:
  """Type of one client call's users, G users padded to L (and H) ratings.

  movies int32 [G, L] (-1 pads), ratings float32 [G, L]: the ratings the
  users are solved from (and, in training, their loss); with `scored`,
  score_movies int32 [G, H], score_ratings float32 [G, H]: the ratings
  evaluated.
  """
  spec = collections.OrderedDict(movies=tf.TensorSpec([None, None], tf.int32),
                                 ratings=tf.TensorSpec([None, None], tf.float32))
  if scored:
    spec.update(score_movies=tf.TensorSpec([None, None], tf.int32),
                score_ratings=tf.TensorSpec([None, None], tf.float32))
  return spec


class _Gathered:
  """The global weights (and public features) gathered at a [G, L] block of
  movie indices."""

  def __init__(self, weights: Sequence[tf.Tensor], movies: tf.Tensor,
               public: Optional[tf.Tensor] = None, bias_feature: bool = False):
    self.mask = tf.cast(movies >= 0, tf.float32)  # [G, L]
    index = tf.maximum(movies, 0)
    self.q = tf.gather(weights[0], index) * self.mask[..., None]  # [G, L, D]
    self.bias = tf.gather(weights[1], index) * self.mask  # [G, L]
    self.y = (tf.gather(weights[3], index) * self.mask[..., None]
              if len(weights) > 3 else None)
    self.public = (None if public is None
                   else tf.gather(public, index) * self.mask[..., None])  # [G, L, P]
    self.bias_feature = bias_feature
    # [F[m], Q[m], B[m]], float32 [G, L, K] (K = P + D + 1 with the movie bias
    # feature, else P + D): what a user's p_u multiplies.
    parts = ([] if self.public is None else [self.public]) + [self.q]
    if bias_feature:
      parts.append(self.bias[..., None])
    self.vectors = parts[0] if len(parts) == 1 else tf.concat(parts, axis=-1)


def _implicit_term(rated: _Gathered) -> Optional[tf.Tensor]:
  """[0, z_u, 0] [G, K] of SVD++ from the users' rated movies (zero on the
  public and movie-bias features), or None."""
  if rated.y is None:
    return None
  counts = tf.reduce_sum(rated.mask, axis=1)
  z = tf.reduce_sum(rated.y, axis=1) * tf.math.rsqrt(tf.maximum(counts, 1.0))[:, None]
  parts = ([] if rated.public is None else [tf.zeros_like(rated.public[:, 0, :])]) + [z]
  if rated.bias_feature:
    parts.append(tf.zeros_like(z[:, :1]))
  return parts[0] if len(parts) == 1 else tf.concat(parts, axis=-1)


def _predict(global_bias, block: _Gathered, users: tf.Tensor, implicit) -> tf.Tensor:
  """Predictions [G, L] of `block` for users x = [p, b_u] [G, K+1]."""
  p, user_bias = users[:, :-1], users[:, -1]
  if implicit is not None:
    p = p + implicit
  return (global_bias + block.bias + user_bias[:, None]
          + tf.einsum("gld,gd->gl", block.vectors, p))


def solve_users(weights: Sequence[tf.Tensor], rated: _Gathered, ratings: tf.Tensor,
                user_l2: float) -> tf.Tensor:
  """Each user's exact ridge solution x = [p_u, b_u], float32 [G, K+1]."""
  implicit = _implicit_term(rated)
  offset = weights[2] + rated.bias
  vectors = rated.vectors
  if implicit is not None:
    offset += tf.einsum("gld,gd->gl", vectors, implicit)
  features = tf.concat([vectors, rated.mask[..., None]], axis=-1)  # [G, L, K+1]
  target = (ratings - offset) * rated.mask
  counts = tf.reduce_sum(rated.mask, axis=1)
  gram = tf.einsum("gli,glj->gij", features, features)
  gram += (user_l2 * counts)[:, None, None] * tf.eye(tf.shape(features)[-1])
  rhs = tf.einsum("gli,gl->gi", features, target)
  return tf.linalg.cholesky_solve(tf.linalg.cholesky(gram), rhs[..., None])[..., 0]


def _error_sums(errors: tf.Tensor, mask: tf.Tensor) -> collections.OrderedDict:
  errors = tf.cast(errors * mask, tf.float64)
  return collections.OrderedDict(
      squared_error=tf.reduce_sum(errors ** 2), absolute_error=tf.reduce_sum(tf.abs(errors)),
      examples=tf.reduce_sum(tf.cast(mask, tf.float64)))


def client_gradient(config: ExactConfig, weights: Sequence[tf.Tensor],
                    group: Mapping[str, tf.Tensor], public: Optional[tf.Tensor] = None):
  """One client call's update: (gradient list like `weights`, weight [], sums).

  The gradient is the weighted mean over the group's users of each user's
  gradient (of L_u / n_u, weight 1 if uniform; of L_u / n_u, weight n_u
  otherwise), and the weight is the sum of their weights. `public`: F
  [M, P], or None.
  """
  weights = [tf.convert_to_tensor(w) for w in weights]
  with tf.GradientTape() as tape:
    tape.watch(weights)
    rated = _Gathered(weights, group["movies"], public, config.movie_bias_feature)
    users = tf.stop_gradient(solve_users(weights, rated, group["ratings"], config.user_l2))
    errors = (group["ratings"] - _predict(weights[2], rated, users, _implicit_term(rated))
              ) * rated.mask
    norms = tf.reduce_sum(rated.q ** 2, axis=-1) + rated.bias ** 2
    if rated.y is not None:
      norms += tf.reduce_sum(rated.y ** 2, axis=-1)
    per_user = tf.reduce_sum(errors ** 2 + config.item_l2 * norms * rated.mask, axis=1)
    counts = tf.reduce_sum(rated.mask, axis=1)
    if config.uniform_weighting:
      weight = tf.cast(tf.shape(counts)[0], tf.float32)
      objective = tf.reduce_sum(per_user / counts) / weight
    else:
      weight = tf.reduce_sum(counts)
      objective = tf.reduce_sum(per_user) / weight
  gradients = [tf.convert_to_tensor(g) for g in tape.gradient(objective, weights)]
  return gradients, weight, _error_sums(errors, rated.mask)


def score_users(config: ExactConfig, weights: Sequence[tf.Tensor],
                group: Mapping[str, tf.Tensor], public: Optional[tf.Tensor] = None
                ) -> collections.OrderedDict:
  """Error sums of the group's scored ratings, each user solved from its rated ones."""
  rated = _Gathered(weights, group["movies"], public, config.movie_bias_feature)
  users = solve_users(weights, rated, group["ratings"], config.user_l2)
  scored = _Gathered(weights, group["score_movies"], public, config.movie_bias_feature)
  low, high = config.rating_range
  predictions = tf.clip_by_value(
      _predict(weights[2], scored, users, _implicit_term(rated)), low, high)
  return _error_sums(group["score_ratings"] - predictions, scored.mask)


def _input_type(builder: Optional[tff.Computation], group_type: tff.Type) -> tff.Type:
  """What a client receives: its group, or the input `builder` makes it from."""
  if builder is None:
    return group_type
  built = builder.type_signature.result
  if not group_type.is_assignable_from(built):
    raise TypeError(f"a client input computation returns {built}, not a group {group_type}.")
  return builder.type_signature.parameter


class ExactReconstructionProcess:
  """Training (`initialize`, `next`) and evaluation (`evaluate`) computations.

  State: <model=ModelWeights, optimizer=server optimizer state,
  aggregator=aggregation process state>@SERVER.
  next: (<state@SERVER, {group}@CLIENTS> -> <state@SERVER, sums@SERVER>),
  `group` as in `group_spec(scored=False)`, sums of the training fit; with
  `client_input`, (<state@SERVER, {input}@CLIENTS> -> ...), each client
  building its group from its input first (e.g. `rating_store.group_builder`:
  a key block -> the users' ratings, read where the client work runs).
  evaluate: (<ModelWeights@SERVER, {group}@CLIENTS> -> sums@SERVER), `group`
  as in `group_spec(scored=True)` (with `eval_client_input`, its input).
  """

  def __init__(self, config: ExactConfig, server_optimizer: tff.learning.optimizers.Optimizer,
               model_aggregator: Optional[tff.aggregators.AggregationFactory] = None,
               public_features: Optional[np.ndarray] = None,
               release_training_metrics: bool = True,
               client_input: Optional[tff.Computation] = None,
               eval_client_input: Optional[tff.Computation] = None):
    """
    Args:
      config: the model and its objective.
      server_optimizer: applies the aggregated gradient (e.g. Adam).
      model_aggregator: None for the mean over users (weighted by each call's
        weight, which packs any number of users per call); an unweighted
        factory (DP) needs `config.uniform_weighting` and one user per call.
      public_features: F, float32 [num_movies, num_public_features], a
        constant of the client computations (None when P = 0).
      release_training_metrics: sum the clients' training errors for the
        server (metrics["client_work"]["train"]). Off under DP: that sum is
        not noised, so a DP run releases the model update only.
      client_input: a `tff.tensorflow.computation` input -> group (as
        `group_spec(scored=False)`) that each client applies to the value it
        receives in `next`; None: clients receive their group.
      eval_client_input: the same for `evaluate` (input -> group as
        `group_spec(scored=True)`).
    """
    unweighted = privacy.check_weighting(model_aggregator, config.uniform_weighting)
    expected = (config.num_movies, config.num_public_features)
    if config.num_public_features:
      require(public_features is not None and public_features.shape == expected,
              "public_features", None if public_features is None else public_features.shape,
              f"must have shape {expected} (num_movies, num_public_features).")
    else:
      require(public_features is None, "public_features", public_features.shape
              if public_features is not None else None, "needs num_public_features > 0.")

    def public():
      if public_features is None:
        return None
      return tf.constant(public_features, tf.float32)

    self.config = config
    shapes = weight_shapes(config)

    @tff.tensorflow.computation
    def zero_weights():
      return ModelWeights(trainable=[tf.zeros(shape) for shape in shapes], non_trainable=[])

    weights_type = zero_weights.type_signature.result
    train_type = tff.types.tensorflow_to_type(group_spec(scored=False))
    eval_type = tff.types.tensorflow_to_type(group_spec(scored=True))

    @tff.tensorflow.computation(weights_type, train_type)
    def client_update(weights, group):
      return client_gradient(config, weights.trainable, group, public())

    @tff.tensorflow.computation(weights_type, eval_type)
    def client_score(weights, group):
      return score_users(config, weights.trainable, group, public())

    train_input = _input_type(client_input, train_type)
    eval_input = _input_type(eval_client_input, eval_type)
    update_type, weight_type = client_update.type_signature.result[:2]
    if model_aggregator is None:
      # Weighted even for uniform weighting: a call's weight is then its number
      # of users, so that the mean over calls is the mean over users.
      model_aggregator = tff.aggregators.MeanFactory()
    server = ServerUpdate(zero_weights, update_type, weight_type, server_optimizer,
                          model_aggregator, unweighted)
    initialize = server.initialize

    @tff.federated_computation(server.state_type, tff.FederatedType(train_input, tff.CLIENTS))
    def next_fn(state, clients):
      groups = clients if client_input is None else tff.federated_map(client_input, clients)
      gradient, weight, sums = tff.federated_map(
          client_update, (tff.federated_broadcast(state.model), groups))
      new_state = server.apply(state, gradient, weight)
      if not release_training_metrics:
        return new_state
      return new_state, tff.federated_sum(sums)

    @tff.federated_computation(tff.FederatedType(weights_type, tff.SERVER),
                               tff.FederatedType(eval_input, tff.CLIENTS))
    def evaluate_fn(weights, clients):
      groups = (clients if eval_client_input is None
                else tff.federated_map(eval_client_input, clients))
      return tff.federated_sum(tff.federated_map(
          client_score, (tff.federated_broadcast(weights), groups)))

    self._initialize, self._next, self._evaluate = initialize, next_fn, evaluate_fn
    self._release_training_metrics = release_training_metrics

  def initialize(self, seed: int = 0) -> dict:
    """The state before round 1, with global weights drawn from `seed`."""
    state = dict(self._initialize())
    state["model"] = initial_weights(self.config, seed)
    return state

  def next(self, state: dict, groups: List[Mapping[str, np.ndarray]]
           ) -> tff.learning.templates.LearningProcessOutput:
    """One round over the sampled users, packed into client calls (`groups`:
    their groups, or with `client_input` its inputs)."""
    if not self._release_training_metrics:
      return tff.learning.templates.LearningProcessOutput(dict(self._next(state, groups)), {})
    new_state, sums = self._next(state, groups)
    return tff.learning.templates.LearningProcessOutput(
        dict(new_state), {"client_work": {"train": finalize(sums)}})

  def get_model_weights(self, state: dict) -> ModelWeights:
    return state["model"]

  def evaluate(self, weights: ModelWeights, groups: List[Mapping[str, np.ndarray]]
               ) -> Dict[str, float]:
    """Pooled RMSE and MAE of the groups' scored ratings (+ num_ratings)."""
    sums = self._evaluate(weights, groups)
    count = float(sums["examples"])
    return {"rmse": float(np.sqrt(float(sums["squared_error"]) / max(count, 1.0))),
            "mae": float(sums["absolute_error"]) / max(count, 1.0), "num_ratings": count}
