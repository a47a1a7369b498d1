"""How long a run over --workers takes to notice a worker that stops answering
without closing its connection (a host that vanishes, a frozen process).

Starts two `python -m tff_movierec.worker` processes on 127.0.0.1 ports,
runs `run_experiment.py --task=movielens_recon` on synthetic data over them
(one user per TFF client call, so both workers get clients every round),
freezes the second worker with SIGSTOP once `--rounds_before_freeze` rounds
are in metrics.csv, and measures the seconds until the run ends. A dead
worker closes its connections and is covered by --worker_timeout_s alone;
a frozen one keeps them open, and is noticed through the gRPC keepalive
pings of `remote_workers.CHANNEL_OPTIONS`. Every process is stopped by its
pid at the end (SIGCONT first). One JSON line per run:

  seconds_to_end   from SIGSTOP to the run's exit (None: still running
                   after --max_wait_s, then killed)
  exit_code        the run's exit code (1: the worker was named)
  error            the run's error line naming the worker

Run it in a private network namespace where the machine allows it:
  tests/private_network.sh .venv/bin/python bench/frozen_worker.py \
      --output=output/frozen_worker.jsonl
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

import portpicker

from jsonl_log import append_record  # bench/jsonl_log.py
from tff_movierec import tff_runtime, worker

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_TIMEOUT_S = 90


def _rounds_done(metrics_csv: str) -> int:
  if not os.path.exists(metrics_csv):
    return 0
  with open(metrics_csv) as f:
    return max(len(f.read().splitlines()) - 1, 0)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--output", required=True, help="JSON-lines file (appended).")
  parser.add_argument("--rounds_before_freeze", type=int, default=5)
  parser.add_argument("--worker_timeout_s", type=float, default=5.0)
  parser.add_argument("--max_wait_s", type=float, default=900.0)
  args = parser.parse_args()

  with tempfile.TemporaryDirectory() as folder:
    workers, logs = [], []
    run = None
    try:
      for _ in range(2):
        port = portpicker.pick_unused_port()
        logs.append(open(os.path.join(folder, f"worker_{port}.log"), "wb"))
        workers.append((f"127.0.0.1:{port}", worker.spawn(port, logs[-1])))
      for address, _ in workers:
        worker.wait_until_serving(address, START_TIMEOUT_S)
      command = [sys.executable, os.path.join(ROOT, "run_experiment.py"),
                 "--task=movielens_recon", "--use_synthetic_data",
                 f"--root_output_dir={folder}", "--total_rounds=100000", "--rounds_per_eval=0",
                 "--clients_per_round=10", "--users_per_client_call=1", "--embedding_dim=4",
                 f"--workers={','.join(address for address, _ in workers)}",
                 f"--worker_timeout_s={args.worker_timeout_s:g}"]
      stderr_path = os.path.join(folder, "run.err")
      with open(stderr_path, "w") as stderr:
        run = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
      metrics_csv = os.path.join(folder, "movielens_recon", "metrics.csv")
      deadline = time.monotonic() + args.max_wait_s
      while _rounds_done(metrics_csv) < args.rounds_before_freeze:
        if run.poll() is not None or time.monotonic() > deadline:
          raise RuntimeError(f"the run ended or stalled before the freeze: {stderr_path}")
        time.sleep(0.1)
      frozen_address, frozen = workers[1]
      frozen.send_signal(signal.SIGSTOP)  # the worker process execs worker_binary
      frozen_at = time.monotonic()
      frozen_after_rounds = _rounds_done(metrics_csv)
      try:
        run.wait(timeout=args.max_wait_s)
        seconds = round(time.monotonic() - frozen_at, 1)
      except subprocess.TimeoutExpired:
        seconds = None
      with open(stderr_path) as f:
        errors = [line.strip() for line in f if "TFF worker" in line]
      append_record({"bench": "frozen_worker", "frozen_worker": frozen_address,
                     "frozen_after_rounds": frozen_after_rounds,
                     "worker_timeout_s": args.worker_timeout_s, "seconds_to_end": seconds,
                     "exit_code": run.poll(), "error": errors[-1] if errors else None},
                    args.output)
    finally:
      if run is not None and run.poll() is None:
        run.kill()
        run.wait()
      for _, process in workers:
        if process.poll() is None:
          process.send_signal(signal.SIGCONT)
        tff_runtime.terminate(process)
      for log in logs:
        log.close()


if __name__ == "__main__":
  main()
