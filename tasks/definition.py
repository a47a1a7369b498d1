"""What a task registers: its constructor and the settings it reads.

A task is configured in two steps so that every setting is checked before
any data loads:

  configure(hparams) -> configs     validates (raises ConfigError naming the
                                    settings), loads nothing
  build(configs)     -> FederatedRun   loads data, builds the process  (federated)
  run(configs, output_dir) -> str      does the whole job            (standalone)

`hparams` holds exactly the settings the task declares in `reads` (plus the
common ones); reading an undeclared one is a KeyError, so a task cannot read
a setting it does not declare, and the flag module can refuse every flag the
chosen task does not read.
"""

import dataclasses
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple

from tff_movierec.training.federated_run import FederatedRun

# Read by every task.
COMMON = ("task", "experiment_name", "root_output_dir", "use_synthetic_data", "data_dir",
          "dataset")
# Read by every federated task: the training loop's settings.
LOOP = ("total_rounds", "rounds_per_eval", "rounds_per_checkpoint")
# Read by every federated task: where its TFF computations run (see
# tff_movierec.remote_workers; no workers: one local worker).
RUNTIME = ("workers", "num_subrounds", "worker_timeout_s")
# Read by the tasks whose clients' data the remote workers can build
# themselves (movielens_recon): where it comes from, and the folder they read.
RUNTIME_DATA = ("client_data_source", "worker_data_dir")
# --privacy without a preset.
NO_PRESET = "none"


class Hparams(Mapping[str, Any]):
  """A read-only view of a task's settings that refuses undeclared names."""

  def __init__(self, task: str, values: Mapping[str, Any]):
    self._task = task
    self._values = dict(values)

  def __getitem__(self, name: str) -> Any:
    if name not in self._values:
      raise KeyError(f"task {self._task!r} reads {name!r}, which it does not declare.")
    return self._values[name]

  def __iter__(self) -> Iterator[str]:
    return iter(self._values)

  def __len__(self) -> int:
    return len(self._values)


@dataclasses.dataclass(frozen=True)
class TaskDefinition:
  """One registered task.

  Attributes:
    name: the registry key (--task).
    summary: one line for --help.
    reads: the task's own settings (beyond COMMON, and LOOP, RUNTIME and
      "seed" if federated).
    configure: Hparams -> validated configs (loads nothing).
    build: configs -> FederatedRun, for federated tasks.
    run: (configs, experiment folder) -> console summary, for standalone tasks.
    defaults: the task's defaults of shared settings that differ from the
      flags' defaults (e.g. more rounds).
    synthetic_defaults: defaults that replace those with use_synthetic_data
      (e.g. fewer clients per round than the small synthetic population).
    presets: --privacy=NAME -> the settings it sets (over the defaults; flags
      given on the command line still win). A task with presets reads
      "privacy".
  """

  name: str
  summary: str
  reads: Tuple[str, ...]
  configure: Callable[[Hparams], Any]
  build: Optional[Callable[[Any], FederatedRun]] = None
  run: Optional[Callable[[Any, str], str]] = None
  defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  synthetic_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  presets: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if (self.build is None) == (self.run is None):
      raise ValueError(f"task {self.name!r}: give exactly one of build and run.")
    preset_settings = set().union(*self.presets.values()) if self.presets else set()
    unknown = (set(self.defaults) | set(self.synthetic_defaults) | preset_settings
               ) - set(self.all_reads)
    if unknown:
      raise ValueError(f"task {self.name!r}: defaults of settings it does not read: "
                       f"{sorted(unknown)}.")

  def defaults_for(self, use_synthetic_data: bool, preset: str = NO_PRESET
                   ) -> Dict[str, Any]:
    """The task's defaults of shared settings, with or without synthetic data,
    under `preset` (NO_PRESET or a key of `presets`)."""
    if preset != NO_PRESET and preset not in self.presets:
      raise KeyError(preset)
    return {**self.defaults, **self.presets.get(preset, {}),
            **(self.synthetic_defaults if use_synthetic_data else {})}

  @property
  def federated(self) -> bool:
    return self.build is not None

  @property
  def all_reads(self) -> Tuple[str, ...]:
    return (COMMON + (LOOP + RUNTIME + ("seed",) if self.federated else ())
            + tuple(self.reads)
            + (("privacy",) if self.presets else ()))
