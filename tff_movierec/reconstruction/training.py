"""Cross-device FedRecon training loop with evaluation and ε accounting.

`run_recon_experiment` is free of flags: the caller (run_experiment.py, the
benchmarks) builds the configs and passes an `on_round` callback that receives
each round's metrics.
"""

import csv
import dataclasses
import os
import time
from typing import Callable, Dict, Optional

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_movierec import privacy
from tff_movierec.reconstruction import client_datasets, model, process

OnRound = Callable[[int, Dict[str, float]], None]
SAMPLINGS = ("uniform", "poisson")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  """One FedRecon experiment.

  Attributes:
    rounds: training rounds (--rounds).
    clients_per_round: K (--clients_per_round); with Poisson sampling the
      expected number, each client joining with probability K / N.
    sampling: 'uniform' (K distinct clients) or 'poisson' (--client_sampling);
      DP accounting assumes Poisson sampling, so DP defaults to it.
    eval_every: evaluate every this many rounds (and after the last); 0 = only
      after the last (--rounds_per_eval).
    eval_clients: clients used by the periodic evaluations (a fixed random
      subset; None = all).
    final_eval_clients: clients used by the final evaluation of seen and of
      unseen users (a fixed random subset of each; None = all).
    embedding_dim, init_stddev, use_genres: see `model.MFConfig`.
    recon: optimizers and local steps.
    aggregator: model-update aggregator; its `client_weighting` must agree
      with `recon.uniform_weighting`.
    dp_delta: δ of the reported ε (DP only; default 1 / N^1.1).
    seed: client sampling and client-dataset split seed.
  """

  rounds: int = 100
  clients_per_round: int = 100
  sampling: str = "uniform"
  eval_every: int = 10
  eval_clients: Optional[int] = 1000
  final_eval_clients: Optional[int] = None
  embedding_dim: int = 16
  init_stddev: float = 0.1
  use_genres: bool = False
  recon: process.ReconConfig = process.ReconConfig()
  aggregator: privacy.AggregatorSpec = privacy.AggregatorSpec()
  dp_delta: Optional[float] = None
  seed: int = 0

  def __post_init__(self):
    if self.rounds < 1:
      raise ValueError(f"--rounds={self.rounds}: must be >= 1.")
    if self.clients_per_round < 1:
      raise ValueError(f"--clients_per_round={self.clients_per_round}: must be >= 1.")
    if self.sampling not in SAMPLINGS:
      raise ValueError(f"--client_sampling={self.sampling!r}: must be one of {SAMPLINGS}.")
    if self.eval_every < 0:
      raise ValueError(f"--rounds_per_eval={self.eval_every}: must be >= 0.")
    for name in ("eval_clients", "final_eval_clients"):
      value = getattr(self, name)
      if value is not None and value < 1:
        raise ValueError(f"{name}={value}: must be >= 1.")
    if self.aggregator.weighted == self.recon.uniform_weighting:
      raise ValueError(
          f"--client_weighting={self.aggregator.client_weighting} disagrees with the "
          f"process weighting (uniform={self.recon.uniform_weighting}).")
    if (self.aggregator.clients_per_round is not None
        and self.aggregator.clients_per_round != self.clients_per_round):
      raise ValueError(
          f"aggregator clients_per_round={self.aggregator.clients_per_round} != "
          f"--clients_per_round={self.clients_per_round}.")
    if self.dp_delta is not None:
      if not self.aggregator.is_dp:
        raise ValueError(
            f"--dp_delta given but --aggregator={self.aggregator.kind}: it only "
            "applies to dp_fixed or dp_adaptive.")
      if not 0 < self.dp_delta < 1:
        raise ValueError(f"--dp_delta={self.dp_delta}: must be in (0, 1).")

  def mf_config(self, num_movies: int) -> model.MFConfig:
    return model.MFConfig(num_movies=num_movies, embedding_dim=self.embedding_dim,
                          init_stddev=self.init_stddev, use_genres=self.use_genres)


class ClientSampler:
  """Draws each round's client ids, uniformly (K distinct) or Poisson (rate K/N)."""

  def __init__(self, client_ids, clients_per_round: int, sampling: str, seed: int):
    self._ids = np.asarray(client_ids)
    self._k = min(clients_per_round, len(self._ids))
    self._sampling = sampling
    self._rng = np.random.default_rng(seed)

  @property
  def sampling_probability(self) -> float:
    return self._k / len(self._ids)

  def sample(self) -> list:
    if self._sampling == "uniform":
      return list(self._rng.choice(self._ids, self._k, replace=False))
    chosen = self._rng.random(len(self._ids)) < self.sampling_probability
    return list(self._ids[chosen])


def evaluate(eval_process: tff.learning.templates.LearningProcess,
             model_weights, users: client_datasets.UserDatasets,
             client_ids=None, chunk_size: int = 1000) -> Dict[str, float]:
  """Rating metrics over `client_ids` (default all), pooled over their scored ratings.

  Clients are evaluated in chunks; the chunk metrics are combined weighted by
  the chunk's number of scored ratings, so `rmse` is the RMSE over all scored
  ratings (not a mean of per-client RMSEs).

  Returns:
    {'rmse', 'mae', 'num_ratings', 'num_clients'}.
  """
  ids = users.client_ids if client_ids is None else list(client_ids)
  state = eval_process.set_model_weights(eval_process.initialize(), model_weights)
  squared = absolute = count = 0.0
  for start in range(0, len(ids), chunk_size):
    chunk = ids[start:start + chunk_size]
    metrics = eval_process.next(state, users.datasets(chunk)).metrics
    current = metrics["client_work"]["eval"]["current_round_metrics"]
    scored = float(sum(users.part_sizes(c)[1] for c in chunk))
    squared += float(current["rmse"]) ** 2 * scored
    absolute += float(current["mae"]) * scored
    count += scored
  return {"rmse": float(np.sqrt(squared / count)), "mae": absolute / count,
          "num_ratings": count, "num_clients": float(len(ids))}


