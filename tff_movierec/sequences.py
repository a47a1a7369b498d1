"""Next-movie examples from time-ordered ratings, split leave-last-out by time.

Each user's ratings are put in time order (timestamp, then file order for
ties). An example asks: given the user and the movies they rated just before
position p, which movie comes at p? Its `history` holds the previous
`history_length` movies, oldest first, left-padded with `padding_index`
(= number of movies) when the user has fewer.

Evaluation is leave-one-out by time: each user's last movie is the test target
and only earlier movies are trained on, so no history item or training target
ever comes after a test target of the same user. (Other users' ratings are
not cut at that time: as in the usual leave-one-out protocol, a training
example of one user may be later than another user's test target.) For
tuning, the last movie is dropped altogether and the second-to-last becomes
the target.
"""

import dataclasses
from typing import Dict, Tuple

import numpy as np
import pandas as pd

HISTORY_LENGTH = 4


@dataclasses.dataclass(frozen=True)
class UserSequences:
  """Every user's rated movies in time order, in compressed rows.

  User u's movies are `movies[offsets[u]:offsets[u + 1]]`, oldest first.

  Attributes:
    offsets: int64 [U + 1].
    movies: int32 [R], movie indices.
    timestamps: int64 [R], Unix seconds, non-decreasing within a user.
  """

  offsets: np.ndarray
  movies: np.ndarray
  timestamps: np.ndarray

  @property
  def num_users(self) -> int:
    return len(self.offsets) - 1

  @property
  def lengths(self) -> np.ndarray:
    """int64 [U]: number of ratings of each user."""
    return np.diff(self.offsets)


def user_sequences(ratings: pd.DataFrame, num_users: int) -> UserSequences:
  """Sorts ratings by (user, timestamp, row order) into `UserSequences`.

  Args:
    ratings: frame with int columns `user` (< num_users), `movie` and
      `timestamp`, rows in file order (ties in time keep this order).
    num_users: U; users without ratings get empty sequences.
  """
  if "timestamp" not in ratings.columns:
    raise ValueError(
        "ratings have no timestamp column; time-ordered sequences need one.")
  users = ratings["user"].to_numpy()
  timestamps = ratings["timestamp"].to_numpy(np.int64)
  order = np.lexsort((np.arange(len(ratings)), timestamps, users))
  counts = np.bincount(users, minlength=num_users)
  return UserSequences(
      offsets=np.r_[0, np.cumsum(counts)].astype(np.int64),
      movies=ratings["movie"].to_numpy(np.int32)[order],
      timestamps=timestamps[order],
  )


def truncate(sequences: UserSequences, drop_last: int) -> UserSequences:
  """Removes the last `drop_last` movies of every user (fewer if shorter)."""
  if drop_last < 0:
    raise ValueError(f"drop_last must be >= 0, got {drop_last}.")
  lengths = np.maximum(sequences.lengths - drop_last, 0)
  keep = np.zeros(len(sequences.movies), bool)
  keep[_positions_to_rows(sequences.offsets[:-1], lengths)] = True
  return UserSequences(
      offsets=np.r_[0, np.cumsum(lengths)].astype(np.int64),
      movies=sequences.movies[keep],
      timestamps=sequences.timestamps[keep],
  )


