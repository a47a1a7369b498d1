"""Per-client cost of one cross-device round on MovieLens-1M, both algorithms.

Runs, one after the other in one invocation, `movielens_recon` (exact user
solves, users packed into TFF client calls) and `movielens_fedrecon` (TFF's
FedRecon with SGD reconstruction, the previous code) through the one training
loop (`bench/engine.py`, no evaluation), each at its own defaults (its quality
settings) unless overridden, for `--warmup_rounds` + `--rounds` rounds of
users drawn uniformly at random; the warm-up rounds (tracing, worker
start-up) are left out. From metrics.csv and the process's `next`, over the
timed rounds:

  wall_ms_per_client_round  the loop's round_seconds / clients (users)
  cpu_ms_per_client_round   CPU seconds of this process plus the TFF worker
                            during `process.next` / clients
  examples_per_s            the loop's examples_per_second: train/examples
                            / round_seconds

Writes one JSON line per task (stamped with the load average and UTC time,
since the machine may be shared) to --output.

Example:
  .venv/bin/python bench/recon_speed.py --data_dir=/work/shared/data/ml-1m \
      --output=bench/results/recon_speed.jsonl

Smoke run on small synthetic data:
  .venv/bin/python bench/recon_speed.py --synthetic --rounds=1 --warmup_rounds=1 \
      --output=/tmp/recon_speed.jsonl
"""

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import psutil  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_federated as tff  # noqa: E402

import engine  # noqa: E402  (bench/engine.py)
from tasks import movielens_recon  # noqa: E402
import jsonl_log  # noqa: E402  (bench/jsonl_log.py)

TASKS = ("movielens_recon", "movielens_fedrecon")


def _cpu_seconds() -> float:
  me = psutil.Process()
  total = sum(me.cpu_times()[:2])
  for child in me.children(recursive=True):
    try:
      total += sum(child.cpu_times()[:2])
    except psutil.NoSuchProcess:
      pass
  return total


def _parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_dir", help="MovieLens-1M folder (default: the cache)")
  parser.add_argument("--synthetic", action="store_true", help="small generated data")
  parser.add_argument("--tasks", default=",".join(TASKS),
                      help=f"comma-separated, from {TASKS}")
  parser.add_argument("--clients_per_round", type=int, default=None,
                      help="default: each task's own (its quality setting)")
  parser.add_argument("--rounds", type=int, default=5, help="timed rounds")
  parser.add_argument("--warmup_rounds", type=int, default=2)
  parser.add_argument("--embedding_dim", type=int, default=None,
                      help="default: each task's own")
  parser.add_argument("--users_per_client_call", type=int, default=None,
                      help="movielens_recon: users per TFF client call (default: the "
                           "task's; 1 is what a DP aggregator gets)")
  parser.add_argument("--output", default="output/recon_speed.jsonl",
                      help="JSON-lines file to append to")
  args = parser.parse_args()
  if args.synthetic and args.data_dir:
    parser.error("--data_dir with --synthetic: choose the real data or the synthetic data.")
  args.tasks = args.tasks.split(",")
  unknown = sorted(set(args.tasks) - set(TASKS))
  if unknown:
    parser.error(f"--tasks: unknown {unknown}; choose from {TASKS}.")
  return args


def _measure(task: str, args) -> dict:
  settings = {"use_synthetic_data": args.synthetic, "client_sampling": "uniform",
              "total_rounds": args.warmup_rounds + args.rounds}
  names = ("data_dir", "clients_per_round", "embedding_dim") + (
      ("users_per_client_call",) if task == "movielens_recon" else ())
  for name in names:
    if getattr(args, name):
      settings[name] = getattr(args, name)
  with tempfile.TemporaryDirectory(prefix="recon_speed_") as root_output_dir:
    settings["root_output_dir"] = root_output_dir
    _, run, experiment = engine.run_task(task, settings, evaluate=False,
                                         measure=_cpu_seconds)
    rows = engine.metrics(experiment)
  hp = engine.hparams(task, settings)
  timed = rows["round_num"] > args.warmup_rounds
  cpu = sum(c for c, is_timed in zip(run.process.per_round, timed) if is_timed)
  clients = rows.loc[timed, "clients"].sum()
  seconds = rows.loc[timed, "speed/round_seconds"].sum()
  record = {
      "task": task, "clients_per_round": hp["clients_per_round"],
      "rounds": args.rounds, "warmup_rounds": args.warmup_rounds,
      "embedding_dim": hp["embedding_dim"],
      "wall_ms_per_client_round": round(1000 * seconds / clients, 2),
      "cpu_ms_per_client_round": round(1000 * cpu / clients, 2),
      "examples_per_s": round(rows.loc[timed, "train/examples"].sum() / seconds),
      "cpus": os.cpu_count(), "tf": tf.__version__, "tff": tff.__version__}
  if task == "movielens_fedrecon":
    record["reconstruction_steps"] = hp["reconstruction_steps"]
  else:
    record["users_per_client_call"] = movielens_recon.configure(hp).users_per_client_call
  return record


def main():
  args = _parse_args()
  os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
  for task in args.tasks:
    jsonl_log.append_record(_measure(task, args), args.output)


if __name__ == "__main__":
  main()
