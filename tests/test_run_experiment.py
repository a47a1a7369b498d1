"""run_experiment.main on synthetic data: every federated task through the one
loop (outputs, resume, extension, determinism), honest flags, and the faults
the engine owns."""

import csv
import os
import re
import signal
import subprocess
import sys
import time

from absl import flags
from absl.testing import flagsaver
import dp_accounting
import pandas as pd
import psutil
import pytest
import tensorflow as tf

import run_experiment
from tasks import movielens_ablation, registry
from tff_movierec.errors import ConfigError
from tff_movierec.privacy import accounting
from tff_movierec.training import loop, managers

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Small settings of each federated task (2 rounds unless a test says otherwise).
SMOKE = {
    # The comparison models (local-only, centralized) only where a test checks them.
    "movielens_rating": dict(num_clients=3, clients_per_round=3, embedding_dim=4,
                             hidden_units=["8"], client_batch_size=32, baseline_epochs=0,
                             rounds_per_eval=1),
    "movielens_recon": dict(clients_per_round=10, embedding_dim=4, rounds_per_eval=1),
    "movielens_fedrecon": dict(clients_per_round=10, embedding_dim=4, rounds_per_eval=1),
    "movielens_retrieval": dict(num_clients=3, clients_per_round=3, embedding_dim=8,
                                client_batch_size=16, rounds_per_eval=1),
    "movielens_next_movie": dict(num_clients=3, clients_per_round=3, embedding_dim=4,
                                 hidden_units=["8"], client_batch_size=16, rounds_per_eval=1),
    "movielens_ease": dict(num_clients=3, rounds_per_eval=1),
}
FEDERATED = list(SMOKE)
# Measurements that differ between two runs of the same command: wall times,
# and gRPC bytes (a serialized graph's size varies a little).
TIMING = {"speed/round_seconds", "speed/examples_per_second", "speed/eval_seconds",
          "speed/elapsed_seconds", "traffic/bytes_sent", "traffic/bytes_received"}


@pytest.fixture(autouse=True)
def parsed_flags():
  if not FLAGS.is_parsed():
    FLAGS(["run_experiment"])
  yield


def _main(tmp_path, task, **overrides):
  values = dict(SMOKE.get(task, {}), task=task, use_synthetic_data=True,
                root_output_dir=str(tmp_path), **overrides)
  if task in FEDERATED:
    values.setdefault("total_rounds", 2)
  with flagsaver.flagsaver(**values):
    run_experiment.main(["run_experiment"])
  return os.path.join(str(tmp_path), values.get("experiment_name") or task)


def _error(tmp_path, task, capsys, **overrides):
  """Runs main expecting a clean error; returns (exit code, stderr)."""
  capsys.readouterr()
  with pytest.raises(SystemExit) as e:
    _main(tmp_path, task, **overrides)
  return e.value.code, capsys.readouterr().err


def _rows(output_dir):
  with open(os.path.join(output_dir, "metrics.csv")) as f:
    return list(csv.DictReader(f))


def _rounds(output_dir):
  return [int(row["round_num"]) for row in _rows(output_dir)]


@pytest.mark.parametrize("task", FEDERATED)
def test_task_trains_resumes_after_a_crash_and_extends(tmp_path, task, monkeypatch, capsys):
  output = _main(tmp_path, task)
  assert _rounds(output) == [1, 2]
  hparams = managers.read_hparams(os.path.join(output, "hparams.csv"))
  assert set(hparams) == set(registry.TASKS[task].all_reads)  # only what the task reads
  assert os.listdir(os.path.join(output, "tensorboard"))
  assert "program_state_2" in os.listdir(os.path.join(output, "checkpoints"))
  assert all(any(row[name] for name in row if name.startswith("train/"))
             for row in _rows(output))
  assert _rows(output)[-1]["eval/" + {"movielens_rating": "mae", "movielens_recon": "rmse",
                                      "movielens_fedrecon": "rmse",
                                      "movielens_retrieval": "ndcg@10",
                                      "movielens_next_movie": "hr@10",
                                      "movielens_ease": "ndcg@10"}[task]]
  summary = open(os.path.join(output, "summary.md")).read()
  assert "![Learning curves](learning_curves.png)" in summary
  assert _is_png(os.path.join(output, "learning_curves.png"))

  # Extend to 4 rounds, crashing inside round 4 (after round 3's checkpoint).
  real_round_metrics = loop.round_metrics
  calls = []

  def crash_in_second_round(metrics):
    calls.append(1)
    if len(calls) == 2:
      raise KeyboardInterrupt
    return real_round_metrics(metrics)

  monkeypatch.setattr(loop, "round_metrics", crash_in_second_round)
  with pytest.raises(KeyboardInterrupt):
    _main(tmp_path, task, total_rounds=4)
  monkeypatch.setattr(loop, "round_metrics", real_round_metrics)
  assert _rounds(output) == [1, 2, 3]
  capsys.readouterr()
  _main(tmp_path, task, total_rounds=4)  # the same flags again: resumes
  assert "Resuming after the checkpoint of round 3." in capsys.readouterr().out
  assert _rounds(output) == [1, 2, 3, 4]
  assert managers.read_hparams(os.path.join(output, "hparams.csv"))["total_rounds"] == "4"


