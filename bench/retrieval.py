"""Benchmark of TFRS two-tower models: centralized vs federated (FedAvg).

Trains on the train split of a ranking protocol (default `recbole_ml1m`) and
reports full-ranking Recall/NDCG/HR@10 (`--kind=retrieval`) or the RMSE of
predicted ratings (`--kind=ranking`, the biased SVD++-like rating model of
`tff_movierec.retrieval.ranking`, `--protocol=holdout` only; federated: the
`movielens_ranking` task) of the final weights on the test split:

  centralized  `retrieval.experiment.run_experiment`: a Keras fit,
               `--epochs` epochs, validation metrics every `--eval_every`
               epochs; `wall_seconds` is its training time (with those
               evaluations).
  federated    the `movielens_retrieval` task through the one training loop
               (`bench/engine.py`), every client in every round, `--rounds`
               rounds; its evaluations (every `--eval_every` rounds and after
               the last) rank the test split, so the row's test metrics are
               the last eval/* of metrics.csv and it has no validation
               metric; `wall_seconds` is the sum of the rounds'
               round_seconds (evaluations excluded). The task fixes the
               towers (TowerConfig with --embedding_dim), the in-batch
               softmax (temperature 0.1, normalized, logQ correction) and
               draws the query histories anew every round, so the model
               options other than --embedding_dim apply to the centralized
               mode only; the server optimizer is the task's (FedAvg: SGD,
               learning rate 1) unless --server_optimizer /
               --server_learning_rate say otherwise. Its experiment folder (metrics.csv,
               TensorBoard, the exported model in export/) is
               OUTPUT_DIR/federated.

Writes `KIND.csv` and `KIND.md` (with date, machine, load average and the
command) under --output_dir, and optionally exports the centralized model
for `python -m tff_movierec.recommend`.

  /work/main/.venv/bin/python bench/retrieval.py --data_dir=/work/shared/data/ml-1m

`--synthetic` runs on small generated data (a smoke run):

  /work/main/.venv/bin/python bench/retrieval.py --synthetic --epochs=1 --rounds=2 \
      --output_dir=/tmp/retrieval
"""

import argparse
import csv
import datetime
import os
import platform
import shlex
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import engine  # noqa: E402  (bench/engine.py)
from tff_movierec.data.partitions import SCHEMES  # noqa: E402
from tff_movierec.retrieval import experiment, export, ranking  # noqa: E402

TASK = "movielens_retrieval"
RANKING_TASK = "movielens_ranking"
MODES = ("centralized", "federated")
# Model options the federated task fixes at these (their defaults).
CENTRALIZED_ONLY = ("hidden_units", "history_length", "no_normalize", "temperature", "no_logq",
                    "corpus_negatives")
