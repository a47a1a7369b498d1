"""Model-update aggregators selected by config, with their combinations checked.

`AggregatorSpec` is validated when constructed, so contradictory settings fail
before any TFF computation is built. `build_aggregator` returns a
`tff.aggregators` factory accepted both by FedAvg
(`tff.learning.algorithms.build_{weighted,unweighted}_fed_avg(
model_aggregator=...)`) and by FedRecon (`build_fed_recon(
model_aggregator_factory=...)`).

Kinds:
  none         plain mean (weighted by examples or uniform).
  dp_fixed     user-level DP-FedAvg: each client update clipped to L2 norm
               `clip_norm`, Gaussian noise of std `noise_multiplier *
               clip_norm` added to the sum, divided by `clients_per_round`
               (McMahan et al. 2018, https://arxiv.org/abs/1710.06963).
  dp_adaptive  as dp_fixed, with the clip norm adapted privately towards the
               `target_unclipped_quantile` of update norms, starting from
               `clip_norm` (Andrew et al. 2021, https://arxiv.org/abs/1905.03871);
               `noise_multiplier` is the effective total, which TFF splits
               between the updates and the clipped-count estimate.
  secure       secure summation of (clipped, quantized) updates
               (`tff.learning.secure_aggregator`).
  compression  8-bit uniform quantization of large tensors
               (`tff.learning.compression_aggregator`).
Both DP kinds are unweighted: every client counts once (uniform weighting),
which is what bounds one user's influence.
"""

import dataclasses
from typing import Optional

import tensorflow_federated as tff

from tff_movierec import tff_runtime
from tff_movierec.errors import ConfigError, require

KINDS = ("none", "dp_fixed", "dp_adaptive", "secure", "compression")
WEIGHTINGS = ("num_examples", "uniform")
DEFAULT_ADAPTIVE_INITIAL_CLIP = 0.1
DEFAULT_TARGET_UNCLIPPED_QUANTILE = 0.5


