"""The one federated training loop of every task.

Per round: sample clients (a function of (seed, round)), run `process.next`,
stop on a non-finite loss or weight or a loss above the task's bound, account ε (the only place it is
computed), evaluate every `rounds_per_eval` rounds and after the last,
release one row of metrics to metrics.csv and TensorBoard (`round_num`
key), checkpoint. An interrupted run resumes after its last checkpoint. If
the local TFF worker dies during a round or an evaluation, it is restarted
and the call repeated, up to MAX_WORKER_RESTARTS times per run (a round
whose worker died released nothing, so repeating it spends no extra
privacy; the sampled clients are the same).

Metric names (one schema for every task; `tensorboard.DESCRIPTIONS` says
what each means, with its unit):
  train/<name>          the process's client training metrics (loss, ...)
  <part>/<name>         other process metrics (e.g. aggregator/..., finalizer/...)
  clients               clients in the round
  speed/round_seconds, speed/examples_per_second, speed/eval_seconds
  speed/elapsed_seconds  wall seconds since this process began training (at
                        the end of the round, its evaluation included; from 0
                        again when a run resumes)
  traffic/bytes_sent, traffic/bytes_received   gRPC bytes to and from the TFF
                        worker(s) during the round's process.next
  privacy/epsilon, privacy/delta   with a DP aggregator
  eval/<name>           evaluation rounds only
Values are released rounded to 6 significant digits, counts as integers.

The console gets one line per round: the training loss, the evaluation's
leading metrics, ε, the round's time and an ETA for the whole run (the
remaining rounds at their mean time, evaluations included, plus the task's
estimate of its report, `report_seconds`).
"""

import asyncio
import dataclasses
import logging
import time
from typing import Any, Dict, Mapping

import numpy as np
import tensorflow as tf

from tff_movierec import tff_runtime
from tff_movierec.errors import ConfigError, DivergenceError
from tff_movierec.privacy import accounting
from tff_movierec.training.federated_run import FederatedRun
from tff_movierec.training import tensorboard
from tff_movierec.training.managers import ExperimentManagers
# Evaluation metrics shown on the console after the run's key metric.
_CONSOLE_EVAL = ("mae", "rmse", "r2", "ndcg@10", "recall@10", "hr@10")
MAX_WORKER_RESTARTS = 3


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  """Rounds and the cadence of evaluation and checkpoints.

  Attributes:
    total_rounds: rounds to reach (>= 1); a resumed run goes on to it.
    rounds_per_eval: evaluate every this many rounds and after the last
      (0: only after the last).
    rounds_per_checkpoint: save program state every this many rounds and
      after the last (>= 1).
  """

  total_rounds: int = 20
  rounds_per_eval: int = 5
  rounds_per_checkpoint: int = 1

  def __post_init__(self):
    for field, minimum in (("total_rounds", 1), ("rounds_per_eval", 0),
                           ("rounds_per_checkpoint", 1)):
      value = getattr(self, field)
      if value < minimum:
        raise ConfigError(f"{field}={value}: must be >= {minimum}.", (field,))

  def evaluates(self, round_num: int) -> bool:
    return round_num == self.total_rounds or bool(
        self.rounds_per_eval and round_num % self.rounds_per_eval == 0)

  def checkpoints(self, round_num: int) -> bool:
    return round_num == self.total_rounds or round_num % self.rounds_per_checkpoint == 0


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> Dict[str, float]:
  """{'a': {'b': 1}} -> {'a/b': 1.0}; scalar leaves only."""
  flat = {}
  for key, value in metrics.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping):
      flat.update(flatten_metrics(value, name + "/"))
    elif np.ndim(value) == 0:
      flat[name] = float(value)
  return flat


def round_metrics(process_metrics: Mapping[str, Any]) -> Dict[str, float]:
  """The process's metrics in the loop's schema: client training metrics as
  train/<name>, every other scalar under its path."""
  values = {}
  for part, value in process_metrics.items():
    if part == "client_work" and isinstance(value, Mapping) and "train" in value:
      values.update(flatten_metrics(value["train"], "train/"))
    elif isinstance(value, Mapping):
      values.update(flatten_metrics(value, f"{part}/"))
    elif np.ndim(value) == 0:
      values[part] = float(value)
  return values


def examples_in(values: Mapping[str, float]) -> float:
  """Examples the round trained on (train/num_examples or train/examples)."""
  for name in ("train/num_examples", "train/examples"):
    if name in values:
      return values[name]
  return float("nan")


def _check_finite(run: FederatedRun, state, values: Mapping[str, float],
                  round_num: int) -> None:
  loss = values.get("train/loss")
  bad = None
  if loss is not None and not np.isfinite(loss):
    bad = f"the training loss is {loss}"
  elif loss is not None and loss > run.loss_bound:
    bad = f"the training loss is {loss:.4g}, above {run.loss_bound:g}"
  elif values.get("finalizer/update_non_finite"):
    bad = "the aggregated model update is not finite"
  else:
    arrays = tf.nest.flatten(run.process.get_model_weights(state))
    if not all(np.all(np.isfinite(np.asarray(a))) for a in arrays):
      bad = "a model weight is not finite"
  if bad:
    settings = ", ".join(f"{name}={value}" for name, value in run.divergence_hint.items())
    hint = f" Likely cause: a step size too large ({settings})." if settings else ""
    raise DivergenceError(
        f"Training diverged in round {round_num}: {bad}.{hint} Nothing of round "
        f"{round_num} was saved; the last checkpoint is the last good round's.",
        round_num, tuple(run.divergence_hint))


