"""TFF workers for the tests: `python -m tff_movierec.worker` processes on
loopback ports (the suite runs in a private network namespace where the
machine allows it: tests/private_network.sh), stopped by their pid."""

import os
import signal

import portpicker

from tff_movierec import remote_workers, tff_runtime, worker

WORKER_START_TIMEOUT_S = 90


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
