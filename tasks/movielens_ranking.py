"""`movielens_ranking`: the TFRS ranking (rating) model trained with FedAvg.

The model (`tff_movierec.retrieval.ranking`) predicts a rating as
mu + b_u + b_i + <p_u, q_i> (+ an MLP with --hidden_units), where the user
side (p_u, b_u) is computed from what the user's client holds: the movies the
user rated and their ratings (SVD++-like implicit and explicit feedback), the
user's shrunk mean offset and demographics. The global model holds movie
embeddings and biases, demographic embeddings and dense layers; no per-user
row exists in it. The mean rating and the initial movie biases come from a
federated sum of per-movie rating sums and counts. --factor_l2 weighs the
batch's squared embeddings and biases in the loss, so clients apply it.

Split: the canonical per-user 10% holdout (`holdout` protocol) with a 10%
validation split carved from each user's training ratings
(`with_validation`): --eval_split=validation evaluates on it (for tuning),
--eval_split=test on the held-out ratings, with the validation ratings in the
users' histories. The server evaluates RMSE and MAE of the global model on
every rating of the split. The report exports the model for re-ranking
(`export.export_ranking_model`, into OUTPUT/export/ranking: point
`python -m tff_movierec.recommend --ranking_model_dir` at it).
"""

import os
from typing import Any, Mapping

from tasks import common, two_tower
from tasks.definition import TaskDefinition
from tff_movierec.errors import ConfigError, require
from tff_movierec.retrieval import export
from tff_movierec.retrieval.experiment import MIN_HISTORY_RATING
from tff_movierec.retrieval.ranking import RankingTaskConfig
from tff_movierec.training.federated_run import FederatedRun, Report
from tff_movierec.training.round_datasets import RoundDatasets

PROTOCOL = "holdout"


def _head_units(hp: Mapping[str, Any]):
  try:
    return tuple(int(units) for units in hp["hidden_units"])
  except ValueError as e:
    raise ConfigError(f"hidden_units={','.join(map(str, hp['hidden_units']))}: integers "
                      "expected.", ("hidden_units",)) from e


def configure(hp: Mapping[str, Any]) -> two_tower.TwoTowerConfigs:
  """Checks every setting of the ranking task; loads nothing."""
  require(hp["factor_l2"] is None or hp["factor_l2"] >= 0, "factor_l2", hp["factor_l2"],
          "must be >= 0.")
  return two_tower.configure(
      hp, RankingTaskConfig(head_units=_head_units(hp), l2=hp["factor_l2"] or 0.0))


def build(configs: two_tower.TwoTowerConfigs) -> FederatedRun:
  """Federated training of the ranking model, ready for the training loop."""
  run = two_tower.build(configs, "ranking", PROTOCOL)

  def report(state, output_dir: str) -> Report:
    ranking_dir = os.path.join(output_dir, "export", export.RANKING_DIR)
    export.export_ranking_model(run.server_model(state), run.data, ranking_dir,
                                MIN_HISTORY_RATING[PROTOCOL])
    return Report(headline=(
        f"Exported to {ranking_dir}; re-rank retrieval with: python -m "
        f"tff_movierec.recommend --user 1841 --k 5 --model_dir RETRIEVAL_EXPORT "
        f"--ranking_model_dir {ranking_dir}"))

  return run.federated_run(
      "ranking", "TFRS ranking (biased SVD++-like rating model)",
      client_data_fn=RoundDatasets(run.setup.client_data, run.setup.preprocess,
                                   configs.hparams["seed"]),
      report_fn=report,
      loss_bound=common.RATING_LOSS_BOUND,
      key_metric="rmse")


TASK = TaskDefinition(
    name="movielens_ranking",
    summary=("TFRS ranking model (ratings from the user's own rated movies, no user row) "
             "trained with FedAvg; RMSE/MAE on the server, exported for re-ranking in "
             "`python -m tff_movierec.recommend`"),
    reads=(common.EVAL_SPLIT + common.PARTITION + common.CLIENT_SPEC +
           ("clients_per_round", "embedding_dim", "hidden_units", "factor_l2") +
           common.CLIENT_OPTIMIZER + common.SERVER_OPTIMIZER + common.PRIVACY),
    configure=configure,
    build=build,
    # Chosen on the validation split of ML-1M (BENCHMARKS.md, issue 15): plain
    # FedAvg of one local Adam epoch per round; validation RMSE 0.8945 / 0.8790 /
    # 0.8705 / 0.8682 after 2 / 4 / 8 / 12 rounds.
    defaults={"embedding_dim": 32, "hidden_units": [], "factor_l2": 0.0,
              "client_batch_size": 256, "client_optimizer": "adam",
              "client_learning_rate": 0.002, "server_optimizer": "sgd",
              "server_learning_rate": 1.0, "total_rounds": 12, "rounds_per_eval": 4},
)