def _is_png(path):
  with open(path, "rb") as f:
    return f.read(8) == b"\x89PNG\r\n\x1a\n"


def _events(folder):
  """{tag: [(step, value or text, plugin, description)]} of a TensorBoard run folder."""
  tags = {}
  for name in os.listdir(folder):
    for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, name)):
      for value in event.summary.value:
        tensor = tf.make_ndarray(value.tensor) if value.HasField("tensor") else None
        tags.setdefault(value.tag, []).append(
            (event.step, tensor, value.metadata.plugin_data.plugin_name,
             value.metadata.summary_description))
  return tags


def test_ease_with_dp_reports_the_epsilon_of_one_gaussian_release_per_round(tmp_path, capsys):
  output = _main(tmp_path, "movielens_ease", aggregator="dp_fixed", noise_multiplier=2.0,
                 max_user_history=10, dp_delta=1e-5)
  epsilons = [float(row["privacy/epsilon"]) for row in _rows(output)]
  assert epsilons == pytest.approx([accounting.epsilon(2.0, 1.0, r, 1e-5) for r in (1, 2)],
                                   rel=1e-5)
  assert "federated EASE" in capsys.readouterr().out.strip().splitlines()[-1]
  code, err = _error(tmp_path, "movielens_ease", capsys, aggregator="dp_fixed",
                     noise_multiplier=2.0, experiment_name="uncapped")
  assert code == 2 and "--max_user_history" in err, err
  code, err = _error(tmp_path, "movielens_ease", capsys, aggregator="dp_fixed",
                     noise_multiplier=2.0, max_user_history=10, dp_delta=2.0,
                     experiment_name="bad_delta")
  assert code == 2 and "--dp_delta=2.0: must be in (0, 1)." in err, err
  code, err = _error(tmp_path, "movielens_ease", capsys, aggregator="secure", dp_delta=1e-5,
                     experiment_name="delta_without_dp")
  assert code == 2 and "--dp_delta=1e-05 applies only to --aggregator='dp_fixed'" in err, err


