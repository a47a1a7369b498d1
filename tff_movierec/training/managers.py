"""The experiment folder: its lock, its settings, its checkpoint and release managers.

Layout under `root_output_dir/experiment_name/`:
  .lock             held (flock) by the run using the folder
  hparams.csv       the settings the run reads (one row)
  metrics.csv       one row per round, key `round_num` (tff.program.CSVFileReleaseManager)
  tensorboard/      event files, a sub-folder per TensorBoard run (see tensorboard.py)
  summary.md        the run's summary, with its plots (*.png) beside it
  checkpoints/      program state (tff.program.FileProgramStateManager)

`open_experiment` does every check that needs no data, so a run that cannot
use the folder fails before anything loads: the folder must be writable,
free (no other run holds its lock) and, if it already holds a checkpoint,
made with the same settings (only the keys in `extendable` may differ, e.g.
the number of rounds, to extend a finished or killed run).
"""

import csv
import dataclasses
import fcntl
import os
from typing import Any, Dict, List, Mapping, Sequence, TextIO

import tensorflow_federated as tff

from tff_movierec.errors import ExperimentFolderError
from tff_movierec.training import tensorboard

HPARAMS_FILE = "hparams.csv"
METRICS_FILE = "metrics.csv"
TENSORBOARD_FOLDER = "tensorboard"
LOCK_FILE = ".lock"
# Written to hparams.csv by the run once it knows them (not settings: never
# compared on resume).
DERIVED_SETTINGS = ("calibrated_noise_multiplier",)


@dataclasses.dataclass(frozen=True)
class ExperimentManagers:
  """Where an experiment saves its state and releases its metrics
  (`tensorboard_run` is also one of `release_managers`)."""

  output_dir: str
  program_state_manager: tff.program.FileProgramStateManager
  release_managers: List[tff.program.ReleaseManager]
  tensorboard_run: tensorboard.FederatedRunWriter

  @property
  def metrics_csv(self) -> str:
    return os.path.join(self.output_dir, METRICS_FILE)


def write_hparams(hparams: Mapping[str, Any], path: str) -> None:
  """Writes `hparams` as a one-row CSV (keys sorted) atomically."""
  temporary = path + ".tmp"
  with open(temporary, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=sorted(hparams))
    writer.writeheader()
    writer.writerow({key: hparams[key] for key in sorted(hparams)})
  os.replace(temporary, path)


def read_hparams(path: str) -> Dict[str, str]:
  """The one row of an hparams.csv, values as strings."""
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  return rows[0] if rows else {}


def _has_checkpoint(output_dir: str) -> bool:
  folder = os.path.join(output_dir, "checkpoints")
  return os.path.isdir(folder) and bool(os.listdir(folder))


def _as_csv(value: Any) -> str:
  """How csv writes a value (None as an empty field)."""
  return "" if value is None else str(value)


def _changed(stored: Mapping[str, str], hparams: Mapping[str, Any],
             extendable: Sequence[str]) -> List[str]:
  """Names of the settings that differ (beyond `extendable`)."""
  return [name for name in sorted(set(stored) | set(hparams))
          if name not in extendable and name not in DERIVED_SETTINGS
          and stored.get(name) != (_as_csv(hparams[name]) if name in hparams else None)]


class ExperimentFolder:
  """An experiment folder opened for one run (see the module docstring).

  Keep the object alive for the whole run: it holds the folder's lock.
  """

  def __init__(self, output_dir: str, lock: TextIO):
    self.output_dir = output_dir
    self._lock = lock

  def create_managers(self, keep_checkpoints: int = 3) -> ExperimentManagers:
    """Checkpoint manager and release managers (CSV, TensorBoard).

    On resume the CSV manager drops the rows of rounds after the last
    checkpoint as those rounds are released again.
    """
    output_dir = self.output_dir
    state_manager = tff.program.FileProgramStateManager(
        os.path.join(output_dir, "checkpoints"), keep_total=keep_checkpoints)
    tensorboard_run = tensorboard.FederatedRunWriter(
        os.path.join(output_dir, TENSORBOARD_FOLDER))
    csv_manager = tff.program.CSVFileReleaseManager(
        os.path.join(output_dir, METRICS_FILE), key_fieldname="round_num")
    return ExperimentManagers(output_dir, state_manager, [csv_manager, tensorboard_run],
                              tensorboard_run)

  def record_derived(self, hparams: Mapping[str, Any], **derived: Any) -> None:
    """Rewrites hparams.csv as `hparams` plus values the run derived from them
    (names in DERIVED_SETTINGS)."""
    unknown = sorted(set(derived) - set(DERIVED_SETTINGS))
    if unknown:
      raise ValueError(f"not derived settings: {unknown}")
    write_hparams({**hparams, **derived}, os.path.join(self.output_dir, HPARAMS_FILE))

  def close(self) -> None:
    """Releases the folder's lock."""
    if not self._lock.closed:
      fcntl.flock(self._lock, fcntl.LOCK_UN)
      self._lock.close()


def open_experiment(root_output_dir: str, experiment_name: str,
                    hparams: Mapping[str, Any],
                    extendable: Sequence[str] = ("total_rounds",),
                    field: str = "root_output_dir") -> ExperimentFolder:
  """Opens (creating it if needed) and locks the folder of one run.

  Args:
    root_output_dir, experiment_name: the folder is their join.
    hparams: the run's settings, written to hparams.csv.
    extendable: settings that may differ from a checkpointed run's.
    field: the name of `root_output_dir` in errors.

  Raises:
    ExperimentFolderError: the folder cannot be created or written, another
      run holds it, or it holds a checkpointed run with other settings
      (named in the message). Nothing in the folder is changed then.
  """
  output_dir = os.path.join(root_output_dir, experiment_name)
  try:
    os.makedirs(output_dir, exist_ok=True)
    lock = open(os.path.join(output_dir, LOCK_FILE), "a+")
  except OSError as e:
    raise ExperimentFolderError(
        f"{field}={root_output_dir!r}: cannot create or write the experiment folder "
        f"{output_dir}: {e.strerror or e}.", (field,)) from e
  try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError as e:
    lock.seek(0)
    holder = lock.read().strip() or "?"
    lock.close()
    raise ExperimentFolderError(
        f"{output_dir} is in use by another run (pid {holder}); wait for it to end or "
        "choose another experiment name.") from e
  try:
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    hparams_path = os.path.join(output_dir, HPARAMS_FILE)
    if _has_checkpoint(output_dir) and os.path.exists(hparams_path):
      stored = read_hparams(hparams_path)
      changed = _changed(stored, hparams, extendable)
      if changed:
        differences = "; ".join(f"{name}: {stored.get(name, '(not set)')} -> "
                                f"{hparams.get(name, '(not set)')}" for name in changed)
        raise ExperimentFolderError(
            f"{output_dir} holds a run made with other settings, and resuming it with "
            f"these would mix them: {differences}. Use the same settings (only "
            f"{', '.join(extendable)} may change, to extend it) or another experiment "
            "name.", tuple(changed) + tuple(extendable))
    write_hparams(hparams, hparams_path)
  except BaseException:
    fcntl.flock(lock, fcntl.LOCK_UN)
    lock.close()
    raise
  return ExperimentFolder(output_dir, lock)