@dataclasses.dataclass(frozen=True)
class AggregatorSpec:
  """Choice of model-update aggregator; errors name these fields.

  Attributes:
    kind: one of KINDS (--aggregator).
    noise_multiplier: Gaussian noise std / clip norm (--noise_multiplier);
      DP kinds only, > 0; or, with target_epsilon, None until the task
      calibrates it (`with_noise`).
    target_epsilon: DP kinds only (--target_epsilon): calibrate the noise
      multiplier to this ε once the population is known; excludes
      noise_multiplier.
    clip_norm: L2 clip of each client update (--clip_norm): required for
      dp_fixed, the initial clip for dp_adaptive, unused otherwise.
    target_unclipped_quantile: dp_adaptive only (--target_unclipped_quantile).
    clients_per_round: expected clients per round (--clients_per_round); the
      DP sum is divided by it. 0: every client, every round (`for_population`
      resolves it).
    client_weighting: 'num_examples' or 'uniform' (--client_weighting).
    zeroing: secure/compression: zero out updates with extreme norms.
  """

  kind: str = "none"
  noise_multiplier: Optional[float] = None
  target_epsilon: Optional[float] = None
  clip_norm: Optional[float] = None
  target_unclipped_quantile: Optional[float] = None
  clients_per_round: Optional[int] = None
  client_weighting: str = "num_examples"
  zeroing: bool = True

  def __post_init__(self):
    kind = self.kind
    require(kind in KINDS, "kind", kind, f"must be one of {', '.join(KINDS)}.")
    require(self.client_weighting in WEIGHTINGS, "client_weighting", self.client_weighting,
            f"must be one of {', '.join(WEIGHTINGS)}.")
    require(self.clients_per_round is None or self.clients_per_round >= 0,
            "clients_per_round", self.clients_per_round, "must be >= 0 (0: all clients).")
    if self.is_dp:
      self._check_dp()
    else:
      for field, value in (("noise_multiplier", self.noise_multiplier),
                           ("target_epsilon", self.target_epsilon),
                           ("clip_norm", self.clip_norm),
                           ("target_unclipped_quantile", self.target_unclipped_quantile)):
        if value is not None:
          raise ConfigError(
              f"{field}={value!r} given but kind={kind!r}: it only applies to "
              "kind='dp_fixed' or 'dp_adaptive'.", (field, "kind"))

  def _check_dp(self):
    kind = self.kind
    if self.client_weighting != "uniform":
      raise ConfigError(
          f"kind={kind!r} is unweighted (uniform client weighting): it cannot be "
          f"used with client_weighting={self.client_weighting!r}; use "
          "client_weighting='uniform'.", ("kind", "client_weighting"))
    if self.clients_per_round is None:
      raise ConfigError(f"kind={kind!r} requires clients_per_round (got None).",
                        ("kind", "clients_per_round"))
    check_noise_choice(self.noise_multiplier, self.target_epsilon)
    # Until calibrated, the checks below see a placeholder noise of 1.
    noise = self.noise_multiplier if self.target_epsilon is None else 1.0
    if kind == "dp_fixed":
      if not (noise or 0) > 0 or not (self.clip_norm or 0) > 0:
        raise ConfigError(
            "kind='dp_fixed' requires noise_multiplier > 0 (or target_epsilon) and "
            f"clip_norm > 0 (got noise_multiplier={self.noise_multiplier!r}, "
            f"clip_norm={self.clip_norm!r}).",
            ("kind", "noise_multiplier", "clip_norm"))
      if self.target_unclipped_quantile is not None:
        raise ConfigError(
            f"target_unclipped_quantile={self.target_unclipped_quantile!r} given but "
            "kind='dp_fixed': it only applies to kind='dp_adaptive'.",
            ("target_unclipped_quantile", "kind"))
    else:
      if not (noise or 0) > 0:
        raise ConfigError(
            "kind='dp_adaptive' requires noise_multiplier > 0 or target_epsilon (got "
            f"noise_multiplier={self.noise_multiplier!r}).", ("kind", "noise_multiplier"))
      if self.clip_norm is not None and self.clip_norm <= 0:
        raise ConfigError(
            f"clip_norm={self.clip_norm!r}: the initial clip of kind='dp_adaptive' "
            "must be > 0.", ("clip_norm", "kind"))
      quantile = self.target_unclipped_quantile
      require(quantile is None or 0 < quantile < 1, "target_unclipped_quantile", quantile,
              "must be in (0, 1).")
      # TFF spends part of the privacy budget on the clipped-count estimate,
      # whose noise std defaults to 0.05 * clients_per_round; it must exceed
      # noise_multiplier / 2.
      if self.noise_multiplier is not None and self.clients_per_round and (
          self.noise_multiplier >= 0.1 * self.clients_per_round):
        raise ConfigError(
            f"kind='dp_adaptive' with noise_multiplier={self.noise_multiplier!r} "
            f"needs clients_per_round > {10 * self.noise_multiplier:g} (got "
            f"clients_per_round={self.clients_per_round!r}): the adaptive clip estimate "
            "would use up the whole privacy budget. Use more clients per round or "
            "kind='dp_fixed'.", ("kind", "noise_multiplier", "clients_per_round"))

  def with_noise(self, noise_multiplier: float) -> "AggregatorSpec":
    """This spec with its target ε resolved to `noise_multiplier`."""
    return dataclasses.replace(self, noise_multiplier=noise_multiplier, target_epsilon=None)

  def for_population(self, population: int) -> "AggregatorSpec":
    """This spec with clients_per_round = 0 (all clients) resolved."""
    if self.clients_per_round == 0:
      return dataclasses.replace(self, clients_per_round=population)
    return self

  @property
  def is_dp(self) -> bool:
    return self.kind in ("dp_fixed", "dp_adaptive")

  @property
  def weighted(self) -> bool:
    return self.client_weighting == "num_examples"


