"""This project's TFF runtime: one local C++ `worker_binary` and the context
using it, or TFF's mergeable context over remote workers (`use_workers`).

Importing TFF 0.87 installs a default context whose hidden `ServiceManager`
starts a `worker_binary` child process on first use. This module starts
and stops that worker itself, for two reasons:

1. Orphans. TFF starts the worker with a plain `subprocess.Popen`. If the
   Python process is killed (`kill -9`, OOM killer, CI timeout), nothing stops
   the worker. It keeps running, holding a port, CPU and the output pipe of
   the test runner or CI job. Here the worker is started with Linux's
   `prctl(PR_SET_PDEATHSIG, SIGKILL)`, so the kernel kills it when its parent
   dies, however the parent dies. A small launcher (`python -I -S -c`) sets
   it and then execs the worker: a Popen `preexec_fn` would run Python code
   between fork and exec, which can deadlock a process with threads (gRPC's,
   TFF's event loops); the test suite once hung there, in `restart()`.
2. Noisy exits. TFF stops its worker only from `ServiceManager.__del__`, which
   runs during interpreter shutdown, if at all. Our earlier atexit hook killed
   the worker first. Then `__del__` called `os.kill` on a pid that was already
   reaped, and every clean exit printed "Exception ignored in: <function
   ...ServiceManager.__del__ ...>" to stderr. Now no `ServiceManager` ever
   starts a process. `stop` (registered with atexit) stops the worker this
   module started, with a timeout. Even an unused `ServiceManager` prints an
   error if its `__del__` runs during module teardown (`subprocess` is None
   by then). To avoid that, an atexit hook registered on import drops TFF's
   default context early.

If the worker dies (it has segfaulted in its gRPC server, rarely, in long
runs of thousands of client calls per round), the next call raises
`WorkerDiedError` instead of TFF's endless retries; `restart()` starts a
new worker with the settings of the last `install`.

`install()` starts the worker and sets TFF's default context to a
`tff.framework.SyncExecutionContext`. Its executors are
`tff.framework.RemoteExecutor`s talking gRPC to the worker on 127.0.0.1, and
it compiles with `tff.backends.native.desugar_and_transform_to_native`, as
TFF's own sync local C++ context does. `install(secure_intrinsics=True)`
first replaces secure-sum intrinsics by insecure bodies, as `tff.backends.test`
does. Secure aggregation is then simulated in the clear, which is fine for
research but not secure.

The worker writes its log (stderr) to a temporary file, so the console stays
quiet. Error messages name the file. `stop` deletes the file unless the worker
had already died on its own.

`use_workers(settings)` makes every later `install` set up TFF's mergeable
context over the remote workers of `settings` instead (see
`tff_movierec.remote_workers`); `use_workers(None)` goes back to the local
worker. Either way the bytes of every gRPC request and response are counted:
`traffic()` returns the totals.

Caveats:
- Linux only (prctl).
- PR_SET_PDEATHSIG fires when the *thread* that started the worker exits.
  Call `install` from the main thread, or from a thread that lives as long
  as the runtime is needed.
- TFF's context stack is thread-local. `install` sets the default context of
  the calling thread only, like TFF's `set_sync_local_cpp_execution_context`.
- The worker has no flag to choose its listening address. It listens on all
  interfaces (`[::]:PORT`); only the client side here uses 127.0.0.1.
"""

import atexit
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Optional, Tuple

import grpc
import portpicker
import tensorflow_federated as tff

from tff_movierec import remote_workers

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# argv: parent pid, worker command. Sets PR_SET_PDEATHSIG, exits if the parent
# died before it took effect, lets SIGINT stop the worker even if the parent
# ignores SIGINT (e.g. `cmd &` in a script), then becomes the worker (exec).
_LAUNCHER = f"""
import ctypes, os, signal, sys
if ctypes.CDLL(None, use_errno=True).prctl({_PR_SET_PDEATHSIG}, signal.SIGKILL, 0, 0, 0):
    sys.exit("prctl(PR_SET_PDEATHSIG) failed: errno %d" % ctypes.get_errno())
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execv(sys.argv[2], sys.argv[2:])
"""
_READY_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 5.0

_log = logging.getLogger(__name__)


@dataclasses.dataclass
class _Worker:
  process: subprocess.Popen
  port: int
  log_path: str
  channel: grpc.Channel
  stub: tff.framework.RemoteExecutorGrpcStub
  owner_pid: int  # the process that started the worker (differs after fork)
  context: Optional[tff.framework.SyncExecutionContext] = None

  def describe(self) -> str:
    code = self.process.poll()
    state = "running" if code is None else f"exit code {code}"
    return (f"TFF worker_binary (pid {self.process.pid}, port {self.port}, {state}; "
            f"log: {self.log_path})")


_worker: Optional[_Worker] = None
_lock = threading.RLock()
_atexit_registered = False
_install_settings: dict = {}
_traffic = remote_workers.Traffic()
_remote_settings: Optional[remote_workers.WorkerSettings] = None
_remote_connections: list = []
_CHANNEL_POLL_S = 0.3


