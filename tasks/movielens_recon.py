"""Cross-device MovieLens task: matrix factorization with exact user solves.

One client per user (6,040 on ML-1M); each user's factors and bias are solved
in closed form on its device every time it participates and never leave it
(`tff_movierec.reconstruction.exact`). Ratings are split by
`holdout.user_holdout` (canonical per-user holdout, optional unseen users).
Every evaluation scores all training users by default: it is a cheap solve per
user.

Simulation: a round's users are packed into TFF client calls of
`users_per_client_call` users (`user_groups.pack`); with the plain mean
aggregator the aggregate is the same as one client per user (see
`exact`). An aggregator that clips, quantizes or adds noise per client gets
one user per call.
"""

import dataclasses
import os
from typing import Any, Mapping, Optional

import numpy as np

from tasks import common, cross_device
from tasks.definition import RUNTIME_DATA, TaskDefinition
from tff_movierec import privacy
from tff_movierec.data import features
from tff_movierec.errors import ConfigError, require
from tff_movierec.privacy import aggregators
from tff_movierec.reconstruction import exact, holdout, rating_store
from tff_movierec.reconstruction.user_groups import UserRatings, pack, plan
from tff_movierec.training.federated_run import FederatedRun, Report
from tff_movierec.training.optimizers import OptimizerSpec
from tff_movierec.training.sampling import ClientSampler

# Users per TFF client call with the plain mean aggregator (any other gets 1).
# Each call returns a dense movie-side gradient, so fewer, larger calls keep
# the cost per user flat as the catalogue grows (bench/scale.py: 0.07-0.09 ms
# per user from 6,040 to 162,541 users of the ML-25M shape, against 0.10-0.30
# ms with 64); user_groups.pack bounds the padding of a large call.
DEFAULT_USERS_PER_CLIENT_CALL = 512
# Where the clients' training ratings come from with remote workers.
CLIENT_DATA_SOURCES = ("auto", "controller", "workers")


@dataclasses.dataclass(frozen=True)
class ExactReconConfigs:
  """The validated settings of the task (see `configure`)."""

  hparams: Mapping[str, Any]
  model: exact.ExactConfig
  server_optimizer: OptimizerSpec
  aggregator: aggregators.AggregatorSpec
  users_per_client_call: int
  eval_split: str
  public_features: bool
  # With remote workers: the folder of `rating_store` (None: no store).
  worker_data_dir: Optional[str]


def configure(hp: Mapping[str, Any]) -> ExactReconConfigs:
  """Checks every setting of the task; loads nothing."""
  cross_device.check(hp)
  aggregator = common.aggregator_spec(hp)
  per_call = hp["users_per_client_call"]
  if per_call is None:
    per_call = DEFAULT_USERS_PER_CLIENT_CALL if aggregator.kind == "none" else 1
  require(per_call >= 1, "users_per_client_call", per_call, "must be >= 1.")
  if per_call > 1 and aggregator.kind != "none":
    raise ConfigError(
        f"users_per_client_call={per_call} with aggregator={aggregator.kind!r}: that "
        "aggregator clips, quantizes or adds noise per client, so a client must hold one "
        "user (use users_per_client_call=1, the default with it).",
        ("users_per_client_call", "aggregator"))
  source = hp["client_data_source"]
  require(source in CLIENT_DATA_SOURCES, "client_data_source", source,
          f"must be one of {CLIENT_DATA_SOURCES}.")
  if source == "workers" and not hp["workers"]:
    raise ConfigError("client_data_source='workers' without workers: only remote workers "
                      "read the clients' data themselves.", ("client_data_source", "workers"))
  worker_data_dir = None
  if hp["workers"] and source != "controller":
    worker_data_dir = hp["worker_data_dir"] or os.path.join(
        hp["root_output_dir"], hp["experiment_name"] or TASK_NAME, "worker_data")
  return ExactReconConfigs(
      hparams=hp,
      worker_data_dir=worker_data_dir,
      model=exact.ExactConfig(
          num_movies=1, embedding_dim=hp["embedding_dim"], user_l2=hp["user_l2"],
          item_l2=hp["item_l2"], implicit=hp["implicit_feedback"],
          uniform_weighting=hp["client_weighting"] == "uniform",
          movie_bias_feature=hp["movie_bias_feature"]),
      public_features=hp["public_movie_features"],
      server_optimizer=common.server_optimizer(hp),
      aggregator=aggregator,
      users_per_client_call=per_call,
      eval_split=common.eval_split(hp))


