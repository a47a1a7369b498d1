"""Where a federated round of the rating task spends its time, per stage.

On one client's training data (the `movielens_rating` task with
run_experiment.py's settings: real ML-1M, 10 Dirichlet clients; client 0),
examples/s of:

  batch_only        `dataset.batch(B)`: the per-example work no pipeline avoids
  shuffle_buffer    `dataset.shuffle(10_000).batch(B)`, the former pipeline
  train_preprocess  the task's pipeline (vectorized shuffle, join, batch)
  model_step        SGD steps of the Keras network on batches cached in
                    memory (no input cost), with dropout as given and with 0

Each stage is timed --repeats times inside one `tf.function` (the first call,
which traces, is not timed); the JSON lines give every time and the median.

Example (the figures in BENCHMARKS.md):
  .venv/bin/python bench/input_pipeline.py --data_dir=../shared/data/ml-1m \
      --output=output/input_pipeline.jsonl

Smoke run on small synthetic data:
  .venv/bin/python bench/input_pipeline.py --synthetic --repeats=1 \
      --output=/tmp/input_pipeline.jsonl
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import engine  # noqa: E402  (bench/engine.py)
import jsonl_log  # noqa: E402  (bench/jsonl_log.py)
import tensorflow as tf  # noqa: E402

from tasks import movielens_rating  # noqa: E402
from tff_movierec import tff_runtime  # noqa: E402

tff_runtime.install()


def _parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_dir", help="MovieLens-1M folder (default: the cache)")
  parser.add_argument("--synthetic", action="store_true", help="small generated data")
  parser.add_argument("--output", required=True, help="JSON-lines file to append to")
  parser.add_argument("--batch_size", type=int, default=256)
  parser.add_argument("--dropout", type=float,
                      default=engine.hparams("movielens_rating", {})["dropout"])
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  if args.synthetic and args.data_dir:
    parser.error("--data_dir with --synthetic: choose the real data or the synthetic data.")
  return args


def _rate(run, num_examples, repeats):
  run()  # traces
  seconds = []
  for _ in range(repeats):
    start = time.perf_counter()
    run()
    seconds.append(time.perf_counter() - start)
  return [round(num_examples / s) for s in seconds]


def _iterate(dataset):
  count = tf.function(lambda: dataset.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
  return lambda: count()


def _task(args, dropout):
  settings = {"use_synthetic_data": args.synthetic, "client_batch_size": args.batch_size,
              "dropout": dropout}
  if args.data_dir:
    settings["data_dir"] = args.data_dir
  hp = engine.hparams("movielens_rating", settings)
  return movielens_rating.create_rating_task(movielens_rating.configure(hp))


def _train(task, dataset):
  """() -> one SGD pass of a fresh task network over `dataset`."""
  model = task.keras_model_fn()
  optimizer = tf.keras.optimizers.SGD(0.05)
  loss_fn = tf.keras.losses.MeanSquaredError()

  @tf.function
  def train():
    for x, y in dataset:
      with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
      optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                    model.trainable_variables))

  return train


def main():
  args = _parse_args()
  task = _task(args, args.dropout)
  examples = task.train_data.create_tf_dataset_for_client("0")
  num_examples = int(examples.cardinality())
  cached = task.train_preprocess(examples).cache()
  for _ in cached:  # fills the cache
    pass
  stages = {
      "batch_only": _iterate(examples.batch(args.batch_size)),
      "shuffle_buffer": _iterate(examples.shuffle(10_000).batch(args.batch_size)),
      "train_preprocess": _iterate(task.train_preprocess(examples)),
      f"model_step_dropout_{args.dropout:g}": _train(task, cached),
      "model_step_dropout_0": _train(_task(args, 0.0), cached),
  }
  for stage, run in stages.items():
    rates = _rate(run, num_examples, args.repeats)
    jsonl_log.append_record(
        {"stage": stage, "examples": num_examples, "batch_size": args.batch_size,
         "examples_per_s": rates, "median": round(statistics.median(rates))}, args.output)


if __name__ == "__main__":
  main()
