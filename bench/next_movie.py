"""Benchmark of the next-movie task: FedAvg vs centralized Keras vs popularity.

Every user's last movie (by time) is the test target; HR@10 and NDCG@10 rank
it among all movies, excluding the movies the user had already rated (and,
for comparison, over all movies with nothing excluded).

  federated    the `movielens_next_movie` task through the one training loop
               (`bench/engine.py`), every client in every round; its history
               is the task's metrics.csv, its HR@10 / NDCG@10 the task's
               final_eval.csv (in --output_dir/federated/); the "all movies"
               figures rank with the final weights.
  centralized  a Keras fit of the same network on the same training examples
               (all clients' data concatenated), Adam --centralized_lr.
  popularity   movies ranked by their number of training ratings.

`seconds` is the training time: the sum of the rounds' round_seconds
(federated), of the epochs' fit times (centralized); evaluations excluded.

  /work/main/.venv/bin/python bench/next_movie.py \
      --data_dir=/work/shared/data/ml-1m \
      --ratings_path=/work/shared/data/ml-1m-latest20/ratings.csv

`--synthetic` runs on small generated data instead (a smoke run):

  /work/main/.venv/bin/python bench/next_movie.py --synthetic --rounds=2 \
      --centralized_epochs=1 --output_dir=/tmp/next_movie

Settings not given take the task's defaults, chosen on the validation split
(`--tuning`: each user's second-to-last movie; 10 dirichlet clients, 5
rounds, client Adam 2e-3, batch 64): plain FedAvg (server SGD, lr 1) reached
HR@10 0.109 and was still rising, while a server Adam (lr 5e-2, epsilon 5e-2;
the epsilon is no longer a setting, Adam now uses TFF's 1e-7) stayed at 0.048
and popularity is 0.039. The user-id embedding did not help the centralized
model on validation (HR@10 0.191 with, 0.190 without, after 6 epochs), so it
is off by default.
"""

import argparse
import collections
import json
import os
import shlex
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402

import engine  # noqa: E402  (bench/engine.py)
from tasks import common, movielens_next_movie  # noqa: E402
from tff_movierec.data import partitions  # noqa: E402

TASK = movielens_next_movie.TASK_NAME


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  data = parser.add_argument_group("data")
  data.add_argument("--data_dir", default="/work/shared/data/ml-1m")
  data.add_argument("--ratings_path",
                    default="/work/shared/data/ml-1m-latest20/ratings.csv")
  data.add_argument("--synthetic", action="store_true",
                    help="small synthetic data instead of MovieLens")
  data.add_argument("--tuning", action="store_true",
                    help="evaluate on each user's second-to-last movie")
  data.add_argument("--num_clients", type=int, help="default: run_experiment.py's (10)")
  data.add_argument("--partition", default="dirichlet", choices=partitions.SCHEMES)
  model = parser.add_argument_group("model (default: the task's)")
  model.add_argument("--user_embedding", choices=movielens_next_movie.USER_EMBEDDING_MODES)
  model.add_argument("--embedding_dim", type=int)
  model.add_argument("--hidden_units", type=int)
  model.add_argument("--dropout", type=float)
  training = parser.add_argument_group("training (default: the task's)")
  training.add_argument("--batch_size", type=int)
  training.add_argument("--rounds", type=int)
  training.add_argument("--clients_per_round", type=int,
                        help="default: every client (needed with --partition=natural)")
  training.add_argument("--client_epochs", type=int)
  training.add_argument("--client_optimizer", choices=("adam", "sgdm"),
                        help="sgdm: SGD with momentum 0.9")
  training.add_argument("--client_lr", type=float)
  training.add_argument("--server_optimizer", choices=("adam", "sgd"),
                        help="sgd with lr 1 is plain FedAvg (see the module docstring)")
  training.add_argument("--server_lr", type=float)
  training.add_argument("--centralized_epochs", type=int, default=5)
  training.add_argument("--centralized_lr", type=float, default=1e-3)
  training.add_argument("--skip_federated", action="store_true")
  training.add_argument("--skip_centralized", action="store_true")
  training.add_argument("--eval_every", type=int,
                        help="rounds/epochs between evaluations (0: only at the end; "
                        "default: run_experiment.py's)")
  training.add_argument("--seed", type=int, default=0)
  parser.add_argument("--output_dir", default="output/next_movie",
                      help="the federated run's experiment folder is OUTPUT_DIR/federated")
  parser.add_argument("--output_json", default=None)
  args = parser.parse_args(argv)
  if args.partition == "natural" and args.clients_per_round is None:
    parser.error("--partition=natural (one client per user) needs --clients_per_round.")
  return args


