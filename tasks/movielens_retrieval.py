"""`movielens_retrieval` (and `movielens_ranking`): TFRS two-tower models.

Clients hold the interactions of their users (a partition of users). Each
example carries only what its client owns: the positive movie, the rating,
the user's demographics and a sample of the user's *other* rated movies (the
query history). The global model holds movie embeddings, demographic
embeddings and dense layers; with the default towers no per-user row exists
in it (see `TowerConfig.use_user_id`).

The model is a `tfrs.Model`, not a functional Keras model, so this task does
not fit `base.FederatedTask` (whose `model_fn` calls `from_keras_model`): it
offers its own `model_fn` (a `TfrsVariableModel`) and a server-side
`evaluate` that ranks all movies with the global weights.
"""

import dataclasses
import tempfile
from typing import Callable, Dict, List

import tensorflow as tf
import tensorflow_federated as tff

from tff_movierec.data import movielens, partitions, preprocessing, synthetic
from tff_movierec.metrics import protocols
from tff_movierec.retrieval import federated, training
from tff_movierec.retrieval.config import RetrievalTaskConfig, TowerConfig
from tff_movierec.retrieval.models import TwoTowerEmbeddings


@dataclasses.dataclass(frozen=True)
class RetrievalTask:
  """Data, model and server-side evaluation of a federated two-tower task.

  Attributes:
    name: "movielens_retrieval" or "movielens_ranking".
    kind: "retrieval" or "ranking" (see `training.MODEL_KINDS`).
    data: the MovieLens tables.
    protocol: the ranking protocol whose train split the clients hold.
    train_data: raw (unbatched) training examples per client.
    client_ids: clients with at least one example.
    train_preprocess: raw client dataset -> `OrderedDict(x=..., y=...)` batches.
    model_fn: () -> a new `TfrsVariableModel` for TFF learning processes.
    description: one line for logs.
  """

  name: str
  kind: str
  data: movielens.MovieLens
  protocol: protocols.RankingProtocol
  train_data: tff.simulation.datasets.ClientData
  client_ids: List[str]
  train_preprocess: Callable[[tf.data.Dataset], tf.data.Dataset]
  model_fn: Callable[[], federated.TfrsVariableModel]
  description: str = ""

  def evaluate(self, model: TwoTowerEmbeddings, split: str = "test") -> Dict[str, float]:
    """Server-side metrics of a model holding the global weights.

    Retrieval: full-ranking recall/ndcg/hr/precision/mrr@10 on `split`;
    ranking: RMSE of the predicted ratings, keys prefixed with `split`.
    """
    return training.evaluate_model(self.kind, model, self.data, self.protocol, split)


def create_retrieval_task_from_data(
    data: movielens.MovieLens,
    protocol: protocols.RankingProtocol,
    partition_spec: partitions.PartitionSpec,
    train_client_spec: preprocessing.ClientSpec,
    tower_config: TowerConfig = TowerConfig(),
    task_config: RetrievalTaskConfig = RetrievalTaskConfig(
        temperature=0.1, normalize=True, logq_correction=True),
    kind: str = "retrieval",
    seed: int = 0,
) -> RetrievalTask:
  """Builds the task from loaded data and a ranking protocol."""
  setup = training.federated_setup(kind, data, protocol, tower_config, task_config,
                                   partition_spec, train_client_spec, seed)
  return RetrievalTask(
      name=f"movielens_{kind}", kind=kind, data=data, protocol=protocol,
      train_data=setup.client_data, client_ids=setup.client_ids,
      train_preprocess=setup.preprocess, model_fn=setup.model_fn,
      description=(f"TFRS two-tower {kind}, {protocol.name}, {len(setup.client_ids)} "
                   f"clients ({partition_spec.scheme})"))


def create_retrieval_task(
    data_dir: str,
    partition_spec: partitions.PartitionSpec,
    train_client_spec: preprocessing.ClientSpec,
    tower_config: TowerConfig = TowerConfig(),
    task_config: RetrievalTaskConfig = RetrievalTaskConfig(
        temperature=0.1, normalize=True, logq_correction=True),
    protocol: str = "recbole_ml1m",
    kind: str = "retrieval",
    seed: int = 0,
    use_synthetic_data: bool = False,
) -> RetrievalTask:
  """Loads MovieLens-1M (or small synthetic data) and builds the task."""
  if use_synthetic_data:
    data_dir = synthetic.write_synthetic_movielens(
        tempfile.mkdtemp(prefix="tff_movierec_synthetic_"), num_users=60, num_movies=50,
        ratings_per_user=25, seed=seed)
  data = movielens.load_movielens(data_dir)
  ranking_protocol = protocols.build(protocol, data.ratings, data.num_users,
                                     data.num_movies, seed=seed)
  return create_retrieval_task_from_data(data, ranking_protocol, partition_spec,
                                         train_client_spec, tower_config, task_config,
                                         kind, seed)

