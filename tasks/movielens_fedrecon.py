"""Cross-device MovieLens task with TFF's Federated Reconstruction (SGD).

`tff.learning.algorithms.build_fed_recon`: each sampled user reconstructs its
embedding with a few SGD steps, then trains the movie side. One client per
user (6,040 clients on ML-1M), ratings split by `holdout.user_holdout`. Every
user, seen or not, is evaluated by reconstructing its embedding from its
training ratings and scoring its held-out ratings. `movielens_recon` solves
the user side exactly instead (faster and more accurate); this task keeps
TFF's algorithm as its reference.
"""

import dataclasses
from typing import Any, Mapping, Optional

import numpy as np

from tasks import common, cross_device
from tasks.definition import TaskDefinition
from tff_movierec import privacy
from tff_movierec.data import features, movielens
from tff_movierec.privacy import aggregators
from tff_movierec.reconstruction import holdout
from tff_movierec.reconstruction import model as model_lib
from tff_movierec.reconstruction import process
from tff_movierec.reconstruction.client_datasets import (
    UserDatasets, evaluation_datasets, training_datasets)
from tff_movierec.reconstruction.evaluation import evaluate
from tff_movierec.training import initialization
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
  split = holdout.user_holdout(data, test_fraction, cold_start_fraction, seed, validation)
  eval_unseen = None
  if split.num_unseen_users:
    eval_unseen = evaluation_datasets(split.unseen_train, split.unseen_test)
  return ReconTask(
      train=training_datasets(split.seen_train, reconstruction_fraction, seed=seed),
      eval_seen=evaluation_datasets(split.seen_train, split.seen_test),
      eval_unseen=eval_unseen,
      num_movies=data.num_movies,
      genres=features.genre_multi_hot(data),
      description=f"MovieLens FedRecon: {split.describe(test_fraction)}")


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
  cross_device.check(hp)
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
  spec, dp = common.dp_aggregator(hp, configs.aggregator, len(task.train))
  aggregator = privacy.build_aggregator(spec)
  training = process.build_training_process(model_fn, configs.recon, aggregator)
  evaluation_process = process.build_evaluation_process(model_fn, configs.recon)
  # spec.clients_per_round: --clients_per_round with 0 resolved to every user.
  sampler = ClientSampler(task.train.client_ids, spec.clients_per_round,
                          hp["client_sampling"], seed)
  rng = np.random.default_rng(seed + 1)
  periodic_ids = cross_device.subset(task.eval_seen.client_ids, hp["eval_clients"], rng)
  final_ids = cross_device.subset(task.eval_seen.client_ids, hp["final_eval_clients"], rng)
  unseen_ids = (cross_device.subset(task.eval_unseen.client_ids, hp["final_eval_clients"], rng)
                if task.eval_unseen is not None else None)

  def evaluate_fn(state, round_num):
    return evaluate(evaluation_process, training.get_model_weights(state), task.eval_seen,
                    periodic_ids)

  def report(state, output_dir: str) -> Report:
    weights = training.get_model_weights(state)
    rows = {"seen": evaluate(evaluation_process, weights, task.eval_seen, final_ids)}
    if unseen_ids is not None:
      rows["unseen"] = evaluate(evaluation_process, weights, task.eval_unseen, unseen_ids)
    return cross_device.final_report(rows, output_dir, configs.eval_split)

  return FederatedRun(
      process=training,
      initial_state_fn=lambda: initialization.seeded_initial_state(training, model_fn, seed),
      sampler=sampler,
      client_data_fn=lambda client_ids, round_num: task.train.datasets(client_ids),
      evaluate_fn=evaluate_fn,
      report_fn=report,
      dp=dp,
      loss_bound=common.RATING_LOSS_BOUND,
      divergence_hint=common.learning_rates(hp, ("client", "server", "local")),
      description=task.description,
      key_metric="rmse")


TASK = TaskDefinition(
    name="movielens_fedrecon",
    summary=("cross-device matrix factorization with TFF's Federated Reconstruction (SGD "
             "steps reconstruct the user side), one client per user"),
    reads=(cross_device.READS + common.CLIENT_OPTIMIZER + common.SERVER_OPTIMIZER +
           ("local_optimizer", "local_learning_rate", "reconstruction_steps",
            "post_reconstruction_steps", "reconstruction_l2", "server_weight_decay")
           + common.PRIVACY),
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
