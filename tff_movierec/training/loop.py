"""The federated training loop: sample clients, run a round, release metrics,
checkpoint; resumes from the last checkpoint of an interrupted run."""

import asyncio
import collections
import dataclasses
import logging
import time
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import numpy as np
import tensorflow_federated as tff

from tasks import base
from tff_movierec.training import stateful_local
from tff_movierec.training.managers import ExperimentManagers

EvaluateFn = Callable[[Any, int], Mapping[str, float]]


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  """Rounds and client sampling.

  Attributes:
    total_rounds: number of rounds (>= 1).
    clients_per_round: clients sampled uniformly without replacement per round
      (capped at the population; >= 1).
    rounds_per_eval: evaluate every this many rounds and after the last
      (0: only after the last).
    rounds_per_checkpoint: save program state every this many rounds and
      after the last (>= 1).
    seed: client sampling of round r depends only on (seed, r), so a resumed
      run samples exactly as an uninterrupted one.
  """

  total_rounds: int = 20
  clients_per_round: int = 10
  rounds_per_eval: int = 5
  rounds_per_checkpoint: int = 1
  seed: int = 0

  def __post_init__(self):
    if self.total_rounds < 1:
      raise ValueError(f"--total_rounds={self.total_rounds}: must be >= 1.")
    if self.clients_per_round < 1:
      raise ValueError(f"--clients_per_round={self.clients_per_round}: must be >= 1.")
    if self.rounds_per_eval < 0:
      raise ValueError(f"--rounds_per_eval={self.rounds_per_eval}: must be >= 0.")
    if self.rounds_per_checkpoint < 1:
      raise ValueError(
          f"--rounds_per_checkpoint={self.rounds_per_checkpoint}: must be >= 1.")


def sample_clients(client_ids: Sequence[str], round_num: int, config: LoopConfig) -> list:
  """The clients of `round_num`: a function of (seed, round_num) only."""
  rng = np.random.default_rng([config.seed, round_num])
  size = min(config.clients_per_round, len(client_ids))
  return [client_ids[i] for i in sorted(rng.choice(len(client_ids), size, replace=False))]


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


class TrainingDatasets:
  """Clients' preprocessed training datasets, built on first use and reused
  in later rounds (the most recently used `capacity` clients are kept).

  Building a dataset traces its preprocessing functions in Python, before the
  round starts (in one profile 1.8 s of an 11.5 s round of the default study,
  BENCHMARKS.md). A `tf.data.Dataset` is a recipe that every
  round runs afresh in TFF's worker, so reusing it changes nothing else: a
  shuffle without seed draws a new order each round, one with a seed the same
  order each round, as a rebuilt dataset would.
  """

  def __init__(self, task: base.FederatedTask, capacity: int = 1000):
    self._task = task
    self._capacity = capacity
    self._datasets: "collections.OrderedDict[str, Any]" = collections.OrderedDict()

  def __call__(self, clients: Sequence[str]) -> list:
    datasets = []
    for client in clients:
      if client in self._datasets:
        self._datasets.move_to_end(client)
      else:
        self._datasets[client] = self._task.train_preprocess(
            self._task.train_data.create_tf_dataset_for_client(client))
        if len(self._datasets) > self._capacity:
          self._datasets.popitem(last=False)
      datasets.append(self._datasets[client])
    return datasets


def run_round(process, datasets: TrainingDatasets, state, clients: Sequence[str]):
  """One round of `process` (see `run_training`) with `clients`' preprocessed
  training data; returns the process's output (.state, .metrics)."""
  datasets = datasets(clients)
  if isinstance(process, stateful_local.StatefulLocalProcess):
    return process.next(state, datasets, clients)
  return process.next(state, datasets)


def _release(managers: ExperimentManagers, values: Mapping[str, float], round_num: int):
  async def release_all():
    await asyncio.gather(*[m.release(dict(values), key=round_num)
                           for m in managers.release_managers])
  asyncio.run(release_all())


def run_training(
    process: tff.learning.templates.LearningProcess,
    task: base.FederatedTask,
    config: LoopConfig,
    managers: ExperimentManagers,
    evaluate_fn: Optional[EvaluateFn] = None,
    round_metrics_fn: Optional[Callable[[int], Mapping[str, float]]] = None,
) -> Any:
  """Trains for `config.total_rounds`, resuming from the last checkpoint.

  Args:
    process: a learning process over preprocessed client datasets, or a
      `stateful_local.StatefulLocalProcess` (then the program state also
      holds every client's local weights).
    task: provides the client data and `train_preprocess`.
    config: rounds, sampling, evaluation and checkpoint cadence.
    managers: checkpoint and release managers of the experiment.
    evaluate_fn: (state, round_num) -> metrics, called every
      `config.rounds_per_eval` rounds and after the last one.
    round_metrics_fn: round_num -> extra metrics released with the round's
      (e.g. the privacy budget spent so far).

  Returns:
    The final learning process state.
  """
  initial_state = process.initialize()
  state, last_round = asyncio.run(
      managers.program_state_manager.load_latest(initial_state))
  if state is None:
    state, last_round = initial_state, 0
  else:
    logging.info("Resuming from the checkpoint of round %d.", last_round)
  client_ids = task.train_data.client_ids
  datasets = TrainingDatasets(task)
  started = time.time()
  for round_num in range(last_round + 1, config.total_rounds + 1):
    round_start = time.time()
    output = run_round(process, datasets, state, sample_clients(client_ids, round_num, config))
    state = output.state
    seconds = time.time() - round_start
    values = flatten_metrics(output.metrics)
    examples = training_metric(values, "examples")
    values.update({"round_seconds": seconds,
                   "examples_per_second": examples / seconds if examples else 0.0})
    if round_metrics_fn is not None:
      values.update(round_metrics_fn(round_num))
    is_last = round_num == config.total_rounds
    if evaluate_fn is not None and (is_last or (
        config.rounds_per_eval and round_num % config.rounds_per_eval == 0)):
      values.update({f"eval/{k}": v for k, v in evaluate_fn(state, round_num).items()})
    _release(managers, values, round_num)
    if is_last or round_num % config.rounds_per_checkpoint == 0:
      asyncio.run(managers.program_state_manager.save(state, round_num))
    done = round_num - last_round
    eta = (time.time() - started) / done * (config.total_rounds - round_num)
    logging.info(
        "round %d/%d  loss %.4f  mae %.4f  %s%.1f s  %.0f examples/s  ETA %.0f s",
        round_num, config.total_rounds, training_metric(values, "loss"),
        training_metric(values, "mae"), _eval_summary(values), seconds,
        values["examples_per_second"], eta)
  return state


def training_metric(values: Mapping[str, float], suffix: str) -> float:
  """The first training metric whose name ends with /suffix (nan if none)."""
  for name, value in values.items():
    if name.endswith("/" + suffix) and not name.startswith("eval/"):
      return value
  return float("nan")


def _eval_summary(values: Mapping[str, float]) -> str:
  parts = [f"eval {k[5:]} {v:.4f}  " for k, v in values.items()
           if k in ("eval/mae", "eval/rmse", "eval/r2")]
  return "".join(parts)
