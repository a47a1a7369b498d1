"""`movielens_retrieval`: a TFRS two-tower retrieval model trained with FedAvg.

Clients hold the interactions of their users (a partition of users). Each
example carries only what its client owns: the positive movie, the rating,
the user's demographics and a sample of the user's *other* rated movies (the
query history), drawn anew every round (`round_histories`). The global model
holds movie embeddings, demographic embeddings and dense layers; no per-user
row exists in it (`TowerConfig.use_user_id` is off). The server averages the
clients' updates and applies them as they are (FedAvg: server SGD, learning
rate 1, chosen on the validation split). With a DP aggregator every client's
update is clipped and noised like in the other tasks (user-level DP when a
client is a user; client-level DP otherwise).

Evaluation ranks every movie on the server with the global weights (full
ranking, `tff_movierec.retrieval.evaluation`) for every user of the
protocol's evaluation split; the report exports the towers and a BruteForce
index for `python -m tff_movierec.recommend`.
"""

import os
from typing import Any, Mapping

from tasks import common, two_tower
from tasks.definition import TaskDefinition
from tff_movierec.errors import require
from tff_movierec.retrieval import export, round_histories
from tff_movierec.retrieval.config import RetrievalTaskConfig
from tff_movierec.retrieval.experiment import MIN_HISTORY_RATING
from tff_movierec.training.federated_run import FederatedRun, Report

# In-batch softmax settings measured best on ML-1M validation (BENCHMARKS.md, issue 6).
TASK_CONFIG = RetrievalTaskConfig(temperature=0.1, normalize=True, logq_correction=True)


def configure(hp: Mapping[str, Any]) -> two_tower.TwoTowerConfigs:
  """Checks every setting of the retrieval task; loads nothing."""
  require(hp["ranking_protocol"] in MIN_HISTORY_RATING, "ranking_protocol",
          hp["ranking_protocol"], f"must be one of {tuple(MIN_HISTORY_RATING)}.")
  configs = two_tower.configure(hp, TASK_CONFIG)
  require(configs.client.batch_size >= 2, "client_batch_size", configs.client.batch_size,
          "the in-batch softmax needs >= 2.")
  return configs


def build(configs: two_tower.TwoTowerConfigs) -> FederatedRun:
  """Federated two-tower retrieval, ready for the training loop."""
  hp = configs.hparams
  run = two_tower.build(configs, "retrieval", hp["ranking_protocol"])

  def report(state, output_dir: str) -> Report:
    export_dir = os.path.join(output_dir, "export")
    export.export_model(run.server_model(state), run.data, export_dir,
                        MIN_HISTORY_RATING[hp["ranking_protocol"]])
    return Report(headline=(
        f"Exported to {export_dir}; recommend with: python -m tff_movierec.recommend "
        f"--user 1841 --k 5 --model_dir {export_dir} --retrieval_only (or re-rank with "
        "--ranking_model_dir=<a movielens_ranking run>/export/ranking)"))

  return run.federated_run(
      "retrieval", "TFRS two-tower retrieval",
      client_data_fn=round_histories.ResampledHistoryDatasets(
          run.protocol.train_ratings, run.data.users, run.setup.user_to_client,
          configs.towers.history_length, run.setup.preprocess, hp["seed"]),
      report_fn=report,
      loss_bound=common.SOFTMAX_LOSS_BOUND,
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
    # Chosen on the validation split (BENCHMARKS.md, issue 15): plain FedAvg
    # on the server (SGD, learning rate 1) over Adam clients.
    defaults={"embedding_dim": 64, "client_batch_size": 1024, "client_optimizer": "adam",
              "client_learning_rate": 0.005, "server_optimizer": "sgd",
              "server_learning_rate": 1.0, "total_rounds": 10, "rounds_per_eval": 2},
)
