"""Errors the library raises for bad settings and failed runs.

The library never names command-line flags: a `ConfigError` names the config
fields it is about (`fields`), and the one module that reads flags
(`run_experiment.py`) turns field names into flag names in one place.
"""

from typing import Sequence


class ConfigError(ValueError):
  """An invalid or contradictory config value.

  Attributes:
    fields: names of the config fields at fault, as they appear in the
      message (e.g. ("client_learning_rate",)).
  """

  def __init__(self, message: str, fields: Sequence[str] = ()):
    super().__init__(message)
    self.fields = tuple(fields)


def require(condition: bool, field: str, value, requirement: str) -> None:
  """Raises ConfigError("field=value: requirement") unless `condition`."""
  if not condition:
    raise ConfigError(f"{field}={value!r}: {requirement}", (field,))


class DivergenceError(RuntimeError):
  """Training produced a non-finite loss or model weight.

  Attributes:
    round_num: the round whose result was not finite (nothing from it was
      saved: the last checkpoint is the previous good round's).
    fields: the settings named in the message as the likely cause.
  """

  def __init__(self, message: str, round_num: int, fields: Sequence[str] = ()):
    super().__init__(message)
    self.round_num = round_num
    self.fields = tuple(fields)


class ExperimentFolderError(RuntimeError):
  """The experiment folder cannot be used: not writable, held by another
  run, or holding a run made with other settings.

  Attributes:
    fields: the settings named in the message (as in ConfigError).
  """

  def __init__(self, message: str, fields: Sequence[str] = ()):
    super().__init__(message)
    self.fields = tuple(fields)
