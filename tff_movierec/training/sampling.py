"""Client sampling as a pure function of (seed, round).

A resumed run therefore samples exactly the clients the uninterrupted run
would have (as `tff.simulation.build_uniform_sampling_fn` does), and every
task samples the same way.

  uniform  `clients_per_round` distinct clients, uniformly without replacement.
  poisson  every client joins independently with probability
           q = clients_per_round / population (what DP accounting assumes);
           a round may have any number of clients, also none.
"""

import dataclasses
from typing import List, Sequence

import numpy as np

from tff_movierec.errors import ConfigError

SCHEMES = ("uniform", "poisson")


@dataclasses.dataclass(frozen=True)
class ClientSampler:
  """Chooses the clients of each round.

  Attributes:
    client_ids: the population.
    clients_per_round: K, the (expected) number of clients per round;
      1 <= K <= population.
    scheme: one of SCHEMES.
    seed: round r's clients depend only on (seed, r).
  """

  client_ids: Sequence[str]
  clients_per_round: int
  scheme: str = "uniform"
  seed: int = 0

  def __post_init__(self):
    if self.scheme not in SCHEMES:
      raise ConfigError(f"client_sampling={self.scheme!r}: must be one of {SCHEMES}.",
                        ("client_sampling",))
    population = len(self.client_ids)
    if not 1 <= self.clients_per_round <= population:
      raise ConfigError(
          f"clients_per_round={self.clients_per_round}: must be in [1, {population}], "
          f"the number of training clients.", ("clients_per_round",))

  @property
  def sampling_probability(self) -> float:
    """q: the probability that a given client takes part in a round."""
    return self.clients_per_round / len(self.client_ids)

  def __call__(self, round_num: int) -> List[str]:
    """The client ids of `round_num` (>= 1), in population order."""
    rng = np.random.default_rng([self.seed, round_num])
    population = len(self.client_ids)
    if self.scheme == "uniform":
      chosen = np.sort(rng.choice(population, self.clients_per_round, replace=False))
    else:
      chosen = np.flatnonzero(rng.random(population) < self.sampling_probability)
    return [self.client_ids[i] for i in chosen]
