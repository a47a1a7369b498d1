"""Evaluation of FedRecon: reconstruct each user from its training ratings,
score its held-out ratings, pool the errors over users."""

from typing import Dict

import numpy as np
import tensorflow_federated as tff

from tff_movierec.reconstruction import client_datasets


def evaluate(eval_process: tff.learning.templates.LearningProcess,
             model_weights, users: client_datasets.UserDatasets,
             client_ids=None, chunk_size: int = 1000) -> Dict[str, float]:
  """Rating metrics over `client_ids` (default all), pooled over their scored ratings.

  Clients are evaluated in chunks; the chunk metrics are combined weighted by
  the chunk's number of scored ratings, so `rmse` is the RMSE over all scored
  ratings (not a mean of per-client RMSEs).

  Returns:
    {'rmse', 'mae', 'num_ratings', 'num_clients'}.
  """
  ids = users.client_ids if client_ids is None else list(client_ids)
  state = eval_process.set_model_weights(eval_process.initialize(), model_weights)
  squared = absolute = count = 0.0
  for start in range(0, len(ids), chunk_size):
    chunk = ids[start:start + chunk_size]
    metrics = eval_process.next(state, users.datasets(chunk)).metrics
    current = metrics["client_work"]["eval"]["current_round_metrics"]
    scored = float(sum(users.part_sizes(c)[1] for c in chunk))
    squared += float(current["rmse"]) ** 2 * scored
    absolute += float(current["mae"]) * scored
    count += scored
  return {"rmse": float(np.sqrt(squared / count)), "mae": absolute / count,
          "num_ratings": count, "num_clients": float(len(ids))}
