"""Smoke, resume and flag-validation tests of run_experiment.main on synthetic data."""

import csv
import os

from absl import flags
from absl.testing import flagsaver
import pandas as pd
import pytest
import tensorflow_federated as tff

import run_experiment
from tff_movierec import tff_runtime

FLAGS = flags.FLAGS
# Small but complete: 3 non-IID clients, the default algorithm (stateful_local),
# 2 rounds, 1-epoch baselines.
_SMOKE_FLAGS = dict(
    use_synthetic_data=True, num_clients=3, total_rounds=2, clients_per_round=3,
    rounds_per_eval=1, baseline_epochs=1, embedding_dim=4, hidden_units=["8"],
    client_batch_size=32)


@pytest.fixture(autouse=True)
def parsed_flags():
  if not FLAGS.is_parsed():
    FLAGS(["run_experiment"])
  yield


def _run(tmp_path, **overrides):
  values = dict(_SMOKE_FLAGS, root_output_dir=str(tmp_path), **overrides)
  with flagsaver.flagsaver(**values):
    run_experiment.main(["run_experiment"])
  return os.path.join(str(tmp_path), values.get("experiment_name") or "movielens_rating")


def _read_rounds(path):
  with open(os.path.join(path, "metrics.csv")) as f:
    return [int(row["round_num"]) for row in csv.DictReader(f)]


def test_main_two_rounds_writes_all_outputs(tmp_path, capfd):
  output = _run(tmp_path)
  assert _read_rounds(output) == [1, 2]
  per_client = pd.read_csv(os.path.join(output, "per_client.csv"))
  assert list(per_client.columns) == [
      "setting", "client", "mae", "mape", "r2", "mse", "rmse", "num_examples"]
  assert set(per_client["setting"]) == {"federated", "local_only", "centralized"}
  for _, table in per_client.groupby("setting"):
    clients = table[table["client"] != "all"]
    pooled = table[table["client"] == "all"].iloc[0]
    assert len(clients) == 3
    assert clients["num_examples"].sum() == pooled["num_examples"]
  assert (per_client["mae"] > 0).all() and (per_client["rmse"] >= per_client["mae"]).all()
  hparams = pd.read_csv(os.path.join(output, "hparams.csv"))
  assert hparams.loc[0, "algorithm"] == "stateful_local"
  assert os.listdir(os.path.join(output, "tensorboard"))
  assert "per_client.csv" in capfd.readouterr().out


def test_killed_run_resumes_at_next_round(tmp_path):
  output = _run(tmp_path, experiment_name="resume", total_rounds=1, baseline_epochs=0)
  assert _read_rounds(output) == [1]
  # Same experiment asked for 3 rounds: rounds 2 and 3 run, round 1 is not redone.
  output = _run(tmp_path, experiment_name="resume", total_rounds=3, baseline_epochs=0)
  assert _read_rounds(output) == [1, 2, 3]
  checkpoints = os.listdir(os.path.join(output, "checkpoints"))
  assert "program_state_3" in checkpoints


def test_fed_recon_runs_and_resumes(tmp_path):
  output = _run(tmp_path, experiment_name="recon", algorithm="fed_recon",
                total_rounds=1, baseline_epochs=0)
  assert _read_rounds(output) == [1]
  output = _run(tmp_path, experiment_name="recon", algorithm="fed_recon",
                total_rounds=2, baseline_epochs=0)
  assert _read_rounds(output) == [1, 2]
  per_client = pd.read_csv(os.path.join(output, "per_client.csv"))
  assert set(per_client["setting"]) == {"federated"} and len(per_client) == 4


@pytest.mark.parametrize("overrides, message", [
    (dict(algorithm="fedavg"), "--user_embedding=local with --algorithm=fedavg"),
    (dict(user_embedding="global"), "--user_embedding=global with --algorithm=stateful_local"),
    (dict(algorithm="stateful_local", partition="natural"),
     "--algorithm=stateful_local with --partition=natural"),
    (dict(aggregator="dp_fixed", noise_multiplier=1.0, clip_norm=0.1),
     "--client_weighting=uniform"),
    (dict(noise_multiplier=1.0), "--noise_multiplier given but --aggregator=none"),
    (dict(client_epochs=0), "--client_epochs=0"),
    (dict(hidden_units=["a"]), "--hidden_units=a"),
    (dict(server_optimizer="adam", server_beta_1=1.5), "--server_beta_1=1.5"),
])
def test_contradictory_flags_fail_before_training(tmp_path, capfd, overrides, message):
  with pytest.raises(SystemExit) as exit_info:
    _run(tmp_path, **overrides)
  assert exit_info.value.code == 2
  assert message in capfd.readouterr().err
  assert not os.path.exists(os.path.join(str(tmp_path), "movielens_rating"))


def test_recon_task_trains_with_dp_and_reports_epsilon(tmp_path, capfd):
  with flagsaver.flagsaver(task="movielens_recon", use_synthetic_data=True, total_rounds=2,
                           clients_per_round=20, rounds_per_eval=1, embedding_dim=4,
                           aggregator="dp_adaptive", noise_multiplier=1.0,
                           root_output_dir=str(tmp_path)):
    run_experiment.main(["run_experiment"])
  output = os.path.join(str(tmp_path), "movielens_recon")
  metrics = pd.read_csv(os.path.join(output, "metrics.csv"))
  assert list(metrics["round"]) == [1, 2]
  assert 0 < metrics["epsilon"][0] < metrics["epsilon"][1]
  assert metrics["eval/rmse"].notna().all()
  hparams = pd.read_csv(os.path.join(output, "hparams.csv"))
  # Recon defaults where not given; flags of other tasks left out.
  assert hparams.loc[0, "client_weighting"] == "uniform"
  assert hparams.loc[0, "server_learning_rate"] == 0.02
  assert "dropout" not in hparams.columns and "reconstruction_l2" in hparams.columns
  out = capfd.readouterr().out
  assert f"ε = {metrics['epsilon'][1]:.2f}" in out and "RMSE" in out


@pytest.mark.parametrize("overrides, message", [
    (dict(task="movielens_recon", dropout=0.1, client_epochs=2),
     "--dropout, --client_epochs do not apply to --task=movielens_recon."),
    (dict(reconstruction_l2=0.1), "--reconstruction_l2 does not apply to --task=movielens_rating."),
    (dict(task="movielens_recon", server_optimizer="sgd"), "needs --server_optimizer=adam"),
])
def test_flags_of_another_task_fail_before_training(tmp_path, capfd, overrides, message):
  with pytest.raises(SystemExit) as exit_info:
    with flagsaver.flagsaver(root_output_dir=str(tmp_path), **overrides):
      run_experiment.main(["run_experiment"])
  assert exit_info.value.code == 2
  assert message in capfd.readouterr().err
  assert not os.listdir(str(tmp_path))


def test_secure_aggregation_runs_from_flags(tmp_path):
  try:
    output = _run(tmp_path, experiment_name="secure", aggregator="secure", total_rounds=1,
                  baseline_epochs=0)
  finally:
    tff_runtime.switch_context(tff.backends.native.set_sync_local_cpp_execution_context)
  assert _read_rounds(output) == [1]
