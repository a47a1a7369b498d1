"""How the bench scripts run a federated task: the settings `run_experiment.py`
would use and the one training loop (`tff_movierec/training/loop.py`).

  state, federated_run, experiment = engine.run_task(
      "movielens_recon", {"use_synthetic_data": True, "total_rounds": 2,
                          "root_output_dir": "/tmp/bench"})
  rows = engine.metrics(experiment)  # metrics.csv: one row per round

`hparams` builds a task's settings the way `run_experiment.task_hparams`
builds them from the command line: the flags' defaults, then the task's
`defaults` (its `privacy` preset's, and `synthetic_defaults` with
use_synthetic_data), then the
settings given, which play the part of the flags given on the command line.
A setting the task does not read is refused, as a stray flag is. Only the
flags' definitions (their defaults) are read here; FLAGS is never parsed, so
run_experiment.py stays the only module that reads flags.

Benchmarks time whole runs, so `run_task` refuses an experiment folder that
already holds a run instead of resuming it.
"""

import argparse
import dataclasses
import os
import time
from typing import Any, Callable, List, Mapping, NamedTuple, Optional, Tuple

import pandas as pd

import run_experiment
from tasks import common, registry, runner
from tasks.definition import NO_PRESET, Hparams
from tff_movierec.errors import ExperimentFolderError
from tff_movierec.training import managers
from tff_movierec.training.federated_run import FederatedRun


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
  """The options of a bench script that runs tasks: --data_dir, --synthetic
  and --output_dir (required); `check_data_arguments` refuses both data kinds."""
  parser.add_argument("--data_dir", help="MovieLens-1M folder (default: the cache)")
  parser.add_argument("--synthetic", action="store_true", help="small generated data")
  parser.add_argument("--output_dir", required=True)


def check_data_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
  if args.synthetic and args.data_dir:
    parser.error("--data_dir with --synthetic: choose the real data or the synthetic data.")


def hparams(task_name: str, settings: Mapping[str, Any]) -> Hparams:
  """The settings `task_name` reads: run_experiment's flag defaults < the
  task's defaults < its synthetic defaults (with use_synthetic_data) <
  `settings` (values typed like the flags', e.g. hidden_units=["256"])."""
  task = registry.TASKS[task_name]
  stray = sorted(set(settings) - set(task.all_reads[1:]))
  if stray:
    raise ValueError(f"task {task_name!r} does not read {stray}; it reads "
                     f"{list(task.all_reads[1:])}.")
  values = {name: run_experiment.FLAGS[name].default for name in task.all_reads}
  values["task"] = task_name
  synthetic = settings.get("use_synthetic_data", values["use_synthetic_data"])
  values.update(task.defaults_for(synthetic, settings.get("privacy", NO_PRESET)))
  if synthetic:
    given = sorted({"data_dir", "ratings_path"} & set(settings))
    if given:
      raise ValueError(f"{given} with use_synthetic_data: choose the real data or the "
                       "synthetic data.")
  values.update(settings)
  return Hparams(task_name, values)


def every_client(task_name: str, settings: Mapping[str, Any]) -> int:
  """The clients_per_round that puts every client in every round (for a
  partition into a fixed number of clients, not 'natural')."""
  return common.partition_spec(hparams(task_name, settings)).num_clients


def require_fresh(task_name: str, settings: Mapping[str, Any]) -> None:
  """Raises ExperimentFolderError if the run's experiment folder already holds
  a run (a sweep checks all its folders before the first run)."""
  hp = hparams(task_name, settings)
  folder = os.path.join(hp["root_output_dir"], hp["experiment_name"] or task_name)
  if os.path.exists(os.path.join(folder, "metrics.csv")):
    raise ExperimentFolderError(f"{folder} already holds a run; a benchmark times whole "
                                "runs: remove it or choose another output folder.")


class MeteredProcess:
  """A learning process whose `next` also records how much `measure()` (e.g.
  CPU seconds) grows during each call: `per_round`, one entry per round that
  had clients."""

  def __init__(self, process, measure: Callable[[], float]):
    self.process = process
    self.measure = measure
    self.per_round: List[float] = []

  def next(self, state, client_data):
    start = self.measure()
    output = self.process.next(state, client_data)
    self.per_round.append(self.measure() - start)
    return output

  def get_model_weights(self, state):
    return self.process.get_model_weights(state)


def run_task(task_name: str, settings: Mapping[str, Any], log: Callable[[str], None] = print,
             evaluate: bool = True, measure: Optional[Callable[[], float]] = None
             ) -> Tuple[Any, FederatedRun, managers.ExperimentManagers]:
  """Configures, opens the experiment folder, builds and trains `task_name`
  with `tasks.runner.train`, as `run_experiment.py` does.

  Args:
    task_name, settings: see `hparams`; root_output_dir and experiment_name
      choose the folder, which must not hold a run yet.
    log: receives the task's description, the loop's line per round and the
      task's report.
    evaluate: False drops the task's evaluation and report (timing runs:
      metrics.csv then holds the training rounds only).
    measure: if given, `process.next` is wrapped in a `MeteredProcess`
      (the returned run's `process.per_round`).

  Returns:
    (final state, the FederatedRun, its ExperimentManagers: metrics.csv,
    TensorBoard; the task's report files are in their `output_dir`).
  """
  hp = hparams(task_name, settings)
  require_fresh(task_name, settings)

  def adapt(federated_run: FederatedRun) -> FederatedRun:
    if not evaluate:
      federated_run = dataclasses.replace(federated_run, evaluate_fn=None, report_fn=None)
    if measure is not None:
      federated_run = dataclasses.replace(
          federated_run, process=MeteredProcess(federated_run.process, measure))
    return federated_run

  trained = runner.train(registry.TASKS[task_name], hp, log=log, adapt=adapt)
  for line in (trained.report.text, trained.report.headline):
    if line:
      log(line)
  return trained.state, trained.run, trained.experiment


class CrossDeviceRun(NamedTuple):
  """A finished cross-device run: the task's settings and run, the last row
  of metrics.csv, final_eval.csv (indexed by `users`) and wall minutes."""

  hp: Hparams
  run: FederatedRun
  last: pd.Series
  final: pd.DataFrame
  minutes: float


def run_cross_device(task_name: str, settings: Mapping[str, Any], label: str
                     ) -> CrossDeviceRun:
  """`run_task` for a cross-device task, its log lines prefixed by [label]."""
  start = time.time()
  _, federated_run, experiment = run_task(
      task_name, settings, log=lambda text: print("\n".join(
          f"[{label}] {line}" for line in text.splitlines()), flush=True))
  final = pd.read_csv(os.path.join(experiment.output_dir, "final_eval.csv"),
                      index_col="users")
  return CrossDeviceRun(hparams(task_name, settings), federated_run,
                        metrics(experiment).iloc[-1], final,
                        round((time.time() - start) / 60, 1))


def metrics(experiment: managers.ExperimentManagers) -> pd.DataFrame:
  """metrics.csv of a run: one row per round (`round_num`), NaN where a
  round has no value (e.g. eval/* between evaluations)."""
  return pd.read_csv(experiment.metrics_csv)
