"""Benchmark of the centralized baselines on MovieLens-1M.

Runs `tff_movierec.centralized.run_centralized` (every model on the canonical
per-user 10% holdout, under `recbole_ml1m`, cold start, bias ablation) and
records the date, machine (nproc, CPU model, load average sampled every 5 s
during the run) and command in `machine.json` and at the top of
`results.md` under --output_dir. With --tune it first re-runs the
hyperparameter searches of the rating models on a validation split carved
from the training data (`tuning_rating.csv`); the chosen values are
`baselines.DEFAULT_PARAMS`.

  /work/main/.venv/bin/python bench/centralized.py \
      --data_dir=/work/shared/data/ml-1m --output_dir=output/centralized
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import threading
import time

import pandas as pd

from tff_movierec.baselines import tuning
from tff_movierec.centralized import run_centralized, to_markdown
from tff_movierec.data import splits
from tff_movierec.data.movielens import load_movielens

TUNING_GRIDS = {
    "popularity": {"shrinkage": [0.0, 2.0, 5.0, 10.0, 25.0]},
    "bias_baseline": {"user_reg": [2.0, 5.0, 10.0], "item_reg": [2.0, 5.0, 10.0]},
    "svd": {"factors": [32, 48], "reg": [0.06, 0.08, 0.1]},
    "item_knn": {"k": [20, 40, 80], "shrinkage": [50.0, 100.0]},
}


class LoadSampler:
  """Samples os.getloadavg() every `period` seconds in a daemon thread."""

  def __init__(self, period: float = 5.0):
    self.samples = [os.getloadavg()]
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, args=(period,), daemon=True)

  def _run(self, period):
    while not self._stop.wait(period):
      self.samples.append(os.getloadavg())

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *unused):
    self._stop.set()
    self._thread.join()
    self.samples.append(os.getloadavg())

  def summary(self):
    one_minute = [s[0] for s in self.samples]
    return {"start": self.samples[0], "end": self.samples[-1], "min_1m": min(one_minute),
            "mean_1m": sum(one_minute) / len(one_minute), "max_1m": max(one_minute),
            "num_samples": len(one_minute)}


def _cpu_model():
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor()


def tune(data, output_dir, seed):
  """Validation searches of the rating models; writes tuning_rating.csv."""
  train, _ = splits.per_user_holdout(data.ratings, 0.1, seed=seed)
  tables = []
  for name, grid in TUNING_GRIDS.items():
    start = time.perf_counter()
    best, table = tuning.tune_rating_model(name, grid, train, data.num_users,
                                           data.num_movies, seed=seed)
    print(f"{name}: best {best} ({time.perf_counter() - start:.0f} s)", flush=True)
    tables.append(table.assign(model=name))
  table = pd.concat(tables, ignore_index=True)
  table.to_csv(os.path.join(output_dir, "tuning_rating.csv"), index=False)
  return table


def main(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", default="/work/shared/data/ml-1m")
  parser.add_argument("--ratings_path", default=None)
  parser.add_argument("--output_dir", default="output/centralized")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--models", default="", help="comma-separated subset (default all)")
  parser.add_argument("--tune", action="store_true", help="re-run the validation searches")
  args = parser.parse_args(argv[1:])
  os.makedirs(args.output_dir, exist_ok=True)
  data = load_movielens(args.data_dir, args.ratings_path)
  started = datetime.datetime.now(datetime.timezone.utc)
  with LoadSampler() as load:
    if args.tune:
      tune(data, args.output_dir, args.seed)
    models = [m for m in args.models.split(",") if m] or None
    results = run_centralized(data, args.output_dir, seed=args.seed, models=models)
  machine = {
      "date_utc": started.isoformat(timespec="seconds"),
      "wall_seconds": (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds(),
      "command": " ".join(shlex.quote(a) for a in [sys.executable, *argv]),
      "nproc": os.cpu_count(), "cpu_model": _cpu_model(),
      "load_average": load.summary(), "ratings": data.ratings_path,
  }
  with open(os.path.join(args.output_dir, "machine.json"), "w") as f:
    json.dump(machine, f, indent=2)
  path = os.path.join(args.output_dir, "results.md")
  with open(path) as f:
    body = f.read()
  header = "\n".join(f"- {k}: {v}" for k, v in machine.items())
  with open(path, "w") as f:
    f.write(body.replace("# Centralized baselines\n", f"# Centralized baselines\n\n{header}\n", 1))
  print(to_markdown(results.drop(columns=["params"])))
  print(json.dumps(machine, indent=2))


if __name__ == "__main__":
  main(sys.argv)
