"""Aggregator flags, ε accounting, and one round with every aggregator kind."""

import csv

import dp_accounting
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff
from scipy import stats

from tff_movierec import privacy, reconstruction, tff_runtime
from tff_movierec.data import movielens, synthetic
from tff_movierec.errors import ConfigError
from tff_movierec.privacy import accounting
from tff_movierec.training import algorithms, initialization, loop, managers, sampling
from tff_movierec.training.federated_run import FederatedRun
from tff_movierec.training.optimizers import OptimizerSpec
from tasks import common, movielens_fedrecon


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
  with pytest.raises(ConfigError, match=r"^num_clients=0: must be >= 1\.$"):
    privacy.default_delta(0)


def test_accounting_rejects_bad_arguments():
  with pytest.raises(ConfigError, match=r"^noise_multiplier=0\.0: must be > 0 for "
                     "accounting") as error:
    privacy.epsilon(0.0, 0.1, 10, 1e-6)
  assert error.value.fields == ("noise_multiplier",)
  with pytest.raises(ConfigError, match=r"^sampling_probability=1\.5: \(clients per round "
                     r"/ clients\) must be in \(0, 1\]") as error:
    privacy.epsilon(1.0, 1.5, 10, 1e-6)
  assert error.value.fields == ("sampling_probability",)
  with pytest.raises(ConfigError, match=r"^delta=0\.0: must be in \(0, 1\)") as error:
    accounting.EpsilonTracker(1.0, 0.1, 0.0)
  assert error.value.fields == ("delta",)
  with pytest.raises(ConfigError, match=r"^target_epsilon=0\.0: must be > 0\."):
    privacy.noise_for_epsilon(0.0, 0.1, 10, 1e-6)


# ---- spec validation --------------------------------------------------------

@pytest.mark.parametrize("kwargs, message, fields", [
    (dict(kind="dp"),
     r"^kind='dp': must be one of none, dp_fixed, dp_adaptive, secure, compression\.$",
     ("kind",)),
    (dict(kind="dp_fixed", noise_multiplier=1.0, client_weighting="uniform",
          clients_per_round=10),
     r"^kind='dp_fixed' requires noise_multiplier > 0 \(or target_epsilon\) and "
     r"clip_norm > 0 \(got noise_multiplier=1\.0, clip_norm=None\)\.$",
     ("kind", "noise_multiplier", "clip_norm")),
    (dict(kind="dp_fixed", clip_norm=1.0, client_weighting="uniform", clients_per_round=10),
     r"^kind='dp_fixed' requires noise_multiplier > 0 \(or target_epsilon\) and "
     r"clip_norm > 0 \(got noise_multiplier=None, clip_norm=1\.0\)\.$",
     ("kind", "noise_multiplier", "clip_norm")),
    (dict(kind="dp_fixed", noise_multiplier=1.0, clip_norm=1.0, clients_per_round=10),
     r"^kind='dp_fixed' is unweighted \(uniform client weighting\): it cannot be "
     r"used with client_weighting='num_examples'; use client_weighting='uniform'\.$",
     ("kind", "client_weighting")),
    (dict(kind="dp_adaptive", noise_multiplier=1.0, clients_per_round=10),
     r"^kind='dp_adaptive' is unweighted .* client_weighting='num_examples'; "
     r"use client_weighting='uniform'\.$",
     ("kind", "client_weighting")),
    (dict(kind="dp_adaptive", client_weighting="uniform", clients_per_round=10),
     r"^kind='dp_adaptive' requires noise_multiplier > 0 or target_epsilon \(got "
     r"noise_multiplier=None\)",
     ("kind", "noise_multiplier")),
    (dict(kind="dp_adaptive", noise_multiplier=1.0, client_weighting="uniform"),
     r"^kind='dp_adaptive' requires clients_per_round \(got None\)",
     ("kind", "clients_per_round")),
    (dict(kind="dp_adaptive", noise_multiplier=1.0, client_weighting="uniform",
          clients_per_round=10),
     r"^kind='dp_adaptive' with noise_multiplier=1\.0 needs clients_per_round > 10 "
     r"\(got clients_per_round=10\).* or kind='dp_fixed'\.$",
     ("kind", "noise_multiplier", "clients_per_round")),
    (dict(kind="dp_adaptive", noise_multiplier=1.0, client_weighting="uniform",
          clients_per_round=20, clip_norm=0.0),
     r"^clip_norm=0\.0: the initial clip of kind='dp_adaptive' must be > 0\.$",
     ("clip_norm", "kind")),
    (dict(kind="dp_adaptive", noise_multiplier=1.0, client_weighting="uniform",
          clients_per_round=20, target_unclipped_quantile=1.5),
     r"^target_unclipped_quantile=1\.5: must be in \(0, 1\)\.$",
     ("target_unclipped_quantile",)),
    (dict(kind="dp_fixed", noise_multiplier=1.0, clip_norm=1.0, client_weighting="uniform",
          clients_per_round=10, target_unclipped_quantile=0.5),
     r"^target_unclipped_quantile=0\.5 given but kind='dp_fixed': it only applies to "
     r"kind='dp_adaptive'\.$",
     ("target_unclipped_quantile", "kind")),
    (dict(noise_multiplier=1.0),
     r"^noise_multiplier=1\.0 given but kind='none': it only applies to "
     r"kind='dp_fixed' or 'dp_adaptive'\.$",
     ("noise_multiplier", "kind")),
    (dict(kind="secure", clip_norm=1.0), r"^clip_norm=1\.0 given but kind='secure'",
     ("clip_norm", "kind")),
    (dict(kind="compression", target_unclipped_quantile=0.5),
     r"^target_unclipped_quantile=0\.5 given but kind='compression'",
     ("target_unclipped_quantile", "kind")),
    (dict(client_weighting="examples"),
     r"^client_weighting='examples': must be one of num_examples, uniform\.$",
     ("client_weighting",)),
    (dict(clients_per_round=-1), r"^clients_per_round=-1: must be >= 0 \(0: all clients\)\.$",
     ("clients_per_round",)),
])
def test_contradictory_settings_are_rejected_by_field_name(kwargs, message, fields):
  with pytest.raises(ConfigError, match=message) as error:
    privacy.AggregatorSpec(**kwargs)
  assert error.value.fields == fields
  assert isinstance(error.value, ValueError)
  for field in fields:
    assert field in str(error.value)


