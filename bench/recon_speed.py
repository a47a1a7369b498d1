"""Per-client cost of one cross-device FedRecon round on MovieLens-1M.

Runs the `movielens_recon` task (in-memory two-batch client datasets,
`--reconstruction_steps` full-batch reconstruction steps) through the one
training loop (`bench/engine.py`, no evaluation) for `--warmup_rounds` +
`--rounds` rounds of `--clients_per_round` users drawn uniformly at random;
the warm-up rounds (tracing, worker start-up) are left out. From metrics.csv
and the process's `next`, over the timed rounds:

  wall_ms_per_client_round  the loop's round_seconds / clients
  cpu_ms_per_client_round   CPU seconds of this process plus the TFF worker
                            during `process.next` / clients
  examples_per_s            the loop's examples_per_second: train/examples
                            (ratings scored in the post-reconstruction steps,
                            counted once per step) / round_seconds

Other settings take the task's defaults. Writes one JSON line (stamped with
the load average and UTC time, since the machine is shared) to --output.

Example:
  .venv/bin/python bench/recon_speed.py --data_dir=/work/shared/data/ml-1m \
      --rounds=5 --warmup_rounds=1

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
import jsonl_log  # noqa: E402  (bench/jsonl_log.py)

TASK = "movielens_recon"


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
  parser.add_argument("--clients_per_round", type=int, default=None,
                      help="default 100 (with --synthetic: the task's synthetic default)")
  parser.add_argument("--rounds", type=int, default=5, help="timed rounds")
  parser.add_argument("--warmup_rounds", type=int, default=2)
  parser.add_argument("--embedding_dim", type=int, default=16)
  parser.add_argument("--reconstruction_steps", type=int, default=10)
  parser.add_argument("--output", default="output/recon_speed.jsonl",
                      help="JSON-lines file to append to")
  args = parser.parse_args()
  if args.synthetic and args.data_dir:
    parser.error("--data_dir with --synthetic: choose the real data or the synthetic data.")
  return args


def main():
  args = _parse_args()
  settings = {"use_synthetic_data": args.synthetic, "client_sampling": "uniform",
              "total_rounds": args.warmup_rounds + args.rounds,
              "embedding_dim": args.embedding_dim,
              "reconstruction_steps": args.reconstruction_steps}
  if args.data_dir:
    settings["data_dir"] = args.data_dir
  if args.clients_per_round or not args.synthetic:
    settings["clients_per_round"] = args.clients_per_round or 100
  with tempfile.TemporaryDirectory(prefix="recon_speed_") as root_output_dir:
    settings["root_output_dir"] = root_output_dir
    _, run, experiment = engine.run_task(TASK, settings, evaluate=False,
                                         measure=_cpu_seconds)
    rows = engine.metrics(experiment)
  timed = rows["round_num"] > args.warmup_rounds
  cpu = sum(c for c, is_timed in zip(run.process.per_round, timed) if is_timed)
  clients = rows.loc[timed, "clients"].sum()
  seconds = rows.loc[timed, "speed/round_seconds"].sum()
  os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
  jsonl_log.append_record({
      "task": TASK, "clients_per_round": engine.hparams(TASK, settings)["clients_per_round"],
      "rounds": args.rounds, "warmup_rounds": args.warmup_rounds,
      "embedding_dim": args.embedding_dim, "reconstruction_steps": args.reconstruction_steps,
      "wall_ms_per_client_round": round(1000 * seconds / clients, 2),
      "cpu_ms_per_client_round": round(1000 * cpu / clients, 2),
      "examples_per_s": round(rows.loc[timed, "train/examples"].sum() / seconds),
      "cpus": os.cpu_count(), "tf": tf.__version__, "tff": tff.__version__,
  }, args.output)


if __name__ == "__main__":
  main()
