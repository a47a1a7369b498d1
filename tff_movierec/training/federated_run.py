"""What a federated task hands the training loop (`loop.run_training`).

The loop never knows a task's internals: it samples clients with `sampler`,
turns them into the client argument of `process.next` with `client_data_fn`,
evaluates with `evaluate_fn` and, after the last round, lets `report_fn`
write the task's own outputs (per-client tables, exported models).
"""

import dataclasses
import math
from typing import Any, Callable, List, Mapping, Optional

import pandas as pd

from tff_movierec.training.sampling import ClientSampler


@dataclasses.dataclass(frozen=True)
class Report:
  """What a task reports after its last round.

  Attributes:
    text: the console summary (a few lines; full tables go to files).
    headline: one line with the run's main finding, printed last.
    comparisons: {model name: its final value of the run's key metric}, e.g.
      {"local-only": 0.717}: drawn beside the federated curve.
    tables: {name: table} for summary.md and TensorBoard's Text dashboard.
    images: {caption: path of a PNG the task wrote}, linked from summary.md.
  """

  text: str = ""
  headline: str = ""
  comparisons: Mapping[str, float] = dataclasses.field(default_factory=dict)
  tables: Mapping[str, pd.DataFrame] = dataclasses.field(default_factory=dict)
  images: Mapping[str, str] = dataclasses.field(default_factory=dict)


# (final state, experiment folder) -> the task's report.
ReportFn = Callable[[Any, str], Report]
# (state, round_num) -> metrics, released under "eval/".
EvaluateFn = Callable[[Any, int], Mapping[str, float]]


@dataclasses.dataclass(frozen=True)
class DpAccounting:
  """User-level DP of the aggregator, for the loop's ε accounting.

  Attributes:
    noise_multiplier: noise std / clip norm of every round's sum.
    delta: δ of the reported (ε, δ).
    target_epsilon: the ε the noise multiplier was calibrated to reach after
      the run's rounds (None if it was set directly).
    mechanism: one line for the run's summary: what is noised, the clip, the
      participation and the accounting.
  """

  noise_multiplier: float
  delta: float
  target_epsilon: Optional[float] = None
  mechanism: str = ""


@dataclasses.dataclass(frozen=True)
class FederatedRun:
  """A federated task, ready to train.

  Attributes:
    process: `initialize()`, `next(state, client_data) -> output` (with
      `.state` and `.metrics`; the training metrics under
      `metrics["client_work"]["train"]`) and `get_model_weights(state)` (a
      `tff.learning.models.ModelWeights` of numpy arrays): a
      `tff.learning.templates.LearningProcess` or an object shaped like one.
    initial_state_fn: () -> the state before round 1, with model weights
      drawn from the task's seed (the loop also uses it as the structure of
      checkpoints).
    sampler: the clients of each round, a function of (seed, round).
    client_data_fn: (client ids, round_num) -> the second argument of
      `process.next` (e.g. their preprocessed datasets).
    evaluate_fn: (state, round_num) -> metrics of the model, or None.
    report_fn: (final state, experiment folder) -> `Report`; writes the
      task's own result files. None: nothing beyond metrics.csv.
    key_metric: the evaluation metric that the learning curves and the
      HParams dashboard lead with (e.g. "mae"; released as eval/<key_metric>).
    report_seconds: the report's estimated wall time (e.g. its comparison
      models, timed on a few batches), counted in the run's ETA.
    dp: set iff the aggregator is user-level DP; the loop then reports ε.
    loss_bound: a training loss above it means training diverged even if it
      is finite (e.g. an MSE of 100 on ratings from 1 to 5, which predicting
      any constant rating stays far below).
    divergence_hint: the settings most likely at fault if training diverges
      (e.g. {"client_learning_rate": 30.0}), named in the error.
    description: one line for logs.
  """

  process: Any
  initial_state_fn: Callable[[], Any]
  sampler: ClientSampler
  client_data_fn: Callable[[List[str], int], Any]
  evaluate_fn: Optional[EvaluateFn] = None
  report_fn: Optional[ReportFn] = None
  dp: Optional[DpAccounting] = None
  loss_bound: float = math.inf
  divergence_hint: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  description: str = ""
  key_metric: str = "loss"
  report_seconds: float = 0.0
