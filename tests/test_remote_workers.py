"""--workers: TFF's mergeable context over two workers on 127.0.0.1 gives the
local context's metrics, also with the secure aggregator, whether the workers
read movielens_recon's ratings from the store the controller wrote or the
controller sends them (also when a worker cannot read the store); a worker that dies
ends the run within --worker_timeout_s with an error naming it, and the run
resumes from its checkpoint once the worker is back.

The workers are `python -m tff_movierec.worker` processes listening on
loopback ports (the suite runs in a private network namespace where the
machine allows it: tests/private_network.sh), stopped by their pid.

movielens_rating runs without dropout here. Its dropout masks are a hash of
the bits of each layer's input (models/hashed_dropout.py), so the last-bit
rounding differences of the aggregate (the subrounds' partial sums are added
in another order) give other masks from round 2 on: with dropout, the
round-2 training loss moved by 3.5 % (1.0607 vs 1.0995); without, the
metrics agree to rtol 1e-5.
"""

import os
import threading
import time

from absl import flags
from absl.testing import flagsaver
import pandas as pd
import portpicker
import psutil
import pytest

import run_experiment
from tasks import runner
from worker_processes import RemoteWorker, WORKER_START_TIMEOUT_S, assert_same_metrics
from tff_movierec import remote_workers, tff_runtime, worker
from tff_movierec.errors import ConfigError
from tff_movierec.reconstruction import rating_store, user_groups

FLAGS = flags.FLAGS
# Small runs of each task (2 rounds, evaluated after each).
_SETTINGS = {
    "movielens_rating": dict(num_clients=4, clients_per_round=4, embedding_dim=4,
                             hidden_units=["8"], client_batch_size=32, baseline_epochs=0,
                             rounds_per_eval=1, dropout=0.0),
    # Two users per TFF client call: five calls a round, split across the workers.
    "movielens_recon": dict(clients_per_round=10, embedding_dim=4, rounds_per_eval=1,
                            users_per_client_call=2),
}


@pytest.fixture(autouse=True)
def parsed_flags():
  if not FLAGS.is_parsed():
    FLAGS(["run_experiment"])
  yield


def _run(output_dir, task, **overrides):
  values = {**_SETTINGS[task], "task": task, "use_synthetic_data": True, "total_rounds": 2,
            "root_output_dir": str(output_dir), **overrides}
  with flagsaver.flagsaver(**values):
    run_experiment.main(["run_experiment"])
  return pd.read_csv(os.path.join(output_dir, task, "metrics.csv"))


def _cpu_seconds(started_worker: RemoteWorker) -> float:
  times = psutil.Process(started_worker.process.pid).cpu_times()
  return times.user + times.system


# The rating task's runs are the slowest: it runs once, with the secure
# aggregator (its secure sums compiled to plain sums on the workers).
@pytest.mark.parametrize("task,aggregator", [("movielens_rating", "secure"),
                                             ("movielens_recon", "none"),
                                             ("movielens_recon", "secure")])
def test_two_workers_give_the_local_metrics(workers, tmp_path, task, aggregator):
  # The secure aggregator of movielens_recon needs one user per client call.
  settings = dict(aggregator=aggregator)
  if task == "movielens_recon" and aggregator == "secure":
    settings["users_per_client_call"] = 1
  local = _run(tmp_path / "local", task, **settings)
  cpu_before = [_cpu_seconds(w) for w in workers]
  remote = _run(tmp_path / "remote", task, workers=[w.address for w in workers], **settings)
  assert all(_cpu_seconds(w) > before for w, before in zip(workers, cpu_before)), (
      "a worker did no work")
  assert_same_metrics(local, remote)
  assert (remote["traffic/bytes_sent"] > 0).all()
  assert (remote["traffic/bytes_received"] > 0).all()
  if task == "movielens_recon":  # The workers read the users' ratings (same machine).
    assert (tmp_path / "remote" / task / "worker_data" / rating_store.MANIFEST).exists()


