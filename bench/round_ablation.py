"""What each part of the client step costs in a federated round, measured in pairs.

Builds several variants of the default rating study's learning process
(`stateful_local`, 10 Dirichlet clients, batch 256, real ML-1M) in one
process and runs their rounds interleaved (A B C, C B A, A B C, ...), so that
a slow spell of a shared machine hits every variant alike:

  hashed        the default: sparse SGD rows, HashedDropout masks
  keras_masks   tf.keras.layers.Dropout instead of HashedDropout
  dense_steps   keras_masks, and every SGD step through the TFF optimizer's
                own `next` (embedding gradients densified: the previous code)
  no_dropout    dropout 0 (a bound: what the masks cost at most)

Per round: examples/s, and the CPU seconds of TFF's worker process (less
sensitive to the machine's other load than wall time). The first round of
each variant includes tracing and is left out of the medians.

Example (the figures in BENCHMARKS.md):
  .venv/bin/python bench/round_ablation.py --data_dir=../shared/data/ml-1m \
      --rounds=6 --output=output/round_ablation.jsonl
"""

import argparse
import os
import statistics
import time
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jsonl_log  # noqa: E402  (bench/jsonl_log.py)
from tff_movierec import tff_runtime  # noqa: E402

tff_runtime.stop_workers_at_exit()

import psutil  # noqa: E402

from tasks import movielens_rating  # noqa: E402
from tff_movierec.data import partitions, preprocessing  # noqa: E402
from tff_movierec.models import rating_ffnn  # noqa: E402
from tff_movierec.training import algorithms, loop, sparse_updates  # noqa: E402
from tff_movierec.training.optimizers import OptimizerSpec  # noqa: E402

VARIANTS = ("hashed", "keras_masks", "dense_steps", "no_dropout")


def _parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_dir", required=True)
  parser.add_argument("--output", required=True, help="JSON-lines file to append to")
  parser.add_argument("--rounds", type=int, default=6, help="rounds per variant")
  parser.add_argument("--variants", default=",".join(VARIANTS))
  return parser.parse_args()


def _build(data_dir, variant):
  """(task, process) of `variant`."""
  model = rating_ffnn.RatingModelConfig(
      dropout=0.0 if variant == "no_dropout" else 0.2,
      dropout_masks="keras" if variant in ("keras_masks", "dense_steps") else "hashed")
  task = movielens_rating.create_rating_task(
      data_dir, partitions.PartitionSpec("dirichlet", 10), preprocessing.ClientSpec(1, 256),
      model)
  config = algorithms.AlgorithmConfig(
      algorithm="stateful_local",
      client_optimizer=OptimizerSpec("sgd", 0.05, flag_prefix="client"),
      local_optimizer=OptimizerSpec("sgd", 20.0, flag_prefix="local"))
  if variant == "dense_steps":  # the client step is traced while building
    with mock.patch.object(sparse_updates, "is_plain_sgd", return_value=False):
      return task, algorithms.build_training_process(task, config)
  return task, algorithms.build_training_process(task, config)


def _worker_cpu_seconds():
  workers = [p for p in psutil.Process().children(recursive=True)
             if "worker_binary" in " ".join(p.cmdline())]
  return sum(p.cpu_times().user + p.cpu_times().system for p in workers)


def main():
  args = _parse_args()
  variants = args.variants.split(",")
  runs = {}
  for variant in variants:
    task, process = _build(args.data_dir, variant)
    runs[variant] = [task, process, process.initialize(), loop.TrainingDatasets(task)]
  results = {v: {"examples_per_s": [], "worker_cpu_s": []} for v in variants}
  for round_num in range(1, args.rounds + 1):
    for variant in variants if round_num % 2 else variants[::-1]:
      task, process, state, datasets = runs[variant]
      cpu, start = _worker_cpu_seconds(), time.perf_counter()
      output = loop.run_round(process, datasets, state, task.train_data.client_ids)
      seconds, cpu = time.perf_counter() - start, _worker_cpu_seconds() - cpu
      runs[variant][2] = output.state
      examples = loop.training_metric(loop.flatten_metrics(output.metrics), "examples")
      record = {"variant": variant, "round": round_num, "examples": int(examples),
                "seconds": round(seconds, 2), "examples_per_s": round(examples / seconds),
                "worker_cpu_s": round(cpu, 2)}
      if round_num > 1:
        results[variant]["examples_per_s"].append(examples / seconds)
        results[variant]["worker_cpu_s"].append(cpu)
      jsonl_log.append_record(record, args.output)
  for variant in variants:
    jsonl_log.append_record(
        {"variant": variant, "summary": True,
         "median_examples_per_s": round(statistics.median(results[variant]["examples_per_s"])),
         "median_worker_cpu_s": round(statistics.median(results[variant]["worker_cpu_s"]), 2)},
        args.output)

if __name__ == "__main__":
  main()
