"""Feature-ablation harness: retrain with each feature group switched off.

Generic over models: the caller's `train_fn(disabled)` trains and evaluates a
model with the given feature groups switched off and returns its metrics.
"""

from typing import Callable, FrozenSet, Mapping, Sequence

import pandas as pd

TrainFn = Callable[[FrozenSet[str]], Mapping[str, float]]


def ablate(train_fn: TrainFn, feature_groups: Sequence[str], metric: str = "mae"
           ) -> pd.DataFrame:
  """Metrics with all groups on, then with each group off.

  Args:
    train_fn: frozenset of disabled group names -> {metric name: value}
      (must contain `metric`).
    feature_groups: names of the groups to switch off one at a time.
    metric: the metric whose change is reported (lower is better, e.g. mae).

  Returns:
    One row per run: `disabled` ("none" for the full model), every metric
    returned, and `delta_{metric}` = value - full model's value (positive =
    the group helps).
  """
  if len(set(feature_groups)) != len(feature_groups):
    raise ValueError(f"feature_groups has duplicates: {list(feature_groups)}.")
  rows = []
  for group in [None, *feature_groups]:
    disabled = frozenset() if group is None else frozenset([group])
    result = dict(train_fn(disabled))
    if metric not in result:
      raise ValueError(f"train_fn returned no {metric!r}: {sorted(result)}.")
    rows.append({"disabled": group or "none", **result})
  table = pd.DataFrame(rows)
  table[f"delta_{metric}"] = table[metric] - table.loc[0, metric]
  return table
