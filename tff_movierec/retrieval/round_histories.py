"""Each round's client datasets with freshly sampled query histories.

A training example's `history` is a sample of the user's other training
movies (`examples.training_examples`). Sampled once, every round replays the
same (history, movie) pairs; drawing the histories again every round, as the
centralized fit does every epoch, makes each round see new queries for the
same interactions (measured on the validation split in BENCHMARKS.md,
issue 15).

Every user's ratings stay on the user's client: a client resamples its own
users' histories from their own ratings. The simulation draws them for all
clients at once on the controller, seeded by (experiment seed, round), so a
run is reproducible and a resumed run sees what the uninterrupted one saw.
"""

from typing import Callable, List

import numpy as np
import pandas as pd
import tensorflow as tf

from tff_movierec.data.client_data import make_client_data
from tff_movierec.errors import ConfigError, require
from tff_movierec.retrieval import examples
from tff_movierec.training.round_datasets import RoundDatasets


def history_seed(seed: int, round_num: int) -> int:
  """The seed of round `round_num`'s history draw (a function of the experiment
  seed and the round only, so a resumed run draws what the uninterrupted one did)."""
  return int(np.random.SeedSequence([seed, round_num, 7919]).generate_state(1)[0])


class ResampledHistoryDatasets:
  """(client ids, round) -> the clients' preprocessed datasets, histories drawn anew.

  The examples (one per training interaction) and their clients are those of
  `training.federated_client_data`; only the `history` column changes from
  round to round. Shuffling is `RoundDatasets`'s (seeded by experiment seed,
  round and client).
  """

  def __init__(self, ratings: pd.DataFrame, users: pd.DataFrame, user_to_client: np.ndarray,
               history_length: int, preprocess: Callable[..., tf.data.Dataset], seed: int):
    """
    Args:
      ratings: the training interactions (`user`, `movie`, `rating`).
      users: the users table (demographics).
      user_to_client: int [U], each user's client index.
      history_length: L, history slots per example.
      preprocess: (dataset, seed) -> batches, see `preprocessing.build_preprocess_fn`.
      seed: the experiment seed.
    """
    require(history_length >= 1, "history_length", history_length, "must be >= 1.")
    user_to_client = np.asarray(user_to_client)
    if len(user_to_client) != len(users):
      raise ConfigError(f"user_to_client has {len(user_to_client)} entries: it must give the "
                        f"client of each of the {len(users)} users.", ("user_to_client",))
    self._ratings = ratings
    self._users = users
    self._user_to_client = user_to_client
    self._num_clients = int(self._user_to_client.max()) + 1
    self._history_length = history_length
    self._preprocess = preprocess
    self._seed = seed

  def __call__(self, client_ids: List[str], round_num: int) -> List[tf.data.Dataset]:
    arrays = examples.training_examples(self._ratings, self._users, self._history_length,
                                        history_seed(self._seed, round_num))
    client_data = make_client_data(arrays, self._user_to_client[arrays["user"]],
                                   self._num_clients)
    return RoundDatasets(client_data, self._preprocess, self._seed)(client_ids, round_num)
