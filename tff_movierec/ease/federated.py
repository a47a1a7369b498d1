"""Federated EASE: the item-item Gram matrix summed over clients, solved on the server.

EASE (Steck 2019) needs one statistic of the interaction matrix X [U, M]: the
Gram matrix G = XᵀX = Σ_u x_u x_uᵀ, a sum over users. So each client computes
the Gram matrix of its own users and the server receives only the sum of
those matrices (one aggregation, a `tff.aggregators` factory):
  none     `tff.aggregators.SumFactory` on float32 counts;
  secure   `tff.aggregators.SecureSumFactory` on int32 counts, bounded by the
           client's number of users (TFF's secure sum: the server learns the
           sum only; simulated in the clear here, see privacy.set_simulation_context);
  dp_fixed `tff.aggregators.DifferentiallyPrivateFactory` with a Gaussian sum
           query: noise N(0, (z·cap)²) on every entry of the sum (then
           symmetrized, which is post-processing).
The server solves B = I − P·diag(1/diag P), P = (G + Λ)⁻¹ with Λ = λI (EASE)
or λI + p/(1−p)·diag(G) (EDLAE, dropout p; see baselines/ease.py), and
broadcasts B.
A user's scores x_u·B need only their own row and B, so each client scores
its users locally; no interaction row leaves a client.

User-level DP. Each user keeps at most `max_user_history` interactions (a
uniformly random subset chosen on the client). One user's term x_u x_uᵀ is a
0/1 matrix with n_u² ones, so its Frobenius norm is n_u ≤ cap: adding or
removing a user moves the sum by at most `cap` in L2. One release of the sum
with Gaussian noise of std z·cap is the Gaussian mechanism with noise
multiplier z, whose ε at δ follows from RDP accounting (`privacy.accounting`
with sampling probability 1 and one round; each further round is a further
release and is composed). The solve, the broadcast and the scoring are
post-processing.

Client datasets: one element per user, {"movies": int32 [L]} padded with -1
(L = the longest history on that client).

Cost per client: the Gram matrix is M² numbers (3,706² float32 = 55 MB on
ML-1M), sent once per release, whatever the number of users on the client.
"""

import dataclasses
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
import tensorflow_privacy as tfp

from tff_movierec.baselines import ease as ease_baseline
from tff_movierec.errors import ConfigError, require
from tff_movierec.privacy.aggregators import check_noise_choice

AGGREGATORS = ("none", "secure", "dp_fixed")
PADDING = -1
_USERS_PER_BATCH = 64


@dataclasses.dataclass(frozen=True)
class EaseConfig:
  """Federated EASE; errors name these fields.

  Attributes:
    ease_l2: EASE's λ (> 0).
    ease_dropout: EDLAE's dropout p in [0, 1) (0: EASE).
    aggregator: one of AGGREGATORS.
    noise_multiplier: dp_fixed: noise std / cap (> 0), or None with
      target_epsilon until calibrated (`with_noise`).
    target_epsilon: dp_fixed: calibrate noise_multiplier to this ε.
    max_user_history: interactions kept per user (a random subset); required
      with dp_fixed (it bounds a user's contribution); None keeps all.
    max_users_per_client: the secure sum's bound on each Gram entry of a
      client (its number of users bounds every count).
  """

  ease_l2: float = 1000.0
  ease_dropout: float = 0.0
  aggregator: str = "none"
  noise_multiplier: Optional[float] = None
  max_user_history: Optional[int] = None
  target_epsilon: Optional[float] = None
  max_users_per_client: int = 1

  def __post_init__(self):
    require(self.ease_l2 > 0, "ease_l2", self.ease_l2, "must be > 0.")
    require(0 <= self.ease_dropout < 1, "ease_dropout", self.ease_dropout,
            "must be in [0, 1).")
    require(self.aggregator in AGGREGATORS, "aggregator", self.aggregator,
            f"federated EASE supports {', '.join(AGGREGATORS)}: a single exact sum has "
            "no use for adaptive clipping, and a compressed sum would perturb it.")
    require(self.max_user_history is None or self.max_user_history >= 1,
            "max_user_history", self.max_user_history, "must be >= 1.")
    if self.aggregator == "dp_fixed":
      check_noise_choice(self.noise_multiplier, self.target_epsilon)
      noise = self.noise_multiplier if self.target_epsilon is None else 1.0
      if not (noise or 0) > 0 or self.max_user_history is None:
        raise ConfigError(
            "aggregator='dp_fixed' needs noise_multiplier > 0 (or target_epsilon) and "
            "max_user_history (the "
            "cap that bounds one user's contribution to the Gram matrix); got "
            f"noise_multiplier={self.noise_multiplier!r}, "
            f"max_user_history={self.max_user_history!r}.",
            ("aggregator", "noise_multiplier", "max_user_history"))
    else:
      for field in ("noise_multiplier", "target_epsilon"):
        if getattr(self, field) is not None:
          raise ConfigError(f"{field}={getattr(self, field)!r} given but "
                            f"aggregator={self.aggregator!r}: it only applies to dp_fixed.",
                            (field, "aggregator"))

  def with_noise(self, noise_multiplier: float) -> "EaseConfig":
    """This config with its target ε resolved to `noise_multiplier`."""
    return dataclasses.replace(self, noise_multiplier=noise_multiplier, target_epsilon=None)


