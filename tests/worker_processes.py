"""TFF workers for the tests: `python -m tff_movierec.worker` processes on
loopback ports (the suite runs in a private network namespace where the
machine allows it: tests/private_network.sh), stopped by their pid; and the
check that a run on them computed what the local run did."""

import os
import signal

import numpy as np
import pandas as pd
import portpicker

from tff_movierec import remote_workers, tff_runtime, worker

WORKER_START_TIMEOUT_S = 90
# metrics.csv columns measuring the machine (seconds, bytes), not the model.
MACHINE_COLUMNS = ("speed/", "traffic/")


def computed_columns(metrics: pd.DataFrame) -> pd.DataFrame:
  """`metrics` without the MACHINE_COLUMNS."""
  return metrics[[c for c in metrics.columns if not c.startswith(MACHINE_COLUMNS)]]


def assert_same_metrics(local: pd.DataFrame, remote: pd.DataFrame):
  """The two runs' metrics.csv agree: counts exactly, the rest to rtol 1e-5."""
  local, remote = computed_columns(local), computed_columns(remote)
  assert list(local.columns) == list(remote.columns)
  assert any(c.startswith("eval/") for c in local.columns) and "train/loss" in local.columns
  for column in local.columns:
    if column == "round_num" or column.rsplit("/", 1)[-1] in ("clients", "examples",
                                                               "num_examples"):
      np.testing.assert_array_equal(remote[column], local[column], err_msg=column)
    else:
      np.testing.assert_allclose(remote[column], local[column], rtol=1e-5, err_msg=column)


class RemoteWorker:
  """A `python -m tff_movierec.worker` process on a loopback port."""

  def __init__(self, log_dir, port=None):
    self.port = port or portpicker.pick_unused_port()
    self.address = f"127.0.0.1:{self.port}"
    self._log = open(os.path.join(log_dir, f"worker_{self.port}.log"), "ab")
    self.process = worker.spawn(self.port, self._log)
    try:
      worker.wait_until_serving(self.address, WORKER_START_TIMEOUT_S)
    except remote_workers.WorkerUnreachableError:
      self.stop()
      raise

  def stop(self, kill=False):
    """Stops the worker by its pid (kill: SIGKILL at once, as in a crash)."""
    if kill and self.process.poll() is None:
      os.kill(self.process.pid, signal.SIGKILL)
    tff_runtime.terminate(self.process)
    self._log.close()