def build(configs: ExactReconConfigs) -> FederatedRun:
  """The task, ready for the training loop.

  Evaluation (every rounds_per_eval rounds): `eval_clients` training users (a
  fixed random subset; default all). Report: `final_eval_clients` (default
  all) and, with `cold_start_fraction`, the users never trained on, in
  final_eval.csv.
  """
  hp = configs.hparams
  seed = hp["seed"]
  privacy.set_simulation_context(configs.aggregator)
  data = common.load_movielens(hp)
  split = holdout.user_holdout(data, hp["test_fraction"], hp["cold_start_fraction"],
                               seed=seed, validation=configs.eval_split == "validation")
  public = features.public_movie_features(data) if configs.public_features else None
  model = dataclasses.replace(configs.model, num_movies=data.num_movies,
                              num_public_features=0 if public is None else public.shape[1],
                              rating_range=data.rating_scale)
  train, scored = UserRatings(split.seen_train), UserRatings(split.seen_test)
  spec, dp = common.dp_aggregator(hp, configs.aggregator, len(train))
  # The plain mean is the process's own weighted mean, which holds for any
  # number of users per call; every other aggregator gets one user per call.
  aggregator = None if spec.kind == "none" else privacy.build_aggregator(spec)
  per_call = configs.users_per_client_call
  unseen_train, unseen_scored = UserRatings(split.unseen_train), UserRatings(split.unseen_test)
  tables = {"train": train, "scored": scored}
  if len(unseen_train):
    tables.update(unseen_train=unseen_train, unseen_scored=unseen_scored)
  store, data_note = _worker_store(configs, tables)
  # Under DP the server receives the noised update only (no training errors).
  process = exact.ExactReconstructionProcess(
      model, configs.server_optimizer.build(), aggregator, public,
      release_training_metrics=not spec.is_dp,
      client_input=None if store is None else rating_store.group_builder(store.folder),
      eval_client_input=(None if store is None
                         else rating_store.scored_group_builder(store.folder)))
  # spec.clients_per_round: --clients_per_round with 0 resolved to every user.
  sampler = ClientSampler(train.client_ids, spec.clients_per_round, hp["client_sampling"],
                          seed)
  rng = np.random.default_rng(seed + 1)
  periodic_ids = cross_device.subset(scored.client_ids, hp["eval_clients"], rng)
  final_ids = cross_device.subset(scored.client_ids, hp["final_eval_clients"], rng)
  unseen_ids = cross_device.subset(unseen_scored.client_ids, hp["final_eval_clients"], rng)

  def client_data(client_ids, round_num):
    if store is None:
      return pack(train, client_ids, per_call)
    return [store.keys("train", members) for members in plan(train, client_ids, per_call)]

  def eval_data(rated: str, scored_table: str, client_ids):
    """The evaluation groups (or their keys) of `client_ids`, solved from the
    table `rated`, scoring the table `scored_table`."""
    if store is None:
      return pack(tables[rated], client_ids, per_call, tables[scored_table])
    return [store.scored_keys(rated, scored_table, members)
            for members in plan(tables[rated], client_ids, per_call, tables[scored_table])]

  def evaluate(weights, groups, num_clients: int) -> dict:
    return {**process.evaluate(weights, groups), "num_clients": float(num_clients)}

  # The same users at every periodic evaluation: packed once.
  periodic_groups = eval_data("train", "scored", periodic_ids)

  def evaluate_fn(state, round_num):
    return evaluate(process.get_model_weights(state), periodic_groups, len(periodic_ids))

  def report(state, output_dir: str) -> Report:
    weights = process.get_model_weights(state)
    rows = {"seen": evaluate(weights, eval_data("train", "scored", final_ids), len(final_ids))}
    if unseen_ids:
      rows["unseen"] = evaluate(weights, eval_data("unseen_train", "unseen_scored", unseen_ids),
                                len(unseen_ids))
    return cross_device.final_report(rows, output_dir, configs.eval_split)

  return FederatedRun(
      process=process,
      initial_state_fn=lambda: process.initialize(seed),
      sampler=sampler,
      client_data_fn=client_data,
      evaluate_fn=evaluate_fn,
      report_fn=report,
      dp=dp,
      loss_bound=common.RATING_LOSS_BOUND,
      divergence_hint=common.learning_rates(hp, ("server",)),
      description=(f"MovieLens exact reconstruction: {split.describe(hp['test_fraction'])}, "
                   f"{per_call} users per client call{data_note}"),
      key_metric="rmse")


