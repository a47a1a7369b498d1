"""Federated training throughput of the rating network beside a centralized fit.

One process, the same task (`movielens_rating`: canonical holdout, 10
Dirichlet clients), the same Keras network, batch size and client optimizer:

  centralized  `model.fit` over every client's training ratings (each client's
               data preprocessed as in the federated rounds, concatenated),
               `--centralized_epochs` epochs; examples/s per epoch.
  federated    `--rounds` rounds of the task through the one training loop
               (`bench/engine.py`, no evaluation) with every client in every
               round; per round, the loop's `examples_per_second` and
               `round_seconds` from metrics.csv (training examples the
               clients report / round wall seconds).

The first epoch and the first round include tracing and TFF's worker start-up;
the summary takes the median of the others. With `--algorithm=fed_recon` each
client also makes `--reconstruction_epochs` reconstruction passes over its
data, so `processed/s` counts every forward pass: training examples × (1 +
reconstruction epochs). Settings not given take run_experiment.py's defaults.

Writes one JSON line per measurement to --output (the federated rounds' lines
after the run, from metrics.csv) and a summary line.

Example (the figures in BENCHMARKS.md):
  .venv/bin/python bench/throughput.py --data_dir=../shared/data/ml-1m \
      --algorithm=stateful_local --output=output/throughput.jsonl

Smoke run on small synthetic data:
  .venv/bin/python bench/throughput.py --synthetic --rounds=2 --centralized_epochs=1 \
      --output=/tmp/throughput.jsonl
"""

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

import engine  # noqa: E402  (bench/engine.py)
import jsonl_log  # noqa: E402  (bench/jsonl_log.py)
from tasks import movielens_rating  # noqa: E402
from tff_movierec.models import rating_ffnn  # noqa: E402
from tff_movierec.training import algorithms, federated_task, loop  # noqa: E402

TASK = "movielens_rating"
# argparse option -> task setting, passed only when given (else run_experiment's default).
SETTINGS = {"batch_size": "client_batch_size", "dropout": "dropout",
            "dropout_masks": "dropout_masks", "client_learning_rate": "client_learning_rate",
            "local_learning_rate": "local_learning_rate",
            "reconstruction_epochs": "reconstruction_epochs", "num_clients": "num_clients"}


def _parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_dir", help="MovieLens-1M folder (default: the cache)")
  parser.add_argument("--synthetic", action="store_true", help="small generated data")
  parser.add_argument("--output", required=True, help="JSON-lines file to append to")
  parser.add_argument("--algorithm", default="stateful_local", choices=algorithms.ALGORITHMS,
                      help="fedavg uses --user_embedding=none (no user ID); the others "
                      "keep the user embedding on the clients")
  parser.add_argument("--rounds", type=int, default=4)
  parser.add_argument("--centralized_epochs", type=int, default=2)
  task = parser.add_argument_group("task settings (default: run_experiment.py's)")
  task.add_argument("--batch_size", type=int)
  task.add_argument("--dropout", type=float)
  task.add_argument("--dropout_masks", choices=rating_ffnn.DROPOUT_MASKS)
  task.add_argument("--client_learning_rate", type=float)
  task.add_argument("--local_learning_rate", type=float)
  task.add_argument("--reconstruction_epochs", type=int)
  task.add_argument("--num_clients", type=int)
  args = parser.parse_args()
  if args.synthetic and args.data_dir:
    parser.error("--data_dir with --synthetic: choose the real data or the synthetic data.")
  return args


def _settings(args, root_output_dir):
  settings = {"use_synthetic_data": args.synthetic, "root_output_dir": root_output_dir,
              "algorithm": args.algorithm, "total_rounds": args.rounds,
              "user_embedding": "none" if args.algorithm == "fedavg" else "local"}
  if args.data_dir:
    settings["data_dir"] = args.data_dir
  settings.update({setting: getattr(args, option) for option, setting in SETTINGS.items()
                   if getattr(args, option) is not None})
  # Every client in every round.
  settings["clients_per_round"] = engine.every_client(TASK, settings)
  return settings


def _centralized(hp, args):
  """Examples/s of each epoch of a Keras fit with the client optimizer."""
  task = movielens_rating.create_rating_task(movielens_rating.configure(hp))
  model = task.keras_model_fn()
  model.compile(tf.keras.optimizers.SGD(hp["client_learning_rate"]), loss=task.loss_fn())
  dataset = federated_task.keras_dataset(task.train_data, task.train_preprocess)
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


def _federated(settings, hp, args):
  """Examples/s of each round with every client participating."""
  passes = 1 + (hp["reconstruction_epochs"] if args.algorithm == "fed_recon" else 0)
  _, _, experiment = engine.run_task(TASK, settings, evaluate=False)
  rates = []
  for _, row in engine.metrics(experiment).iterrows():
    rates.append(row["speed/examples_per_second"])
    jsonl_log.append_record(
        {"setting": f"federated_{args.algorithm}", "round": int(row["round_num"]),
         "examples": int(loop.examples_in(row)), "seconds": round(row["speed/round_seconds"], 2),
         "examples_per_s": round(rates[-1]), "processed_per_s": round(rates[-1] * passes)},
        args.output)
  return rates, passes


def main():
  args = _parse_args()
  with tempfile.TemporaryDirectory(prefix="throughput_") as root_output_dir:
    settings = _settings(args, root_output_dir)
    hp = engine.hparams(TASK, settings)
    centralized = _centralized(hp, args)
    federated, passes = _federated(settings, hp, args)

  def steady(rates):
    return statistics.median(rates[1:] or rates)

  summary = {
      "setting": "summary", "algorithm": args.algorithm,
      "batch_size": hp["client_batch_size"], "dropout": hp["dropout"],
      "dropout_masks": hp["dropout_masks"], "clients": hp["clients_per_round"],
      "centralized_examples_per_s": round(steady(centralized)),
      "federated_examples_per_s": round(steady(federated)),
      "federated_processed_per_s": round(steady(federated) * passes),
      "federated_over_centralized": round(steady(federated) / steady(centralized), 3),
      "cpu_count": os.cpu_count(),
  }
  jsonl_log.append_record(summary, args.output)


if __name__ == "__main__":
  main()
