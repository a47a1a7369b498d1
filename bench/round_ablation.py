"""What each part of the client step costs in a federated round, variant by variant.

Runs variants of the default rating study (`movielens_rating` with
run_experiment.py's defaults: `stateful_local`, 10 Dirichlet clients, batch
256; every client in every round) through the one training loop
(`bench/engine.py`, no evaluation):

  hashed        the default: sparse SGD rows, HashedDropout masks
  keras_masks   tf.keras.layers.Dropout instead of HashedDropout
  dense_steps   keras_masks, and every SGD step through the TFF optimizer's
                own `next` (embedding gradients densified: the previous code)
  no_dropout    dropout 0 (a bound: what the masks cost at most)

The variants run one after another, each a whole run of `--rounds` rounds:
the loop trains one process to the end, so rounds of different variants can
no longer be interleaved (A B C, C B A, ...) to spread a slow spell of a
shared machine over every variant alike. Watch the load average stamped on
every line, and repeat the command if it moved.

Per round: examples/s and seconds (the loop's `examples_per_second` and
`round_seconds` in metrics.csv), and the CPU seconds of TFF's worker process
during the round's `process.next` (less sensitive to the machine's other
load than wall time). The first round of each variant includes tracing and
is left out of the medians. The lines of a variant are written after its run.

Example (the figures in BENCHMARKS.md):
  .venv/bin/python bench/round_ablation.py --data_dir=../shared/data/ml-1m \
      --rounds=6 --output=output/round_ablation.jsonl

Smoke run on small synthetic data:
  .venv/bin/python bench/round_ablation.py --synthetic --rounds=2 \
      --output=/tmp/round_ablation.jsonl
"""

import argparse
import contextlib
import os
import statistics
import tempfile
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import psutil  # noqa: E402

import engine  # noqa: E402  (bench/engine.py)
import jsonl_log  # noqa: E402  (bench/jsonl_log.py)
from tff_movierec.training import loop, sparse_updates  # noqa: E402

TASK = "movielens_rating"
VARIANTS = ("hashed", "keras_masks", "dense_steps", "no_dropout")


def _parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_dir", help="MovieLens-1M folder (default: the cache)")
  parser.add_argument("--synthetic", action="store_true", help="small generated data")
  parser.add_argument("--output", required=True, help="JSON-lines file to append to")
  parser.add_argument("--rounds", type=int, default=6, help="rounds per variant")
  parser.add_argument("--variants", default=",".join(VARIANTS))
  args = parser.parse_args()
  if args.synthetic and args.data_dir:
    parser.error("--data_dir with --synthetic: choose the real data or the synthetic data.")
  unknown = set(args.variants.split(",")) - set(VARIANTS)
  if unknown:
    parser.error(f"--variants: unknown {sorted(unknown)}; expected a subset of {VARIANTS}.")
  return args


def _settings(args, variant, root_output_dir):
  """The task settings of `variant`."""
  settings = {"use_synthetic_data": args.synthetic, "root_output_dir": root_output_dir,
              "experiment_name": variant, "total_rounds": args.rounds}
  if args.data_dir:
    settings["data_dir"] = args.data_dir
  if variant == "no_dropout":
    settings["dropout"] = 0.0
  if variant in ("keras_masks", "dense_steps"):
    settings["dropout_masks"] = "keras"
  # Every client in every round.
  settings["clients_per_round"] = engine.every_client(TASK, settings)
  return settings


def _worker_cpu_seconds():
  workers = [p for p in psutil.Process().children(recursive=True)
             if "worker_binary" in " ".join(p.cmdline())]
  return sum(p.cpu_times().user + p.cpu_times().system for p in workers)


def _run(args, variant, root_output_dir):
  """(examples/s, worker CPU s) of each round after the first; writes every round's line."""
  # dense_steps: the client step is traced while the task builds its process.
  patch = (mock.patch.object(sparse_updates, "is_plain_sgd", return_value=False)
           if variant == "dense_steps" else contextlib.nullcontext())
  with patch:
    _, run, experiment = engine.run_task(
        TASK, _settings(args, variant, root_output_dir),
        log=lambda line: print(f"[{variant}] {line}", flush=True), evaluate=False,
        measure=_worker_cpu_seconds)
  rates, cpus = [], []
  for (_, row), cpu in zip(engine.metrics(experiment).iterrows(), run.process.per_round):
    round_num = int(row["round_num"])
    jsonl_log.append_record(
        {"variant": variant, "round": round_num, "examples": int(loop.examples_in(row)),
         "seconds": round(row["speed/round_seconds"], 2),
         "examples_per_s": round(row["speed/examples_per_second"]), "worker_cpu_s": round(cpu, 2)},
        args.output)
    if round_num > 1:
      rates.append(row["speed/examples_per_second"])
      cpus.append(cpu)
  return rates, cpus


def main():
  args = _parse_args()
  with tempfile.TemporaryDirectory(prefix="round_ablation_") as root_output_dir:
    for variant in args.variants.split(","):
      rates, cpus = _run(args, variant, root_output_dir)
      jsonl_log.append_record(
          {"variant": variant, "summary": True,
           "median_examples_per_s": round(statistics.median(rates)) if rates else None,
           "median_worker_cpu_s": round(statistics.median(cpus), 2) if cpus else None},
          args.output)


if __name__ == "__main__":
  main()
