"""Centralized reference results: every baseline under every protocol.

`run_centralized` fits each model of `tff_movierec.baselines` on the
canonical per-user 10% holdout (seed `seed`) and writes under `output_dir`:

  results.csv       one row per model: fit_seconds (wall), fit_cpu_seconds
                    (CPU time of this process, all threads: the figure to
                    read on a shared, loaded machine), rmse, mae, mse, r2, mape
                    on the held-out ratings, holdout_{recall,ndcg,hr}@K
                    (full ranking, relevant = held-out rating >= 4) and
                    seed_variant_{recall,ndcg}@K (the seed's optimistic
                    variant; see metrics/protocols.py). EASE and ADMM-SLIM
                    rank but do not predict ratings: their rating columns
                    are empty.
  recbole_ml1m.csv  full-ranking metrics under RecBole's ML-1M protocol, plus
                    `popularity_recbole_emulation`, a replay of RecBole's Pop
                    implementation (see baselines/recbole_pop.py) that
                    explains why its published Pop row is below true
                    popularity.
  cold_start.csv    rating metrics on held-out users / held-out movies (models
                    fitted without them), with each model's fallback.
  ablation.csv      the ablation harness applied to the bias baseline (user
                    and item biases switched off in turn).
  tuning.csv        EASE's validation scores for each λ (per protocol).
  results.md        all of the above as Markdown.
"""

import os
import time
from typing import Dict, Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from tff_movierec import baselines
from tff_movierec.baselines import base, tuning
from tff_movierec.baselines.recbole_pop import RecBolePop
from tff_movierec.data import splits
from tff_movierec.data.movielens import MovieLens
from tff_movierec.metrics import ablation, protocols
from tff_movierec.metrics.rating import RATING_METRICS, rating_metrics

MODEL_NAMES = tuple(baselines.MODELS)
EASE_GRID = {"reg": [250.0, 500.0, 1000.0, 2000.0]}
COLD_START_FALLBACKS = {
    "global_mean": "μ for every pair",
    "popularity": "unseen user: item mean (shrunk); unseen movie: μ",
    "user_average": "unseen user: μ; unseen movie: the user's mean",
    "bias_baseline": "unseen user: μ + b_i; unseen movie: μ + b_u",
    "svd": "zero factors and bias: unseen user μ + b_i, unseen movie μ + b_u",
    "user_knn": "no neighbours: baseline μ + b_u + b_i (one bias is 0)",
    "item_knn": "no neighbours: baseline μ + b_u + b_i (one bias is 0)",
}


def _fit(name, train, data: MovieLens, seed, **params):
  """(model fitted on `train` ratings of `data`, wall seconds); predictions are
  clipped to the data's rating scale. CPU seconds are in `model.fit_cpu_seconds`."""
  model = baselines.make(name, seed=seed, **params)
  model.rating_scale = data.rating_scale
  start, cpu_start = time.perf_counter(), time.process_time()
  model.fit(train, data.num_users, data.num_movies)
  model.fit_cpu_seconds = time.process_time() - cpu_start
  return model, time.perf_counter() - start


def _rating_row(model, test) -> Dict[str, float]:
  if not model.predicts_ratings:
    return {metric: np.nan for metric in RATING_METRICS}
  users, movies, ratings = base.arrays(test)
  return rating_metrics(ratings, model.predict(users, movies))


def _prefixed(prefix, result, names):
  return {f"{prefix}_{name}": result[name] for name in names}


def _tuned_ease(protocol, seed, tuning_rows):
  params, table = tuning.tune_ranking_model("ease", EASE_GRID, protocol, seed=seed)
  tuning_rows.append(table.assign(model="ease", protocol=protocol.name))
  return params


def holdout_table(data: MovieLens, models: Sequence[str], seed: int, k: int,
                  tuning_rows: list) -> pd.DataFrame:
  """results.csv rows: rating and ranking metrics on the canonical holdout."""
  holdout = protocols.holdout(data.ratings, data.num_users, data.num_movies, seed=seed)
  variant = protocols.seed_variant(data.ratings, data.num_users, data.num_movies, seed=seed)
  ranking_names = [f"recall@{k}", f"ndcg@{k}", f"hr@{k}"]
  rows = []
  for name in models:
    params = _tuned_ease(holdout, seed, tuning_rows) if name == "ease" else {}
    model, seconds = _fit(name, holdout.train_ratings, data, seed, **params)
    row = {"model": name, "fit_seconds": seconds, "fit_cpu_seconds": model.fit_cpu_seconds,
           **_rating_row(model, holdout.test_ratings)}
    row.update(_prefixed("holdout", holdout.evaluate(model.score_all, (k,)), ranking_names))
    row.update(_prefixed("seed_variant", variant.evaluate(model.score_all, (k,)),
                         ranking_names[:2]))
    row["params"] = _describe(model)
    rows.append(row)
  return pd.DataFrame(rows)


