"""What the two cross-device tasks (one client per user) share: their checks,
the users they evaluate, and their final report (final_eval.csv)."""

import os
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from tasks import common
from tff_movierec.errors import require
from tff_movierec.training import sampling
from tff_movierec.training.federated_run import Report

# Settings both tasks read besides the privacy, optimizer and model ones.
READS = ("test_fraction",) + common.EVAL_SPLIT + (
    "clients_per_round", "client_sampling", "embedding_dim", "cold_start_fraction",
    "eval_clients", "final_eval_clients")


def check(hp: Mapping) -> None:
  """Checks the settings of `READS` (raises ConfigError naming them)."""
  common.require_fraction(hp, "test_fraction")
  require(0 <= hp["cold_start_fraction"] < 1, "cold_start_fraction",
          hp["cold_start_fraction"], "must be in [0, 1).")
  for name in ("eval_clients", "final_eval_clients"):
    require(hp[name] is None or hp[name] >= 1, name, hp[name], "must be >= 1.")
  require(hp["client_sampling"] in sampling.SCHEMES, "client_sampling",
          hp["client_sampling"], f"must be one of {sampling.SCHEMES}.")
  require(hp["clients_per_round"] >= 0, "clients_per_round", hp["clients_per_round"],
          "must be >= 0 (0: every user, every round).")


def subset(client_ids: Sequence[str], size: Optional[int],
           rng: np.random.Generator) -> List[str]:
  """A fixed random subset of `size` client ids (all of them if None or larger)."""
  if size is None or size >= len(client_ids):
    return list(client_ids)
  return sorted(rng.choice(client_ids, size, replace=False), key=int)


def final_report(rows: Dict[str, Mapping[str, float]], output_dir: str,
                 eval_split: str) -> Report:
  """Writes final_eval.csv: one row per user group ('seen', 'unseen') with
  rmse, mae, num_ratings and num_clients; returns the report naming it."""
  table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("users").reset_index()
  path = os.path.join(output_dir, "final_eval.csv")
  table.to_csv(path, index=False, float_format="%.4f")
  split = "validation" if eval_split == "validation" else "held-out"
  lines = [f"{split} ratings of {r['num_clients']:.0f} {name} users: RMSE {r['rmse']:.4f}, "
           f"MAE {r['mae']:.4f}" for name, r in rows.items()]
  return Report(text=f"Final evaluation: {path}", headline="; ".join(lines),
                tables={"Final evaluation": table})
