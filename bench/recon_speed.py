"""Per-client cost of one cross-device FedRecon round on MovieLens-1M.

Each variant builds the FedRecon training process, runs `--warmup_rounds`
untimed rounds (tracing, worker start-up), then times `--rounds` rounds of
`--clients_per_round` users drawn at random. Reported per variant: wall and
CPU (this process plus TFF worker children) milliseconds per client per
round, ratings processed per second (ratings in the sampled clients'
datasets / wall time) and the load average, since the machine is shared.

Variants:
  tutorial      ClientData slices + batches of 16, TFF's default even/odd
                batch split, 1 reconstruction epoch (the style of the TFF
                FedRecon tutorial: many tiny steps, datasets re-created from
                ClientData every round).
  whole_user    in-memory two-batch datasets built once (whole reconstruction
                part and whole post-reconstruction part each one batch),
                `--reconstruction_steps` full-batch reconstruction steps.
  ... each with the execution context given by --contexts:
  native        TFF's default sync C++ context (worker subprocess).
  native_mcN    native, max_concurrent_computation_calls=N.
  test          tff.backends.test sync C++ context.

Example:
  .venv/bin/python bench/recon_speed.py --data_dir=/work/shared/data/ml-1m \
      --variants=tutorial,whole_user --contexts=native,native_mc2
"""

import argparse
import functools
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tff_movierec import tff_runtime  # noqa: E402

tff_runtime.stop_workers_at_exit()

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_federated as tff  # noqa: E402

from tff_movierec.data import client_data, movielens, splits  # noqa: E402
from tff_movierec.reconstruction import client_datasets, model, process  # noqa: E402


def _cpu_seconds() -> float:
  me = psutil.Process()
  total = sum(me.cpu_times()[:2])
  for child in me.children(recursive=True):
    try:
      total += sum(child.cpu_times()[:2])
    except psutil.NoSuchProcess:
      pass
  return total


def _set_context(name: str) -> None:
  if name == "native":
    set_context = tff.backends.native.set_sync_local_cpp_execution_context
  elif name.startswith("native_mc"):
    set_context = functools.partial(
        tff.backends.native.set_sync_local_cpp_execution_context,
        max_concurrent_computation_calls=int(name[len("native_mc"):]))
  elif name == "test":
    set_context = tff.backends.test.set_sync_test_cpp_execution_context
  else:
    raise ValueError(f"--contexts: unknown context {name!r}.")
  tff_runtime.switch_context(set_context)


def _tutorial_clients(train):
  """ClientData over in-memory tensors, batches of 16, per-round dataset creation."""
  data = client_data.make_client_data(
      {"movie": train["movie"].to_numpy(np.int32),
       "rating": train["rating"].to_numpy(np.float32)},
      train["user"].to_numpy(), int(train["user"].max()) + 1)
  counts = train.groupby("user").size()

  def datasets(ids):
    return [data.create_tf_dataset_for_client(c).batch(16).map(
        lambda e: (e["movie"], e["rating"])) for c in ids]

  return datasets, {str(u): int(n) for u, n in counts.items()}


def _tutorial_split(dataset):
  return tff.learning.models.ReconstructionModel.build_dataset_split_fn(
      split_dataset=True)(dataset)


def run_variant(variant, context, train, args):
  _set_context(context)
  mf = model.MFConfig(num_movies=args.num_movies, embedding_dim=args.embedding_dim)
  config = process.ReconConfig(reconstruction_steps=args.reconstruction_steps)
  model_fn = process.model_fn_for(mf)
  if variant == "tutorial":
    make_datasets, sizes = _tutorial_clients(train)
    learning_process = tff.learning.algorithms.build_fed_recon(
        model_fn, loss_fn=model.loss_fn, metrics_fn=model.metrics_fn,
        server_optimizer_fn=config.server(), client_optimizer_fn=config.client(),
        reconstruction_optimizer_fn=config.reconstruction(),
        dataset_split_fn=_tutorial_split)
  elif variant == "whole_user":
    users = client_datasets.training_datasets(train)
    make_datasets = users.datasets
    sizes = {c: sum(users.part_sizes(c)) for c in users.client_ids}
    learning_process = process.build_training_process(model_fn, config)
  else:
    raise ValueError(f"--variants: unknown variant {variant!r}.")
  client_ids = sorted(sizes, key=int)
  rng = np.random.default_rng(0)
  state = learning_process.initialize()
  wall = cpu = ratings = 0.0
  for round_num in range(args.warmup_rounds + args.rounds):
    ids = list(rng.choice(client_ids, args.clients_per_round, replace=False))
    start_wall, start_cpu = time.perf_counter(), _cpu_seconds()
    state = learning_process.next(state, make_datasets(ids)).state
    if round_num >= args.warmup_rounds:
      wall += time.perf_counter() - start_wall
      cpu += _cpu_seconds() - start_cpu
      ratings += sum(sizes[c] for c in ids)
  clients = args.rounds * args.clients_per_round
  return {
      "variant": variant, "context": context,
      "clients_per_round": args.clients_per_round, "rounds": args.rounds,
      "embedding_dim": args.embedding_dim,
      "reconstruction_steps": args.reconstruction_steps if variant != "tutorial" else "1 epoch",
      "wall_ms_per_client_round": round(1000 * wall / clients, 2),
      "cpu_ms_per_client_round": round(1000 * cpu / clients, 2),
      "ratings_per_s": round(ratings / wall),
      "loadavg": [round(x, 2) for x in os.getloadavg()],
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_dir", required=True)
  parser.add_argument("--variants", default="tutorial,whole_user")
  parser.add_argument("--contexts", default="native")
  parser.add_argument("--clients_per_round", type=int, default=100)
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--warmup_rounds", type=int, default=2)
  parser.add_argument("--embedding_dim", type=int, default=16)
  parser.add_argument("--reconstruction_steps", type=int, default=10)
  parser.add_argument("--output", default="", help="optional JSON-lines file to append to")
  args = parser.parse_args()
  data = movielens.load_movielens(args.data_dir)
  args.num_movies = data.num_movies
  train, _ = splits.per_user_holdout(data.ratings, 0.1, seed=0)
  print(f"cpus={os.cpu_count()} tf={tf.__version__} tff={tff.__version__}")
  for context in args.contexts.split(","):
    for variant in args.variants.split(","):
      row = run_variant(variant, context, train, args)
      print(json.dumps(row), flush=True)
      if args.output:
        with open(args.output, "a") as f:
          f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
  main()