def cap_histories(histories: List[np.ndarray], cap: Optional[int],
                  rng: np.random.Generator) -> List[np.ndarray]:
  """Each user's movies, at most `cap` of them (a uniform random subset)."""
  if cap is None:
    return histories
  return [np.sort(rng.choice(h, cap, replace=False)) if len(h) > cap else h
          for h in histories]


def client_dataset(histories: List[np.ndarray]) -> tf.data.Dataset:
  """A client's users as a dataset of {"movies": int32 [L]} padded with -1."""
  length = max([len(h) for h in histories] + [1])
  padded = np.full((len(histories), length), PADDING, np.int32)
  for row, history in enumerate(histories):
    padded[row, :len(history)] = history
  return tf.data.Dataset.from_tensor_slices({"movies": padded})


def _gram_dtype(config: EaseConfig) -> tf.DType:
  return tf.int32 if config.aggregator == "secure" else tf.float32


def _factory(config: EaseConfig) -> tff.aggregators.UnweightedAggregationFactory:
  if config.aggregator == "secure":
    return tff.aggregators.SecureSumFactory(upper_bound_threshold=config.max_users_per_client,
                                            lower_bound_threshold=0)
  if config.aggregator == "dp_fixed":
    cap = float(config.max_user_history)
    # The cap bounds each user's contribution (module docstring); the query's
    # record clip is therefore set so that no client's sum is ever clipped.
    query = tfp.GaussianSumQuery(l2_norm_clip=1e30, stddev=config.noise_multiplier * cap)
    return tff.aggregators.DifferentiallyPrivateFactory(query)
  return tff.aggregators.SumFactory()


def build_gram_sum(num_movies: int, config: EaseConfig):
  """The federated computation (aggregator state, client datasets) -> (new
  state, the Gram sum at the server), and the aggregator's initialize.

  TFF type signature of `next`:
    (<agg_state@SERVER, {movies: int32[?]}*@CLIENTS> -> <agg_state@SERVER,
     dtype[M, M]@SERVER>)
  """
  dtype = _gram_dtype(config)
  dataset_type = tff.SequenceType(
      {"movies": tff.TensorType(np.int32, [None])})

  @tff.tensorflow.computation(dataset_type)
  def client_gram(dataset):
    def add_batch(gram, batch):
      movies = batch["movies"]
      rows = tf.repeat(tf.range(tf.shape(movies)[0]), tf.shape(movies)[1])
      flat = tf.reshape(movies, [-1])
      valid = flat >= 0
      indices = tf.stack([tf.boolean_mask(rows, valid), tf.boolean_mask(flat, valid)], 1)
      dense = tf.scatter_nd(indices, tf.ones(tf.shape(indices)[0]),
                            [tf.shape(movies)[0], num_movies])
      return gram + tf.matmul(dense, dense, transpose_a=True)

    gram = dataset.batch(_USERS_PER_BATCH).reduce(
        tf.zeros([num_movies, num_movies], tf.float32), add_batch)
    return tf.cast(tf.round(gram), dtype) if dtype == tf.int32 else gram

  process = _factory(config).create(tff.TensorType(dtype.as_numpy_dtype, [num_movies,
                                                                          num_movies]))

  @tff.federated_computation(process.next.type_signature.parameter[0],
                             tff.FederatedType(dataset_type, tff.CLIENTS))
  def next_fn(state, datasets):
    output = process.next(state, tff.federated_map(client_gram, datasets))
    return output.state, output.result

  return process.initialize, next_fn


class EaseProcess:
  """Federated EASE shaped like a learning process, for the training loop.

  `next(state, client datasets)` sums the clients' Gram matrices through the
  aggregator and solves EASE on the server; `state` holds the aggregator's
  state and the item-item weights B (float32 [M, M]).
  """

  def __init__(self, num_movies: int, config: EaseConfig):
    self.config = config
    self.num_movies = num_movies
    self._initialize_aggregator, self._next = build_gram_sum(num_movies, config)

  def initialize(self) -> Dict[str, Any]:
    return {"aggregator": self._initialize_aggregator(),
            "weights": np.zeros((self.num_movies, self.num_movies), np.float32)}

  def next(self, state: Mapping[str, Any], datasets: List[tf.data.Dataset]):
    aggregator_state, gram = self._next(state["aggregator"], datasets)
    gram = np.asarray(gram, np.float64)
    if self.config.aggregator == "dp_fixed":
      gram = (gram + gram.T) / 2  # post-processing of the noisy release
    weights = ease_baseline.ease_weights(gram, self.config.ease_l2,
                                         self.config.ease_dropout).astype(np.float32)
    users = sum(int(d.cardinality()) for d in datasets)
    interactions = float(np.trace(gram)) if self.config.aggregator != "dp_fixed" else np.nan
    metrics = {"client_work": {"train": {"users": users, "num_examples": interactions}}}
    return _Output({"aggregator": aggregator_state, "weights": weights}, metrics)

  def get_model_weights(self, state: Mapping[str, Any]) -> List[np.ndarray]:
    return [state["weights"]]


@dataclasses.dataclass(frozen=True)
class _Output:
  state: Any
  metrics: Mapping[str, Any]
