"""What the two TFRS tasks share (`movielens_retrieval`, `movielens_ranking`).

Both train a two-tower model (`tff_movierec.retrieval`) with FedAvg on
clients that hold a partition of the users, evaluate the global weights on the
server over a ranking protocol's split, and export them in their report.
`configure` checks their common settings; `build` makes the process, the
server's evaluation and the pieces of the `FederatedRun` every such task has,
and each task adds its client data, report and key metric.
"""

import dataclasses
from typing import Any, Callable, Mapping

from tasks import common
from tff_movierec import privacy
from tff_movierec.metrics import protocols
from tff_movierec.privacy import aggregators
from tff_movierec.retrieval import training
from tff_movierec.retrieval.config import TowerConfig
from tff_movierec.retrieval.experiment import with_validation
from tff_movierec.training import algorithms, initialization
from tff_movierec.training.federated_run import FederatedRun
from tff_movierec.training.sampling import ClientSampler

# --eval_split -> the protocol's split name.
_SPLITS = {"test": "test", "validation": "valid"}


@dataclasses.dataclass(frozen=True)
class TwoTowerConfigs:
  """The validated settings of a two-tower task (see `configure`).

  Attributes:
    model: the task's loss settings (`RetrievalTaskConfig` or `RankingTaskConfig`).
  """

  hparams: Mapping[str, Any]
  partition: Any
  client: Any
  towers: TowerConfig
  model: Any
  client_optimizer: Any
  server_optimizer: Any
  aggregator: aggregators.AggregatorSpec
  eval_split: str


def configure(hp: Mapping[str, Any], model: Any) -> TwoTowerConfigs:
  """Checks the settings every two-tower task reads; loads nothing."""
  partition = common.partition_spec(hp)
  common.check_clients_per_round(hp, partition)
  return TwoTowerConfigs(
      hparams=hp, partition=partition, client=common.client_spec(hp),
      # The query tower embeds the demographics where the release has them.
      towers=TowerConfig(embedding_dim=hp["embedding_dim"],
                         use_demographics=common.release(hp).has_demographics),
      model=model,
      client_optimizer=common.client_optimizer(hp),
      server_optimizer=common.server_optimizer(hp),
      aggregator=common.aggregator_spec(hp),
      eval_split=common.eval_split(hp))


@dataclasses.dataclass(frozen=True)
class TwoTowerRun:
  """A built two-tower task.

  Attributes:
    data, protocol: the MovieLens data and its ranking protocol (with a
      validation split carved from the training interactions).
    setup: the clients, their datasets and the model constructor.
    process: the FedAvg learning process.
    server_model: () state -> the TFRS model holding the state's global weights.
  """

  configs: TwoTowerConfigs
  data: Any
  protocol: protocols.RankingProtocol
  setup: training.FederatedSetup
  process: Any
  dp: Any
  server_model: Callable[[Any], Any]

  def federated_run(self, kind: str, title: str, **task_fields) -> FederatedRun:
    """The `FederatedRun`: seeded initial state, uniform sampling, the server's
    evaluation of `kind` on the evaluation split, described as `title`, the
    protocol and the clients; `task_fields` give the rest (client_data_fn,
    report_fn, loss_bound, key_metric)."""
    hp = self.configs.hparams
    split = _SPLITS[self.configs.eval_split]

    def evaluate_fn(state, round_num):
      metrics = training.evaluate_model(kind, self.server_model(state), self.data,
                                        self.protocol, split)
      return {name[len(split) + 1:]: value for name, value in metrics.items()}

    return FederatedRun(
        process=self.process,
        initial_state_fn=lambda: initialization.seeded_initial_state(
            self.process, self.setup.model_fn, hp["seed"]),
        sampler=ClientSampler(self.setup.client_ids, hp["clients_per_round"], "uniform",
                              hp["seed"]),
        evaluate_fn=evaluate_fn,
        dp=self.dp,
        divergence_hint=common.learning_rates(hp),
        description=(f"{title}, {self.protocol.name}, {len(self.setup.client_ids)} clients "
                     f"({self.configs.partition.scheme})"),
        **task_fields)


def build(configs: TwoTowerConfigs, kind: str, protocol_name: str) -> TwoTowerRun:
  """Loads the data, splits it by `protocol_name` and builds FedAvg for `kind`
  ("retrieval" or "ranking")."""
  hp = configs.hparams
  seed = hp["seed"]
  privacy.set_simulation_context(configs.aggregator)
  data = common.load_movielens(hp, num_users=60, num_movies=50, ratings_per_user=25)
  protocol = with_validation(protocols.build(
      protocol_name, data.ratings, data.num_users, data.num_movies, seed=seed), seed)
  setup = training.federated_setup(kind, data, protocol, configs.towers, configs.model,
                                   configs.partition, configs.client, seed)
  spec, dp = common.dp_aggregator(hp, configs.aggregator, len(setup.client_ids))
  process = algorithms.build_fed_avg(setup.model_fn, hp["client_weighting"],
                                     configs.client_optimizer, configs.server_optimizer,
                                     privacy.build_aggregator(spec))
  model = setup.model_fn()

  def server_model(state):
    process.get_model_weights(state).assign_weights_to(model)
    return model.tfrs_model

  return TwoTowerRun(configs, data, protocol, setup, process, dp, server_model)
