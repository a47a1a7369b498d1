"""TensorBoard for an experiment: described scalars, HParams, Text, comparison models.

Layout under the experiment's `tensorboard/` folder, one TensorBoard run per
sub-folder (so `tensorboard --logdir ROOT_OUTPUT_DIR` names each run
`<experiment>/tensorboard/<setting>`):
  federated/   every round's scalars (train/, eval/, speed/, privacy/; counts
               stay in metrics.csv only), the run's settings and final
               metrics (HParams dashboard), the report's tables (Text)
  <model>/     a comparison model (e.g. local-only): its final value of the
               key metric as eval/<key> at the first and the last round, a
               flat line beside the federated curve in the same chart
"""

import os
from typing import Any, Callable, Mapping

import pandas as pd
import tensorflow as tf
import tensorflow_federated as tff
from tensorboard.plugins.hparams import api as hparams_api

from tff_movierec.reporting import plots

FEDERATED_RUN = "federated"
# Metrics that count things (by their last name part): integers in
# metrics.csv, not charted in TensorBoard.
COUNT_NAMES = ("clients", "num_examples", "examples", "num_clients", "users", "num_users",
               "bytes_sent", "bytes_received")
# Metric name (or its prefix up to "/") -> description (TensorBoard shows it
# under the chart). Units in brackets.
DESCRIPTIONS = {
    "train/loss": "Training loss of the round: the clients' mean over their training "
                  "batches, weighted by examples (MSE in stars² for rating tasks).",
    "train/": "Metric of the round's client training batches (computed on the clients "
              "while they train).",
    "eval/": "Metric of the global model on the evaluation split (held-out test ratings, "
             "or validation ratings with --eval_split=validation).",
    "speed/round_seconds": "Wall time of the round's process.next [s].",
    "speed/examples_per_second": "Training examples processed per second of the round's "
                                 "wall time [examples/s].",
    "speed/eval_seconds": "Wall time of the evaluation after this round [s].",
    "speed/elapsed_seconds": ("Wall time since this process began training, at the end of "
                              "this round and its evaluation [s]."),
    "traffic/bytes_sent": ("Bytes of the gRPC requests this process sent to its TFF "
                           "worker(s) during the round's process.next (model, client data)."),
    "traffic/bytes_received": ("Bytes of the gRPC responses this process received from its "
                               "TFF worker(s) during the round's process.next."),
    "privacy/epsilon": "ε of the user-level (ε, δ)-DP guarantee after this round (RDP "
                       "accounting of the Gaussian mechanism with the round's sampling).",
    "privacy/delta": "δ of the reported (ε, δ).",
}


def is_count(name: str) -> bool:
  """Whether metric `name` counts things (clients, examples)."""
  return name.rsplit("/", 1)[-1] in COUNT_NAMES


def describe(name: str) -> str:
  """The description of metric `name` (its own, else its group's, else "")."""
  if name in DESCRIPTIONS:
    return DESCRIPTIONS[name]
  return DESCRIPTIONS.get(name.split("/", 1)[0] + "/", "")


def _hparam_value(value: Any):
  """A value the HParams plugin accepts (bool, int, float or str)."""
  if isinstance(value, (bool, int, float, str)):
    return value
  if value is None:
    return ""
  if isinstance(value, (list, tuple)):
    return ",".join(str(v) for v in value)
  return str(value)


class FederatedRunWriter(tff.program.ReleaseManager):
  """The federated run's event file: a release manager of the loop's metrics
  ({name: number} at step `key`, as described scalars; names for which
  `skip` is true, e.g. counts, stay out), plus the run's settings and report.

  Args:
    tensorboard_dir: the experiment's tensorboard/ folder.
    skip: name -> whether to leave the metric out of TensorBoard.
  """

  def __init__(self, tensorboard_dir: str, skip: Callable[[str], bool] = is_count):
    self._tensorboard_dir = tensorboard_dir
    self._writer = tf.summary.create_file_writer(
        os.path.join(tensorboard_dir, FEDERATED_RUN))
    self._skip = skip

  async def release(self, value: Mapping[str, float], key: int) -> None:
    with self._writer.as_default():
      for name, number in value.items():
        if not self._skip(name):
          tf.summary.scalar(name, number, step=key, description=describe(name))
    self._writer.flush()

  def write_hparams(self, trial: str, settings: Mapping[str, Any]) -> None:
    """The run's settings, for the HParams dashboard (its metrics are this
    run's scalars)."""
    with self._writer.as_default():
      hparams_api.hparams({name: _hparam_value(v) for name, v in settings.items()},
                          trial_id=trial)
    self._writer.flush()

  def write_report(self, tables: Mapping[str, pd.DataFrame], comparisons: Mapping[str, float],
                   key_metric: str, last_round: int) -> None:
    """The report's tables (Text dashboard) and the comparison models' key
    metric (a run each, see the module docstring)."""
    with self._writer.as_default():
      for name, table in tables.items():
        tf.summary.text(f"report/{name}", "\n".join(plots.markdown_table(table)),
                        step=last_round)
    self._writer.flush()
    for model, value in comparisons.items():
      writer = tf.summary.create_file_writer(os.path.join(self._tensorboard_dir, model))
      with writer.as_default():
        for step in sorted({1, last_round}):
          tf.summary.scalar(f"eval/{key_metric}", value, step=step,
                            description=f"{model}, trained once, drawn flat for comparison. "
                                        + describe(f"eval/{key_metric}"))
      writer.close()