def recbole_table(data: MovieLens, models: Sequence[str], seed: int, k: int,
                  tuning_rows: list) -> pd.DataFrame:
  """recbole_ml1m.csv rows: full-ranking metrics under RecBole's protocol."""
  protocol = protocols.recbole_ml1m(data.ratings, data.num_users, data.num_movies, seed=seed)
  rows = []
  for name in models:
    params = _tuned_ease(protocol, seed, tuning_rows) if name == "ease" else {}
    model, seconds = _fit(name, protocol.train_ratings, data, seed, **params)
    rows.append({"model": name, "fit_seconds": seconds,
                 **protocol.evaluate(model.score_all, (k,)), "params": _describe(model)})
  emulation = RecBolePop(seed=seed)
  start = time.perf_counter()
  emulation.fit(protocol.train_ratings, data.num_users, data.num_movies)
  rows.append({"model": emulation.name, "fit_seconds": time.perf_counter() - start,
               **protocol.evaluate(emulation.score_all, (k,)),
               "params": _describe(emulation)})
  return pd.DataFrame(rows).assign(**protocols.describe(protocol))


def cold_start_table(data: MovieLens, models: Sequence[str], seed: int) -> pd.DataFrame:
  """cold_start.csv rows: rating metrics on held-out users and movies."""
  rows = []
  for setting, split in (("unseen_users", splits.cold_start_users),
                         ("unseen_movies", splits.cold_start_movies)):
    seen, unseen = split(data.ratings, 0.1, seed=seed)
    for name in models:
      if not baselines.MODELS[name].predicts_ratings:
        continue
      model, seconds = _fit(name, seen, data, seed)
      rows.append({"setting": setting, "model": name, "num_ratings": len(unseen),
                   **_rating_row(model, unseen), "fit_seconds": seconds,
                   "fallback": COLD_START_FALLBACKS[name]})
  columns = ["setting", "model", "num_ratings", *RATING_METRICS, "fit_seconds", "fallback"]
  return pd.DataFrame(rows, columns=columns)


def bias_ablation_table(data: MovieLens, seed: int) -> pd.DataFrame:
  """The ablation harness on the bias baseline (a bias is off = infinite λ)."""
  train, test = splits.per_user_holdout(data.ratings, 0.1, seed=seed)
  switches = {"user_bias": "user_reg", "item_bias": "item_reg"}

  def train_fn(disabled):
    params = {switches[group]: np.inf for group in disabled}
    model, _ = _fit("bias_baseline", train, data, seed, **params)
    return _rating_row(model, test)

  return ablation.ablate(train_fn, list(switches))


def _describe(model) -> str:
  params = {k: v for k, v in vars(model).items()
            if not k.endswith("_") and k != "fit_cpu_seconds"}
  return " ".join(f"{k}={v}" for k, v in params.items())


def to_markdown(table: pd.DataFrame, digits: int = 4) -> str:
  """A GitHub Markdown table; floats rounded, NaN shown empty."""
  def cell(value):
    if isinstance(value, float):
      return "" if np.isnan(value) else f"{value:.{digits}f}"
    return str(value)
  lines = ["| " + " | ".join(map(str, table.columns)) + " |",
           "|" + "---|" * len(table.columns)]
  lines += ["| " + " | ".join(cell(v) for v in row) + " |"
            for row in table.itertuples(index=False)]
  return "\n".join(lines)


def run_centralized(data: MovieLens, output_dir: str, seed: int = 0,
                    models: Optional[Iterable[str]] = None, k: int = 10) -> pd.DataFrame:
  """Runs every model under every protocol; writes the files listed above.

  Args:
    data: MovieLens data (real or synthetic).
    output_dir: created if needed.
    seed: seed of the splits and of seeded models.
    models: subset of `baselines.MODELS` (default: all, in registry order).
    k: ranking cut-off.

  Returns:
    The results.csv table (one row per model).
  """
  models = tuple(models or MODEL_NAMES)
  unknown = set(models) - set(MODEL_NAMES)
  if unknown:
    raise ValueError(f"unknown models {sorted(unknown)}; expected from {MODEL_NAMES}.")
  os.makedirs(output_dir, exist_ok=True)
  tuning_rows = []
  builders = {
      "results": lambda: holdout_table(data, models, seed, k, tuning_rows),
      "recbole_ml1m": lambda: recbole_table(data, models, seed, k, tuning_rows),
      "cold_start": lambda: cold_start_table(data, models, seed),
      "ablation": lambda: bias_ablation_table(data, seed),
      "tuning": lambda: pd.concat(tuning_rows, ignore_index=True) if tuning_rows else None,
  }
  sections = []
  tables = {}
  for name, build in builders.items():  # each file is written when ready
    table = build()
    if table is None:
      continue
    tables[name] = table
    table.to_csv(os.path.join(output_dir, f"{name}.csv"), index=False)
    sections.append(f"## {name}\n\n{to_markdown(table)}\n")
    with open(os.path.join(output_dir, "results.md"), "w") as f:
      f.write("# Centralized baselines\n\n" + "\n".join(sections))
  return tables["results"]
