"""`movielens_ease`: federated EASE, top-K recommendation from one summed statistic.

Clients hold the interactions of their users (a partition of users). Each
client sends the item-item Gram matrix of its users, the server receives
only the sum (plain, secure or with Gaussian noise, see
`tff_movierec.ease.federated`) and solves EASE in closed form; each client
scores its own users with the broadcast weights. Without DP the result is
centralized EASE's, up to float rounding. Evaluated by full ranking under
`ranking_protocol`, beside centralized EASE on the same split.
"""

import dataclasses
from typing import Any, Mapping

import numpy as np

from tasks import common
from tff_movierec import tff_runtime
from tff_movierec.baselines import ease as ease_baseline
from tff_movierec.data import client_data as client_data_lib
from tff_movierec.data import features, partitions
from tff_movierec.ease import federated as federated_ease
from tff_movierec.errors import ConfigError
from tff_movierec.metrics import protocols
from tasks.definition import TaskDefinition
from tff_movierec.retrieval.experiment import with_validation
from tff_movierec.training.federated_run import DpAccounting, FederatedRun, Report
from tff_movierec.training.sampling import ClientSampler

_SPLITS = {"test": "test", "validation": "valid"}
K = 10


@dataclasses.dataclass(frozen=True)
class EaseConfigs:
  """The validated settings of federated EASE (see `configure`)."""

  hparams: Mapping[str, Any]
  partition: partitions.PartitionSpec
  ease: federated_ease.EaseConfig
  eval_split: str


def configure(hp: Mapping[str, Any]) -> EaseConfigs:
  """Checks every setting; loads nothing."""
  if hp["ranking_protocol"] not in protocols.PROTOCOLS:
    raise ConfigError(f"ranking_protocol={hp['ranking_protocol']!r}: expected one of "
                      f"{protocols.PROTOCOLS}.", ("ranking_protocol",))
  ease = federated_ease.EaseConfig(hp["ease_l2"], hp["ease_dropout"], hp["aggregator"],
                                   hp["noise_multiplier"], hp["max_user_history"],
                                   hp["target_epsilon"])
  common.check_dp_delta(hp, ease.aggregator == "dp_fixed", "aggregator='dp_fixed'")
  return EaseConfigs(hparams=hp, partition=common.partition_spec(hp), ease=ease,
                     eval_split=common.eval_split(hp))


def build(configs: EaseConfigs) -> FederatedRun:
  """Federated EASE, ready for the training loop (one round = one release)."""
  hp = configs.hparams
  seed = hp["seed"]
  tff_runtime.install(secure_intrinsics=configs.ease.aggregator == "secure")
  data = common.load_movielens(hp)
  protocol = with_validation(protocols.build(
      hp["ranking_protocol"], data.ratings, data.num_users, data.num_movies, seed=seed), seed)
  user_to_client = partitions.partition_users(
      configs.partition, protocol.train_ratings, data.users, features.genre_multi_hot(data))
  train = protocol.train.tocsr().astype(np.float32)
  train.data[:] = 1.0  # EASE's X: which movies a user interacted with (not the rating)
  histories = federated_ease.cap_histories(
      [train.indices[train.indptr[u]:train.indptr[u + 1]] for u in range(data.num_users)],
      configs.ease.max_user_history, np.random.default_rng([seed, 1]))
  num_clients = int(user_to_client.max()) + 1
  members = [[u for u in np.flatnonzero(user_to_client == k) if len(histories[u])]
             for k in range(num_clients)]
  client_ids = [client_data_lib.client_id(k) for k in range(num_clients) if members[k]]
  datasets = {client_data_lib.client_id(k): federated_ease.client_dataset(
      [histories[u] for u in users]) for k, users in enumerate(members) if users}
  config = dataclasses.replace(configs.ease,
                               max_users_per_client=max(len(users) for users in members))
  if config.target_epsilon is not None:
    # Every user is in every release: sampling probability 1.
    config = config.with_noise(common.noise_for_target(hp, 1.0, data.num_users))
  process = federated_ease.EaseProcess(data.num_movies, config)
  split = _SPLITS[configs.eval_split]

  def evaluate(weights: np.ndarray) -> Mapping[str, float]:
    # A user's scores need only their own training row and the broadcast
    # weights: what each client computes for its users.
    metrics = protocol.evaluate(lambda users: np.asarray(train[users] @ weights), (K,), split)
    return {name: float(value) for name, value in metrics.items()}

  def report(state, output_dir: str) -> Report:
    centralized = evaluate(ease_baseline.ease_weights(
        (train.T @ train).toarray(), config.ease_l2, config.ease_dropout))[f"ndcg@{K}"]
    federated = evaluate(state["weights"])[f"ndcg@{K}"]
    return Report(
        headline=(f"{split} NDCG@{K}: federated EASE {federated:.4f} ({config.aggregator} "
                  f"sum of {len(client_ids)} clients' Gram matrices) | centralized EASE "
                  f"{centralized:.4f} (λ={config.ease_l2:g}, dropout {config.ease_dropout:g})"),
        comparisons={"centralized EASE": centralized})

  dp = None
  if config.aggregator == "dp_fixed":
    dp = DpAccounting(
        config.noise_multiplier, common.dp_delta(hp, data.num_users), hp["target_epsilon"],
        f"Gaussian noise multiplier {config.noise_multiplier:.4g} on the Gram sum, each user "
        f"capped at {config.max_user_history} interactions (L2 sensitivity = the cap); every "
        "user in every release; RDP accounting")
  return FederatedRun(
      process=process,
      initial_state_fn=process.initialize,
      sampler=ClientSampler(client_ids, len(client_ids), "uniform", seed),
      client_data_fn=lambda ids, round_num: [datasets[c] for c in ids],
      evaluate_fn=lambda state, round_num: evaluate(state["weights"]),
      report_fn=report,
      dp=dp,
      description=(f"federated EASE (λ={config.ease_l2:g}, dropout {config.ease_dropout:g}), "
                   f"{protocol.name}, "
                   f"{len(client_ids)} clients ({configs.partition.scheme}), "
                   f"{config.aggregator} Gram sum"),
      key_metric=f"ndcg@{K}")


TASK = TaskDefinition(
    name="movielens_ease",
    summary=("federated EASE: clients send their item-item Gram matrix (plain, secure or "
             "DP sum), the server solves EASE in closed form; full-ranking NDCG beside "
             "centralized EASE"),
    reads=(("ranking_protocol",) + common.EVAL_SPLIT + common.PARTITION +
           ("aggregator", "noise_multiplier", "target_epsilon", "dp_delta", "ease_l2",
            "ease_dropout", "max_user_history")),
    configure=configure,
    build=build,
    defaults={"total_rounds": 1},
)