def test_check_weighting_names_the_weighting_fields():
  with pytest.raises(ConfigError, match=r"^uniform_weighting=False: an unweighted "
                     r"aggregator \(DP\) needs uniform client weighting; use "
                     r"client_weighting='uniform'\.$") as error:
    privacy.check_weighting(tff.aggregators.UnweightedMeanFactory(), False)
  assert error.value.fields == ("uniform_weighting", "client_weighting")
  assert privacy.check_weighting(tff.aggregators.UnweightedMeanFactory(), True)
  assert not privacy.check_weighting(tff.aggregators.MeanFactory(), False)


def test_processes_reject_a_weighted_run_with_an_unweighted_aggregator():
  dp = privacy.AggregatorSpec(kind="dp_fixed", noise_multiplier=1.0, clip_norm=1.0,
                              client_weighting="uniform", clients_per_round=10)
  model_fn = reconstruction.model_fn_for(reconstruction.MFConfig(num_movies=5))
  message = r"^uniform_weighting=False: an unweighted aggregator \(DP\) needs uniform"
  with pytest.raises(ConfigError, match=message) as error:
    reconstruction.build_training_process(model_fn, reconstruction.ReconConfig(),
                                          privacy.build_aggregator(dp))
  assert error.value.fields == ("uniform_weighting", "client_weighting")
  with pytest.raises(ConfigError, match=message) as error:
    algorithms.build_fed_avg(None, "num_examples", OptimizerSpec(), OptimizerSpec(),
                             privacy.build_aggregator(dp))
  assert error.value.fields == ("uniform_weighting", "client_weighting")


def _privacy_settings(**overrides):
  settings = dict(aggregator="none", noise_multiplier=None, target_epsilon=None,
                  clip_norm=None, target_unclipped_quantile=None, clients_per_round=10,
                  client_weighting="num_examples", dp_delta=None, total_rounds=10)
  settings.update(overrides)
  return settings


