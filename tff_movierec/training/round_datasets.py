"""Each round's client datasets for `FederatedRun.client_data_fn`."""

from typing import Callable, List

import tensorflow as tf
import tensorflow_federated as tff

from tff_movierec.data import preprocessing


class RoundDatasets:
  """(client ids, round) -> the clients' preprocessed training datasets.

  Each client's examples are shuffled with a seed of (experiment seed, round,
  client): a fresh order every round, the same order for the same command.
  The raw client datasets are built once and reused.
  """

  def __init__(self, client_data: tff.simulation.datasets.ClientData,
               preprocess: Callable[..., tf.data.Dataset], seed: int, keyed: bool = False):
    """
    Args:
      client_data: raw examples per client.
      preprocess: (dataset, seed) -> batches, see `preprocessing.build_preprocess_fn`.
      seed: the experiment seed.
      keyed: return (client id, dataset) pairs (what `stateful_local` takes)
        instead of datasets.
    """
    self._client_data = client_data
    self._preprocess = preprocess
    self._seed = seed
    self._keyed = keyed
    self._index = {c: i for i, c in enumerate(client_data.client_ids)}
    self._raw = {}

  def __call__(self, client_ids: List[str], round_num: int) -> list:
    datasets = []
    for client in client_ids:
      if client not in self._raw:
        self._raw[client] = self._client_data.create_tf_dataset_for_client(client)
      datasets.append(self._preprocess(
          self._raw[client],
          seed=preprocessing.round_seed(self._seed, round_num, self._index[client])))
    return list(zip(client_ids, datasets)) if self._keyed else datasets
