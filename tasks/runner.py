"""Runs a registered task from its settings: the one path shared by
`run_experiment.py` and the benchmarks.

configure (every setting checked, nothing loaded) -> open the experiment
folder (writable, free, same settings if it holds a checkpoint) -> build ->
the one training loop -> the task's report.
"""

import dataclasses
from typing import Any, Callable, Optional

from tasks.definition import Hparams, TaskDefinition
from tff_movierec import tff_runtime
from tff_movierec.training import loop, managers
from tff_movierec.training.federated_run import FederatedRun

# Settings that may change when a checkpointed run is started again.
EXTENDABLE = ("total_rounds", "root_output_dir")


@dataclasses.dataclass(frozen=True)
class TrainedRun:
  """A finished federated run.

  Attributes:
    state: the final state of the process.
    run: what the task built (possibly adapted, see `train`).
    experiment: its managers (metrics.csv, TensorBoard, checkpoints).
    report: the task's console summary ("" without a report).
  """

  state: Any
  run: FederatedRun
  experiment: managers.ExperimentManagers
  report: str


def _folder(task: TaskDefinition, hp: Hparams) -> managers.ExperimentFolder:
  return managers.open_experiment(hp["root_output_dir"], hp["experiment_name"] or task.name,
                                  hp, extendable=EXTENDABLE)


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
  folder = _folder(task, hp)
  try:
    tff_runtime.install()
    run = task.build(configs)
    log(f"{task.name}: {run.description}")
    if adapt is not None:
      run = adapt(run)
    experiment = folder.create_managers()
    state = loop.run_training(run, loop_config, experiment, log=log)
    report = run.report_fn(state, folder.output_dir) if run.report_fn is not None else ""
    return TrainedRun(state, run, experiment, report)
  finally:
    folder.close()