def test_dp_delta_applies_only_to_dp_and_lies_in_zero_one():
  with pytest.raises(ConfigError, match=r"^dp_delta=1e-06 applies only to .*DP "
                     r"aggregator.*, not aggregator='none'\.$") as error:
    common.aggregator_spec(_privacy_settings(dp_delta=1e-6))
  assert error.value.fields == ("dp_delta", "aggregator")
  dp = dict(aggregator="dp_fixed", noise_multiplier=1.0, clip_norm=1.0,
            client_weighting="uniform")
  with pytest.raises(ConfigError, match=r"^dp_delta=1\.5: must be in \(0, 1\)\.$") as error:
    common.aggregator_spec(_privacy_settings(dp_delta=1.5, **dp))
  assert error.value.fields == ("dp_delta",)
  spec = common.aggregator_spec(_privacy_settings(dp_delta=1e-6, **dp))
  assert spec.is_dp and spec.clients_per_round == 10
  # The accountant gets the aggregator's noise and the given (or default) delta.
  settings = _privacy_settings(dp_delta=1e-6, **dp)
  assert common.dp_aggregator(settings, spec, 100)[1].noise_multiplier == 1.0
  assert common.dp_aggregator(settings, spec, 100)[1].delta == 1e-6
  settings["dp_delta"] = None
  assert common.dp_aggregator(settings, spec, 100)[1].delta == privacy.default_delta(100)
  assert common.dp_aggregator(_privacy_settings(), privacy.AggregatorSpec(), 100)[1] is None


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
  return movielens_fedrecon.recon_task_from_data(movielens.load_movielens(folder))


@pytest.fixture(scope="module")
def model_fn(task):
  return reconstruction.model_fn_for(
      reconstruction.MFConfig(num_movies=task.num_movies, embedding_dim=4))


@pytest.fixture(scope="module")
def evaluation(model_fn):
  return reconstruction.build_evaluation_process(
      model_fn, reconstruction.ReconConfig(reconstruction_steps=2))


@pytest.fixture(autouse=True)
def native_context_after_test():
  yield
  tff_runtime.install()


