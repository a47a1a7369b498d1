"""Per-example features of the two-tower models, built from interaction frames.

An interaction frame has columns `user`, `movie` (contiguous indices) and
`rating`. Users are described by the `users` table of a `MovieLens` (row i =
user index i). Shapes: N examples, L history slots, U users, M movies.

Query features of an example: `user` (index), `gender`, `age`, `occupation`
and `history`, the user's *other* training movies (never the example's own
movie, which would leak the label), padded with PAD. Candidate feature:
`movie`. Label: `rating`.
"""

from typing import Dict, Optional

import numpy as np
import pandas as pd

PAD = -1
QUERY_FEATURES = ("user", "gender", "age", "occupation", "history")
DEMOGRAPHICS = ("gender", "age", "occupation")


def _group_by_user(interactions: pd.DataFrame):
  """Returns (order sorting rows by user, the sorted user column)."""
  users = interactions["user"].to_numpy()
  order = np.argsort(users, kind="stable")
  return order, users[order]


def training_examples(interactions: pd.DataFrame, users: pd.DataFrame,
                      history_length: int, seed: int = 0) -> Dict[str, np.ndarray]:
  """One example per interaction, with a sampled history of the user's others.

  The history of an interaction of a user with n interactions holds all n - 1
  other movies when n - 1 <= L, else L of them drawn uniformly (with
  replacement) from the n - 1. Examples come grouped by user.

  Returns:
    int32 [N] `user`, `movie`, `gender`, `age`, `occupation`; float32 [N]
    `rating`; int32 [N, L] `history` (PAD after the user's movies).
  """
  order, sorted_users = _group_by_user(interactions)
  movies = interactions["movie"].to_numpy(np.int32)[order]
  ratings = interactions["rating"].to_numpy(np.float32)[order]
  num = len(order)
  starts = np.r_[0, np.flatnonzero(np.diff(sorted_users)) + 1]
  counts = np.diff(np.r_[starts, num])
  start = np.repeat(starts, counts)[:, None]
  others = np.repeat(counts, counts)[:, None] - 1
  position = (np.arange(num) - start[:, 0])[:, None]
  slots = np.arange(history_length)[None, :]
  sampled = np.random.default_rng(seed).integers(
      0, np.maximum(others, 1), size=(num, history_length))
  offset = np.where(others <= history_length, slots, sampled)
  offset = offset + (offset >= position)  # skip the example's own movie
  history = np.where(slots < others, movies[np.minimum(start + offset, num - 1)], PAD)
  examples = {
      "user": sorted_users.astype(np.int32),
      "movie": movies,
      "rating": ratings,
      "history": history.astype(np.int32),
  }
  examples.update(_demographics(users, sorted_users))
  return examples


def user_queries(interactions: pd.DataFrame, users: pd.DataFrame,
                 user_indices: Optional[np.ndarray] = None,
                 max_history: Optional[int] = None) -> Dict[str, np.ndarray]:
  """Query features of whole users: all their movies in `interactions`.

  Args:
    interactions: the movies that make up each user's history.
    users: the users table (demographics).
    user_indices: int [n], the users to describe (default: all of `users`).
    max_history: if set, keep at most this many (the first) history movies.

  Returns:
    int32 [n] `user`, `gender`, `age`, `occupation`; int32 [n, H] `history`
    with H = the largest history (capped at max_history), PAD-padded.
  """
  if user_indices is None:
    user_indices = np.arange(len(users))
  user_indices = np.asarray(user_indices, np.int32)
  order, sorted_users = _group_by_user(interactions)
  movies = interactions["movie"].to_numpy(np.int32)[order]
  counts = np.bincount(sorted_users, minlength=len(users))
  starts = np.r_[0, np.cumsum(counts)[:-1]]
  lengths = counts[user_indices]
  if max_history is not None:
    lengths = np.minimum(lengths, max_history)
  width = max(int(lengths.max(initial=0)), 1)
  slots = np.arange(width)[None, :]
  index = np.minimum(starts[user_indices][:, None] + slots, max(len(movies) - 1, 0))
  history = np.where(slots < lengths[:, None], movies[index] if len(movies) else PAD, PAD)
  queries = {"user": user_indices, "history": history.astype(np.int32)}
  queries.update(_demographics(users, user_indices))
  return queries


def _demographics(users: pd.DataFrame, user_indices: np.ndarray) -> Dict[str, np.ndarray]:
  """The users' demographic features; none for a release without them."""
  if not set(DEMOGRAPHICS) <= set(users.columns):
    return {}
  return {name: users[name].to_numpy(np.int32)[user_indices] for name in DEMOGRAPHICS}

