"""Benchmark of TFRS two-tower models: centralized vs federated (FedAvg).

Trains on the train split of a ranking protocol (default `recbole_ml1m`),
reports validation metrics per epoch/round, and full-ranking Recall/NDCG/HR@10
(`--kind=retrieval`) or the RMSE of predicted ratings (`--kind=ranking`) of
the final weights on the test split; writes `KIND.csv` and `KIND.md` (with
date, machine, load average and the command) under
--output_dir, and optionally exports each model for
`python -m tff_movierec.recommend`.

  /work/main/.venv/bin/python bench/retrieval.py --data_dir=/work/shared/data/ml-1m

`--synthetic` runs on small generated data (a smoke run).
"""

import argparse
import csv
import datetime
import os
import platform
import shlex
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tff_movierec import tff_runtime  # noqa: E402
from tff_movierec.data.partitions import SCHEMES  # noqa: E402
from tff_movierec.retrieval import experiment  # noqa: E402

MODES = experiment.MODES
COLUMNS = ("model", "mode", "query_features", "protocol", "rounds", "test_recall@10",
           "test_ndcg@10", "test_hr@10", "valid_ndcg@10", "test_rmse", "wall_seconds")


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", default="/work/shared/data/ml-1m")
  parser.add_argument("--synthetic", action="store_true", help="small generated data")
  parser.add_argument("--protocol", default="recbole_ml1m", choices=tuple(experiment.MIN_HISTORY_RATING))
  parser.add_argument("--modes", default="centralized,federated")
  parser.add_argument("--kind", default="retrieval", choices=("retrieval", "ranking"),
                      help="two-tower retrieval (in-batch softmax) or ranking (rating MSE)")
  parser.add_argument("--output_dir", default="output/retrieval")
  parser.add_argument("--export_dir", default=None,
                      help="export each mode's model to EXPORT_DIR/<mode> (for recommend)")
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
  train = parser.add_argument_group("training")
  train.add_argument("--epochs", type=int, default=4, help="centralized epochs")
  train.add_argument("--batch_size", type=int, default=1024)
  train.add_argument("--learning_rate", type=float, default=0.005, help="centralized Adam")
  train.add_argument("--rounds", type=int, default=10, help="federated rounds")
  train.add_argument("--num_clients", type=int, default=10)
  train.add_argument("--partition", default="dirichlet", choices=SCHEMES)
  train.add_argument("--client_optimizer", default="adam", choices=("adam", "sgd"))
  train.add_argument("--client_learning_rate", type=float, default=0.005)
  train.add_argument("--server_learning_rate", type=float, default=0.05)
  train.add_argument("--client_epochs", type=int, default=1)
  train.add_argument("--eval_every", type=int, default=1)
  train.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  unknown = set(args.modes.split(",")) - set(MODES)
  if unknown:
    parser.error(f"--modes: unknown {sorted(unknown)}; expected a subset of {MODES}.")
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


def main(argv):
  tff_runtime.stop_workers_at_exit()
  args = parse_args(argv)
  load_before = tuple(round(x, 2) for x in os.getloadavg())
  header = [
      f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
      f"- machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}",
      f"- command: `{shlex.join([sys.executable, 'bench/retrieval.py'] + argv)}`",
      f"- data: {'synthetic' if args.synthetic else args.data_dir}; protocol {args.protocol}",
  ]
  rows = []
  for mode in args.modes.split(","):
    last = {}

    def on_round(round_num, metrics, mode=mode, last=last):
      last.update(metrics)
      shown = {k: round(v, 4) for k, v in metrics.items() if not k.endswith("num_users")}
      print(f"[{mode}] round {round_num} {shown}", flush=True)

    centralized = mode == "centralized"
    result = experiment.run_experiment(
        args.data_dir, mode=mode, kind=args.kind, protocol=args.protocol, partition=args.partition,
        num_clients=args.num_clients, embedding_dim=args.embedding_dim,
        hidden_units=tuple(int(u) for u in args.hidden_units.split(",") if u),
        use_user_id=args.centralized_user_id and centralized,
        history_length=args.history_length, temperature=args.temperature,
        normalize=not args.no_normalize, logq_correction=not args.no_logq,
        corpus_negatives=args.corpus_negatives,
        rounds=args.epochs if centralized else args.rounds, batch_size=args.batch_size,
        learning_rate=args.learning_rate if centralized else args.client_learning_rate,
        server_learning_rate=args.server_learning_rate,
        client_optimizer=args.client_optimizer, client_epochs=args.client_epochs,
        eval_every=args.eval_every, seed=args.seed,
        export_dir=(os.path.join(args.export_dir, mode)
                    if args.export_dir and args.kind == "retrieval" else None),
        use_synthetic_data=args.synthetic, on_round=on_round)
    print(f"[{mode}] test {result}", flush=True)
    features = "user id+" if args.centralized_user_id and centralized else ""
    nan = float("nan")
    rows.append({
        "model": args.kind,
        "mode": mode if centralized else
                f"federated ({args.partition}, {args.num_clients} clients)",
        "query_features": features + "demographics+history", "protocol": args.protocol,
        "rounds": args.epochs if centralized else args.rounds,
        "test_recall@10": result.get("test_recall@10", nan),
        "test_ndcg@10": result.get("test_ndcg@10", nan),
        "test_hr@10": result.get("test_hr@10", nan),
        "valid_ndcg@10": last.get("valid_ndcg@10", nan),
        "test_rmse": result.get("test_rmse", nan),
        "wall_seconds": result["wall_seconds"]})
  _write(rows, args, header, load_before)


if __name__ == "__main__":
  main(sys.argv[1:])