COLUMNS = ("model", "mode", "query_features", "protocol", "rounds", "test_recall@10",
           "test_ndcg@10", "test_hr@10", "valid_ndcg@10", "valid_rmse", "test_rmse",
           "test_mae", "wall_seconds")


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", default="/work/shared/data/ml-1m")
  parser.add_argument("--synthetic", action="store_true", help="small generated data")
  parser.add_argument("--protocol", default="recbole_ml1m",
                      choices=tuple(experiment.MIN_HISTORY_RATING))
  parser.add_argument("--modes", default="centralized,federated")
  parser.add_argument("--kind", default="retrieval", choices=("retrieval", "ranking"),
                      help="two-tower retrieval (in-batch softmax) or ranking (rating MSE, "
                      "--protocol=holdout)")
  parser.add_argument("--output_dir", default="output/retrieval")
  parser.add_argument("--export_dir", default=None,
                      help="export the centralized model to EXPORT_DIR/centralized (for "
                      "recommend; a ranking model to EXPORT_DIR/centralized/ranking, beside "
                      "the retrieval model); the federated one is in "
                      "OUTPUT_DIR/federated/export")
  model = parser.add_argument_group("model")
  model.add_argument("--embedding_dim", type=int, default=64)
  model.add_argument("--hidden_units", default="", help="comma-separated ReLU layer sizes")
  model.add_argument("--history_length", type=int, default=50)
  model.add_argument("--centralized_user_id", action="store_true",
                     help="centralized query tower also embeds the user id")
  model.add_argument("--no_normalize", action="store_true")
  model.add_argument("--temperature", type=float, default=0.1)
  model.add_argument("--no_logq", action="store_true")
  model.add_argument("--corpus_negatives", action="store_true",
                     help="every movie is an extra negative (mixed negatives)")
  model.add_argument("--head_units", default="",
                     help="ranking: comma-separated ReLU sizes of the MLP beside the dot product")
  model.add_argument("--l2", type=float, default=0.0,
                     help="ranking: weight of the batch's squared embeddings and biases")
  train = parser.add_argument_group("training")
  train.add_argument("--epochs", type=int, default=4, help="centralized epochs")
  train.add_argument("--batch_size", type=int, default=1024)
  train.add_argument("--learning_rate", type=float, default=0.005, help="centralized Adam")
  train.add_argument("--rounds", type=int, default=10, help="federated rounds")
  train.add_argument("--num_clients", type=int, default=10)
  train.add_argument("--partition", default="dirichlet", choices=SCHEMES)
  train.add_argument("--clients_per_round", type=int,
                     help="default: every client (needed with --partition=natural)")
  train.add_argument("--client_optimizer", default="adam", choices=("adam", "sgd"))
  train.add_argument("--client_learning_rate", type=float, default=0.005)
  train.add_argument("--server_optimizer", choices=("adam", "sgd"),
                     help="default: the federated task's (sgd)")
  train.add_argument("--server_learning_rate", type=float,
                     help="default: the federated task's (1.0)")
  train.add_argument("--client_epochs", type=int, default=1)
  train.add_argument("--eval_every", type=int, default=1)
  train.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  modes = args.modes.split(",")
  unknown = set(modes) - set(MODES)
  if unknown:
    parser.error(f"--modes: unknown {sorted(unknown)}; expected a subset of {MODES}.")
  if args.kind == "ranking" and args.protocol != "holdout":
    parser.error("--kind=ranking rates held-out ratings: use --protocol=holdout.")
  if args.kind == "retrieval":
    changed = [f"--{name}" for name in ("head_units", "l2")
               if getattr(args, name) != parser.get_default(name)]
    if changed:
      parser.error(f"{', '.join(changed)}: options of --kind=ranking.")
  if "federated" in modes:
    changed = [f"--{name}" for name in CENTRALIZED_ONLY
               if getattr(args, name) != parser.get_default(name)]
    if changed:
      parser.error(f"{', '.join(changed)}: the federated task fixes these; use "
                   "--modes=centralized.")
    if args.partition == "natural" and args.clients_per_round is None:
      parser.error("--partition=natural (one client per user) needs --clients_per_round.")
  return args


