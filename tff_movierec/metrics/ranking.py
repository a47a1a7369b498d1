"""Full-ranking top-K metrics: Recall@K, NDCG@K, HR@K, Precision@K, MRR@K.

Every user is scored against all M movies; movies in the user's `exclude` set
(typically the user's training interactions) get score -inf and are never
recommended. Definitions (those of RecBole, so numbers are comparable):

  Recall@K     hits in the top K / |relevant|   (not / min(K, |relevant|))
  NDCG@K       DCG / IDCG with binary gains, DCG = Σ_{r<K} hit_r / log2(r + 2),
               IDCG = Σ_{r < min(K, |relevant|)} 1 / log2(r + 2)
  HR@K         1 if any hit in the top K, else 0
  Precision@K  hits in the top K / K            (K, even if fewer candidates)
  MRR@K        1 / (rank of the first hit), 0 without a hit

Edge cases, decided here once:
  * Users with no relevant item are excluded from every average (the metrics
    are undefined for them); `num_users` reports how many were averaged.
  * Ties are broken deterministically by movie index, smaller index first.
  * If K exceeds the number of candidates (movies not excluded), the list is
    the candidates only; excluded movies never count as hits.
  * NaN scores are an error.
"""

from typing import Callable, Dict, Iterable, Optional, Sequence

import numpy as np
from scipy import sparse

ScoreFn = Callable[[np.ndarray], np.ndarray]
RANKING_METRICS = ("recall", "ndcg", "hr", "precision", "mrr")


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
  """Indices of the k largest scores per row, best first; ties by index.

  Args:
    scores: float [B, M].
    k: list length; min(k, M) indices are returned.

  Returns:
    int64 [B, min(k, M)].
  """
  scores = np.asarray(scores)
  num_rows, num_items = scores.shape
  k = min(k, num_items)
  if k <= 0:
    return np.zeros((num_rows, 0), np.int64)
  # The k-th largest score per row; everything above it is in, and the ties at
  # it are filled in index order.
  threshold = -np.partition(-scores, k - 1, axis=1)[:, k - 1:k]
  above = scores > threshold
  tied = scores == threshold
  needed = k - above.sum(axis=1, keepdims=True)
  chosen = above | (tied & (np.cumsum(tied, axis=1) <= needed))
  indices = np.nonzero(chosen)[1].reshape(num_rows, k)
  order = np.argsort(-np.take_along_axis(scores, indices, axis=1), axis=1, kind="stable")
  return np.take_along_axis(indices, order, axis=1)


def _rows_to_dense(matrix: sparse.csr_matrix, rows: np.ndarray) -> np.ndarray:
  return matrix[rows].toarray().astype(bool)


def rank_metrics(
    hits: np.ndarray, num_relevant: np.ndarray, k_values: Sequence[int]
) -> Dict[str, np.ndarray]:
  """Per-user metrics from a hit matrix.

  Args:
    hits: bool [B, L], hits[b, r] = the movie at rank r is relevant for user b
      (L may be smaller than max(k_values)).
    num_relevant: int [B], |relevant| per user, all > 0.
    k_values: cut-offs.

  Returns:
    {f"{metric}@{k}": float64 [B]} for every metric in RANKING_METRICS.
  """
  num_relevant = np.asarray(num_relevant)
  if np.any(num_relevant <= 0):
    raise ValueError("rank_metrics needs at least one relevant item per user.")
  max_k = max(k_values)
  padded = np.zeros((hits.shape[0], max_k), bool)
  width = min(max_k, hits.shape[1])
  padded[:, :width] = hits[:, :width]
  discounts = 1.0 / np.log2(np.arange(max_k) + 2.0)
  ideal_cumulative = np.cumsum(discounts)
  first_hit = np.where(padded.any(axis=1), padded.argmax(axis=1), max_k)
  result = {}
  for k in k_values:
    top = padded[:, :k]
    num_hits = top.sum(axis=1)
    ideal = ideal_cumulative[np.minimum(k, num_relevant) - 1]
    result[f"recall@{k}"] = num_hits / num_relevant
    result[f"ndcg@{k}"] = (top * discounts[:k]).sum(axis=1) / ideal
    result[f"hr@{k}"] = (num_hits > 0).astype(np.float64)
    result[f"precision@{k}"] = num_hits / k
    result[f"mrr@{k}"] = np.where(first_hit < k, 1.0 / (first_hit + 1.0), 0.0)
  return result


def evaluate_full_ranking(
    score_fn: ScoreFn,
    relevant: sparse.csr_matrix,
    exclude: sparse.csr_matrix,
    k_values: Iterable[int] = (10,),
    batch_size: int = 256,
    candidates: Optional[sparse.csr_matrix] = None,
) -> Dict[str, float]:
  """Mean top-K metrics over the users that have relevant movies.

  Args:
    score_fn: int [B] user indices -> float [B, M] scores of all movies
      (higher is better).
    relevant: [U, M] sparse, non-zero = relevant (e.g. held-out, liked).
    exclude: [U, M] sparse, non-zero = never recommended (e.g. train items).
    k_values: cut-offs K.
    batch_size: users scored at once (memory is O(batch_size * M)).
    candidates: optional [U, M] sparse; if given, only its non-zeros are
      ranked (everything else is treated as excluded).

  Returns:
    {"recall@K", "ndcg@K", "hr@K", "precision@K", "mrr@K" for each K,
     "num_users": number of users averaged}.
  """
  k_values = tuple(sorted(set(k_values)))
  if not k_values or k_values[0] <= 0:
    raise ValueError(f"k_values must be positive, got {k_values}.")
  relevant = sparse.csr_matrix(relevant)
  exclude = sparse.csr_matrix(exclude)
  if relevant.shape != exclude.shape:
    raise ValueError(f"relevant {relevant.shape} and exclude {exclude.shape} differ in shape.")
  if candidates is not None:
    candidates = sparse.csr_matrix(candidates)
    if candidates.shape != relevant.shape:
      raise ValueError(f"candidates {candidates.shape} and relevant {relevant.shape} differ.")
  relevant.eliminate_zeros()
  num_relevant = np.diff(relevant.indptr)
  users = np.flatnonzero(num_relevant > 0)
  sums = {}
  for start in range(0, len(users), batch_size):
    batch = users[start:start + batch_size]
    scores = np.array(score_fn(batch), dtype=np.float64)
    if scores.shape != (len(batch), relevant.shape[1]):
      raise ValueError(
          f"score_fn returned shape {scores.shape}, expected {(len(batch), relevant.shape[1])}.")
    if np.isnan(scores).any():
      raise ValueError("score_fn returned NaN scores.")
    excluded = _rows_to_dense(exclude, batch)
    if candidates is not None:
      excluded |= ~_rows_to_dense(candidates, batch)
    scores[excluded] = -np.inf
    ranked = top_k(scores, max(k_values))
    hits = np.take_along_axis(_rows_to_dense(relevant, batch), ranked, axis=1)
    hits &= ~np.take_along_axis(excluded, ranked, axis=1)
    for name, values in rank_metrics(hits, num_relevant[batch], k_values).items():
      sums[name] = sums.get(name, 0.0) + float(values.sum())
  count = max(len(users), 1)
  result = {name: total / count for name, total in sums.items()}
  result["num_users"] = int(len(users))
  return result
