"""Users' ratings, packed into padded blocks for `exact.ExactReconstructionProcess`.

A block ("group") holds the users of one TFF client call: movies int32 [G, L]
padded with -1 and ratings float32 [G, L], and for evaluation the ratings to
score, [G, H]. Users are sorted by their number of ratings before they are cut
into groups, and a group also closes before a user with more than
MAX_LENGTH_RATIO times the ratings of its first user, so that little of a
block is padding however heavy the tail of user activity: on the ML-25M-shape
data, rounds of 1,000 users padded to 2.73 cells per rating with groups cut
by count alone, 1.16 with the ratio (1.21 and 1.14 at ML-1M's shape).
"""

import collections
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from tff_movierec.errors import require
from tff_movierec.reconstruction.client_datasets import ratings_by_user

# A group's longest history is at most this many times its shortest (its first).
MAX_LENGTH_RATIO = 1.5


class UserRatings:
  """Every user's ratings (`client_datasets.ratings_by_user`); client id = str(user index)."""

  def __init__(self, ratings: pd.DataFrame):
    self._users: Dict[str, Tuple[np.ndarray, np.ndarray]] = {
        str(user): rows for user, rows in ratings_by_user(ratings).items()}
    self.client_ids: List[str] = sorted(self._users, key=int)

  def __len__(self) -> int:
    return len(self.client_ids)

  def __contains__(self, client_id: str) -> bool:
    return client_id in self._users

  def rows(self, client_id: str) -> Tuple[np.ndarray, np.ndarray]:
    """(movies int32 [n], ratings float32 [n]) of one user."""
    return self._users[client_id]

  def count(self, client_id: str) -> int:
    return len(self._users[client_id][0])

  def total(self, client_ids: Sequence[str]) -> int:
    return sum(self.count(c) for c in client_ids)

  def pad(self, client_ids: Sequence[str]):
    """(movies int32 [G, L] padded with -1, ratings float32 [G, L]), L the longest."""
    width = max(self.count(c) for c in client_ids)
    movies = np.full((len(client_ids), width), -1, np.int32)
    ratings = np.zeros((len(client_ids), width), np.float32)
    for row, client_id in enumerate(client_ids):
      user_movies, user_ratings = self._users[client_id]
      movies[row, :len(user_movies)] = user_movies
      ratings[row, :len(user_ratings)] = user_ratings
    return movies, ratings


def plan(rated: UserRatings, client_ids: Sequence[str], users_per_group: int,
         scored: Optional[UserRatings] = None,
         max_length_ratio: Optional[float] = MAX_LENGTH_RATIO) -> List[List[str]]:
  """The users `client_ids`, sorted by ratings and cut into groups of at most
  `users_per_group`, each group's longest history at most `max_length_ratio`
  times its shortest.

  Args:
    rated: the ratings each user is solved from (and trained on).
    client_ids: the users to pack; each must be in `rated` (and `scored`).
    users_per_group: the most users in a group.
    scored: for evaluation, the ratings to score.
    max_length_ratio: None cuts groups by `users_per_group` alone.

  Returns:
    The client ids of each group, in the group's order.
  """
  require(users_per_group >= 1, "users_per_group", users_per_group, "must be >= 1.")
  missing = [c for c in client_ids if c not in rated or (scored is not None and c not in scored)]
  if missing:
    raise ValueError(f"users {missing[:5]} have no ratings to "
                     f"{'solve from or to score' if scored is not None else 'solve from'}.")
  ordered = sorted(client_ids, key=rated.count)
  starts = []
  for position, client_id in enumerate(ordered):
    if not starts or position - starts[-1] == users_per_group or (
        max_length_ratio is not None
        and rated.count(client_id) > max_length_ratio * rated.count(ordered[starts[-1]])):
      starts.append(position)
  return [ordered[start:end] for start, end in zip(starts, starts[1:] + [len(ordered)])]


def pack(rated: UserRatings, client_ids: Sequence[str], users_per_group: int,
         scored: Optional[UserRatings] = None,
         max_length_ratio: Optional[float] = MAX_LENGTH_RATIO
         ) -> List[collections.OrderedDict]:
  """The groups of `plan`, padded: one OrderedDict per group, as
  `exact.group_spec(scored is not None)`."""
  groups = []
  for members in plan(rated, client_ids, users_per_group, scored, max_length_ratio):
    movies, ratings = rated.pad(members)
    group = collections.OrderedDict(movies=movies, ratings=ratings)
    if scored is not None:
      group["score_movies"], group["score_ratings"] = scored.pad(members)
    groups.append(group)
  return groups
