"""Cost of movielens_recon rounds as the population grows, on one local TFF
worker and on two loopback workers (`--workers`).

For each population (users, from 6,040 up to ML-25M's 162,541) the ML-25M-
shape synthetic data (`tff_movierec.data.synthetic_scale`, the same laws of
user activity and movie popularity, scaled to that many users) is written
once, then each runtime trains `--warmup_rounds` + `--rounds` rounds of
`--clients_per_round` users drawn uniformly (each value of the list), through
the one training loop (`bench/engine.py`, no evaluation, the task's default
model: 64 factors with implicit feedback). Each (population, runtime,
clients per round) runs in a child process of its own, so that its peak
memory is its own. From the timed rounds:

  seconds_per_round       the loop's speed/round_seconds
  ms_per_client           the same per sampled user (flat = linear cost)
  bytes_sent_per_round    gRPC bytes the controller sent to its worker(s)
                          during process.next (traffic/bytes_sent); with
                          two workers, --client_data_source says whether
                          the users' ratings are among them (controller) or
                          read by the workers from a store (workers)
  bytes_received_per_round  and received from them
  controller_peak_rss_gb  peak resident memory of the controller process
                          (loading, splitting, partitioning, training)
  load_seconds            wall time before round 1 (data, model, tracing)

A round costs a part that grows with the model (the server state, sent to
the worker and back every round by the simulation, and the dense movie-side
gradient of each client call) plus a part per sampled user. With two values
of --clients_per_round, the summary prints the marginal cost of a user,
(seconds at the larger - at the smaller) / (difference in users): the
per-client cost, which must stay flat as the population grows.

The two workers are `python -m tff_movierec.worker` on 127.0.0.1 ports,
started for the run and stopped by their pid; on a 2-core machine they
share the cores with the controller, so this measures overheads, not a
speed-up.

Example (writes the data under --data_root, one JSON line per run):
  .venv/bin/python bench/scale.py --data_root=/tmp/scale_data \
      --users=6040,40000,162541 --output=output/scale.jsonl
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jsonl_log  # noqa: E402  (bench/jsonl_log.py)

RUNTIMES = ("local", "two_workers")
_WORKER_START_TIMEOUT_S = 120
_CHILD_TIMEOUT_S = 3 * 3600


def _parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_root", required=True,
                      help="folder for the generated data (one subfolder per population)")
  parser.add_argument("--users", default="6040,162541",
                      help="comma-separated populations (162541 = ML-25M's full shape)")
  parser.add_argument("--runtimes", default=",".join(RUNTIMES), help=f"from {RUNTIMES}")
  parser.add_argument("--clients_per_round", default="250,1000",
                      help="comma-separated users per round")
  parser.add_argument("--rounds", type=int, default=3, help="timed rounds")
  parser.add_argument("--warmup_rounds", type=int, default=1)
  parser.add_argument("--users_per_client_call", type=int, default=None,
                      help="users packed into one TFF client call (default: the task's, 64); "
                           "each call returns a dense movie-side gradient")
  parser.add_argument("--client_data_source", default="auto",
                      choices=("auto", "controller", "workers"),
                      help="two_workers: the task's --client_data_source (workers: they read "
                           "the users' ratings from a store the controller writes once under "
                           "the run's folder; controller: sent every round)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--output", default="output/scale.jsonl",
                      help="JSON-lines file to append to")
  parser.add_argument("--child", help=argparse.SUPPRESS)  # "users,runtime,clients"
  args = parser.parse_args()
  args.clients_per_round = [int(n) for n in args.clients_per_round.split(",")]
  args.users = [int(n) for n in args.users.split(",")]
  args.runtimes = args.runtimes.split(",")
  unknown = sorted(set(args.runtimes) - set(RUNTIMES))
  if unknown:
    parser.error(f"--runtimes: unknown {unknown}; choose from {RUNTIMES}.")
  return args


def _data_dir(args, users: int) -> str:
  """The ML-25M-shape data of `users` users (written once)."""
  from tff_movierec.data import synthetic_scale  # pylint: disable=import-outside-toplevel
  directory = os.path.join(args.data_root, f"users_{users}")
  if not os.path.isfile(os.path.join(directory, "ratings.csv")):
    shape = synthetic_scale.shape_for_users(users)
    print(f"writing {shape} to {directory}", flush=True)
    synthetic_scale.write_ml25m_shape(directory, seed=args.seed, **shape)
  return directory


class _Workers:
  """Two `python -m tff_movierec.worker` processes on 127.0.0.1 ports."""

  def __init__(self, count: int = 2):
    import portpicker  # pylint: disable=import-outside-toplevel
    from tff_movierec import worker  # pylint: disable=import-outside-toplevel
    ports = [portpicker.pick_unused_port() for _ in range(count)]
    self.processes = [worker.spawn(port) for port in ports]
    self.addresses = [f"127.0.0.1:{port}" for port in ports]
    for address in self.addresses:
      worker.wait_until_serving(address, _WORKER_START_TIMEOUT_S)

  def cpu_seconds(self) -> float:
    import psutil  # pylint: disable=import-outside-toplevel
    return sum(sum(psutil.Process(p.pid).cpu_times()[:2]) for p in self.processes)

  def stop(self) -> None:
    from tff_movierec import tff_runtime  # pylint: disable=import-outside-toplevel
    for process in self.processes:
      tff_runtime.terminate(process)


def _one_run(args, users: int, runtime: str, clients_per_round: int) -> dict:
  """Trains in this process; returns the record."""
  started = time.time()
  import engine  # pylint: disable=import-outside-toplevel  (bench/engine.py)
  import tensorflow_federated as tff  # pylint: disable=import-outside-toplevel
  data_dir = _data_dir(args, users)
  workers = _Workers() if runtime == "two_workers" else None
  settings = {"data_dir": data_dir, "dataset": "ml-25m", "client_sampling": "uniform",
              "clients_per_round": clients_per_round, "seed": args.seed,
              "total_rounds": args.warmup_rounds + args.rounds}
  if args.users_per_client_call:
    settings["users_per_client_call"] = args.users_per_client_call
  try:
    if workers is not None:
      settings["workers"] = workers.addresses
      settings["client_data_source"] = args.client_data_source
      worker_cpu = workers.cpu_seconds()
    with tempfile.TemporaryDirectory(prefix="scale_") as root_output_dir:
      settings["root_output_dir"] = root_output_dir
      _, _, experiment = engine.run_task("movielens_recon", settings, evaluate=False)
      rows = engine.metrics(experiment)
    if workers is not None:
      worker_cpu = workers.cpu_seconds() - worker_cpu
  finally:
    if workers is not None:
      workers.stop()
  timed = rows[rows["round_num"] > args.warmup_rounds]
  seconds = float(timed["speed/round_seconds"].mean())
  first_round_end = float(rows["speed/elapsed_seconds"].iloc[0])
  record = {
      "users": users, "runtime": runtime, "clients_per_round": clients_per_round,
      "users_per_client_call": args.users_per_client_call or "task default",
      "rounds": args.rounds, "warmup_rounds": args.warmup_rounds,
      "ratings": int(sum(1 for _ in open(os.path.join(data_dir, "ratings.csv"))) - 1),
      "seconds_per_round": round(seconds, 3),
      "ms_per_client": round(1000 * seconds / float(timed["clients"].mean()), 3),
      "bytes_sent_per_round": int(timed["traffic/bytes_sent"].mean()),
      "bytes_received_per_round": int(timed["traffic/bytes_received"].mean()),
      "controller_peak_rss_gb": round(
          resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
      "load_seconds": round(
          time.time() - started - float(rows["speed/elapsed_seconds"].iloc[-1]), 1),
      "first_round_seconds": round(first_round_end, 2),
      "cpus": os.cpu_count(), "tff": tff.__version__}
  if workers is not None:
    record["workers_cpu_seconds"] = round(worker_cpu, 1)
    record["client_data_source"] = args.client_data_source
  return record


def main():
  args = _parse_args()
  if args.child:
    users, runtime, clients = args.child.split(",")
    print("RECORD " + json.dumps(_one_run(args, int(users), runtime, int(clients))),
          flush=True)
    return
  os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
  records = []
  for users in args.users:
    _data_dir(args, users)  # generated once, outside the timed children
    for runtime in args.runtimes:
      for clients in args.clients_per_round:
        command = [sys.executable, os.path.abspath(__file__),
                   f"--child={users},{runtime},{clients}"] + [
                       a for a in sys.argv[1:] if not a.startswith("--output")]
        result = subprocess.run(command, stdout=subprocess.PIPE, text=True,
                                timeout=_CHILD_TIMEOUT_S, check=True)
        record = next(json.loads(line[len("RECORD "):])
                      for line in result.stdout.splitlines() if line.startswith("RECORD "))
        records.append(jsonl_log.append_record(record, args.output))
  for line in marginal_costs(records):
    print(line)


def marginal_costs(records: list) -> list:
  """Lines: per (users, runtime), ms per extra sampled user between the
  smallest and largest clients_per_round measured."""
  lines = []
  for key in sorted({(r["users"], r["runtime"]) for r in records}):
    runs = sorted((r for r in records if (r["users"], r["runtime"]) == key),
                  key=lambda r: r["clients_per_round"])
    if len(runs) < 2:
      continue
    small, large = runs[0], runs[-1]
    marginal = 1000 * (large["seconds_per_round"] - small["seconds_per_round"]) / (
        large["clients_per_round"] - small["clients_per_round"])
    lines.append(f"users {key[0]:>7,}  {key[1]:<11}  marginal {marginal:.3f} ms per client "
                 f"({small['clients_per_round']} -> {large['clients_per_round']} per round)")
  return lines


if __name__ == "__main__":
  main()