def test_rating_run_writes_plots_summary_tensorboard_and_tidy_csvs(tmp_path, capsys):
  output = _main(tmp_path, "movielens_rating", baseline_epochs=1)
  out = capsys.readouterr().out
  lines = out.strip().splitlines()
  assert re.fullmatch(r"pooled MAE: federated \d\.\d{4} \| local-only \d\.\d{4} \| "
                      r"centralized \d\.\d{4}; federated better than local-only on "
                      r"\d/3 clients", lines[-1]), lines[-1]
  command = next(line for line in lines if line.startswith("TensorBoard:")).split()[1:]
  assert os.access(command[0], os.X_OK) and command[1:] == ["--logdir", str(tmp_path)]
  for name in ("learning_curves.png", "per_client.png"):
    assert _is_png(os.path.join(output, name))
  summary = open(os.path.join(output, "summary.md")).read()
  assert "![Per-client MAE](per_client.png)" in summary and "## Per-client table" in summary

  per_client = pd.read_csv(os.path.join(output, "per_client.csv"), dtype={"client": str})
  federated = per_client[per_client["setting"] == "federated"].set_index("client")
  local = per_client[per_client["setting"] == "local_only"].set_index("client")
  assert federated.loc["all", "train_examples"] == federated.loc[["0", "1", "2"],
                                                                 "train_examples"].sum()
  assert (federated["mae_minus_local_only"] - (federated["mae"] - local["mae"])).abs().max() < 2e-4

  rows = _rows(output)
  assert rows[0]["clients"] == "3" and rows[0]["train/examples"].isdigit()
  for name in ("train/loss", "speed/round_seconds", "eval/mae"):
    digits = re.sub(r"[^0-9]", "", rows[-1][name].split("e")[0]).lstrip("0")
    assert len(digits) <= 6, (name, rows[-1][name])

  board = os.path.join(output, "tensorboard")
  assert sorted(os.listdir(board)) == ["centralized", "federated", "local-only"]
  tags = _events(os.path.join(board, "federated"))
  assert {"train/loss", "eval/mae", "speed/round_seconds", "speed/examples_per_second"} <= set(tags)
  assert not {"clients", "train/examples", "eval/num_examples"} & set(tags)
  assert "Wall time" in tags["speed/round_seconds"][0][3]
  assert [step for step, *_ in tags["train/loss"]] == [1, 2]
  assert any(plugin == "hparams" for values in tags.values() for *_, plugin, _ in values)
  text = tags["report/Per-client table"][0]
  assert text[2] == "text" and b"| federated | all |" in text[1].item()
  comparison = _events(os.path.join(board, "local-only"))["eval/mae"]
  assert [step for step, *_ in comparison] == [1, 2]
  assert float(comparison[0][1]) == pytest.approx(float(local.loc["all", "mae"]), abs=1e-4)


def test_ablation_variants_leave_out_each_feature_group_then_all():
  groups = ["no movie ID", "no demographics", "no genres", "no user mean", "no movie mean",
            "no popularity"]
  named = dict(movielens_ablation.variants({"user_embedding": "local"}))
  assert list(named) == ["all features", "no user ID", *groups, "no features"]
  assert named["all features"] == {} and named["no user ID"]["user_embedding"] == "none"
  assert named["no genres"] == {"drop_features": ["genres"]}
  assert named["no features"]["drop_features"] == list(run_experiment.rating_ffnn.FEATURE_GROUPS)
  without_user_id = [name for name, _ in movielens_ablation.variants({"user_embedding": "none"})]
  assert without_user_id == ["all features", *groups, "no features"]


def test_ablation_trains_every_variant_federated_and_centralized(tmp_path, capsys,
                                                                 monkeypatch):
  # Three of the variants above (each costs a federated and a centralized run).
  every_variant = movielens_ablation.variants
  trained = ["all features", "no demographics", "no features"]
  monkeypatch.setattr(movielens_ablation, "variants",
                      lambda hp: [v for v in every_variant(hp) if v[0] in trained])
  output = _main(tmp_path, "movielens_ablation", **dict(SMOKE["movielens_rating"],
                                                        baseline_epochs=1), total_rounds=1)
  table = pd.read_csv(os.path.join(output, "ablation.csv"))
  assert list(table["variant"].unique()) == trained
  assert len(table) == 6 and set(table["setting"]) == {"federated", "centralized"}
  assert (table[table["variant"] == "all features"]["mae_change"] == 0).all()
  assert _is_png(os.path.join(output, "ablation.png"))
  assert "![Feature ablation](ablation.png)" in open(os.path.join(output, "summary.md")).read()
  none = managers.read_hparams(os.path.join(output, "no_features", "hparams.csv"))
  assert none["user_embedding"] == "none" and none["algorithm"] == "fedavg"
  assert none["drop_features"] == str(list(run_experiment.rating_ffnn.FEATURE_GROUPS))
  federated = table[table["setting"] == "federated"].set_index("variant")["mae"]
  for variant, mae in federated.items():
    rows = _rows(os.path.join(output, variant.replace(" ", "_").lower()))
    assert float(rows[-1]["eval/mae"]) == pytest.approx(mae, abs=1e-4)
  assert "[3/3] no features: federated MAE" in capsys.readouterr().out