class _MetricsWriter:
  """Per-round metrics to `metrics.csv` and TensorBoard under `output_dir`."""

  def __init__(self, output_dir: Optional[str]):
    self._dir = output_dir
    self._rows = []
    if output_dir:
      os.makedirs(output_dir, exist_ok=True)
      self._summary = tf.summary.create_file_writer(os.path.join(output_dir, "tensorboard"))

  def write(self, round_num: int, metrics: Dict[str, float]) -> None:
    if not self._dir:
      return
    self._rows.append({"round": round_num, **metrics})
    with self._summary.as_default():
      for name, value in metrics.items():
        tf.summary.scalar(name, value, step=round_num)
    self._summary.flush()
    columns = ["round"] + sorted({k for row in self._rows for k in row} - {"round"})
    with open(os.path.join(self._dir, "metrics.csv"), "w", newline="") as f:
      writer = csv.DictWriter(f, columns)
      writer.writeheader()
      writer.writerows(self._rows)


def run_recon_experiment(
    train: client_datasets.UserDatasets,
    eval_seen: client_datasets.UserDatasets,
    num_movies: int,
    config: ExperimentConfig,
    eval_unseen: Optional[client_datasets.UserDatasets] = None,
    genres: Optional[np.ndarray] = None,
    output_dir: Optional[str] = None,
    on_round: Optional[OnRound] = None,
) -> Dict[str, float]:
  """Trains FedRecon and evaluates it; returns the final metrics.

  Args:
    train: training clients (one per user), two-batch training datasets.
    eval_seen: evaluation datasets of training users (reconstruct from their
      training ratings, score their held-out ones).
    num_movies: M.
    config: the experiment.
    eval_unseen: evaluation datasets of users never trained on, if any.
    genres: float32 [M, 18], required iff `config.use_genres`.
    output_dir: if set, `metrics.csv` and TensorBoard events are written there.
    on_round: called after every round as on_round(round_num, metrics) with
      `train/loss`, `train/rmse`, `round_seconds`, `clients`, and, when DP,
      `epsilon`; on evaluation rounds also `eval/rmse`, `eval/mae`.

  Returns:
    Final metrics: `eval/rmse`, `eval/mae` (training users' held-out ratings),
    `eval/clients` (how many users that evaluation covered), `unseen/rmse`, `unseen/mae` (if `eval_unseen`), `epsilon` and
    `delta` (if DP), `rounds`, `train_seconds`.
  """
  model_fn = process.model_fn_for(config.mf_config(num_movies), genres)
  aggregator = privacy.build_aggregator(config.aggregator)
  training = process.build_training_process(model_fn, config.recon, aggregator)
  evaluation = process.build_evaluation_process(model_fn, config.recon)
  sampler = ClientSampler(train.client_ids, config.clients_per_round, config.sampling,
                          config.seed)
  tracker = None
  if config.aggregator.is_dp:
    delta = config.dp_delta or privacy.default_delta(len(train))
    tracker = privacy.EpsilonTracker(config.aggregator.noise_multiplier,
                                     sampler.sampling_probability, delta)
  eval_rng = np.random.default_rng(config.seed + 1)

  def subset(users, size):
    if size is None or size >= len(users):
      return users.client_ids
    return sorted(eval_rng.choice(users.client_ids, size, replace=False), key=int)

  periodic_ids = subset(eval_seen, config.eval_clients)
  final_ids = subset(eval_seen, config.final_eval_clients)
  unseen_ids = subset(eval_unseen, config.final_eval_clients) if eval_unseen is not None else None
  writer = _MetricsWriter(output_dir)
  state = training.initialize()
  train_seconds = 0.0
  for round_num in range(1, config.rounds + 1):
    ids = sampler.sample()
    start = time.perf_counter()
    if ids:
      output = training.next(state, train.datasets(ids))
      state = output.state
      train_metrics = output.metrics["client_work"]["train"]
    elapsed = time.perf_counter() - start
    train_seconds += elapsed
    metrics = {"round_seconds": elapsed, "clients": float(len(ids))}
    if ids:
      metrics.update({"train/loss": float(train_metrics["loss"]),
                      "train/rmse": float(train_metrics["rmse"])})
    if tracker is not None:
      metrics["epsilon"] = tracker.step()
    last = round_num == config.rounds
    if not last and config.eval_every and round_num % config.eval_every == 0:
      result = evaluate(evaluation, training.get_model_weights(state), eval_seen, periodic_ids)
      metrics.update({"eval/rmse": result["rmse"], "eval/mae": result["mae"]})
    if last:
      result = evaluate(evaluation, training.get_model_weights(state), eval_seen, final_ids)
      metrics.update({"eval/rmse": result["rmse"], "eval/mae": result["mae"],
                      "eval/clients": result["num_clients"]})
      if eval_unseen is not None:
        unseen = evaluate(evaluation, training.get_model_weights(state), eval_unseen,
                          unseen_ids)
        metrics.update({"unseen/rmse": unseen["rmse"], "unseen/mae": unseen["mae"]})
    writer.write(round_num, metrics)
    if on_round is not None:
      on_round(round_num, metrics)
  final = {k: v for k, v in metrics.items() if k.startswith(("eval/", "unseen/"))}
  final.update({"rounds": float(config.rounds), "train_seconds": train_seconds})
  if tracker is not None:
    final.update({"epsilon": metrics["epsilon"], "delta": tracker.delta})
  return final