def test_ratings_read_by_the_workers_or_sent_by_the_controller_agree(workers, tmp_path,
                                                                      capsys, monkeypatch):
  addresses = [w.address for w in workers]
  sent = _run(tmp_path / "sent", "movielens_recon", workers=addresses,
              client_data_source="controller")
  assert not (tmp_path / "sent" / "movielens_recon" / "worker_data").exists()
  store = tmp_path / "store"
  read = _run(tmp_path / "read", "movielens_recon", workers=addresses,
              client_data_source="workers", worker_data_dir=str(store))
  assert_same_metrics(sent, read)
  assert f"the workers read the users' ratings from {store}" in capsys.readouterr().out
  assert (store / rating_store.MANIFEST).exists()

  # A worker that cannot read the store: auto sends the ratings, workers ends the run.
  problem = f"{workers[0].address}: cannot read /elsewhere/manifest.json (not found)"
  monkeypatch.setattr(rating_store, "unreadable_by_workers", lambda store: [problem])
  fallback = _run(tmp_path / "auto", "movielens_recon", workers=addresses)
  assert_same_metrics(sent, fallback)
  assert f"the controller sends the users' ratings ({problem})" in capsys.readouterr().out
  with pytest.raises(SystemExit):
    _run(tmp_path / "required", "movielens_recon", workers=addresses,
         client_data_source="workers")
  error = capsys.readouterr().err
  assert problem in error and "--worker_data_dir" in error
  assert not (tmp_path / "required" / "movielens_recon" / "metrics.csv").exists()


def test_the_workers_say_when_they_cannot_read_the_store(workers, tmp_path):
  written = rating_store.write(str(tmp_path / "store"), {"train": user_groups.UserRatings(
      pd.DataFrame({"user": [0, 0, 1], "movie": [1, 2, 3], "rating": [4.0, 3.5, 5.0]}))})
  elsewhere = rating_store.RatingStore(str(tmp_path / "nowhere"), written.manifest, {})
  other = rating_store.RatingStore(written.folder, written.manifest + " ", {})
  tff_runtime.use_workers(remote_workers.WorkerSettings(tuple(w.address for w in workers)))
  try:
    tff_runtime.install()
    assert rating_store.unreadable_by_workers(written) == []
    missing = rating_store.unreadable_by_workers(elsewhere)
    changed = rating_store.unreadable_by_workers(other)
  finally:
    tff_runtime.use_workers(None)
    tff_runtime.install()
  path = os.path.join(elsewhere.folder, rating_store.MANIFEST)
  assert [p.split(": ")[0] for p in missing] == [w.address for w in workers]
  assert all(f"cannot read {path}" in problem for problem in missing)
  assert all("is not the file written here" in problem for problem in changed)


def test_more_subrounds_than_workers(workers, tmp_path):
  local = _run(tmp_path / "local", "movielens_recon")
  remote = _run(tmp_path / "remote", "movielens_recon", num_subrounds=3,
                workers=[w.address for w in workers])
  assert_same_metrics(local, remote)


def test_a_dead_worker_ends_the_run_naming_it_and_the_run_resumes(workers, tmp_path,
                                                                   capsys):
  doomed = RemoteWorker(str(tmp_path))
  addresses = [workers[0].address, doomed.address]
  metrics = tmp_path / "movielens_recon" / "metrics.csv"
  killed_at = []

  def rounds_done():  # rows of metrics.csv after its header (it may be mid-write)
    lines = metrics.read_text().splitlines() if metrics.exists() else []
    return max(len(lines) - 1, 0)

  def kill_after_first_round():
    deadline = time.monotonic() + WORKER_START_TIMEOUT_S
    while rounds_done() < 1 and time.monotonic() < deadline:
      time.sleep(0.05)
    doomed.stop(kill=True)
    killed_at.append(time.monotonic())

  killer = threading.Thread(target=kill_after_first_round, daemon=True)
  killer.start()
  timeout_s = 3.0
  try:
    with pytest.raises(SystemExit) as exit_info:
      _run(tmp_path, "movielens_recon", total_rounds=200, workers=addresses,
           worker_timeout_s=timeout_s)
  finally:
    killer.join(WORKER_START_TIMEOUT_S)
    doomed.stop()
  ended_after = time.monotonic() - killed_at[0]
  assert exit_info.value.code == 1
  error = capsys.readouterr().err
  assert f"TFF worker {doomed.address} could not be reached for 3 s" in error
  assert "run the same command again to resume" in error
  # The timeout, plus TFF's first retry wait and one round in flight.
  assert ended_after < timeout_s + 15, ended_after
  done = rounds_done()
  assert 1 <= done < 200

  back = RemoteWorker(str(tmp_path), port=doomed.port)
  try:
    resumed = _run(tmp_path, "movielens_recon", total_rounds=done + 1, workers=addresses,
                   worker_timeout_s=timeout_s)
  finally:
    back.stop()
  assert resumed["round_num"].tolist() == list(range(1, done + 2))
  assert "Resuming after the checkpoint of round" in capsys.readouterr().out


