"""Invariants of the train/test splits, on synthetic MovieLens."""

import numpy as np
import pandas as pd
import pytest

from tff_movierec.data import splits
from tff_movierec.data.movielens import DataError, load_movielens
from tff_movierec.data.synthetic import write_synthetic_movielens
from tff_movierec.errors import ConfigError


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  directory = write_synthetic_movielens(
      str(tmp_path_factory.mktemp("ml")), num_users=60, num_movies=80,
      ratings_per_user=25)
  return load_movielens(directory)


@pytest.fixture(scope="module")
def varied_ratings():
  """Users with 1..30 ratings each, so per-user rounding and caps matter."""
  counts = np.arange(1, 31)
  users = np.repeat(np.arange(len(counts)), counts)
  movies = np.concatenate([np.arange(n) for n in counts])
  return pd.DataFrame({"user": users, "movie": movies,
                       "rating": np.ones(len(users), np.float32)})


def assert_partition(parts, ratings):
  """The parts are disjoint by row index and together are exactly `ratings`."""
  index = np.concatenate([part.index.to_numpy() for part in parts])
  assert len(index) == len(np.unique(index)) == len(ratings)
  assert set(index) == set(ratings.index)
  for part in parts:
    pd.testing.assert_frame_equal(part, ratings.loc[part.index])


def test_holdout_partitions_the_ratings(data):
  train, test = splits.per_user_holdout(data.ratings, 0.1, seed=0)
  assert_partition([train, test], data.ratings)
  pairs = lambda frame: set(zip(frame["user"], frame["movie"]))
  assert not pairs(train) & pairs(test)


def test_holdout_fraction_is_about_right(data):
  _, test = splits.per_user_holdout(data.ratings, 0.2, seed=0)
  # 25 ratings per user: round(0.2 * 25) = 5 held out for each of 60 users.
  assert test.groupby("user").size().eq(5).all() and len(test) == 60 * 5


def test_holdout_keeps_train_and_test_for_every_user(varied_ratings):
  train, test = splits.per_user_holdout(varied_ratings, 0.1, seed=1)
  counts = varied_ratings.groupby("user").size()
  train_counts = train.groupby("user").size().reindex(counts.index, fill_value=0)
  test_counts = test.groupby("user").size().reindex(counts.index, fill_value=0)
  multi = counts >= 2
  assert (train_counts[multi] >= 1).all() and (test_counts[multi] >= 1).all()
  # A user with a single rating keeps it for training.
  assert train_counts[~multi].eq(1).all() and test_counts[~multi].eq(0).all()
  # Each user's test share is 10% of their ratings, rounded, and at least 1.
  target = np.maximum(0.1 * counts[multi], 1)
  assert (np.abs(test_counts[multi] - target) <= 0.5).all()
  assert_partition([train, test], varied_ratings)


def test_holdout_is_deterministic_for_a_seed(data):
  first = splits.per_user_holdout(data.ratings, seed=7)[1].index
  again = splits.per_user_holdout(data.ratings, seed=7)[1].index
  other = splits.per_user_holdout(data.ratings, seed=8)[1].index
  assert first.equals(again)
  assert not first.equals(other)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_holdout_rejects_bad_fraction(data, fraction):
  with pytest.raises(ConfigError) as error:
    splits.per_user_holdout(data.ratings, fraction)
  assert str(error.value) == f"test_fraction={fraction!r}: must be in (0, 1)."
  assert error.value.fields == ("test_fraction",)


def test_temporal_split_is_ordered_and_80_10_10(data):
  train, validation, test = splits.temporal_split(data)
  n = len(data.ratings)
  assert [len(train), len(validation), len(test)] == [
      round(0.8 * n), round(0.9 * n) - round(0.8 * n), n - round(0.9 * n)]
  assert train["timestamp"].max() <= validation["timestamp"].min()
  assert validation["timestamp"].max() <= test["timestamp"].min()
  assert_partition([train, validation, test], data.ratings)


def test_temporal_split_needs_timestamps(tmp_path):
  directory = write_synthetic_movielens(
      str(tmp_path), num_users=5, num_movies=8, ratings_per_user=3,
      ratings_format="csv", with_timestamps=False)
  with pytest.raises(DataError, match="no timestamp column.*temporal split"):
    splits.temporal_split(load_movielens(directory))


def test_temporal_split_rejects_bad_fractions(data):
  with pytest.raises(ConfigError, match=r"^fractions=\(0\.8, 0\.3, 0\.1\): must be 3 "
                     "non-negative numbers") as error:
    splits.temporal_split(data, (0.8, 0.3, 0.1))
  assert error.value.fields == ("fractions",)


@pytest.mark.parametrize("split, column, distinct", [
    (splits.cold_start_users, "user", 60),
    (splits.cold_start_movies, "movie", None),
])
def test_cold_start_holds_out_whole_ids(data, split, column, distinct):
  seen, unseen = split(data.ratings, fraction=0.2, seed=0)
  assert_partition([seen, unseen], data.ratings)
  assert not set(seen[column]) & set(unseen[column])
  distinct = distinct or data.ratings[column].nunique()
  assert unseen[column].nunique() == round(0.2 * distinct)
  again = split(data.ratings, fraction=0.2, seed=0)[1]
  other = split(data.ratings, fraction=0.2, seed=1)[1]
  assert unseen.index.equals(again.index)
  assert set(unseen[column]) != set(other[column])


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_cold_start_rejects_bad_fraction(data, fraction):
  with pytest.raises(ConfigError) as error:
    splits.cold_start_users(data.ratings, fraction)
  assert str(error.value) == f"fraction={fraction!r}: must be in (0, 1)."
  assert error.value.fields == ("fraction",)