def settings_of(args):
  """The task settings the bench's arguments give."""
  settings = {"use_synthetic_data": args.synthetic, "seed": args.seed,
              "partition": args.partition, "root_output_dir": args.output_dir,
              "experiment_name": "federated",
              "eval_split": "validation" if args.tuning else "test"}
  if not args.synthetic:
    settings.update(data_dir=args.data_dir, ratings_path=args.ratings_path)
  given = {"num_clients": args.num_clients, "user_embedding": args.user_embedding,
           "embedding_dim": args.embedding_dim, "dropout": args.dropout,
           "client_batch_size": args.batch_size, "total_rounds": args.rounds,
           "client_epochs": args.client_epochs, "client_learning_rate": args.client_lr,
           "server_optimizer": args.server_optimizer, "server_learning_rate": args.server_lr,
           "rounds_per_eval": args.eval_every}
  settings.update({name: value for name, value in given.items() if value is not None})
  if args.hidden_units is not None:
    settings["hidden_units"] = [str(args.hidden_units)]
  if args.client_optimizer == "sgdm":
    settings.update(client_optimizer="sgd", client_momentum=0.9)
  elif args.client_optimizer:
    settings["client_optimizer"] = args.client_optimizer
  settings["clients_per_round"] = (args.clients_per_round or
                                   engine.every_client(TASK, settings))
  return settings


def build_task(hp):
  """The task's data, split and network, as the federated run builds them."""
  configs = movielens_next_movie.configure(hp)
  return movielens_next_movie.create_next_movie_task_from_data(
      common.load_movielens(hp, ratings_path=hp["ratings_path"]), configs.partition,
      configs.client, model_config=configs.model, tuning=configs.eval_split == "validation")


def load_average() -> str:
  return "/".join(f"{x:.2f}" for x in os.getloadavg())


def format_metrics(metrics):
  return "  ".join(f"{name} {value:.4f}" for name, value in metrics.items())


def run_federated(task, settings):
  def log(line):
    load = f" load {load_average()}" if line.startswith("round ") else ""
    print(f"[federated] {line}{load}", flush=True)

  state, run, experiment = engine.run_task(TASK, settings, log=log)
  history = []
  for _, row in engine.metrics(experiment).iterrows():
    entry = {"round": int(row["round_num"]), "seconds": row["speed/round_seconds"],
             "loss": row["train/loss"], "train_hr@10_all": row["train/hr_at_10"]}
    if not pd.isna(row.get("eval/hr@10")):
      entry["test"] = {"hr@10": row["eval/hr@10"], "ndcg@10": row["eval/ndcg@10"]}
    history.append(entry)
  final = pd.read_csv(os.path.join(experiment.output_dir, "final_eval.csv"), index_col="model")
  # Keras models made before TFF builds its graphs become unusable: make this
  # one after the run.
  keras_model = task.keras_model_fn()
  run.process.get_model_weights(state).assign_weights_to(keras_model)
  return {"rounds": len(history), "seconds": sum(e["seconds"] for e in history),
          "history": history, "metrics_csv": experiment.metrics_csv,
          "excluding_seen": final.loc["federated"].to_dict(),
          "all_movies": movielens_next_movie.evaluate_next_movie(
              keras_model, task, exclude_seen=False)}


