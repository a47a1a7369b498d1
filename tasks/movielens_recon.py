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
from typing import Any, Mapping

import numpy as np

from tasks import common, cross_device
from tasks.definition import TaskDefinition
from tff_movierec import privacy
from tff_movierec.data import features
from tff_movierec.errors import ConfigError, require
from tff_movierec.privacy import aggregators
from tff_movierec.reconstruction import exact, holdout
from tff_movierec.reconstruction.user_groups import UserRatings, pack
from tff_movierec.training.federated_run import FederatedRun, Report
from tff_movierec.training.optimizers import OptimizerSpec
from tff_movierec.training.sampling import ClientSampler

# Users per TFF client call with the plain mean aggregator (any other gets 1).
# Each call returns a dense movie-side gradient, so fewer, larger calls keep
# the cost per user flat as the catalogue grows (bench/scale.py: 0.07-0.09 ms
# per user from 6,040 to 162,541 users of the ML-25M shape, against 0.10-0.30
# ms with 64); user_groups.pack bounds the padding of a large call.
DEFAULT_USERS_PER_CLIENT_CALL = 512


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
  return ExactReconConfigs(
      hparams=hp,
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
  # Under DP the server receives the noised update only (no training errors).
  process = exact.ExactReconstructionProcess(model, configs.server_optimizer.build(),
                                             aggregator, public,
                                             release_training_metrics=not spec.is_dp)
  unseen_train, unseen_scored = UserRatings(split.unseen_train), UserRatings(split.unseen_test)
  # spec.clients_per_round: --clients_per_round with 0 resolved to every user.
  sampler = ClientSampler(train.client_ids, spec.clients_per_round, hp["client_sampling"],
                          seed)
  rng = np.random.default_rng(seed + 1)
  periodic_ids = cross_device.subset(scored.client_ids, hp["eval_clients"], rng)
  final_ids = cross_device.subset(scored.client_ids, hp["final_eval_clients"], rng)
  unseen_ids = cross_device.subset(unseen_scored.client_ids, hp["final_eval_clients"], rng)
  per_call = configs.users_per_client_call

  def evaluate(weights, groups, num_clients: int) -> dict:
    return {**process.evaluate(weights, groups), "num_clients": float(num_clients)}

  # The same users at every periodic evaluation: packed once.
  periodic_groups = pack(train, periodic_ids, per_call, scored)

  def evaluate_fn(state, round_num):
    return evaluate(process.get_model_weights(state), periodic_groups, len(periodic_ids))

  def report(state, output_dir: str) -> Report:
    weights = process.get_model_weights(state)
    rows = {"seen": evaluate(weights, pack(train, final_ids, per_call, scored),
                             len(final_ids))}
    if unseen_ids:
      rows["unseen"] = evaluate(
          weights, pack(unseen_train, unseen_ids, per_call, unseen_scored), len(unseen_ids))
    return cross_device.final_report(rows, output_dir, configs.eval_split)

  return FederatedRun(
      process=process,
      initial_state_fn=lambda: process.initialize(seed),
      sampler=sampler,
      client_data_fn=lambda client_ids, round_num: pack(train, client_ids, per_call),
      evaluate_fn=evaluate_fn,
      report_fn=report,
      dp=dp,
      loss_bound=common.RATING_LOSS_BOUND,
      divergence_hint=common.learning_rates(hp, ("server",)),
      description=(f"MovieLens exact reconstruction: {split.describe(hp['test_fraction'])}, "
                   f"{per_call} users per client call"),
      key_metric="rmse")


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

TASK = TaskDefinition(
    name="movielens_recon",
    summary=("cross-device matrix factorization, one client per user; each user's factors "
             "are solved exactly on its device and never leave it"),
    reads=(cross_device.READS + ("user_l2", "item_l2", "implicit_feedback",
                                 "public_movie_features", "movie_bias_feature",
                                 "users_per_client_call") + common.SERVER_OPTIMIZER
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
