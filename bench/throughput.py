"""Federated training throughput of the rating network beside a centralized fit.

One process, the same task (real ML-1M, canonical holdout, 10 Dirichlet
clients), the same Keras network, batch size and client optimizer:

  centralized  `model.fit` over every client's training ratings (each client's
               data preprocessed as in the federated rounds, concatenated),
               `--centralized_epochs` epochs; examples/s per epoch.
  federated    `--rounds` rounds of the task's learning process with every
               client in every round; examples/s per round = training
               examples the clients report / round wall seconds.

The first epoch and the first round include tracing and TFF's worker start-up;
the summary takes the median of the others. With `--algorithm=fed_recon` each
client also makes `--reconstruction_epochs` reconstruction passes over its
data, so `processed/s` counts every forward pass: training examples × (1 +
reconstruction epochs).

Writes one JSON line per measurement to --output and prints a summary.

Example (the figures in BENCHMARKS.md):
  .venv/bin/python bench/throughput.py --data_dir=../shared/data/ml-1m \
      --algorithm=stateful_local --output=output/throughput.jsonl
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jsonl_log  # noqa: E402  (bench/jsonl_log.py)
from tff_movierec import tff_runtime  # noqa: E402

tff_runtime.stop_workers_at_exit()

import tensorflow as tf  # noqa: E402

from tasks import base, movielens_rating  # noqa: E402
from tff_movierec.data import partitions, preprocessing  # noqa: E402
from tff_movierec.models import rating_ffnn  # noqa: E402
from tff_movierec.training import algorithms, loop  # noqa: E402
from tff_movierec.training.optimizers import OptimizerSpec  # noqa: E402


def _parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_dir", required=True)
  parser.add_argument("--output", required=True, help="JSON-lines file to append to")
  parser.add_argument("--algorithm", default="stateful_local", choices=algorithms.ALGORITHMS,
                      help="fedavg uses --user_embedding=none (no user ID); the others "
                      "keep the user embedding on the clients")
  parser.add_argument("--batch_size", type=int, default=256)
  parser.add_argument("--dropout", type=float, default=rating_ffnn.RatingModelConfig.dropout,
                      help="dropout of the rating network (its default if not given)")
  parser.add_argument("--dropout_masks", default=rating_ffnn.RatingModelConfig.dropout_masks,
                      choices=rating_ffnn.DROPOUT_MASKS)
  parser.add_argument("--client_learning_rate", type=float, default=0.05)
  parser.add_argument("--local_learning_rate", type=float, default=20.0)
  parser.add_argument("--reconstruction_epochs", type=int, default=1)
  parser.add_argument("--num_clients", type=int, default=10)
  parser.add_argument("--rounds", type=int, default=4)
  parser.add_argument("--centralized_epochs", type=int, default=2)
  return parser.parse_args()



def _centralized(task, args):
  """Examples/s of each epoch of a Keras fit with the client optimizer."""
  tf.keras.backend.clear_session()
  model = task.keras_model_fn()
  model.compile(tf.keras.optimizers.SGD(args.client_learning_rate), loss=task.loss_fn())
  dataset = base.keras_dataset(task.train_data, task.train_preprocess)
  num_examples = sum(len(task.train_data.create_tf_dataset_for_client(c))
                     for c in task.train_data.client_ids)
  rates = []
  for epoch in range(1, args.centralized_epochs + 1):
    start = time.perf_counter()
    model.fit(dataset, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    rates.append(num_examples / seconds)
    jsonl_log.append_record(
        {"setting": "centralized_keras_fit", "epoch": epoch, "examples": num_examples,
         "seconds": round(seconds, 2), "examples_per_s": round(rates[-1])}, args.output)
  return rates


def _federated(task, args):
  """Examples/s of each round with every client participating."""
  config = algorithms.AlgorithmConfig(
      algorithm=args.algorithm,
      client_optimizer=OptimizerSpec("sgd", args.client_learning_rate, flag_prefix="client"),
      local_optimizer=OptimizerSpec("sgd", args.local_learning_rate, flag_prefix="local"),
      reconstruction_epochs=args.reconstruction_epochs)
  process = algorithms.build_training_process(task, config)
  state = process.initialize()
  passes = 1 + (args.reconstruction_epochs if args.algorithm == "fed_recon" else 0)
  datasets = loop.TrainingDatasets(task)
  rates = []
  for round_num in range(1, args.rounds + 1):
    start = time.perf_counter()
    output = loop.run_round(process, datasets, state, task.train_data.client_ids)
    state = output.state
    seconds = time.perf_counter() - start
    examples = loop.training_metric(loop.flatten_metrics(output.metrics), "examples")
    rates.append(examples / seconds)
    jsonl_log.append_record(
        {"setting": f"federated_{config.algorithm}", "round": round_num,
         "examples": int(examples), "seconds": round(seconds, 2),
         "examples_per_s": round(rates[-1]),
         "processed_per_s": round(rates[-1] * passes)}, args.output)
  return rates, passes


def main():
  args = _parse_args()
  task = movielens_rating.create_rating_task(
      args.data_dir,
      partitions.PartitionSpec("dirichlet", args.num_clients),
      preprocessing.ClientSpec(1, args.batch_size),
      rating_ffnn.RatingModelConfig(
          user_embedding="none" if args.algorithm == "fedavg" else "local",
          dropout=args.dropout, dropout_masks=args.dropout_masks))
  centralized = _centralized(task, args)
  federated, passes = _federated(task, args)

  def steady(rates):
    return statistics.median(rates[1:] or rates)

  summary = {
      "setting": "summary", "algorithm": args.algorithm,
      "batch_size": args.batch_size, "dropout": args.dropout,
      "dropout_masks": args.dropout_masks, "clients": args.num_clients,
      "centralized_examples_per_s": round(steady(centralized)),
      "federated_examples_per_s": round(steady(federated)),
      "federated_processed_per_s": round(steady(federated) * passes),
      "federated_over_centralized": round(steady(federated) / steady(centralized), 3),
      "cpu_count": os.cpu_count(),
  }
  jsonl_log.append_record(summary, args.output)


if __name__ == "__main__":
  main()
