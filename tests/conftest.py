"""Shared test set-up: quiet TensorFlow, this project's TFF runtime, and two
TFF workers on loopback for the tests of --workers (`workers`).

`tff_runtime.install` starts the TFF worker as a child that dies with this
process and is stopped at exit (see tff_movierec/tff_runtime.py).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from tff_movierec import tff_runtime  # noqa: E402
from worker_processes import RemoteWorker  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def fresh_local_runtime():
  """Each test module starts on a fresh local TFF worker, whatever the module
  before it in this process (the order differs under pytest-xdist) left:
  a stopped runtime, a secure-sum context, remote workers."""
  tff_runtime.use_workers(None)
  tff_runtime.install()


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
  """Two TFF workers on 127.0.0.1 for a test module; afterwards the local
  runtime is back (a run with --workers leaves no context installed)."""
  log_dir = tmp_path_factory.mktemp("workers")
  started = []
  try:
    for _ in range(2):
      started.append(RemoteWorker(str(log_dir)))
    yield started
  finally:
    for started_worker in started:
      started_worker.stop()
    tff_runtime.use_workers(None)
    tff_runtime.install()
