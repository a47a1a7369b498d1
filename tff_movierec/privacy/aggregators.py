"""Model-update aggregators selected by flag, with their combinations checked.

`AggregatorSpec` is validated when constructed, so contradictory flags fail
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

KINDS = ("none", "dp_fixed", "dp_adaptive", "secure", "compression")
WEIGHTINGS = ("num_examples", "uniform")
DEFAULT_ADAPTIVE_INITIAL_CLIP = 0.1
DEFAULT_TARGET_UNCLIPPED_QUANTILE = 0.5


@dataclasses.dataclass(frozen=True)
class AggregatorSpec:
  """Choice of model-update aggregator; flag names are used in errors.

  Attributes:
    kind: one of KINDS (--aggregator).
    noise_multiplier: Gaussian noise std / clip norm (--noise_multiplier);
      DP kinds only, > 0.
    clip_norm: L2 clip of each client update (--clip_norm): required for
      dp_fixed, the initial clip for dp_adaptive, unused otherwise.
    target_unclipped_quantile: dp_adaptive only (--target_unclipped_quantile).
    clients_per_round: expected clients per round (--clients_per_round); the
      DP sum is divided by it.
    client_weighting: 'num_examples' or 'uniform' (--client_weighting).
    zeroing: secure/compression: zero out updates with extreme norms.
  """

  kind: str = "none"
  noise_multiplier: Optional[float] = None
  clip_norm: Optional[float] = None
  target_unclipped_quantile: Optional[float] = None
  clients_per_round: Optional[int] = None
  client_weighting: str = "num_examples"
  zeroing: bool = True

  def __post_init__(self):
    kind = self.kind
    if kind not in KINDS:
      raise ValueError(f"--aggregator={kind!r}: must be one of {', '.join(KINDS)}.")
    if self.client_weighting not in WEIGHTINGS:
      raise ValueError(
          f"--client_weighting={self.client_weighting!r}: must be one of "
          f"{', '.join(WEIGHTINGS)}.")
    if self.clients_per_round is not None and self.clients_per_round < 1:
      raise ValueError(f"--clients_per_round={self.clients_per_round}: must be >= 1.")
    if self.is_dp:
      self._check_dp()
    else:
      for flag, value in (("noise_multiplier", self.noise_multiplier),
                          ("clip_norm", self.clip_norm),
                          ("target_unclipped_quantile", self.target_unclipped_quantile)):
        if value is not None:
          raise ValueError(
              f"--{flag} given but --aggregator={kind}: it only applies to "
              "--aggregator=dp_fixed or dp_adaptive.")

  def _check_dp(self):
    kind = self.kind
    if self.client_weighting != "uniform":
      raise ValueError(
          f"--aggregator={kind} is unweighted (uniform client weighting): it "
          f"cannot be used with --client_weighting={self.client_weighting}; "
          "use --client_weighting=uniform.")
    if self.clients_per_round is None:
      raise ValueError(f"--aggregator={kind} requires --clients_per_round.")
    if kind == "dp_fixed":
      if not (self.noise_multiplier or 0) > 0 or not (self.clip_norm or 0) > 0:
        raise ValueError(
            "--aggregator=dp_fixed requires --noise_multiplier > 0 and --clip_norm > 0 "
            f"(got {self.noise_multiplier}, {self.clip_norm}).")
      if self.target_unclipped_quantile is not None:
        raise ValueError(
            "--target_unclipped_quantile given but --aggregator=dp_fixed: it only "
            "applies to --aggregator=dp_adaptive.")
    else:
      if not (self.noise_multiplier or 0) > 0:
        raise ValueError(
            f"--aggregator=dp_adaptive requires --noise_multiplier > 0 "
            f"(got {self.noise_multiplier}).")
      if self.clip_norm is not None and self.clip_norm <= 0:
        raise ValueError(
            f"--clip_norm={self.clip_norm}: the initial clip of --aggregator=dp_adaptive "
            "must be > 0.")
      quantile = self.target_unclipped_quantile
      if quantile is not None and not 0 < quantile < 1:
        raise ValueError(f"--target_unclipped_quantile={quantile}: must be in (0, 1).")
      # TFF spends part of the privacy budget on the clipped-count estimate,
      # whose noise std defaults to 0.05 * clients_per_round; it must exceed
      # noise_multiplier / 2.
      if self.noise_multiplier >= 0.1 * self.clients_per_round:
        raise ValueError(
            f"--aggregator=dp_adaptive with --noise_multiplier={self.noise_multiplier} "
            f"needs --clients_per_round > {10 * self.noise_multiplier:g} (got "
            f"{self.clients_per_round}): the adaptive clip estimate would use up the "
            "whole privacy budget. Use more clients per round or --aggregator=dp_fixed.")

  @property
  def is_dp(self) -> bool:
    return self.kind in ("dp_fixed", "dp_adaptive")

  @property
  def weighted(self) -> bool:
    return self.client_weighting == "num_examples"


def check_weighting(factory: Optional[tff.aggregators.AggregationFactory],
                    uniform_weighting: bool) -> bool:
  """Returns whether `factory` is unweighted; raises ValueError if it is
  unweighted (DP) but clients are weighted by example counts."""
  unweighted = isinstance(factory, tff.aggregators.UnweightedAggregationFactory)
  if unweighted and not uniform_weighting:
    raise ValueError("An unweighted aggregator (DP) needs uniform client weighting: "
                     "--client_weighting=uniform.")
  return unweighted


def build_aggregator(spec: AggregatorSpec) -> tff.aggregators.AggregationFactory:
  """The TFF aggregation factory for `spec`.

  Returns a `tff.aggregators.WeightedAggregationFactory` when
  `spec.weighted`, else an `UnweightedAggregationFactory` (always for DP).
  """
  if spec.kind == "none":
    return tff.aggregators.MeanFactory() if spec.weighted else tff.aggregators.UnweightedMeanFactory()
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
  """Installs the TFF execution context that can simulate `spec`.

  TFF's native runtime has no implementation of the secure-sum intrinsics used
  by `secure`; `tff.backends.test`'s context simulates them (in the clear, for
  research). Every other kind runs in the native local C++ context.
  """
  tff_runtime.switch_context(
      tff.backends.test.set_sync_test_cpp_execution_context if spec.kind == "secure"
      else tff.backends.native.set_sync_local_cpp_execution_context)