def _metrics_rows(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


@pytest.mark.parametrize("kind", privacy.KINDS)
def test_each_kind_runs_a_fed_recon_round_with_dp_epsilon(task, model_fn, evaluation, kind,
                                                          tmp_path):
  spec = _spec(kind)
  privacy.set_simulation_context(spec)
  config = reconstruction.ReconConfig(reconstruction_steps=2,
                                      uniform_weighting=not spec.weighted)
  training = reconstruction.build_training_process(model_fn, config,
                                                   privacy.build_aggregator(spec))
  initial = initialization.seeded_initial_state(training, model_fn, 0)
  run = FederatedRun(
      process=training,
      initial_state_fn=lambda: initial,
      sampler=sampling.ClientSampler(task.train.client_ids, CLIENTS_PER_ROUND, "uniform", 0),
      client_data_fn=lambda ids, round_num: task.train.datasets(ids),
      evaluate_fn=lambda state, round_num: reconstruction.evaluate(
          evaluation, training.get_model_weights(state), task.eval_seen),
      dp=common.dp_aggregator(_privacy_settings(dp_delta=1e-5 if spec.is_dp else None),
                              spec, len(task.train))[1])
  folder = managers.open_experiment(str(tmp_path), "run", {"kind": kind})
  try:
    experiment = folder.create_managers()
    final = loop.run_training(run, loop.LoopConfig(total_rounds=1, rounds_per_eval=0),
                              experiment)
  finally:
    folder.close()
  rows = _metrics_rows(experiment.metrics_csv)
  assert [row["round_num"] for row in rows] == ["1"]
  metrics = rows[0]
  assert float(metrics["clients"]) == CLIENTS_PER_ROUND
  assert float(metrics["train/examples"]) == sum(
      task.train.part_sizes(c)[1] for c in run.sampler(1))
  assert np.isfinite(float(metrics["eval/rmse"])) and float(metrics["eval/rmse"]) > 0
  before = training.get_model_weights(initial).trainable
  after = training.get_model_weights(final).trainable
  assert any(not np.allclose(a, b) for a, b in zip(before, after))
  if spec.is_dp:
    q = CLIENTS_PER_ROUND / task.num_train_clients
    assert float(metrics["privacy/epsilon"]) == pytest.approx(privacy.epsilon(0.5, q, 1, 1e-5))
    assert float(metrics["privacy/delta"]) == 1e-5
  else:
    assert "privacy/epsilon" not in metrics


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

  fed_avg = algorithms.build_fed_avg(
      model_fn, spec.client_weighting, OptimizerSpec("sgd", 0.1, role="client"),
      OptimizerSpec("sgd", 1.0, role="server"), privacy.build_aggregator(spec))
  state = fed_avg.initialize()
  before = fed_avg.get_model_weights(state).trainable
  after = fed_avg.get_model_weights(fed_avg.next(state, data).state).trainable
  assert any(not np.allclose(a, b) for a, b in zip(before, after))


# ---- --target_epsilon -------------------------------------------------------

def _direct_epsilon(noise, sampling_probability, rounds, delta):
  """ε of `rounds` Poisson-sampled Gaussian releases, from dp_accounting itself."""
  accountant = dp_accounting.rdp.RdpAccountant()
  accountant.compose(dp_accounting.PoissonSampledDpEvent(
      sampling_probability, dp_accounting.GaussianDpEvent(noise)), rounds)
  return accountant.get_epsilon(delta)


def test_target_epsilon_excludes_noise_multiplier_and_needs_a_dp_aggregator():
  dp = dict(aggregator="dp_fixed", clip_norm=1.0, client_weighting="uniform")
  with pytest.raises(ConfigError, match=r"^noise_multiplier=1\.0 and target_epsilon=5\.0 "
                     r"both given") as error:
    common.aggregator_spec(_privacy_settings(noise_multiplier=1.0, target_epsilon=5.0, **dp))
  assert error.value.fields == ("noise_multiplier", "target_epsilon")
  with pytest.raises(ConfigError, match=r"^target_epsilon=-1\.0: must be > 0\.$"):
    common.aggregator_spec(_privacy_settings(target_epsilon=-1.0, **dp))
  with pytest.raises(ConfigError, match=r"^target_epsilon=5\.0 given but kind='none'") as error:
    common.aggregator_spec(_privacy_settings(target_epsilon=5.0))
  assert error.value.fields == ("target_epsilon", "kind")
  uncalibrated = common.aggregator_spec(_privacy_settings(target_epsilon=5.0, **dp))
  with pytest.raises(ConfigError, match="not yet calibrated"):
    privacy.build_aggregator(uncalibrated)


@pytest.mark.parametrize("clients_per_round, population, rounds", [(25, 500, 40), (0, 300, 6)])
def test_target_epsilon_calibrates_the_smallest_noise_that_meets_it(
    clients_per_round, population, rounds, capsys):
  settings = _privacy_settings(aggregator="dp_fixed", target_epsilon=2.0, clip_norm=0.5,
                               client_weighting="uniform", clients_per_round=clients_per_round,
                               dp_delta=1e-5, total_rounds=rounds)
  spec, dp = common.dp_aggregator(settings, common.aggregator_spec(settings), population)
  # clients_per_round=0: every client in every round.
  sampling = (clients_per_round or population) / population
  assert spec.clients_per_round == (clients_per_round or population)
  assert spec.noise_multiplier == dp.noise_multiplier and dp.target_epsilon == 2.0
  assert dp.delta == 1e-5
  assert _direct_epsilon(dp.noise_multiplier, sampling, rounds, 1e-5) <= 2.0 + 1e-9
  assert _direct_epsilon(0.98 * dp.noise_multiplier, sampling, rounds, 1e-5) > 2.0
  assert f"noise multiplier {dp.noise_multiplier:.4f}" in capsys.readouterr().out
  assert isinstance(privacy.build_aggregator(spec), tff.aggregators.UnweightedAggregationFactory)
