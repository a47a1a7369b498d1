"""Runs a registered task from its settings: the one path shared by
`run_experiment.py` and the benchmarks.

configure (every setting checked, nothing loaded) -> open the experiment
folder (writable, free, same settings if it holds a checkpoint) -> build ->
the one training loop -> the task's report -> the run's plots
(learning_curves.png; privacy.png with a DP aggregator), TensorBoard's
HParams and Text, and summary.md linking everything.
"""

import dataclasses
import os
from typing import Any, Callable, Optional

import pandas as pd

from tasks.definition import RUNTIME, RUNTIME_DATA, Hparams, TaskDefinition
from tff_movierec import remote_workers, tff_runtime
from tff_movierec.reporting import plots
from tff_movierec.training import loop, managers, tensorboard
from tff_movierec.training.federated_run import FederatedRun, Report

# Settings that may change when a checkpointed run is started again (not
# total_rounds with target_epsilon: the noise was calibrated to the rounds).
# Where the computations run may change too (e.g. resume on other workers).
EXTENDABLE = ("total_rounds", "root_output_dir") + RUNTIME + RUNTIME_DATA


@dataclasses.dataclass(frozen=True)
class TrainedRun:
  """A finished federated run.

  Attributes:
    state: the final state of the process.
    run: what the task built (possibly adapted, see `train`).
    experiment: its managers (metrics.csv, TensorBoard, checkpoints).
    report: the task's report (empty without a report_fn).
    summary_path: the run's summary.md.
  """

  state: Any
  run: FederatedRun
  experiment: managers.ExperimentManagers
  report: Report
  summary_path: str


def _folder(task: TaskDefinition, hp: Hparams) -> managers.ExperimentFolder:
  extendable = EXTENDABLE
  if hp.get("target_epsilon") is not None:
    extendable = tuple(name for name in EXTENDABLE if name != "total_rounds")
  return managers.open_experiment(hp["root_output_dir"], hp["experiment_name"] or task.name,
                                  hp, extendable=extendable)


def worker_settings(hp: Hparams) -> Optional[remote_workers.WorkerSettings]:
  """The remote workers of hp["workers"] (None: run on one local worker)."""
  if not hp["workers"]:
    return None
  return remote_workers.WorkerSettings(tuple(hp["workers"]), hp["num_subrounds"],
                                       hp["worker_timeout_s"])


def run_standalone(task: TaskDefinition, hp: Hparams) -> str:
  """Runs a task that is not federated (eda, centralized); returns its summary."""
  configs = task.configure(hp)
  folder = _folder(task, hp)
  try:
    return task.run(configs, folder.output_dir)
  finally:
    folder.close()


def train(task: TaskDefinition, hp: Hparams, log: Callable[[str], None] = print,
          adapt: Optional[Callable[[FederatedRun], FederatedRun]] = None) -> TrainedRun:
  """Trains a federated task to hp["total_rounds"] (resuming its folder's run).

  Args:
    task, hp: the task and the settings it reads.
    log: receives the task's description and the loop's line per round.
    adapt: FederatedRun -> FederatedRun applied before training (benchmarks:
      e.g. drop the evaluation, meter the process).
  """
  configs = task.configure(hp)
  loop_config = loop.LoopConfig(hp["total_rounds"], hp["rounds_per_eval"],
                                hp["rounds_per_checkpoint"])
  workers = worker_settings(hp)
  folder = _folder(task, hp)
  try:
    tff_runtime.use_workers(workers)
    tff_runtime.install()
    run = task.build(configs)
    log(f"{task.name}: {run.description}")
    if run.dp is not None and run.dp.target_epsilon is not None:
      folder.record_derived(hp, calibrated_noise_multiplier=run.dp.noise_multiplier)
    if adapt is not None:
      run = adapt(run)
    experiment = folder.create_managers()
    experiment.tensorboard_run.write_hparams(os.path.basename(folder.output_dir), hp)
    state = loop.run_training(run, loop_config, experiment, log=log)
    report = Report()
    if run.report_fn is not None:
      log("Final evaluation and report...")
      report = run.report_fn(state, folder.output_dir)
    summary_path = write_outputs(task, hp, run, report, experiment)
    return TrainedRun(state, run, experiment, report, summary_path)
  finally:
    tff_runtime.use_workers(None)
    folder.close()


def write_outputs(task: TaskDefinition, hp: Hparams, run: FederatedRun, report: Report,
                  experiment: managers.ExperimentManagers) -> str:
  """The run's plots, TensorBoard report and summary.md; returns its path."""
  output_dir = experiment.output_dir
  metrics = pd.read_csv(experiment.metrics_csv)
  images = {"Learning curves": plots.learning_curves(
      metrics, os.path.join(output_dir, plots.LEARNING_CURVES), run.key_metric,
      report.comparisons)}
  if run.dp is not None:
    images["Privacy spent"] = plots.privacy_curve(metrics, os.path.join(output_dir,
                                                                        plots.PRIVACY))
  images.update(report.images)
  last_round = int(metrics["round_num"].max())
  experiment.tensorboard_run.write_report(report.tables, report.comparisons, run.key_metric,
                                          last_round)
  final = metrics[metrics["round_num"] == last_round].iloc[-1]
  evaluated = [f"{name[5:]} {final[name]:.4f}" for name in metrics.columns
               if name.startswith("eval/") and not tensorboard.is_count(name)
               and pd.notna(final[name])]
  lines = [f"task: {task.name}, {run.description}",
           f"rounds: {last_round}; final evaluation: {', '.join(evaluated) or 'none'}"]
  if "privacy/epsilon" in metrics:
    lines.append(f"privacy: ε = {final['privacy/epsilon']:.3f} at δ = "
                 f"{final['privacy/delta']:g} (user-level) after {last_round} rounds; "
                 f"{run.dp.mechanism}")
  lines += [line for line in (report.headline,) if line]
  lines.append("settings: hparams.csv; per-round metrics: metrics.csv; TensorBoard: "
               "tensorboard/")
  experiment_name = os.path.basename(output_dir)
  title = task.name if experiment_name == task.name else f"{task.name}: {experiment_name}"
  return plots.write_summary(output_dir, title, lines, images, report.tables)
