"""Client sampling is a pure function of (seed, round)."""

import numpy as np
import pytest

from tff_movierec.errors import ConfigError
from tff_movierec.training.sampling import ClientSampler

CLIENTS = [str(i) for i in range(50)]


def test_uniform_draws_k_distinct_clients_as_a_function_of_seed_and_round():
  sampler = ClientSampler(CLIENTS, 7, "uniform", seed=3)
  first = sampler(5)
  assert len(first) == len(set(first)) == 7 and set(first) <= set(CLIENTS)
  assert ClientSampler(CLIENTS, 7, "uniform", seed=3)(5) == first  # a resumed run
  assert sampler(6) != first
  assert ClientSampler(CLIENTS, 7, "uniform", seed=4)(5) != first


def test_poisson_joins_each_client_with_probability_k_over_n():
  sampler = ClientSampler(CLIENTS, 10, "poisson", seed=0)
  assert sampler.sampling_probability == pytest.approx(0.2)
  sizes = [len(sampler(r)) for r in range(1, 401)]
  assert np.mean(sizes) == pytest.approx(10, abs=0.5)
  assert len(set(sizes)) > 3  # the number of clients varies
  assert sampler(17) == ClientSampler(CLIENTS, 10, "poisson", seed=0)(17)


@pytest.mark.parametrize("k", [0, 51])
def test_clients_per_round_outside_the_population_is_refused(k):
  with pytest.raises(ConfigError, match=rf"^clients_per_round={k}: must be in \[1, 50\]") as e:
    ClientSampler(CLIENTS, k)
  assert e.value.fields == ("clients_per_round",)


def test_unknown_scheme_is_refused():
  with pytest.raises(ConfigError, match="client_sampling='fixed'"):
    ClientSampler(CLIENTS, 3, "fixed")
