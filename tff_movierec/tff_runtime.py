"""Lifecycle of TFF's local C++ runtime.

TFF 0.87's default execution context starts a `worker_binary` subprocess that
inherits this process's stdout/stderr and is only stopped from a `__del__`,
which does not run reliably at interpreter exit. An orphaned worker keeps the
output pipe of a test runner or CI job open forever. `stop_workers_at_exit`
registers an atexit hook that stops every such child of this process.
"""

import atexit
import os
import signal
from typing import Callable

import psutil

_WORKER_NAME = "worker_binary"
_registered = False


def stop_workers() -> None:
  """Sends SIGINT to, then kills, this process's TFF worker_binary children."""
  children = [
      child for child in psutil.Process(os.getpid()).children(recursive=True)
      if _WORKER_NAME in " ".join(_safe_cmdline(child))
  ]
  for child in children:
    try:
      child.send_signal(signal.SIGINT)
    except psutil.NoSuchProcess:
      pass
  _, alive = psutil.wait_procs(children, timeout=5)
  for child in alive:
    child.kill()


def _safe_cmdline(process):
  try:
    return process.cmdline()
  except (psutil.NoSuchProcess, psutil.AccessDenied):
    return []


def switch_context(set_context: Callable[[], None]) -> None:
  """Stops this process's workers, then calls `set_context` (e.g.
  `tff.backends.native.set_sync_local_cpp_execution_context`).

  Replacing a context runs the old one's `__del__`, which waits without a
  timeout for its worker to exit after SIGINT; a worker that does not exit
  hangs the process (seen in CI). `stop_workers` kills it after 5 s instead.
  """
  stop_workers()
  set_context()


def stop_workers_at_exit() -> None:
  """Registers `stop_workers` to run at interpreter exit (once)."""
  global _registered
  if not _registered:
    atexit.register(stop_workers)
    _registered = True
