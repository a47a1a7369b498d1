"""Hyperparameter selection on validation data carved from training data.

The test split is never seen: rating models are tuned on a 10% per-user
holdout of the training ratings; ranking models on the protocol's own
validation split, or on a holdout carved from its training ratings when the
protocol has none.
"""

import itertools
from typing import Any, Dict, Mapping, Sequence, Tuple

import pandas as pd

from tff_movierec import baselines
from tff_movierec.baselines import base
from tff_movierec.data import splits
from tff_movierec.metrics import protocols
from tff_movierec.metrics.rating import rating_metrics

VALIDATION_SEED_OFFSET = 1  # the carved split differs from the test split


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list:
  """[{name: value}] for every combination of the grid's values."""
  names = list(grid)
  return [dict(zip(names, values)) for values in itertools.product(*grid.values())]


def tune_rating_model(name: str, grid: Mapping[str, Sequence[Any]], train: pd.DataFrame,
                      num_users: int, num_movies: int, seed: int = 0
                      ) -> Tuple[Dict[str, Any], pd.DataFrame]:
  """Parameters of model `name` minimizing validation RMSE, and all scores."""
  fit_part, valid = splits.per_user_holdout(train, 0.1, seed=seed + VALIDATION_SEED_OFFSET)
  users, movies, ratings = base.arrays(valid)
  rows = []
  for params in expand_grid(grid):
    model = baselines.make(name, seed=seed, **params).fit(fit_part, num_users, num_movies)
    rows.append({**params, **rating_metrics(ratings, model.predict(users, movies))})
  table = pd.DataFrame(rows)
  best = table.loc[table["rmse"].idxmin(), list(grid)].to_dict()
  return best, table


def tune_ranking_model(name: str, grid: Mapping[str, Sequence[Any]],
                       protocol: protocols.RankingProtocol, metric: str = "ndcg@10",
                       seed: int = 0) -> Tuple[Dict[str, Any], pd.DataFrame]:
  """Parameters of model `name` maximizing `metric` on validation data."""
  validation = protocol
  if not len(protocol.valid_ratings):
    validation = protocols.carve_validation(protocol, seed + VALIDATION_SEED_OFFSET)
  k = int(metric.split("@")[1])
  rows = []
  for params in expand_grid(grid):
    model = baselines.make(name, seed=seed, **params).fit(
        validation.train_ratings, protocol.num_users, protocol.num_movies)
    rows.append({**params, **validation.evaluate(model.score_all, (k,), split="valid")})
  table = pd.DataFrame(rows)
  best = table.loc[table[metric].idxmax(), list(grid)].to_dict()
  return best, table
