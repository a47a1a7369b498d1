"""Cross-device MovieLens task for Federated Reconstruction.

One client per user (the `natural` partition: 6,040 clients on ML-1M).
Ratings are split with the canonical per-user holdout
(`splits.per_user_holdout(ratings, 0.1, seed)`); optionally a fraction of
users is held out entirely (`splits.cold_start_users`) to measure how the
trained movie side serves users never seen in training. Every user, seen or
not, is evaluated by reconstructing its embedding from its training ratings
and scoring its held-out ratings.
"""

import dataclasses
import os
from typing import Any, Mapping, Optional

import numpy as np
import pandas as pd

from tasks import common
from tasks.definition import TaskDefinition
from tff_movierec import privacy
from tff_movierec.data import features, movielens, splits
from tff_movierec.errors import require
from tff_movierec.privacy import aggregators
from tff_movierec.reconstruction import model as model_lib
from tff_movierec.reconstruction import process
from tff_movierec.reconstruction.client_datasets import (
    UserDatasets, evaluation_datasets, training_datasets)
from tff_movierec.reconstruction.evaluation import evaluate
from tff_movierec.training import initialization, sampling
from tff_movierec.training.federated_run import FederatedRun, Report
from tff_movierec.training.optimizers import OptimizerSpec
from tff_movierec.training.sampling import ClientSampler


@dataclasses.dataclass(frozen=True)
class ReconTask:
  """Data of the FedRecon task.

  Attributes:
    train: training clients (users not held out), two-batch datasets
      (reconstruction part, post-reconstruction part).
    eval_seen: the same users: (all training ratings, held-out ratings).
    eval_unseen: held-out users: (training ratings, held-out ratings), or
      None when no users are held out.
    num_movies: M.
    genres: float32 [M, 18] genre multi-hot table.
    description: one line for logs.
  """

  train: UserDatasets
  eval_seen: UserDatasets
  eval_unseen: Optional[UserDatasets]
  num_movies: int
  genres: np.ndarray
  description: str = ""

  @property
  def num_train_clients(self) -> int:
    return len(self.train)


def recon_task_from_data(data: movielens.MovieLens, test_fraction: float = 0.1,
                         cold_start_fraction: float = 0.0,
                         reconstruction_fraction: float = 0.5,
                         seed: int = 0, validation: bool = False) -> ReconTask:
  """Builds the task from loaded MovieLens data.

  Args:
    data: the ratings and movies.
    test_fraction: per-user held-out fraction (canonical: 0.1).
    cold_start_fraction: fraction of users kept out of training (0 = none).
    reconstruction_fraction: share of a training user's ratings used for
      reconstruction in training rounds (the rest trains the movie side).
    seed: seed of the holdout, the cold-start draw and the split.
    validation: score ratings carved (by the same holdout) from the training
      ratings instead of the test ratings, which then stay unseen.
  """
  require(0 <= cold_start_fraction < 1, "cold_start_fraction", cold_start_fraction,
          "must be in [0, 1).")
  train, test = splits.per_user_holdout(data.ratings, test_fraction, seed=seed)
  if validation:
    train, test = splits.per_user_holdout(train, test_fraction, seed=seed)
  unseen_users = np.array([], np.int32)
  if cold_start_fraction > 0:
    _, unseen = splits.cold_start_users(data.ratings, cold_start_fraction, seed=seed)
    unseen_users = np.unique(unseen["user"].to_numpy())
  is_unseen = lambda frame: np.isin(frame["user"].to_numpy(), unseen_users)
  seen_train, seen_test = train[~is_unseen(train)], test[~is_unseen(test)]
  eval_unseen = None
  if len(unseen_users):
    eval_unseen = evaluation_datasets(train[is_unseen(train)], test[is_unseen(test)])
  return ReconTask(
      train=training_datasets(seen_train, reconstruction_fraction, seed=seed),
      eval_seen=evaluation_datasets(seen_train, seen_test),
      eval_unseen=eval_unseen,
      num_movies=data.num_movies,
      genres=features.genre_multi_hot(data),
      description=(
          f"MovieLens FedRecon: {seen_train['user'].nunique()} training clients "
          f"(one per user), {len(unseen_users)} unseen users, "
          f"{len(seen_train)} training ratings, per-user holdout {test_fraction}"))


@dataclasses.dataclass(frozen=True)
class ReconConfigs:
  """The validated settings of the cross-device FedRecon task (see `configure`)."""

  hparams: Mapping[str, Any]
  model: model_lib.MFConfig
  recon: process.ReconConfig
  aggregator: aggregators.AggregatorSpec
  eval_split: str