def _write(rows, args, header, load_before):
  os.makedirs(args.output_dir, exist_ok=True)
  csv_path = os.path.join(args.output_dir, f"{args.kind}.csv")
  with open(csv_path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
  lines = [f"# TFRS two-tower {args.kind} benchmark ({args.protocol})", ""] + header + [
      f"- load average (1/5/15 min) before: {load_before}, after: "
      f"{tuple(round(x, 2) for x in os.getloadavg())}", "",
      "| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
  for row in rows:
    lines.append("| " + " | ".join(
        f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c]) for c in COLUMNS) + " |")
  with open(os.path.join(args.output_dir, f"{args.kind}.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))


def _task(args):
  return TASK if args.kind == "retrieval" else RANKING_TASK


def _federated_settings(args):
  settings = {"use_synthetic_data": args.synthetic,
              "partition": args.partition, "client_batch_size": args.batch_size,
              "embedding_dim": args.embedding_dim, "client_optimizer": args.client_optimizer,
              "client_learning_rate": args.client_learning_rate,
              "client_epochs": args.client_epochs, "total_rounds": args.rounds,
              "rounds_per_eval": args.eval_every, "seed": args.seed,
              "root_output_dir": args.output_dir, "experiment_name": "federated"}
  for name in ("server_optimizer", "server_learning_rate"):  # None: the task's default
    if getattr(args, name) is not None:
      settings[name] = getattr(args, name)
  if args.kind == "retrieval":
    settings["ranking_protocol"] = args.protocol
  else:
    settings["hidden_units"] = [u for u in args.head_units.split(",") if u]
    settings["factor_l2"] = args.l2
  if not args.synthetic:
    settings["data_dir"] = args.data_dir
  if args.partition != "natural":
    settings["num_clients"] = args.num_clients
  settings["clients_per_round"] = (args.clients_per_round or
                                   engine.every_client(_task(args), settings))
  return settings


def _centralized(args):
  """The row of the centralized Keras fit."""
  def on_round(round_num, metrics):
    last.update(metrics)
    shown = {k: round(v, 4) for k, v in metrics.items() if not k.endswith("num_users")}
    print(f"[centralized] epoch {round_num} {shown}", flush=True)

  last = {}
  result = experiment.run_experiment(
      None if args.synthetic else args.data_dir, kind=args.kind, protocol=args.protocol,
      embedding_dim=args.embedding_dim,
      hidden_units=tuple(int(u) for u in args.hidden_units.split(",") if u),
      use_user_id=args.centralized_user_id, history_length=args.history_length,
      temperature=args.temperature, normalize=not args.no_normalize,
      logq_correction=not args.no_logq, corpus_negatives=args.corpus_negatives,
      rounds=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
      eval_every=args.eval_every, seed=args.seed,
      export_dir=_export_dir(args),
      use_synthetic_data=args.synthetic, on_round=on_round,
      ranking_config=_ranking_config(args))
  print(f"[centralized] test {result}", flush=True)
  nan = float("nan")
  return {
      "model": args.kind, "mode": "centralized",
      "query_features": ("user id+" if args.centralized_user_id else "") +
                        "demographics+history",
      "protocol": args.protocol, "rounds": args.epochs,
      "test_recall@10": result.get("test_recall@10", nan),
      "test_ndcg@10": result.get("test_ndcg@10", nan),
      "test_hr@10": result.get("test_hr@10", nan),
      "valid_ndcg@10": last.get("valid_ndcg@10", nan), "valid_rmse": last.get("valid_rmse", nan),
      "test_rmse": result.get("test_rmse", nan), "test_mae": result.get("test_mae", nan),
      "wall_seconds": result["wall_seconds"]}


def _ranking_config(args):
  if args.kind != "ranking":
    return None
  return ranking.RankingTaskConfig(
      head_units=tuple(int(u) for u in args.head_units.split(",") if u), l2=args.l2)


def _export_dir(args):
  if not args.export_dir:
    return None
  folder = os.path.join(args.export_dir, "centralized")
  return folder if args.kind == "retrieval" else os.path.join(folder, export.RANKING_DIR)


def _federated(args, settings):
  """The row of the federated task."""
  _, run, experiment_managers = engine.run_task(
      _task(args), settings, log=lambda line: print(f"[federated] {line}", flush=True))
  rows = engine.metrics(experiment_managers)
  test = rows.iloc[-1]
  nan = float("nan")
  if args.kind == "ranking":
    return {
        "model": args.kind,
        "mode": f"federated ({args.partition}, {len(run.sampler.client_ids)} clients)",
        "query_features": "demographics+history", "protocol": args.protocol,
        "rounds": int(test["round_num"]), "test_recall@10": nan, "test_ndcg@10": nan,
        "test_hr@10": nan, "valid_ndcg@10": nan, "valid_rmse": nan,
        "test_rmse": test["eval/rmse"], "test_mae": test["eval/mae"],
        "wall_seconds": rows["speed/round_seconds"].sum()}
  return {
      "model": args.kind,
      "mode": f"federated ({args.partition}, {len(run.sampler.client_ids)} clients)",
      "query_features": "demographics+history", "protocol": args.protocol,
      "rounds": int(test["round_num"]), "test_recall@10": test["eval/recall@10"],
      "test_ndcg@10": test["eval/ndcg@10"], "test_hr@10": test["eval/hr@10"],
      "valid_ndcg@10": nan, "valid_rmse": nan, "test_rmse": nan, "test_mae": nan,
      "wall_seconds": rows["speed/round_seconds"].sum()}


def main(argv):
  args = parse_args(argv)
  modes = args.modes.split(",")
  if "federated" in modes:
    settings = _federated_settings(args)
    engine.require_fresh(_task(args), settings)
  load_before = tuple(round(x, 2) for x in os.getloadavg())
  header = [
      f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
      f"- machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}",
      f"- command: `{shlex.join([sys.executable, 'bench/retrieval.py'] + argv)}`",
      f"- data: {'synthetic' if args.synthetic else args.data_dir}; protocol {args.protocol}",
  ]
  rows = [_centralized(args) if mode == "centralized" else _federated(args, settings)
          for mode in modes]
  _write(rows, args, header, load_before)


if __name__ == "__main__":
  main(sys.argv[1:])
