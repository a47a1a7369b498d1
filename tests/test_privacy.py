"""Aggregator flags, ε accounting, and one round with every aggregator kind."""

import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff
from scipy import stats

from tff_movierec import privacy, reconstruction, tff_runtime
from tff_movierec.data import movielens, synthetic
from tff_movierec.privacy import accounting
from tasks import movielens_recon


# ---- accounting -------------------------------------------------------------

def test_epsilon_grows_with_rounds_and_falls_with_noise():
  series = privacy.epsilon_series(1.0, 0.02, 50, 1e-6)
  assert np.all(np.diff(series) > 0)
  by_noise = [privacy.epsilon(noise, 0.02, 50, 1e-6) for noise in (0.6, 0.8, 1.2, 2.0)]
  assert all(a > b for a, b in zip(by_noise, by_noise[1:]))


def test_incremental_tracker_matches_composition_of_all_rounds():
  tracker = privacy.EpsilonTracker(0.9, 0.05, 1e-5)
  for _ in range(30):
    last = tracker.step()
  assert last == pytest.approx(privacy.epsilon(0.9, 0.05, 30, 1e-5), rel=1e-9)


def _exact_gaussian_epsilon(mu, delta):
  """ε of a Gaussian mechanism with sensitivity / std = mu (Balle & Wang 2018)."""
  def delta_of(eps):
    return stats.norm.cdf(-eps / mu + mu / 2) - np.exp(eps) * stats.norm.cdf(-eps / mu - mu / 2)
  low, high = 0.0, 100.0
  for _ in range(200):
    mid = (low + high) / 2
    low, high = (mid, high) if delta_of(mid) > delta else (low, mid)
  return high


def test_epsilon_without_sampling_is_between_exact_and_classic_rdp_bound():
  # q = 1: T Gaussian rounds = one Gaussian mechanism with mu = sqrt(T) / sigma.
  sigma, rounds, delta = 2.0, 10, 1e-5
  eps = privacy.epsilon(sigma, 1.0, rounds, delta)
  exact = _exact_gaussian_epsilon(np.sqrt(rounds) / sigma, delta)
  orders = np.linspace(1.01, 200, 20000)
  classic = np.min(rounds * orders / (2 * sigma**2) + np.log(1 / delta) / (orders - 1))
  assert exact <= eps <= classic + 1e-6
  assert eps < 1.25 * exact  # RDP is a reasonably tight bound here.


def test_noise_for_epsilon_meets_the_target():
  noise = privacy.noise_for_epsilon(5.0, 0.01, 100, 1e-6)
  assert privacy.epsilon(noise, 0.01, 100, 1e-6) <= 5.0 + 1e-3
  assert privacy.epsilon(0.95 * noise, 0.01, 100, 1e-6) > 5.0


def test_default_delta_is_below_one_over_population():
  assert privacy.default_delta(6040) == pytest.approx(6040**-1.1)
  assert privacy.default_delta(6040) < 1 / 6040
  with pytest.raises(ValueError):
    privacy.default_delta(0)


def test_accounting_rejects_bad_arguments():
  with pytest.raises(ValueError, match="--noise_multiplier"):
    privacy.epsilon(0.0, 0.1, 10, 1e-6)
  with pytest.raises(ValueError, match="sampling probability"):
    privacy.epsilon(1.0, 1.5, 10, 1e-6)
  with pytest.raises(ValueError, match="--dp_delta"):
    accounting.EpsilonTracker(1.0, 0.1, 0.0)


# ---- spec validation --------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="dp"), r"--aggregator='dp': must be one of"),
    (dict(kind="dp_fixed", noise_multiplier=1.0, client_weighting="uniform",
          clients_per_round=10),
     r"--aggregator=dp_fixed requires --noise_multiplier > 0 and --clip_norm > 0"),
    (dict(kind="dp_fixed", clip_norm=1.0, client_weighting="uniform", clients_per_round=10),
     r"--aggregator=dp_fixed requires --noise_multiplier > 0 and --clip_norm > 0"),
    (dict(kind="dp_fixed", noise_multiplier=1.0, clip_norm=1.0, clients_per_round=10),
     r"--aggregator=dp_fixed is unweighted \(uniform client weighting\): it cannot be "
     r"used with --client_weighting=num_examples"),
    (dict(kind="dp_adaptive", noise_multiplier=1.0, clients_per_round=10),
     r"--aggregator=dp_adaptive is unweighted .* --client_weighting=num_examples"),
    (dict(kind="dp_adaptive", client_weighting="uniform", clients_per_round=10),
     r"--aggregator=dp_adaptive requires --noise_multiplier > 0"),
    (dict(kind="dp_adaptive", noise_multiplier=1.0, client_weighting="uniform"),
     r"--aggregator=dp_adaptive requires --clients_per_round"),
    (dict(kind="dp_adaptive", noise_multiplier=1.0, client_weighting="uniform",
          clients_per_round=10), r"--noise_multiplier=1.0 needs --clients_per_round > 10"),
    (dict(kind="dp_adaptive", noise_multiplier=1.0, client_weighting="uniform",
          clients_per_round=20, target_unclipped_quantile=1.5),
     r"--target_unclipped_quantile=1.5"),
    (dict(kind="dp_fixed", noise_multiplier=1.0, clip_norm=1.0, client_weighting="uniform",
          clients_per_round=10, target_unclipped_quantile=0.5),
     r"--target_unclipped_quantile given but --aggregator=dp_fixed"),
    (dict(noise_multiplier=1.0), r"--noise_multiplier given but --aggregator=none"),
    (dict(kind="secure", clip_norm=1.0), r"--clip_norm given but --aggregator=secure"),
    (dict(kind="compression", target_unclipped_quantile=0.5),
     r"--target_unclipped_quantile given but --aggregator=compression"),
    (dict(client_weighting="examples"), r"--client_weighting='examples'"),
    (dict(clients_per_round=0), r"--clients_per_round=0"),
])
def test_contradictory_flags_are_rejected_by_name(kwargs, message):
  with pytest.raises(ValueError, match=message):
    privacy.AggregatorSpec(**kwargs)