@pytest.mark.parametrize("task", ["movielens_rating", "movielens_retrieval"])
def test_same_command_same_metrics(tmp_path, task):
  first = _rows(_main(tmp_path, task, experiment_name="a"))
  second = _rows(_main(tmp_path, task, experiment_name="b"))
  strip = lambda rows: [{k: v for k, v in row.items() if k not in TIMING} for row in rows]
  assert strip(first) == strip(second)
  other_seed = _rows(_main(tmp_path, task, experiment_name="c", seed=1))
  assert strip(other_seed) != strip(first)


def test_retrieval_with_dp_clips_noises_and_reports_epsilon(tmp_path):
  common = dict(client_weighting="uniform", server_optimizer="sgd", server_learning_rate=1.0,
                total_rounds=3)
  # Updates clipped to a norm of 1e-9 leave the model where it started.
  output = _main(tmp_path, "movielens_retrieval", aggregator="dp_fixed",
                 noise_multiplier=1.0, clip_norm=1e-9, experiment_name="dp", **common)
  rows = _rows(output)
  epsilons = [float(row["privacy/epsilon"]) for row in rows]
  assert 0 < epsilons[0] < epsilons[1] < epsilons[2]
  assert float(rows[0]["privacy/delta"]) == pytest.approx(1 / 3 ** 1.1)
  assert len({row["eval/ndcg@10"] for row in rows}) == 1
  assert _is_png(os.path.join(output, "privacy.png"))
  assert "![Privacy spent](privacy.png)" in open(os.path.join(output, "summary.md")).read()
  plain_output = _main(tmp_path, "movielens_retrieval", experiment_name="plain", **common)
  plain = _rows(plain_output)
  assert len({row["eval/ndcg@10"] for row in plain}) > 1
  assert "privacy/epsilon" not in plain[0]
  assert not os.path.exists(os.path.join(plain_output, "privacy.png"))


def test_privacy_preset_with_target_epsilon_meets_it_and_records_the_noise(tmp_path, capsys):
  """--privacy=user_dp --target_epsilon: the calibrated noise is printed and in
  hparams.csv, metrics.csv's ε per round is dp_accounting's for that noise,
  the last round spends the target, and the rounds cannot be extended."""
  output = _main(tmp_path, "movielens_recon", privacy="user_dp", target_epsilon=3.0,
                 dp_delta=1e-4, total_rounds=3, clients_per_round=0)
  with open(os.path.join(output, "hparams.csv")) as f:
    hparams = next(csv.DictReader(f))
  noise = float(hparams["calibrated_noise_multiplier"])
  assert hparams["aggregator"] == "dp_fixed" and hparams["public_movie_features"] == "True"
  assert f"noise multiplier {noise:.4f}" in capsys.readouterr().out
  accountant = dp_accounting.rdp.RdpAccountant()
  direct = []
  for _ in range(3):  # every user in every round (clients_per_round=0)
    accountant.compose(dp_accounting.GaussianDpEvent(noise))
    direct.append(accountant.get_epsilon(1e-4))
  epsilons = [float(row["privacy/epsilon"]) for row in _rows(output)]
  assert epsilons == pytest.approx(direct, rel=1e-6)
  assert 2.9 < epsilons[-1] <= 3.0 + 1e-6
  code, err = _error(tmp_path, "movielens_recon", capsys, privacy="user_dp",
                     target_epsilon=3.0, dp_delta=1e-4, total_rounds=4, clients_per_round=0)
  assert code == 2 and "--total_rounds: 3 -> 4" in err, err
  code, err = _error(tmp_path, "movielens_recon", capsys, privacy="user_dp",
                     target_epsilon=3.0, noise_multiplier=1.0, experiment_name="both")
  assert code == 2 and "--noise_multiplier=1.0 and --target_epsilon=3.0 both given" in err
  code, err = _error(tmp_path, "movielens_recon", capsys, privacy="central_dp",
                     experiment_name="unknown")
  assert code == 2 and "--privacy=central_dp is not a preset of --task=movielens_recon" in err
  code, err = _error(tmp_path, "movielens_ease", capsys, privacy="user_dp",
                     experiment_name="no_presets")
  assert code == 2 and "--privacy is not read by --task=movielens_ease" in err


def test_ease_target_epsilon_is_one_release_calibrated(tmp_path):
  output = _main(tmp_path, "movielens_ease", aggregator="dp_fixed", target_epsilon=4.0,
                 max_user_history=10, dp_delta=1e-5, total_rounds=1)
  epsilons = [float(row["privacy/epsilon"]) for row in _rows(output)]
  assert 3.9 < epsilons[-1] <= 4.0 + 1e-6