class WorkerDiedError(RuntimeError):
  """The worker of the current context is no longer running."""


def traffic() -> Tuple[int, int]:
  """(bytes sent, bytes received) over gRPC to TFF workers by this process so far."""
  return _traffic.totals()


def use_workers(settings: Optional[remote_workers.WorkerSettings]) -> None:
  """Makes later `install` calls use the remote workers of `settings` (None:
  the local worker again). Nothing connects until `install`; a context over
  other workers is dropped (calls then fail until `install`)."""
  global _remote_settings, _remote_connections
  with _lock:
    if settings != _remote_settings:
      if _remote_connections:
        # After a readiness check gRPC polls a channel's connectivity for up
        # to 0.2 s more; closing the channel during that poll makes the
        # polling thread raise (a traceback on stderr).
        time.sleep(_CHANNEL_POLL_S)
      for connection in _remote_connections:
        connection.channel.close()
      _remote_connections = []
      if isinstance(tff.framework.get_context_stack().current,
                    tff.framework.MergeableCompExecutionContext):
        tff.framework.set_default_context(_StoppedContext())
    _remote_settings = settings


def run_on_each_worker(comp) -> Optional[list]:
  """[(host:port, result or exception)] of the argument-less `comp` run on
  every remote worker (`remote_workers.invoke_on_each`); None without remote
  workers. Call after `install`."""
  with _lock:
    if _remote_settings is None:
      return None
    if not _remote_connections:
      raise RuntimeError("run_on_each_worker: install() first.")
    return remote_workers.invoke_on_each(_remote_connections, _remote_settings.timeout_s, comp)


def worker_binary_path() -> str:
  """The worker binary shipped inside the installed tensorflow-federated."""
  return os.path.join(os.path.dirname(tff.__file__), "data", "worker_binary")


def worker_command(port: int, max_concurrent_computation_calls: int = -1) -> list:
  """The command line of a worker listening on `port` (every interface)."""
  return [worker_binary_path(), f"--port={port}",
          f"--max_concurrent_computation_calls={max_concurrent_computation_calls}"]


def install(secure_intrinsics: bool = False, *,
            max_concurrent_computation_calls: int = -1) -> None:
  """Starts a fresh worker and makes a context that uses it TFF's default.

  Any worker this module started before is stopped first, so at most one
  runs at a time. After `use_workers(settings)`, no local worker starts: the
  default context becomes TFF's mergeable context over those workers.

  Args:
    secure_intrinsics: compile `tff.federated_secure_sum*` intrinsics to plain
      sums, as `tff.backends.test` does, so that secure aggregators can be
      simulated. The native runtime cannot execute them otherwise.
    max_concurrent_computation_calls: passed to the worker; nonpositive means
      no limit (TFF's default).

  Raises:
    RuntimeError: the worker binary is missing, exits, or does not accept
      connections within 60 s. The message names the worker's log file.
    remote_workers.WorkerUnreachableError: a remote worker does not accept
      connections within its timeout.
  """
  global _worker, _atexit_registered, _install_settings
  with _lock:
    stop()
    _install_settings = dict(secure_intrinsics=secure_intrinsics,
                             max_concurrent_computation_calls=max_concurrent_computation_calls)
    if not _atexit_registered:
      atexit.register(stop)
      _atexit_registered = True
    if _remote_settings is not None:
      _install_remote(secure_intrinsics)
      return
    worker = _start_worker(max_concurrent_computation_calls)
    worker.context = _make_context(worker, secure_intrinsics)
    _worker = worker
    tff.framework.set_default_context(worker.context)


def _install_remote(secure_intrinsics: bool) -> None:
  global _remote_connections
  if not _remote_connections:
    _remote_connections = [remote_workers.connect(address, _traffic)
                           for address in _remote_settings.addresses]
  tff.framework.set_default_context(remote_workers.make_context(
      _remote_connections, _remote_settings, secure_intrinsics))


def restart() -> None:
  """Starts a new worker with the settings of the last `install` (the
  defaults if there was none)."""
  install(**_install_settings)


def stop() -> None:
  """Stops the worker `install` started: SIGINT, then SIGKILL after 5 s.

  Idempotent, and never raises if the worker is already gone. If this thread's
  TFF context still uses the worker, it is replaced by one that raises a
  RuntimeError asking for `install()`, so a call fails at once instead of
  retrying against a dead worker. In a forked child the worker belongs to
  the parent: this only forgets it there.
  """
  global _worker
  with _lock:
    worker, _worker = _worker, None
  if worker is None or worker.owner_pid != os.getpid():
    return
  try:
    if tff.framework.get_context_stack().current is worker.context:
      tff.framework.set_default_context(_StoppedContext())
  except Exception:  # pylint: disable=broad-except  # e.g. at interpreter exit
    pass
  worker.channel.close()
  died_on_its_own = worker.process.poll() is not None
  terminate(worker.process)
  if died_on_its_own and worker.process.returncode != 0:
    _log.warning("%s had stopped before stop() was called.", worker.describe())
  else:
    _remove_quietly(worker.log_path)