def test_an_unreachable_worker_fails_before_training(tmp_path, capsys):
  nobody = f"127.0.0.1:{portpicker.pick_unused_port()}"
  started = time.monotonic()
  with pytest.raises(SystemExit):
    _run(tmp_path, "movielens_recon", workers=[nobody], worker_timeout_s=1)
  assert time.monotonic() - started < 30
  assert f"TFF worker {nobody} could not be reached for 1 s (when connecting)" in (
      capsys.readouterr().err)
  assert not (tmp_path / "movielens_recon" / "metrics.csv").exists()


@pytest.mark.parametrize("addresses, message", [
    ((), "at least one host:port"),
    (("localhost",), "'localhost' is not host:port"),
    (("127.0.0.1:0",), "is not host:port"),
    (("127.0.0.1:80", "127.0.0.1:80"), "listed twice"),
])
def test_worker_settings_refuse_bad_addresses(addresses, message):
  with pytest.raises(ConfigError, match=message) as error:
    remote_workers.WorkerSettings(addresses)
  assert error.value.fields == ("workers",)


def test_worker_settings_refuse_bad_numbers():
  with pytest.raises(ConfigError, match="num_subrounds=0"):
    remote_workers.WorkerSettings(("127.0.0.1:80",), num_subrounds=0)
  with pytest.raises(ConfigError, match="worker_timeout_s=0"):
    remote_workers.WorkerSettings(("127.0.0.1:80",), timeout_s=0)


@pytest.mark.parametrize("flag", [dict(num_subrounds=2), dict(worker_timeout_s=5.0),
                                  dict(client_data_source="controller"),
                                  dict(worker_data_dir="/tmp/shared")])
def test_worker_flags_need_workers(tmp_path, capsys, flag):
  with pytest.raises(SystemExit):
    _run(tmp_path, "movielens_recon", **flag)
  assert "without --workers" in capsys.readouterr().err


def test_tasks_that_send_their_clients_data_refuse_the_worker_data_flags(tmp_path, capsys):
  with pytest.raises(SystemExit):
    _run(tmp_path, "movielens_rating", workers=["127.0.0.1:8000"],
         worker_data_dir=str(tmp_path))
  assert "--worker_data_dir is not read by --task=movielens_rating" in capsys.readouterr().err


def test_standalone_tasks_refuse_workers(tmp_path, capsys):
  with flagsaver.flagsaver(task="eda", use_synthetic_data=True, root_output_dir=str(tmp_path),
                           workers=["127.0.0.1:8000"]):
    with pytest.raises(SystemExit):
      run_experiment.main(["run_experiment"])
  assert "--workers is not read by --task=eda" in capsys.readouterr().err


def test_worker_settings_come_from_the_hparams():
  hp = {"workers": ["127.0.0.1:1", "127.0.0.1:2"], "num_subrounds": 4,
        "worker_timeout_s": 7.0}
  assert runner.worker_settings(hp) == remote_workers.WorkerSettings(
      ("127.0.0.1:1", "127.0.0.1:2"), 4, 7.0)
  assert runner.worker_settings({**hp, "workers": []}) is None


def test_worker_cli_refuses_a_bad_port(capsys):
  with pytest.raises(SystemExit):
    worker.parse_args(["--port=70000"])
  assert "--port=70000: must be in 1..65535" in capsys.readouterr().err