@pytest.mark.parametrize("task,flag", [
    ("movielens_recon", "dropout=0.3"), ("movielens_retrieval", "baseline_epochs=1"),
    ("movielens_recon", "reconstruction_steps=5"), ("movielens_fedrecon", "user_l2=0.1"),
    ("eda", "client_learning_rate=0.1"), ("eda", "client_batch_size=64"),
    ("movielens_ablation", "drop_features=genres"),
    ("centralized", "total_rounds=3"), ("movielens_rating", "cold_start_fraction=0.1"),
    ("movielens_next_movie", "algorithm=fedavg")])
def test_a_flag_the_task_does_not_read_is_refused_before_anything_loads(
    tmp_path, capsys, task, flag):
  name, value = flag.split("=")
  parsed = FLAGS[name].parser.parse(value)
  code, err = _error(tmp_path, task, capsys, **{name: parsed})
  assert code == 2
  assert f"--{name} is not read by --task={task}" in err
  assert not os.path.exists(os.path.join(tmp_path, task))


def test_every_flag_a_task_reads_exists_and_every_task_reads_its_defaults():
  names = set(run_experiment._FLAG_NAMES)
  for task in registry.TASKS.values():
    assert set(task.all_reads) <= names, task.name
    assert set(task.defaults) <= set(task.all_reads)


@pytest.mark.parametrize("overrides,message", [
    (dict(test_fraction=1.5), "error: --test_fraction=1.5: must be in (0, 1)."),
    (dict(clients_per_round=5), "error: --clients_per_round=5 exceeds --num_clients=3"),
    (dict(client_learning_rate=-1.0), "error: --client_learning_rate=-1.0: must be > 0."),
    (dict(aggregator="dp_fixed", noise_multiplier=1.0, clip_norm=1.0),
     "--client_weighting='num_examples'"),
    (dict(partition="natural"), "--num_clients does not apply to --partition='natural'"),
    (dict(dp_delta=1e-5), "--dp_delta=1e-05 applies only to the DP aggregators (dp_fixed, dp_adaptive), not "
     "--aggregator='none'."),
    (dict(model="seed_ffnn", mf_dim=8, factor_l2=0.1),
     "error: --mf_dim, --factor_l2 with --model='seed_ffnn': only --model='fused_mf' has an "
     "MF path."),
    (dict(server_lr_decay_rounds=-1), "error: --server_lr_decay_rounds=-1: must be >= 0."),
    (dict(algorithm="fed_recon", factor_l2=0.1),
     "error: --factor_l2=0.1 with --algorithm='fed_recon': the penalty is applied only by "
     "stateful_local"),
])
def test_bad_values_fail_before_data_loads_naming_the_flags(tmp_path, capsys, overrides,
                                                           message):
  code, err = _error(tmp_path, "movielens_rating", capsys, **overrides)
  assert code == 2 and message in err, err
  assert not os.path.exists(os.path.join(tmp_path, "movielens_rating"))


def test_synthetic_data_with_a_data_dir_is_contradictory(tmp_path, capsys):
  code, err = _error(tmp_path, "movielens_rating", capsys, data_dir="/somewhere")
  assert code == 2 and "--data_dir with --use_synthetic_data" in err


def test_unwritable_root_output_dir_fails_before_data_loads(tmp_path, capsys):
  blocker = tmp_path / "file"
  blocker.write_text("")
  code, err = _error(blocker / "sub", "movielens_rating", capsys)
  assert code == 2 and f"--root_output_dir='{blocker}/sub'" in err, err


def test_a_second_run_in_the_same_folder_is_refused_and_loses_nothing(tmp_path, capsys):
  output = _main(tmp_path, "movielens_rating", total_rounds=1)
  before = open(os.path.join(output, "metrics.csv")).read()
  holder = managers.open_experiment(  # another run of the same experiment
      str(tmp_path), "movielens_rating",
      managers.read_hparams(os.path.join(output, "hparams.csv")))
  try:
    code, err = _error(tmp_path, "movielens_rating", capsys)
  finally:
    holder.close()
  assert code == 2 and "is in use by another run" in err
  assert open(os.path.join(output, "metrics.csv")).read() == before