def _positions_to_rows(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
  """Concatenation of arange(s, s + n) for each (s, n)."""
  lengths = np.asarray(lengths, np.int64)
  within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
  return np.repeat(np.asarray(starts, np.int64), lengths) + within


@dataclasses.dataclass(frozen=True)
class NextMovieExamples:
  """Next-movie examples, one row each.

  Attributes:
    user: int32 [N], user index.
    history: int32 [N, L], the L movies before the target, oldest first,
      left-padded with the padding index.
    target: int32 [N], the movie to predict.
    position: int64 [N], the target's index in its user's time-ordered
      sequence (the user rated `position` movies before it).
  """

  user: np.ndarray
  history: np.ndarray
  target: np.ndarray
  position: np.ndarray

  def __len__(self) -> int:
    return len(self.target)

  def features(self) -> Dict[str, np.ndarray]:
    """The arrays a ClientData holds: `user`, `history`, `target`."""
    return {"user": self.user, "history": self.history, "target": self.target}


def examples_at(sequences: UserSequences, users: np.ndarray, positions: np.ndarray,
                history_length: int, padding_index: int) -> NextMovieExamples:
  """Examples whose targets are user `users[i]`'s movie at `positions[i]`."""
  users = np.asarray(users, np.int64)
  positions = np.asarray(positions, np.int64)
  if np.any(positions >= sequences.lengths[users]) or np.any(positions < 0):
    raise ValueError("positions must index into each user's sequence.")
  starts = sequences.offsets[users]
  back = positions[:, None] + np.arange(-history_length, 0)[None, :]
  rows = starts[:, None] + np.maximum(back, 0)
  history = np.where(back >= 0, sequences.movies[rows], padding_index)
  return NextMovieExamples(
      user=users.astype(np.int32),
      history=history.astype(np.int32),
      target=sequences.movies[starts + positions].astype(np.int32),
      position=positions,
  )


@dataclasses.dataclass(frozen=True)
class NextMovieSplit:
  """Leave-last-out split of time-ordered sequences.

  Attributes:
    sequences: the sequences the split was made from (after any truncation);
      each user's last movie in them is that user's test target.
    train: every target at positions 1 .. n-2 of each user (n = the user's
      sequence length); position 0 has no history and is never a target.
    test: one example per user with n >= 2: the target at position n-1.
    padding_index: the history value meaning "no movie" (= num_movies).
  """

  sequences: UserSequences
  train: NextMovieExamples
  test: NextMovieExamples
  padding_index: int

  def train_ratings(self) -> pd.DataFrame:
    """Columns `user`, `movie` of every rating before a test target.

    These are all ratings a model may learn from (and popularity counts).
    """
    lengths = self.sequences.lengths
    kept = np.where(lengths >= 2, lengths - 1, lengths)
    rows = _positions_to_rows(self.sequences.offsets[:-1], kept)
    return pd.DataFrame({
        "user": np.repeat(np.arange(len(lengths), dtype=np.int32), kept),
        "movie": self.sequences.movies[rows],
    })

  def seen_before(self, examples: NextMovieExamples) -> Tuple[np.ndarray, np.ndarray]:
    """(example row, movie) pairs: the movies each user rated before the target."""
    starts = self.sequences.offsets[examples.user.astype(np.int64)]
    rows = _positions_to_rows(starts, examples.position)
    example_rows = np.repeat(np.arange(len(examples)), examples.position)
    return example_rows, self.sequences.movies[rows]


def leave_last_out(sequences: UserSequences, num_movies: int,
                   history_length: int = HISTORY_LENGTH,
                   drop_last: int = 0) -> NextMovieSplit:
  """Splits each user's sequence: last movie to test, earlier ones to train.

  Args:
    sequences: time-ordered ratings of all users.
    num_movies: M; also the padding index of histories.
    history_length: L, movies of history per example (>= 1).
    drop_last: movies removed from the end of every user first; 1 makes the
      second-to-last movie the target (validation for tuning) and hides the
      real test target completely.
  """
  if history_length < 1:
    raise ValueError(f"history_length must be >= 1, got {history_length}.")
  sequences = truncate(sequences, drop_last)
  lengths = sequences.lengths
  users = np.arange(len(lengths))
  test_users = users[lengths >= 2]
  num_train = np.maximum(lengths - 2, 0)
  train_users = np.repeat(users, num_train)
  train_positions = 1 + _positions_to_rows(np.zeros(len(lengths), np.int64), num_train)
  return NextMovieSplit(
      sequences=sequences,
      train=examples_at(sequences, train_users, train_positions, history_length, num_movies),
      test=examples_at(sequences, test_users, lengths[test_users] - 1, history_length,
                       num_movies),
      padding_index=num_movies,
  )

