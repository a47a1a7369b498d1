"""`movielens_retrieval`: a TFRS two-tower retrieval model trained with FedAvg.

Clients hold the interactions of their users (a partition of users). Each
example carries only what its client owns: the positive movie, the rating,
the user's demographics and a sample of the user's *other* rated movies (the
query history). The global model holds movie embeddings, demographic
embeddings and dense layers; no per-user row exists in it
(`TowerConfig.use_user_id` is off). With a DP aggregator every client's
update is clipped and noised like in the other tasks (user-level DP when a
client is a user; client-level DP otherwise).

Evaluation ranks every movie on the server with the global weights (full
ranking, `tff_movierec.retrieval.evaluation`) for every user of the
protocol's evaluation split; the report exports the towers and a BruteForce
index for `python -m tff_movierec.recommend`.
"""

import dataclasses
import os
from typing import Any, Mapping

from tasks import common
from tasks.definition import TaskDefinition
from tff_movierec import privacy
from tff_movierec.metrics import protocols
from tff_movierec.privacy import aggregators
from tff_movierec.retrieval import export, training
from tff_movierec.retrieval.config import RetrievalTaskConfig, TowerConfig
from tff_movierec.retrieval.experiment import MIN_HISTORY_RATING, with_validation
from tff_movierec.training import algorithms, initialization
from tff_movierec.training.federated_run import FederatedRun, Report
from tff_movierec.training.round_datasets import RoundDatasets
from tff_movierec.training.sampling import ClientSampler
from tff_movierec.errors import require

# In-batch softmax settings measured best on ML-1M validation (BENCHMARKS.md, issue 6).
TASK_CONFIG = RetrievalTaskConfig(temperature=0.1, normalize=True, logq_correction=True)
_SPLITS = {"test": "test", "validation": "valid"}


@dataclasses.dataclass(frozen=True)
class RetrievalConfigs:
  """The validated settings of the retrieval task (see `configure`)."""

  hparams: Mapping[str, Any]
  partition: Any
  client: Any
  towers: TowerConfig
  client_optimizer: Any
  server_optimizer: Any
  aggregator: aggregators.AggregatorSpec
  eval_split: str


def configure(hp: Mapping[str, Any]) -> RetrievalConfigs:
  """Checks every setting of the retrieval task; loads nothing."""
  require(hp["ranking_protocol"] in MIN_HISTORY_RATING, "ranking_protocol",
          hp["ranking_protocol"], f"must be one of {tuple(MIN_HISTORY_RATING)}.")
  partition = common.partition_spec(hp)
  common.check_clients_per_round(hp, partition)
  client = common.client_spec(hp)
  require(client.batch_size >= 2, "client_batch_size", client.batch_size,
          "the in-batch softmax needs >= 2.")
  return RetrievalConfigs(
      hparams=hp, partition=partition, client=client,
      # The query tower embeds the demographics where the release has them.
      towers=TowerConfig(embedding_dim=hp["embedding_dim"],
                         use_demographics=common.release(hp).has_demographics),
      client_optimizer=common.client_optimizer(hp),
      server_optimizer=common.server_optimizer(hp),
      aggregator=common.aggregator_spec(hp),
      eval_split=common.eval_split(hp))


def build(configs: RetrievalConfigs) -> FederatedRun:
  """Federated two-tower retrieval, ready for the training loop."""
  hp = configs.hparams
  seed = hp["seed"]
  privacy.set_simulation_context(configs.aggregator)
  data = common.load_movielens(hp, num_users=60, num_movies=50, ratings_per_user=25)
  protocol = with_validation(protocols.build(
      hp["ranking_protocol"], data.ratings, data.num_users, data.num_movies, seed=seed), seed)
  setup = training.federated_setup("retrieval", data, protocol, configs.towers, TASK_CONFIG,
                                   configs.partition, configs.client, seed)
  spec, dp = common.dp_aggregator(hp, configs.aggregator, len(setup.client_ids))
  aggregator = privacy.build_aggregator(spec)
  process = algorithms.build_fed_avg(setup.model_fn, hp["client_weighting"],
                                     configs.client_optimizer, configs.server_optimizer,
                                     aggregator)
  server_model = setup.model_fn()
  split = _SPLITS[configs.eval_split]

  def evaluate_fn(state, round_num):
    process.get_model_weights(state).assign_weights_to(server_model)
    metrics = training.evaluate_model("retrieval", server_model.tfrs_model, data, protocol,
                                      split)
    return {name[len(split) + 1:]: value for name, value in metrics.items()}

  def report(state, output_dir: str) -> Report:
    process.get_model_weights(state).assign_weights_to(server_model)
    export_dir = os.path.join(output_dir, "export")
    export.export_model(server_model.tfrs_model, data, export_dir,
                        MIN_HISTORY_RATING[hp["ranking_protocol"]])
    return Report(headline=f"Exported to {export_dir}; recommend with: python -m "
                  f"tff_movierec.recommend --user 1841 --k 5 --model_dir {export_dir}")

  return FederatedRun(
      process=process,
      initial_state_fn=lambda: initialization.seeded_initial_state(process, setup.model_fn,
                                                                   seed),
      sampler=ClientSampler(setup.client_ids, hp["clients_per_round"], "uniform", seed),
      client_data_fn=RoundDatasets(setup.client_data, setup.preprocess, seed),
      evaluate_fn=evaluate_fn,
      report_fn=report,
      dp=dp,
      loss_bound=common.SOFTMAX_LOSS_BOUND,
      divergence_hint=common.learning_rates(hp),
      description=(f"TFRS two-tower retrieval, {protocol.name}, {len(setup.client_ids)} "
                   f"clients ({configs.partition.scheme})"),
      key_metric="ndcg@10")


TASK = TaskDefinition(
    name="movielens_retrieval",
    summary=("TFRS two-tower retrieval (in-batch softmax) trained with FedAvg; full-ranking "
             "metrics on the server, exported for `python -m tff_movierec.recommend`"),
    reads=(("ranking_protocol",) + common.EVAL_SPLIT + common.PARTITION +
           common.CLIENT_SPEC + ("clients_per_round", "embedding_dim") +
           common.CLIENT_OPTIMIZER + common.SERVER_OPTIMIZER + common.PRIVACY),
    configure=configure,
    build=build,
    # Settings of the federated run in BENCHMARKS.md (issue 6).
    defaults={"embedding_dim": 64, "client_batch_size": 1024, "client_optimizer": "adam",
              "client_learning_rate": 0.005, "server_learning_rate": 0.05,
              "total_rounds": 10, "rounds_per_eval": 2},
)
