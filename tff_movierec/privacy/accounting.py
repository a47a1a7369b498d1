"""User-level (ε, δ) accounting of DP federated training with `dp_accounting`.

One round = one Poisson-sampled Gaussian mechanism: every client joins with
probability q = clients_per_round / population, and the sum of their clipped
updates gets Gaussian noise of std `noise_multiplier * clip`. T rounds are
composed with the Rényi DP accountant (Mironov 2017; Poisson subsampling:
Mironov, Talwar, Zhang 2019) and converted to ε at the given δ. The accounting
is exact for Poisson sampling; with fixed-size sampling of clients it is the
standard approximation.
"""

import dp_accounting
import numpy as np

from tff_movierec.errors import require


def default_delta(num_clients: int) -> float:
  """δ = 1 / N^1.1, below 1/N as user-level DP requires."""
  require(num_clients >= 1, "num_clients", num_clients, "must be >= 1.")
  return 1.0 / num_clients ** 1.1


def _check(noise_multiplier, sampling_probability, delta):
  require(noise_multiplier > 0, "noise_multiplier", noise_multiplier,
          "must be > 0 for accounting.")
  require(0 < sampling_probability <= 1, "sampling_probability", sampling_probability,
          "(clients per round / clients) must be in (0, 1].")
  require(0 < delta < 1, "delta", delta, "must be in (0, 1).")


def _round_event(noise_multiplier: float, sampling_probability: float):
  return dp_accounting.PoissonSampledDpEvent(
      sampling_probability, dp_accounting.GaussianDpEvent(noise_multiplier))


def epsilon(noise_multiplier: float, sampling_probability: float, rounds: int,
            delta: float) -> float:
  """ε after `rounds` rounds (0 rounds: 0)."""
  _check(noise_multiplier, sampling_probability, delta)
  accountant = dp_accounting.rdp.RdpAccountant()
  accountant.compose(_round_event(noise_multiplier, sampling_probability), rounds)
  return float(accountant.get_epsilon(delta))


class EpsilonTracker:
  """ε released after each round; `step()` composes one more round."""

  def __init__(self, noise_multiplier: float, sampling_probability: float, delta: float):
    _check(noise_multiplier, sampling_probability, delta)
    self._event = _round_event(noise_multiplier, sampling_probability)
    self._accountant = dp_accounting.rdp.RdpAccountant()
    self.delta = delta
    self.rounds = 0

  def step(self) -> float:
    """Accounts one round; returns ε after all rounds so far."""
    self._accountant.compose(self._event)
    self.rounds += 1
    return float(self._accountant.get_epsilon(self.delta))


def epsilon_series(noise_multiplier: float, sampling_probability: float, rounds: int,
                   delta: float) -> np.ndarray:
  """float64 [rounds]: ε after rounds 1..rounds."""
  tracker = EpsilonTracker(noise_multiplier, sampling_probability, delta)
  return np.array([tracker.step() for _ in range(rounds)])


def noise_for_epsilon(target_epsilon: float, sampling_probability: float, rounds: int,
                      delta: float) -> float:
  """Smallest noise multiplier giving ε <= target after `rounds` rounds."""
  require(target_epsilon > 0, "target_epsilon", target_epsilon, "must be > 0.")
  _check(1.0, sampling_probability, delta)
  return float(dp_accounting.calibrate_dp_mechanism(
      dp_accounting.rdp.RdpAccountant,
      lambda noise: dp_accounting.SelfComposedDpEvent(
          _round_event(noise, sampling_probability), rounds),
      target_epsilon, delta))
