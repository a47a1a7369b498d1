"""Progress of a run's long phases on the console.

On a terminal: a tqdm bar on stderr, with rate and ETA. Elsewhere (a log
file, CI): one line when the phase ends, so that logs stay short.
"""

import sys
import time
from typing import Callable, Optional, TextIO

import tensorflow as tf
import tqdm


class Progress:
  """A phase of `total` units of work (a context manager; `update` per unit).

  Args:
    description: the phase, e.g. "comparison models".
    total: units in the phase.
    unit: their name, e.g. "batches".
    log: prints the closing line when the bar is not shown.
    stream: where the bar goes (default stderr); no bar unless it is a
      terminal.
  """

  def __init__(self, description: str, total: int, unit: str,
               log: Callable[[str], None] = print, stream: Optional[TextIO] = None):
    self._description = description
    self._total = total
    self._unit = unit
    self._log = log
    self._done = 0
    self._started = time.time()
    stream = stream or sys.stderr
    self._bar = (tqdm.tqdm(total=total, desc=description, unit=unit, file=stream,
                           dynamic_ncols=True)
                 if stream.isatty() else None)

  def update(self, units: int = 1) -> None:
    self._done += units
    if self._bar is not None:
      self._bar.update(units)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
    else:
      self._log(f"{self._description}: {self._done:,}/{self._total:,} {self._unit} in "
                f"{time.time() - self._started:.0f} s")

  def __enter__(self) -> "Progress":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


class KerasProgress(tf.keras.callbacks.Callback):
  """Advances a `Progress` by one unit per training batch of `Model.fit`."""

  def __init__(self, progress: Progress):
    super().__init__()
    self._progress = progress

  def on_train_batch_end(self, batch, logs=None):
    self._progress.update(1)
