"""`centralized`: every classical centralized baseline (global mean, popularity,
user average, bias baseline, SVD, user/item KNN, EASE) on the canonical
holdout, with rating and ranking metrics: the references the federated tasks
are compared with."""

import os
from typing import Any, Mapping

from tasks import common
from tasks.definition import TaskDefinition
from tff_movierec import centralized


def configure(hp: Mapping[str, Any]) -> Mapping[str, Any]:
  return hp


def run(hp: Mapping[str, Any], output_dir: str) -> str:
  table = centralized.run_centralized(common.load_movielens(hp), output_dir, seed=hp["seed"])
  return (centralized.to_markdown(table.drop(columns=["params"])) +
          f"\nResults written to {os.path.join(output_dir, 'results.csv')}")


TASK = TaskDefinition(
    name="centralized", summary="every centralized baseline on the canonical holdout",
    reads=("seed",), configure=configure, run=run)