def configure(hp: Mapping[str, Any]) -> ReconConfigs:
  """Checks every setting of the FedRecon task; loads nothing."""
  common.require_fraction(hp, "test_fraction")
  require(0 <= hp["cold_start_fraction"] < 1, "cold_start_fraction",
          hp["cold_start_fraction"], "must be in [0, 1).")
  for name in ("eval_clients", "final_eval_clients"):
    require(hp[name] is None or hp[name] >= 1, name, hp[name], "must be >= 1.")
  require(hp["client_sampling"] in sampling.SCHEMES, "client_sampling",
          hp["client_sampling"], f"must be one of {sampling.SCHEMES}.")
  require(hp["clients_per_round"] >= 1, "clients_per_round", hp["clients_per_round"],
          "must be >= 1.")
  aggregator = common.aggregator_spec(hp)
  return ReconConfigs(
      hparams=hp,
      model=model_lib.MFConfig(num_movies=1, embedding_dim=hp["embedding_dim"]),
      recon=process.ReconConfig(
          server_optimizer=common.server_optimizer(hp),
          server_weight_decay=hp["server_weight_decay"],
          client_optimizer=common.client_optimizer(hp),
          reconstruction_optimizer=OptimizerSpec(
              hp["local_optimizer"], hp["local_learning_rate"], role="local"),
          reconstruction_l2=hp["reconstruction_l2"],
          reconstruction_steps=hp["reconstruction_steps"],
          post_reconstruction_steps=hp["post_reconstruction_steps"],
          uniform_weighting=hp["client_weighting"] == "uniform"),
      aggregator=aggregator,
      eval_split=common.eval_split(hp))


def _subset(users: UserDatasets, size: Optional[int], rng: np.random.Generator) -> list:
  if size is None or size >= len(users):
    return users.client_ids
  return sorted(rng.choice(users.client_ids, size, replace=False), key=int)


def build(configs: ReconConfigs) -> FederatedRun:
  """Cross-device FedRecon matrix factorization, ready for the training loop.

  Evaluation (every rounds_per_eval rounds): a fixed random subset of
  `eval_clients` training users. Report: every training user (or a fixed
  subset of `final_eval_clients`), and with `cold_start_fraction` the users
  never trained on, in final_eval.csv.
  """
  hp = configs.hparams
  seed = hp["seed"]
  privacy.set_simulation_context(configs.aggregator)
  data = common.load_movielens(hp)
  task = recon_task_from_data(data, hp["test_fraction"], hp["cold_start_fraction"],
                              seed=seed, validation=configs.eval_split == "validation")
  mf_config = dataclasses.replace(configs.model, num_movies=task.num_movies)
  model_fn = process.model_fn_for(mf_config)
  aggregator = privacy.build_aggregator(configs.aggregator)
  training = process.build_training_process(model_fn, configs.recon, aggregator)
  evaluation_process = process.build_evaluation_process(model_fn, configs.recon)
  sampler = ClientSampler(task.train.client_ids, hp["clients_per_round"],
                          hp["client_sampling"], seed)
  rng = np.random.default_rng(seed + 1)
  periodic_ids = _subset(task.eval_seen, hp["eval_clients"], rng)
  final_ids = _subset(task.eval_seen, hp["final_eval_clients"], rng)
  unseen_ids = (_subset(task.eval_unseen, hp["final_eval_clients"], rng)
                if task.eval_unseen is not None else None)

  def evaluate_fn(state, round_num):
    return evaluate(evaluation_process, training.get_model_weights(state), task.eval_seen,
                    periodic_ids)

  def report(state, output_dir: str) -> Report:
    weights = training.get_model_weights(state)
    rows = {"seen": evaluate(evaluation_process, weights, task.eval_seen, final_ids)}
    if unseen_ids is not None:
      rows["unseen"] = evaluate(evaluation_process, weights, task.eval_unseen, unseen_ids)
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("users").reset_index()
    path = os.path.join(output_dir, "final_eval.csv")
    table.to_csv(path, index=False, float_format="%.4f")
    split = "validation" if configs.eval_split == "validation" else "held-out"
    lines = [f"{split} ratings of {r['num_clients']:.0f} {name} users: RMSE {r['rmse']:.4f}, "
             f"MAE {r['mae']:.4f}" for name, r in rows.items()]
    return Report(text=f"Final evaluation: {path}", headline="; ".join(lines),
                  tables={"Final evaluation": table})

  return FederatedRun(
      process=training,
      initial_state_fn=lambda: initialization.seeded_initial_state(training, model_fn, seed),
      sampler=sampler,
      client_data_fn=lambda client_ids, round_num: task.train.datasets(client_ids),
      evaluate_fn=evaluate_fn,
      report_fn=report,
      dp=common.dp_accounting(hp, configs.aggregator, len(task.train)),
      loss_bound=common.RATING_LOSS_BOUND,
      divergence_hint=common.learning_rates(hp, ("client", "server", "local")),
      description=task.description,
      key_metric="rmse")


TASK = TaskDefinition(
    name="movielens_recon",
    summary=("cross-device Federated Reconstruction of a matrix factorization, one client "
             "per user; the user embedding and bias never leave the device"),
    reads=(("test_fraction",) + common.EVAL_SPLIT +
           ("clients_per_round", "client_sampling", "embedding_dim") +
           common.CLIENT_OPTIMIZER + common.SERVER_OPTIMIZER +
           ("local_optimizer", "local_learning_rate", "reconstruction_steps",
            "post_reconstruction_steps", "reconstruction_l2", "server_weight_decay",
            "cold_start_fraction", "eval_clients", "final_eval_clients") + common.PRIVACY),
    configure=configure,
    build=build,
    # The best settings measured on ML-1M (BENCHMARKS.md, issue 5).
    defaults={"total_rounds": 200, "clients_per_round": 200, "embedding_dim": 32,
              "client_weighting": "uniform", "client_learning_rate": 1.0,
              "server_learning_rate": 0.02, "local_learning_rate": 0.5,
              "rounds_per_eval": 50},
    # The synthetic data has 60 users.
    synthetic_defaults={"clients_per_round": 20},
)
