"""Creates an experiment's output folder, checkpoint manager and release managers.

Layout under `root_output_dir/experiment_name/`:
  hparams.csv       the experiment's flags (one row)
  metrics.csv       one row per round (tff.program.CSVFileReleaseManager)
  tensorboard/      event files (tff.program.TensorBoardReleaseManager)
  checkpoints/      program state (tff.program.FileProgramStateManager)
"""

import csv
import dataclasses
import os
from typing import Any, List, Mapping

import tensorflow_federated as tff


@dataclasses.dataclass(frozen=True)
class ExperimentManagers:
  """Where an experiment saves its state and releases its metrics."""

  output_dir: str
  program_state_manager: tff.program.FileProgramStateManager
  release_managers: List[tff.program.ReleaseManager]

  @property
  def metrics_csv(self) -> str:
    return os.path.join(self.output_dir, "metrics.csv")

  @property
  def tensorboard_dir(self) -> str:
    return os.path.join(self.output_dir, "tensorboard")


def write_hparams(hparams: Mapping[str, Any], path: str) -> None:
  """Writes `hparams` as a one-row CSV (keys sorted) atomically."""
  temporary = path + ".tmp"
  with open(temporary, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=sorted(hparams))
    writer.writeheader()
    writer.writerow({key: hparams[key] for key in sorted(hparams)})
  os.replace(temporary, path)


def create_managers(root_output_dir: str, experiment_name: str,
                    hparams: Mapping[str, Any], keep_checkpoints: int = 3) -> ExperimentManagers:
  """Creates the experiment folder, writes hparams.csv and returns the managers.

  Release managers: CSV (metrics.csv), TensorBoard and TFF's logging manager.
  Re-creating the managers for an existing folder resumes it: the CSV drops
  rows of rounds after the last checkpoint when those rounds are re-released.
  """
  output_dir = os.path.join(root_output_dir, experiment_name)
  os.makedirs(output_dir, exist_ok=True)
  write_hparams(hparams, os.path.join(output_dir, "hparams.csv"))
  state_manager = tff.program.FileProgramStateManager(
      os.path.join(output_dir, "checkpoints"), keep_total=keep_checkpoints)
  managers = ExperimentManagers(output_dir, state_manager, [])
  managers.release_managers.extend([
      tff.program.CSVFileReleaseManager(managers.metrics_csv, key_fieldname="round_num"),
      tff.program.TensorBoardReleaseManager(managers.tensorboard_dir),
  ])
  return managers