class _StoppedContext(tff.framework.SyncContext):
  """Default context after `stop`: every invocation raises."""

  def invoke(self, comp, arg):
    raise RuntimeError("The TFF runtime was stopped; call "
                       "tff_movierec.tff_runtime.install() before running a computation.")


def _drop_tff_import_time_context() -> None:
  """At exit, replaces whatever default context is left (e.g. the one importing
  TFF installs, when `install` was never called) while modules are still
  intact. Otherwise its `ServiceManager.__del__` runs during module teardown,
  finds `subprocess` set to None and prints "Exception ignored in: ...".
  """
  try:
    tff.framework.set_default_context(_StoppedContext())
  except Exception:  # pylint: disable=broad-except
    pass


# Registered at import, so it runs after `stop` (atexit runs last-in, first-out).
atexit.register(_drop_tff_import_time_context)


def _start_worker(max_concurrent_computation_calls: int) -> _Worker:
  """Starts `worker_binary` and waits until it accepts gRPC connections."""
  if not sys.platform.startswith("linux"):
    raise RuntimeError("tff_runtime needs Linux (prctl(PR_SET_PDEATHSIG)).")
  binary = worker_binary_path()
  if not os.path.isfile(binary):
    raise RuntimeError(f"No TFF worker binary at {binary}.")
  port = portpicker.pick_unused_port()
  fd, log_path = tempfile.mkstemp(prefix=f"tff_worker_{port}_", suffix=".log")
  with os.fdopen(fd, "wb") as log:
    process = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(os.getpid()),
         *worker_command(port, max_concurrent_computation_calls)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
        # Own process group: Ctrl-C in a terminal interrupts Python (which can
        # go on using the worker, or stop it at exit) without killing the worker.
        process_group=0)
  channel = remote_workers.counted_channel(f"127.0.0.1:{port}", _traffic)
  stub = tff.framework.RemoteExecutorGrpcStub(channel)
  worker = _Worker(process=process, port=port, log_path=log_path, channel=channel,
                   stub=stub, owner_pid=os.getpid())
  deadline = time.monotonic() + _READY_TIMEOUT_S
  while not stub.is_ready:
    exited = process.poll() is not None
    if exited or time.monotonic() > deadline:
      problem = "exited" if exited else f"did not accept connections within {_READY_TIMEOUT_S:g} s"
      channel.close()
      terminate(process)
      raise RuntimeError(f"{worker.describe()} {problem}.")
    time.sleep(0.02)
  return worker


def _make_context(worker: _Worker,
                  secure_intrinsics: bool) -> tff.framework.SyncExecutionContext:
  def stack_fn(cardinalities):
    # Called again after a retryable gRPC error. A dead worker would make TFF
    # retry forever, so fail here instead.
    if worker.process.poll() is not None:
      raise WorkerDiedError(f"{worker.describe()} died; see its log. "
                            "tff_movierec.tff_runtime.restart() starts a new one.")
    if worker is not _worker:
      raise RuntimeError(f"{worker.describe()} was stopped or replaced; "
                         "use the context installed by tff_movierec.tff_runtime.install().")
    if cardinalities.get(tff.CLIENTS) is None:
      cardinalities[tff.CLIENTS] = 0
    executor = tff.framework.RemoteExecutor(worker.stub)
    executor.set_cardinalities(cardinalities)
    return executor

  compile_fn = tff.backends.native.desugar_and_transform_to_native
  if secure_intrinsics:
    def compile_fn(comp):  # pylint: disable=function-redefined
      comp = tff.backends.test.replace_secure_intrinsics_with_bodies(comp)
      return tff.backends.native.desugar_and_transform_to_native(comp)

  return tff.framework.SyncExecutionContext(
      executor_fn=tff.framework.ResourceManagingExecutorFactory(stack_fn),
      compiler_fn=compile_fn,
      transform_args=tff.tensorflow.transform_args,
      transform_result=tff.tensorflow.transform_result)


def terminate(process: subprocess.Popen) -> None:
  """Stops a worker process by its pid: SIGINT, wait up to 5 s, then SIGKILL;
  tolerates an already-exited process."""
  if process.poll() is None:
    try:
      process.send_signal(signal.SIGINT)
      process.wait(timeout=_STOP_TIMEOUT_S)
    except (ProcessLookupError, subprocess.TimeoutExpired):
      pass
  if process.poll() is None:
    try:
      process.kill()
      process.wait(timeout=_STOP_TIMEOUT_S)
    except (ProcessLookupError, subprocess.TimeoutExpired):
      pass


def _remove_quietly(path: str) -> None:
  try:
    os.remove(path)
  except OSError:
    pass