def tidy(values: Mapping[str, float]) -> Dict[str, Any]:
  """Counts as ints, other values rounded to 6 significant digits."""
  return {name: (int(round(value)) if tensorboard.is_count(name) and np.isfinite(value)
                 else float(f"{value:.6g}"))
          for name, value in values.items()}


def _release(managers: ExperimentManagers, values: Mapping[str, float], round_num: int):
  async def release_all():
    await asyncio.gather(*[m.release(dict(values), key=round_num)
                           for m in managers.release_managers])
  asyncio.run(release_all())


def _summary(values: Mapping[str, float], key_metric: str) -> str:
  evaluated = [key_metric] + [name for name in _CONSOLE_EVAL if name != key_metric]
  shown = [("loss", "train/loss")] + [
      (name, f"eval/{name}") for name in evaluated] + [("ε", "privacy/epsilon")]
  return "  ".join(f"{label} {values[name]:.4g}" for label, name in shown if name in values)


def _eta(seconds: float) -> str:
  return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


class _WorkerRestarts:
  """Calls a TFF computation, restarting a dead worker and calling again."""

  def __init__(self, log):
    self.count = 0
    self._log = log

  def call(self, fn, *args):
    while True:
      try:
        return fn(*args)
      except tff_runtime.WorkerDiedError as error:
        if self.count == MAX_WORKER_RESTARTS:
          raise
        self.count += 1
        self._log(f"{error} Restarting it and repeating the call "
                  f"({self.count}/{MAX_WORKER_RESTARTS} restarts).")
        tff_runtime.restart()


def run_training(run: FederatedRun, config: LoopConfig, managers: ExperimentManagers,
                 log=logging.info) -> Any:
  """Trains `run` to `config.total_rounds`, resuming after the last checkpoint.

  Returns:
    The final state. Raises `DivergenceError` (after saving nothing of the
    bad round) if a round's loss or weights are not finite.
  """
  initial_state = run.initial_state_fn()
  state, last_round = asyncio.run(managers.program_state_manager.load_latest(initial_state))
  if state is None:
    state, last_round = initial_state, 0
  else:
    log(f"Resuming after the checkpoint of round {last_round}.")
  if last_round > config.total_rounds:
    raise ConfigError(
        f"total_rounds={config.total_rounds}: the experiment already has a checkpoint of "
        f"round {last_round}; it can only be extended.", ("total_rounds",))
  started = time.time()
  worker_restarts = _WorkerRestarts(log)
  for round_num in range(last_round + 1, config.total_rounds + 1):
    round_start = time.time()
    clients = run.sampler(round_num)
    values = {}
    if clients:
      sent_before, received_before = tff_runtime.traffic()
      output = worker_restarts.call(run.process.next, state,
                                    run.client_data_fn(clients, round_num))
      sent, received = tff_runtime.traffic()
      values = round_metrics(output.metrics)
      values["traffic/bytes_sent"] = sent - sent_before
      values["traffic/bytes_received"] = received - received_before
      _check_finite(run, output.state, values, round_num)
      state = output.state
    seconds = time.time() - round_start
    examples = examples_in(values) if clients else 0.0
    values.update({"clients": float(len(clients)), "speed/round_seconds": seconds})
    if not np.isnan(examples):  # a DP process may release no training metrics
      values["speed/examples_per_second"] = examples / seconds if clients else 0.0
    if run.dp is not None:
      values["privacy/epsilon"] = accounting.epsilon(
          run.dp.noise_multiplier, run.sampler.sampling_probability, round_num, run.dp.delta)
      values["privacy/delta"] = run.dp.delta
    if run.evaluate_fn is not None and config.evaluates(round_num):
      eval_start = time.time()
      evaluated = worker_restarts.call(run.evaluate_fn, state, round_num)
      values.update({f"eval/{k}": float(v) for k, v in evaluated.items()})
      values["speed/eval_seconds"] = time.time() - eval_start
    values["speed/elapsed_seconds"] = time.time() - started
    values = tidy(values)
    _release(managers, values, round_num)
    if config.checkpoints(round_num):
      asyncio.run(managers.program_state_manager.save(state, round_num))
    elapsed = time.time() - started
    eta = (elapsed / (round_num - last_round) * (config.total_rounds - round_num) +
           run.report_seconds)
    log(f"round {round_num}/{config.total_rounds}  {_summary(values, run.key_metric)}  "
        f"{len(clients)} clients  {time.time() - round_start:.1f} s  run ETA {_eta(eta)}")
  return state
