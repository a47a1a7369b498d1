"""Encodings of MovieLens side information, indexed by user or movie index.

Shapes use U = number of users and M = number of movies of a `MovieLens`.
"""

from typing import Dict

import numpy as np

from tff_movierec.data.movielens import AGE_BUCKETS, GENRES, NUM_OCCUPATIONS, MovieLens

NUM_GENRES = len(GENRES)
NUM_AGE_BUCKETS = len(AGE_BUCKETS)
MIN_YEAR = 1919


def genre_multi_hot(data: MovieLens) -> np.ndarray:
  """float32 [M, 18]: 1 where the movie has the genre (order of GENRES)."""
  index = {g: i for i, g in enumerate(GENRES)}
  result = np.zeros((data.num_movies, NUM_GENRES), np.float32)
  for row, genres in enumerate(data.movies["genres"]):
    for genre in genres.split("|"):
      result[row, index[genre]] = 1.0
  return result


def release_year(data: MovieLens) -> np.ndarray:
  """int32 [M]: release year parsed from the title, -1 where absent."""
  return data.movies["year"].to_numpy(np.int32)


def user_features(data: MovieLens) -> Dict[str, np.ndarray]:
  """int32 [U] arrays: `gender` (0/1), `age` (0..6), `occupation` (0..20)."""
  return {
      name: data.users[name].to_numpy(np.int32)
      for name in ("gender", "age", "occupation")
  }


def vocabulary_sizes(data: MovieLens) -> Dict[str, int]:
  """Number of distinct values of each categorical feature."""
  return {
      "user": data.num_users,
      "movie": data.num_movies,
      "gender": 2,
      "age": NUM_AGE_BUCKETS,
      "occupation": NUM_OCCUPATIONS,
  }
