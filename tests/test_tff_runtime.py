"""tff_runtime: computations run on our worker, which dies with its parent and exits quietly."""

import os
import select
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import psutil
import pytest
import tensorflow_federated as tff

from tff_movierec import tff_runtime

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SUBPROCESS_TIMEOUT_S = 120

# Run in a child Python: install, run a tiny computation, print the worker's pid.
_CHILD_PRELUDE = textwrap.dedent("""
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import numpy as np
    import psutil
    import tensorflow_federated as tff
    from tff_movierec import tff_runtime

    tff_runtime.install()

    @tff.federated_computation(tff.FederatedType(np.int32, tff.CLIENTS))
    def total(values):
      return tff.federated_sum(values)

    def print_worker_pid():
      workers = [p for p in psutil.Process().children(recursive=True)
                 if p.name() == "worker_binary"]
      assert len(workers) == 1, workers
      print(workers[0].pid, flush=True)

    assert total([1, 2, 3]) == 6
    print_worker_pid()
""")
# Replacing a worker that ran computations is what made TFF's ServiceManager.__del__
# print "Exception ignored" (its pid had been reaped already).
_CHILD_SWITCHES = textwrap.dedent("""
    for secure in (True, False):
      tff_runtime.install(secure_intrinsics=secure)
      assert total([4, 5]) == 9
      print_worker_pid()
""")


@tff.federated_computation(tff.FederatedType(np.int32, tff.CLIENTS))
def _sum(values):
  return tff.federated_sum(values)


@tff.federated_computation(tff.FederatedType(np.int32, tff.CLIENTS))
def _secure_sum(values):
  return tff.federated_secure_sum_bitwidth(values, 8)


def _worker_children():
  return [p for p in psutil.Process().children(recursive=True)
          if _name(p) == "worker_binary"]


def _name(process):
  try:
    return process.name()
  except psutil.NoSuchProcess:
    return ""


def _python_child(code, tmp_dir, stderr=subprocess.PIPE):
  """Runs `code` in a new Python; worker logs go to `tmp_dir` (TMPDIR)."""
  env = dict(os.environ, TMPDIR=str(tmp_dir), PYTHONPATH=os.pathsep.join(
      [_REPO] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
  return subprocess.Popen([sys.executable, "-c", code], cwd=_REPO, env=env,
                          stdout=subprocess.PIPE, stderr=stderr, text=True)


def _read_line(pipe, timeout):
  """One line from `pipe`, or what arrived before `timeout` s / end of file."""
  deadline = time.monotonic() + timeout
  data = b""
  while not data.endswith(b"\n"):
    remaining = deadline - time.monotonic()
    if remaining <= 0 or not select.select([pipe], [], [], remaining)[0]:
      break
    chunk = os.read(pipe.fileno(), 1)
    if not chunk:
      break
    data += chunk
  return data.decode()


def _gone(pid, timeout):
  """True once `pid` has exited (a zombie counts: it was killed, not yet reaped)."""
  deadline = time.monotonic() + timeout
  while True:
    try:
      if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
        return True
    except psutil.NoSuchProcess:
      return True
    if time.monotonic() >= deadline:
      return False
    time.sleep(0.1)


def _kill_worker_quietly(pid):
  """SIGKILLs `pid` if it is still a worker_binary (not a reused pid)."""
  try:
    process = psutil.Process(pid)
    if process.name() == "worker_binary":
      process.kill()
  except psutil.NoSuchProcess:
    pass


@pytest.fixture(autouse=True)
def plain_runtime_after_test():
  yield
  tff_runtime.install()


def test_federated_sum_after_install():
  tff_runtime.install()
  assert _sum([1, 2, 3, 4]) == 10
  assert len(_worker_children()) == 1


def test_secure_intrinsics_then_plain_install():
  tff_runtime.install(secure_intrinsics=True)
  assert _secure_sum([1, 2, 3, 4]) == 10
  tff_runtime.install()
  assert _sum([5, 6]) == 11
  assert len(_worker_children()) == 1


def test_stop_is_idempotent_and_computations_then_fail_fast():
  tff_runtime.install()
  worker = _worker_children()[0]
  tff_runtime.stop()
  tff_runtime.stop()
  assert not worker.is_running()
  with pytest.raises(RuntimeError, match="install"):
    _sum([1])


def test_a_dead_worker_raises_worker_died_and_restart_keeps_the_install_settings():
  tff_runtime.install(secure_intrinsics=True)
  worker = _worker_children()[0]
  worker.kill()
  assert _gone(worker.pid, timeout=10)
  with pytest.raises(tff_runtime.WorkerDiedError, match=rf"pid {worker.pid}.* died.*restart"):
    _secure_sum([1, 2])
  tff_runtime.restart()
  assert _secure_sum([1, 2]) == 3  # still compiled for secure intrinsics
  assert [w.pid for w in _worker_children()] != [worker.pid]


def test_worker_dies_with_killed_parent(tmp_path):
  with open(tmp_path / "stderr.txt", "w+") as stderr:
    child = _python_child(_CHILD_PRELUDE + "import time\ntime.sleep(600)\n", tmp_path,
                          stderr=stderr)
    worker_pid = None
    try:
      line = _read_line(child.stdout, _SUBPROCESS_TIMEOUT_S)
      stderr.seek(0)
      assert line.strip().isdigit(), (line, stderr.read()[-3000:])
      worker_pid = int(line)
      assert not _gone(worker_pid, 0)
      child.send_signal(signal.SIGKILL)
      child.wait(timeout=_SUBPROCESS_TIMEOUT_S)
      assert _gone(worker_pid, 10), f"worker {worker_pid} outlived its parent"
    finally:
      child.kill()
      if worker_pid:
        _kill_worker_quietly(worker_pid)
      child.communicate(timeout=_SUBPROCESS_TIMEOUT_S)


def test_clean_exit_is_quiet_and_leaves_no_worker(tmp_path):
  child = _python_child(_CHILD_PRELUDE + _CHILD_SWITCHES, tmp_path)
  worker_pids = []
  try:
    out, err = child.communicate(timeout=_SUBPROCESS_TIMEOUT_S)
    assert child.returncode == 0, err[-3000:]
    worker_pids = [int(pid) for pid in out.split()]
    assert len(set(worker_pids)) == 3, out
    assert "Exception ignored" not in err, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    for pid in worker_pids:
      assert _gone(pid, 0), f"worker {pid} outlived a clean exit"
    assert not os.listdir(tmp_path), "worker logs are removed when workers stop"
  finally:
    child.kill()
    for pid in worker_pids:
      _kill_worker_quietly(pid)
    child.communicate(timeout=_SUBPROCESS_TIMEOUT_S)


def test_exit_without_install_is_quiet(tmp_path):
  child = _python_child("from tff_movierec import tff_runtime", tmp_path)
  try:
    _, err = child.communicate(timeout=_SUBPROCESS_TIMEOUT_S)
    assert child.returncode == 0, err[-3000:]
    assert "Exception ignored" not in err, err[-3000:]
  finally:
    child.kill()
    child.communicate(timeout=_SUBPROCESS_TIMEOUT_S)