def test_experiment_config_rejects_mismatched_weighting_and_stray_delta():
  dp = privacy.AggregatorSpec(kind="dp_fixed", noise_multiplier=1.0, clip_norm=1.0,
                              client_weighting="uniform", clients_per_round=10)
  with pytest.raises(ValueError, match="--client_weighting=uniform disagrees"):
    reconstruction.ExperimentConfig(clients_per_round=10, aggregator=dp)
  with pytest.raises(ValueError, match="--dp_delta given but --aggregator=none"):
    reconstruction.ExperimentConfig(dp_delta=1e-6)


def test_factory_types_follow_weighting():
  weighted = privacy.build_aggregator(privacy.AggregatorSpec())
  uniform = privacy.build_aggregator(privacy.AggregatorSpec(client_weighting="uniform"))
  assert isinstance(weighted, tff.aggregators.WeightedAggregationFactory)
  assert isinstance(uniform, tff.aggregators.UnweightedAggregationFactory)
  for kind in ("dp_fixed", "dp_adaptive"):
    spec = privacy.AggregatorSpec(kind=kind, noise_multiplier=1.0, clip_norm=0.5,
                                  client_weighting="uniform", clients_per_round=20)
    assert isinstance(privacy.build_aggregator(spec), tff.aggregators.UnweightedAggregationFactory)


# ---- one round with each kind -----------------------------------------------

CLIENTS_PER_ROUND = 6


def _spec(kind):
  if kind.startswith("dp"):
    return privacy.AggregatorSpec(kind=kind, noise_multiplier=0.5, clip_norm=0.5,
                                  client_weighting="uniform",
                                  clients_per_round=CLIENTS_PER_ROUND)
  return privacy.AggregatorSpec(kind=kind)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
  folder = str(tmp_path_factory.mktemp("movielens"))
  synthetic.write_synthetic_movielens(folder, num_users=20, num_movies=30,
                                      ratings_per_user=12, seed=1)
  return movielens_recon.recon_task_from_data(movielens.load_movielens(folder))


@pytest.fixture(autouse=True)
def native_context_after_test():
  yield
  tff_runtime.switch_context(tff.backends.native.set_sync_local_cpp_execution_context)


@pytest.mark.parametrize("kind", privacy.KINDS)
def test_each_kind_runs_a_fed_recon_round_with_dp_epsilon(task, kind, tmp_path):
  spec = _spec(kind)
  privacy.set_simulation_context(spec)
  config = reconstruction.ExperimentConfig(
      rounds=1, clients_per_round=CLIENTS_PER_ROUND, embedding_dim=4, eval_every=0,
      recon=reconstruction.ReconConfig(reconstruction_steps=2,
                                       uniform_weighting=not spec.weighted),
      aggregator=spec, dp_delta=1e-5 if spec.is_dp else None)
  rounds = []
  final = reconstruction.run_recon_experiment(
      task.train, task.eval_seen, task.num_movies, config, output_dir=str(tmp_path),
      on_round=lambda r, m: rounds.append((r, m)))
  assert [r for r, _ in rounds] == [1]
  assert np.isfinite(final["eval/rmse"]) and final["eval/rmse"] > 0
  if spec.is_dp:
    q = CLIENTS_PER_ROUND / task.num_train_clients
    assert final["epsilon"] == pytest.approx(privacy.epsilon(0.5, q, 1, 1e-5))
    assert rounds[0][1]["epsilon"] == final["epsilon"]
  else:
    assert "epsilon" not in final
  assert (tmp_path / "metrics.csv").read_text().startswith("round,")


def _keras_model():
  inputs = tf.keras.Input(shape=(3,))
  return tf.keras.Model(inputs, tf.keras.layers.Dense(1)(inputs))


def _fed_avg_data():
  rng = np.random.default_rng(0)
  return [tf.data.Dataset.from_tensor_slices(
      (rng.normal(size=(8, 3)).astype(np.float32),
       rng.normal(size=(8, 1)).astype(np.float32))).batch(4) for _ in range(3)]


@pytest.mark.parametrize("kind", ["dp_fixed", "compression"])
def test_aggregator_plugs_into_fed_avg(kind):
  spec = privacy.AggregatorSpec(kind=kind, **(
      dict(noise_multiplier=0.5, clip_norm=1.0, client_weighting="uniform",
           clients_per_round=3) if kind == "dp_fixed" else {}))
  data = _fed_avg_data()

  def model_fn():
    return tff.learning.models.from_keras_model(
        _keras_model(), loss=tf.keras.losses.MeanSquaredError(),
        input_spec=data[0].element_spec)

  build = (tff.learning.algorithms.build_weighted_fed_avg if spec.weighted
           else tff.learning.algorithms.build_unweighted_fed_avg)
  fed_avg = build(model_fn, client_optimizer_fn=tff.learning.optimizers.build_sgdm(0.1),
                  model_aggregator=privacy.build_aggregator(spec))
  state = fed_avg.initialize()
  before = fed_avg.get_model_weights(state).trainable
  after = fed_avg.get_model_weights(fed_avg.next(state, data).state).trainable
  assert any(not np.allclose(a, b) for a, b in zip(before, after))
