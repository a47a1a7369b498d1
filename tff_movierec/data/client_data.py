"""Per-client datasets as TFF `ClientData` over in-memory tensors.

The examples of all clients live in one set of tensors, sorted by client, with
an offset table; a client's dataset is a slice of them. Nothing is rebuilt per
round and memory does not grow with the number of rounds.
"""

import collections
from typing import Dict, Mapping

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff


def client_id(index: int) -> str:
  return str(index)


def make_client_data(
    examples: Mapping[str, np.ndarray], example_client: np.ndarray, num_clients: int
) -> tff.simulation.datasets.ClientData:
  """Builds a ClientData whose client `str(k)` holds the examples of client k.

  Args:
    examples: feature name -> array whose first dimension N indexes examples.
    example_client: int [N], the client index of each example.
    num_clients: K; client ids are "0" .. "K-1" (clients may be empty).

  Returns:
    A ClientData; each client's dataset yields dicts of unbatched examples with
    the keys, dtypes and trailing shapes of `examples`, in their given order
    within that client.
  """
  example_client = np.asarray(example_client)
  if example_client.min(initial=0) < 0 or example_client.max(initial=0) >= num_clients:
    raise ValueError(f"example_client must be in [0, {num_clients}).")
  order = np.argsort(example_client, kind="stable")
  offsets = np.r_[0, np.cumsum(np.bincount(example_client, minlength=num_clients))]
  tensors: Dict[str, tf.Tensor] = {
      name: tf.constant(np.asarray(values)[order]) for name, values in examples.items()
  }
  offsets_tensor = tf.constant(offsets, tf.int64)

  def dataset_fn(cid: tf.Tensor) -> tf.data.Dataset:
    index = tf.strings.to_number(cid, tf.int64)
    start, end = offsets_tensor[index], offsets_tensor[index + 1]
    # Sorted keys: TFF serializes datasets of dicts only in sorted key order.
    return tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
        (name, tensors[name][start:end]) for name in sorted(tensors)))

  ids = [client_id(k) for k in range(num_clients)]
  return tff.simulation.datasets.ClientData.from_clients_and_tf_fn(ids, dataset_fn)
