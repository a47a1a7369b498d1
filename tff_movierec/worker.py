"""Starts TFF's worker (`worker_binary` of the installed tensorflow-federated)
so that `run_experiment.py --workers=HOST:PORT,...` can use this machine.

  python -m tff_movierec.worker --port=8000 [--max_concurrent_computation_calls=N]
  tff-movierec-worker --port=8000                  (the same, as a console script)

This process becomes the worker (exec): same pid, so stopping that pid
(Ctrl-C, SIGTERM, SIGKILL) stops the worker, and its exit code is the worker's. It listens on every interface, with no TLS and
no login: anyone who can reach the port can run computations on it. Keep it
on a private network, or bind nothing public and reach it through an SSH
tunnel (README, "Running on several machines").
"""

import argparse
import os
import signal
import subprocess
import sys
from typing import List, Optional

from tff_movierec import remote_workers
from tff_movierec.tff_runtime import worker_binary_path, worker_command


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m tff_movierec.worker",
      description="Runs a TFF worker for run_experiment.py --workers.")
  parser.add_argument("--port", type=int, required=True,
                      help="TCP port to listen on (every interface; keep it private).")
  parser.add_argument("--max_concurrent_computation_calls", type=int, default=-1,
                      help="Concurrent computation calls the worker accepts "
                           "(nonpositive: no limit, TFF's default).")
  args = parser.parse_args(argv)
  if not 0 < args.port < 65536:
    parser.error(f"--port={args.port}: must be in 1..65535.")
  return args


def spawn(port: int, log=subprocess.DEVNULL) -> subprocess.Popen:
  """Starts `python -m tff_movierec.worker --port=port` as a child process
  (tests, benchmarks); its output goes to `log` (a file object)."""
  return subprocess.Popen([sys.executable, "-m", "tff_movierec.worker", f"--port={port}"],
                          stdin=subprocess.DEVNULL, stdout=log, stderr=log)


def wait_until_serving(address: str, timeout_s: float) -> None:
  """Returns once a worker accepts gRPC connections at host:port `address`;
  raises remote_workers.WorkerUnreachableError naming it after `timeout_s`.
  (Stop a spawned worker with `tff_runtime.terminate`.)"""
  connection = remote_workers.connect(address, remote_workers.Traffic())
  try:
    connection.wait_until_ready(timeout_s, "while it starts")
  finally:
    connection.channel.close()


def main(argv: Optional[List[str]] = None) -> None:
  """Replaces this process by the worker (never returns, unless the binary is missing)."""
  args = parse_args(argv)
  if not os.path.isfile(worker_binary_path()):
    sys.exit(f"error: no TFF worker binary at {worker_binary_path()}; is "
             "tensorflow-federated 0.87 installed?")
  print(f"TFF worker on port {args.port} (pid {os.getpid()}); Ctrl-C stops it.", flush=True)
  command = worker_command(args.port, args.max_concurrent_computation_calls)
  # A worker started with SIGINT ignored (e.g. `cmd &` in a script) would
  # keep ignoring it, and `tff_runtime.terminate` would wait for its timeout.
  signal.signal(signal.SIGINT, signal.SIG_DFL)
  os.execv(command[0], command)


if __name__ == "__main__":
  main()