def check_noise_choice(noise_multiplier: Optional[float],
                       target_epsilon: Optional[float]) -> None:
  """A DP mechanism takes its noise from exactly one of the two (either may
  be missing only when the other is given)."""
  if noise_multiplier is not None and target_epsilon is not None:
    raise ConfigError(
        f"noise_multiplier={noise_multiplier!r} and target_epsilon={target_epsilon!r} "
        "both given: the noise multiplier is either set or calibrated to the target ε; "
        "give one of them.", ("noise_multiplier", "target_epsilon"))
  require(target_epsilon is None or target_epsilon > 0, "target_epsilon", target_epsilon,
          "must be > 0.")


def check_weighting(factory: Optional[tff.aggregators.AggregationFactory],
                    uniform_weighting: bool) -> bool:
  """Returns whether `factory` is unweighted; raises ConfigError (a ValueError)
  if it is unweighted (DP) but clients are weighted by example counts."""
  unweighted = isinstance(factory, tff.aggregators.UnweightedAggregationFactory)
  if unweighted and not uniform_weighting:
    raise ConfigError(
        f"uniform_weighting={uniform_weighting!r}: an unweighted aggregator (DP) needs "
        "uniform client weighting; use client_weighting='uniform'.",
        ("uniform_weighting", "client_weighting"))
  return unweighted


def build_aggregator(spec: AggregatorSpec) -> tff.aggregators.AggregationFactory:
  """The TFF aggregation factory for `spec`.

  Returns a `tff.aggregators.WeightedAggregationFactory` when
  `spec.weighted`, else an `UnweightedAggregationFactory` (always for DP).
  """
  if spec.kind == "none":
    return tff.aggregators.MeanFactory() if spec.weighted else tff.aggregators.UnweightedMeanFactory()
  if spec.is_dp and spec.clients_per_round == 0:
    raise ConfigError("clients_per_round=0 (all clients) is not yet resolved to the "
                      "population (AggregatorSpec.for_population).", ("clients_per_round",))
  if spec.is_dp and spec.noise_multiplier is None:
    raise ConfigError(f"target_epsilon={spec.target_epsilon!r} is not yet calibrated to a "
                      "noise multiplier (AggregatorSpec.with_noise).", ("target_epsilon",))
  if spec.kind == "dp_fixed":
    return tff.aggregators.DifferentiallyPrivateFactory.gaussian_fixed(
        noise_multiplier=spec.noise_multiplier,
        clients_per_round=spec.clients_per_round,
        clip=spec.clip_norm)
  if spec.kind == "dp_adaptive":
    return tff.aggregators.DifferentiallyPrivateFactory.gaussian_adaptive(
        noise_multiplier=spec.noise_multiplier,
        clients_per_round=spec.clients_per_round,
        initial_l2_norm_clip=spec.clip_norm or DEFAULT_ADAPTIVE_INITIAL_CLIP,
        target_unclipped_quantile=(spec.target_unclipped_quantile
                                   or DEFAULT_TARGET_UNCLIPPED_QUANTILE))
  if spec.kind == "secure":
    return tff.learning.secure_aggregator(zeroing=spec.zeroing, weighted=spec.weighted)
  return tff.learning.compression_aggregator(zeroing=spec.zeroing, weighted=spec.weighted)


def set_simulation_context(spec: AggregatorSpec) -> None:
  """Starts a fresh TFF worker whose context can simulate `spec` (`tff_runtime.install`).

  TFF's native runtime has no implementation of the secure-sum intrinsics used
  by `secure`. For that kind they are compiled to plain sums first, as
  `tff.backends.test` does (simulated in the clear, for research). Every other
  kind runs the plain native compilation.
  """
  tff_runtime.install(secure_intrinsics=spec.kind == "secure")

