"""Federated EASE: the Gram sum through TFF's aggregators equals the pooled
Gram matrix (plain and secure), DP adds the promised noise, histories are capped."""

import numpy as np
import pytest
from scipy import sparse

from tff_movierec import tff_runtime
from tff_movierec.baselines import ease as ease_baseline
from tff_movierec.ease import federated
from tff_movierec.errors import ConfigError

NUM_MOVIES = 30


def _histories(seed=0, users=40):
  rng = np.random.default_rng(seed)
  return [np.sort(rng.choice(NUM_MOVIES, rng.integers(1, 15), replace=False)).astype(np.int32)
          for _ in range(users)]


def _pooled_gram(histories):
  rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
  x = sparse.csr_matrix((np.ones(len(rows)), (rows, np.concatenate(histories))),
                        shape=(len(histories), NUM_MOVIES))
  return (x.T @ x).toarray()


def _clients(histories, num_clients=3):
  return [federated.client_dataset(histories[k::num_clients]) for k in range(num_clients)]


@pytest.fixture(scope="module", params=["none", "secure"])
def exact_run(request):
  tff_runtime.install(secure_intrinsics=request.param == "secure")
  histories = _histories()
  process = federated.EaseProcess(NUM_MOVIES, federated.EaseConfig(
      ease_l2=5.0, aggregator=request.param, max_users_per_client=14))
  output = process.next(process.initialize(), _clients(histories))
  return histories, output


def test_federated_weights_equal_centralized_ease(exact_run):
  histories, output = exact_run
  expected = ease_baseline.ease_weights(_pooled_gram(histories), 5.0)
  np.testing.assert_allclose(output.state["weights"], expected, rtol=1e-4, atol=1e-6)
  train = output.metrics["client_work"]["train"]
  assert train["users"] == len(histories)
  assert train["num_examples"] == sum(len(h) for h in histories)


def test_dp_sum_adds_gaussian_noise_of_std_noise_multiplier_times_cap():
  tff_runtime.install()
  histories = _histories(seed=1)
  config = federated.EaseConfig(aggregator="dp_fixed", noise_multiplier=0.5,
                                max_user_history=4)
  initialize, next_fn = federated.build_gram_sum(NUM_MOVIES, config)
  capped = federated.cap_histories(histories, 4, np.random.default_rng(0))
  _, noisy = next_fn(initialize(), _clients(capped))
  noise = np.asarray(noisy) - _pooled_gram(capped)
  assert np.std(noise) == pytest.approx(0.5 * 4, rel=0.1)
  assert abs(np.mean(noise)) < 0.2
  assert not np.allclose(noise, noise.T)  # raw release; the process symmetrizes it


def test_cap_keeps_at_most_cap_of_each_users_own_movies():
  histories = _histories(seed=2)
  capped = federated.cap_histories(histories, 5, np.random.default_rng(0))
  for original, kept in zip(histories, capped):
    assert len(kept) == min(5, len(original))
    assert set(kept) <= set(original)
  assert federated.cap_histories(histories, None, np.random.default_rng(0)) is histories


@pytest.mark.parametrize("kwargs, fields", [
    (dict(aggregator="dp_fixed", noise_multiplier=1.0),
     ("aggregator", "noise_multiplier", "max_user_history")),
    (dict(aggregator="dp_adaptive"), ("aggregator",)),
    (dict(aggregator="compression"), ("aggregator",)),
    (dict(noise_multiplier=1.0), ("noise_multiplier", "aggregator")),
    (dict(ease_l2=0.0), ("ease_l2",)),
    (dict(ease_dropout=1.0), ("ease_dropout",)),
    (dict(max_user_history=0), ("max_user_history",)),
])
def test_config_refuses_what_it_cannot_honour(kwargs, fields):
  with pytest.raises(ConfigError) as error:
    federated.EaseConfig(**kwargs)
  assert error.value.fields == fields
