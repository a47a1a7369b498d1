"""Full-ranking evaluation of two-tower weights (run on the server).

The query of a user is built from the interactions known at evaluation time
(train for the valid split; train + valid for the test split); every movie is
scored by the dot product (cosine if the model normalizes) of the query and
candidate embeddings, and `tff_movierec.metrics` ranks all movies with the
user's known interactions masked.
"""

from typing import Dict, Iterable

import numpy as np
import pandas as pd

from tff_movierec.metrics import protocols
from tff_movierec.metrics.ranking import ScoreFn
from tff_movierec.retrieval import examples
from tff_movierec.retrieval.models import TwoTowerEmbeddings


def candidate_matrix(model: TwoTowerEmbeddings, num_movies: int) -> np.ndarray:
  """float32 [M, D]: candidate embeddings of every movie index."""
  return model.candidate_embeddings(
      {"movie": np.arange(num_movies, dtype=np.int32)}).numpy()


def known_interactions(protocol: protocols.RankingProtocol, split: str) -> pd.DataFrame:
  """The interactions a user's query may use when evaluating `split`."""
  if split == "valid":
    return protocol.train_ratings
  if split == "test":
    return pd.concat([protocol.train_ratings, protocol.valid_ratings])
  raise ValueError(f"split must be 'valid' or 'test', got {split!r}.")


def score_fn(model: TwoTowerEmbeddings, history: pd.DataFrame, users: pd.DataFrame,
             num_movies: int) -> ScoreFn:
  """int [B] user indices -> float32 [B, M] two-tower scores of all movies.

  Args:
    history: interactions from which each user's `history` feature is built.
    users: the users table (demographics).
  """
  candidates = candidate_matrix(model, num_movies)

  def scores(user_indices: np.ndarray) -> np.ndarray:
    queries = examples.user_queries(history, users, user_indices)
    return model.query_embeddings(queries).numpy() @ candidates.T

  return scores


def evaluate(model: TwoTowerEmbeddings, protocol: protocols.RankingProtocol,
             users: pd.DataFrame, split: str = "test",
             k_values: Iterable[int] = (10,)) -> Dict[str, float]:
  """Recall/NDCG/HR/Precision/MRR@K of `model` on `split` of `protocol`."""
  scores = score_fn(model, known_interactions(protocol, split), users, protocol.num_movies)
  return protocol.evaluate(scores, k_values=k_values, split=split, batch_size=512)
