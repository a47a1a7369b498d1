"""Tests of the MovieLens-25M-shaped generator on a tiny shape."""

import csv
import os
import re

import numpy as np
import pytest

from tff_movierec.data import synthetic_scale
from tff_movierec.data.synthetic_scale import shape_for_users, write_ml25m_shape

TINY = dict(num_users=300, num_movies=500, num_rated_movies=400, num_ratings=15_000)


def read_csv(path):
  with open(path, newline="", encoding="utf-8") as f:
    return list(csv.reader(f))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("tiny"))
  write_ml25m_shape(directory, seed=3, **TINY)
  ratings = read_csv(os.path.join(directory, "ratings.csv"))
  movies = read_csv(os.path.join(directory, "movies.csv"))
  return directory, ratings, movies


def test_headers_and_exact_counts(tiny):
  _, ratings, movies = tiny
  assert ratings[0] == ["userId", "movieId", "rating", "timestamp"]
  assert movies[0] == ["movieId", "title", "genres"]
  assert len(ratings) - 1 == TINY["num_ratings"]
  assert len(movies) - 1 == TINY["num_movies"]
  users = {row[0] for row in ratings[1:]}
  assert users == {str(u) for u in range(1, TINY["num_users"] + 1)}
  rated = {row[1] for row in ratings[1:]}
  assert len(rated) == TINY["num_rated_movies"]
  assert rated <= {row[0] for row in movies[1:]}


def test_pairs_unique_sorted_and_values_in_range(tiny):
  _, ratings, _ = tiny
  pairs = [(int(u), int(m)) for u, m, _, _ in ratings[1:]]
  assert len(set(pairs)) == len(pairs)
  assert pairs == sorted(pairs)
  values = np.array([float(r) for _, _, r, _ in ratings[1:]])
  assert all(r in {"0.5", "1.0", "1.5", "2.0", "2.5", "3.0", "3.5", "4.0", "4.5", "5.0"}
             for _, _, r, _ in ratings[1:])
  assert 3.2 < values.mean() < 3.8
  times = np.array([int(t) for _, _, _, t in ratings[1:]])
  assert times.min() >= 789_652_009 and times.max() <= 1_574_327_703


def test_heavy_tails(tiny):
  _, ratings, _ = tiny
  per_user = np.unique([row[0] for row in ratings[1:]], return_counts=True)[1]
  per_movie = np.unique([row[1] for row in ratings[1:]], return_counts=True)[1]
  assert per_user.min() >= synthetic_scale.MIN_RATINGS_PER_USER
  assert per_user.max() >= 5 * np.median(per_user)
  assert per_movie.max() >= 3 * np.median(per_movie)


def test_movies_format(tiny):
  directory, _, movies = tiny
  ids = [int(row[0]) for row in movies[1:]]
  assert ids == sorted(ids) and max(ids) > len(ids)  # not contiguous
  assert all(len(row) == 3 for row in movies)
  assert all(re.fullmatch(r"Movie \d+(, The)? \(\d{4}\)", title) for _, title, _ in movies[1:])
  comma_titles = [title for _, title, _ in movies[1:] if "," in title]
  assert comma_titles
  with open(os.path.join(directory, "movies.csv"), encoding="utf-8") as f:
    raw = f.read()
  assert f'"{comma_titles[0]}"' in raw
  known = set(synthetic_scale.GENRES) | {synthetic_scale.NO_GENRES}
  for _, _, genres in movies[1:]:
    assert set(genres.split("|")) <= known


def test_deterministic_for_a_seed(tiny, tmp_path):
  directory, _, _ = tiny
  write_ml25m_shape(str(tmp_path), seed=3, **TINY)
  for name in ("ratings.csv", "movies.csv"):
    with open(os.path.join(directory, name)) as a, open(tmp_path / name) as b:
      assert a.read() == b.read()


def test_shape_for_users_keeps_the_per_user_law():
  shape = shape_for_users(6040)
  assert shape["num_ratings"] == round(25_000_095 * 6040 / 162_541)
  assert shape["num_rated_movies"] <= shape["num_movies"]
  assert shape_for_users(200)["num_rated_movies"] == 1000
  assert shape_for_users(162_541)["num_rated_movies"] == 59_047


def test_rejects_impossible_shapes(tmp_path):
  with pytest.raises(ValueError, match="per user"):
    write_ml25m_shape(str(tmp_path), **dict(TINY, num_ratings=300 * 19))
  with pytest.raises(ValueError, match="num_rated_movies"):
    write_ml25m_shape(str(tmp_path), **dict(TINY, num_rated_movies=600))