def _worker_store(configs: ExactReconConfigs, tables):
  """(the store the workers read the users' ratings from, or None; a note
  for the run's description)."""
  if configs.worker_data_dir is None:
    return None, ""
  store = rating_store.write(configs.worker_data_dir, tables)
  problems = rating_store.unreadable_by_workers(store)
  if not problems:
    return store, f"; the workers read the users' ratings from {store.folder}"
  if configs.hparams["client_data_source"] == "workers":
    raise ConfigError(
        "client_data_source='workers', but not every worker reads the store of the "
        f"users' ratings: {'; '.join(problems)}. Give a folder they all see at the same "
        "path (--worker_data_dir), or let the controller send the data.",
        ("client_data_source", "worker_data_dir"))
  return None, f"; the controller sends the users' ratings ({'; '.join(problems)})"


# --privacy=user_dp: user-level DP (with --target_epsilon or --noise_multiplier)
# at δ = 1e-6, chosen on the validation split (BENCHMARKS.md, issue 14). Every
# user takes part in every round and sends its clipped gradient; the server
# learns the global and movie biases only (no movie factors: at ε = 5 they
# cost more noise than they gain) with SGD with momentum. Each user solves on
# its device its bias, its weights on the movies' public features and its
# weight on the movie bias.
USER_DP_PRESET = {
    "aggregator": "dp_fixed", "client_weighting": "uniform", "clip_norm": 0.1,
    "dp_delta": 1e-6, "clients_per_round": 0, "total_rounds": 60, "rounds_per_eval": 10,
    "server_optimizer": "sgd", "server_momentum": 0.9, "server_learning_rate": 45.0,
    "server_lr_decay_rounds": 60, "embedding_dim": 0, "user_l2": 0.1, "item_l2": 0.0,
    "implicit_feedback": False, "public_movie_features": True, "movie_bias_feature": True,
}

TASK_NAME = "movielens_recon"
TASK = TaskDefinition(
    name=TASK_NAME,
    summary=("cross-device matrix factorization, one client per user; each user's factors "
             "are solved exactly on its device and never leave it"),
    reads=(cross_device.READS + ("user_l2", "item_l2", "implicit_feedback",
                                 "public_movie_features", "movie_bias_feature",
                                 "users_per_client_call") + RUNTIME_DATA + common.SERVER_OPTIMIZER
           + common.PRIVACY),
    configure=configure,
    build=build,
    # Chosen on the validation split (BENCHMARKS.md, issue 17).
    defaults={"total_rounds": 300, "clients_per_round": 1000, "embedding_dim": 64,
              "server_learning_rate": 0.01, "server_lr_decay_rounds": 300,
              "rounds_per_eval": 25, "eval_clients": None},
    # The synthetic data has 60 users.
    synthetic_defaults={"clients_per_round": 20},
    presets={"user_dp": USER_DP_PRESET},
)