def run_centralized(task, hp, args):
  keras_model = task.keras_model_fn()
  keras_model.compile(
      optimizer=tf.keras.optimizers.Adam(args.centralized_lr), loss=task.loss_fn())
  features = task.split.train.features()
  dataset = tf.data.Dataset.from_tensor_slices(
      collections.OrderedDict((name, features[name]) for name in sorted(features)))
  dataset = task.train_preprocess(dataset.shuffle(len(task.split.train), seed=args.seed))
  eval_every = hp["rounds_per_eval"]
  history = []
  for epoch in range(1, args.centralized_epochs + 1):
    epoch_start = time.time()
    loss = keras_model.fit(dataset, epochs=1, verbose=0).history["loss"][-1]
    row = {"epoch": epoch, "seconds": time.time() - epoch_start, "loss": float(loss)}
    if epoch == args.centralized_epochs or (eval_every and epoch % eval_every == 0):
      row["test"] = movielens_next_movie.evaluate_next_movie(keras_model, task)
    history.append(row)
    print(f"[centralized] epoch {epoch}/{args.centralized_epochs} loss {loss:.4f} "
          f"{row['seconds']:.1f}s load {load_average()}"
          + (f"  test {format_metrics(row['test'])}" if "test" in row else ""),
          flush=True)
  return {"epochs": args.centralized_epochs, "seconds": sum(r["seconds"] for r in history),
          "history": history,
          "excluding_seen": movielens_next_movie.evaluate_next_movie(keras_model, task),
          "all_movies": movielens_next_movie.evaluate_next_movie(
              keras_model, task, exclude_seen=False)}


def main(argv):
  args = parse_args(argv)
  tf.keras.utils.set_random_seed(args.seed)
  command = shlex.join([sys.executable] + sys.argv)
  print(f"command: {command}\nload average at start: {load_average()}", flush=True)
  settings = settings_of(args)
  hp = engine.hparams(TASK, settings)
  if not args.skip_federated:
    engine.require_fresh(TASK, settings)
  task = build_task(hp)
  split = task.split
  print(f"task: {task.description}; {len(split.train)} training examples, "
        f"{len(split.test)} {'validation' if args.tuning else 'test'} targets", flush=True)
  results = {
      "command": command, "args": vars(args), "settings": dict(hp),
      "description": task.description, "load_average_start": load_average(),
      "popularity": {
          "excluding_seen": movielens_next_movie.evaluate_popularity(task),
          "all_movies": movielens_next_movie.evaluate_popularity(task, exclude_seen=False),
      },
  }
  if not args.skip_federated:
    results["federated"] = run_federated(task, settings)
  if not args.skip_centralized:
    results["centralized"] = run_centralized(task, hp, args)
  results["load_average_end"] = load_average()
  print("\n| model | HR@10 | NDCG@10 | HR@10 (all movies) | NDCG@10 (all movies) | "
        "rounds/epochs | seconds |")
  print("| --- | --- | --- | --- | --- | --- | --- |")
  for name in ("federated", "centralized", "popularity"):
    if name not in results:
      continue
    result = results[name]
    seen, everything = result["excluding_seen"], result["all_movies"]
    steps = result.get("rounds", result.get("epochs", "-"))
    seconds = f"{result['seconds']:.0f}" if "seconds" in result else "-"
    print(f"| {name} | {seen['hr@10']:.4f} | {seen['ndcg@10']:.4f} | "
          f"{everything['hr@10']:.4f} | {everything['ndcg@10']:.4f} | {steps} | {seconds} |")
  print(f"load average: start {results['load_average_start']}, "
        f"end {results['load_average_end']}")
  if args.output_json:
    os.makedirs(os.path.dirname(os.path.abspath(args.output_json)), exist_ok=True)
    with open(args.output_json, "w") as f:
      json.dump(results, f, indent=1)
    print(f"results written to {args.output_json}")


if __name__ == "__main__":
  main(sys.argv[1:])