def test_resuming_with_changed_flags_is_refused_naming_them(tmp_path, capsys):
  output = _main(tmp_path, "movielens_rating", total_rounds=1)
  before = open(os.path.join(output, "hparams.csv")).read()
  code, err = _error(tmp_path, "movielens_rating", capsys, client_learning_rate=0.1,
                     num_clients=2, clients_per_round=2)
  assert code == 2
  for change in ("--client_learning_rate: 0.001 -> 0.1", "--num_clients: 3 -> 2",
                 "--clients_per_round: 3 -> 2"):
    assert change in err
  assert open(os.path.join(output, "hparams.csv")).read() == before


@pytest.mark.parametrize("task,role,learning_rate", [
    ("movielens_rating", "client", 1e9), ("movielens_fedrecon", "client", 1e6),
    ("movielens_recon", "server", 1e6)])
def test_divergence_stops_the_run_naming_round_and_learning_rate(tmp_path, capsys, task, role,
                                                                 learning_rate):
  code, err = _error(tmp_path, task, capsys, total_rounds=3,
                     **{f"{role}_learning_rate": learning_rate})
  assert code == 1
  diverged = re.search(r"Training diverged in round (\d+): ", err)
  assert diverged and f"--{role}_learning_rate={learning_rate}" in err, err
  output = os.path.join(tmp_path, task)
  saved = [int(name.split("_")[-1]) for name in os.listdir(os.path.join(output, "checkpoints"))]
  assert all(version < int(diverged.group(1)) for version in saved)
  assert _rounds(output) == list(range(1, int(diverged.group(1))))


def test_flag_message_maps_fields_to_flags():
  error = ConfigError("batch_size=0: must be >= 1; kind='dp_fixed' needs uniform_weighting",
                      ("batch_size", "kind", "uniform_weighting"))
  assert run_experiment.flag_message(error) == (
      "--client_batch_size=0: must be >= 1; --aggregator='dp_fixed' needs --client_weighting")


def _experiment_process(tmp_path, *args):
  command = [sys.executable, os.path.join(ROOT, "run_experiment.py"), "--use_synthetic_data",
             f"--root_output_dir={tmp_path}", *args]
  return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def test_clean_errors_and_successful_runs_print_only_the_projects_lines(tmp_path):
  for args, code in ((["--test_fraction=1.5"], 2), (["--task=eda"], 0)):
    process = _experiment_process(tmp_path, *args)
    try:
      out, err = process.communicate(timeout=300)
    finally:
      process.kill()
    assert process.returncode == code, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    if code == 0:
      assert err == "" and out.startswith("MovieLens summary of "), (out, err)
    else:
      assert err.startswith("error: --test_fraction=1.5"), err


def test_verbosity_brings_back_the_libraries_lines(tmp_path):
  process = _experiment_process(tmp_path, "--task=eda", "--verbosity=0")
  try:
    _, err = process.communicate(timeout=300)
  finally:
    process.kill()
  assert process.returncode == 0 and err, "TensorFlow's start-up lines are shown"


def test_sigkill_leaves_no_worker_and_the_run_resumes_each_round_once(tmp_path):
  # movielens_recon: a round of its synthetic data takes well under a second.
  rounds = 30
  args = ["--task=movielens_recon", "--clients_per_round=10", "--embedding_dim=4",
          "--rounds_per_eval=0", f"--total_rounds={rounds}"]
  output = os.path.join(tmp_path, "movielens_recon")
  process = _experiment_process(tmp_path, *args)
  try:
    deadline = time.time() + 300
    while time.time() < deadline and not (
        os.path.exists(os.path.join(output, "metrics.csv")) and len(_rounds(output)) >= 2):
      assert process.poll() is None, process.communicate()[1]
      time.sleep(0.2)
    workers = psutil.Process(process.pid).children(recursive=True)
    assert workers, "the run has a TFF worker"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, "the worker outlived its killed parent"
  finally:
    process.kill()
  killed_at = _rounds(output)
  assert killed_at and killed_at[-1] < rounds
  process = _experiment_process(tmp_path, *args)
  try:
    _, err = process.communicate(timeout=300)
  finally:
    process.kill()
  assert process.returncode == 0, err
  assert _rounds(output) == list(range(1, rounds + 1))
