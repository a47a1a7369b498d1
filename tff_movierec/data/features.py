"""Encodings of MovieLens side information, indexed by user or movie index.

Shapes use U = number of users and M = number of movies of a `MovieLens`.
"""

from typing import Dict

import numpy as np

from tff_movierec.data.movielens import AGE_BUCKETS, NUM_OCCUPATIONS, MovieLens
from tff_movierec.data.releases import NO_GENRES

NUM_AGE_BUCKETS = len(AGE_BUCKETS)
MIN_YEAR = 1919


def genre_multi_hot(data: MovieLens) -> np.ndarray:
  """float32 [M, G]: 1 where the movie has the genre, in the order of
  `data.genre_names` (G = 18 on ML-1M, 19 from ML-10M on; a movie with
  `(no genres listed)` has none)."""
  index = {g: i for i, g in enumerate(data.genre_names)}
  result = np.zeros((data.num_movies, len(index)), np.float32)
  for row, genres in enumerate(data.movies["genres"]):
    if genres != NO_GENRES:
      result[row, [index[genre] for genre in genres.split("|")]] = 1.0
  return result


def release_year(data: MovieLens) -> np.ndarray:
  """int32 [M]: release year parsed from the title, -1 where absent."""
  return data.movies["year"].to_numpy(np.int32)


def user_features(data: MovieLens) -> Dict[str, np.ndarray]:
  """int32 [U] arrays: `gender` (0/1), `age` (0..6), `occupation` (0..20);
  empty without demographics (releases after ML-1M)."""
  if not data.has_demographics:
    return {}
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


# Release-year bins of `public_movie_features` (a bin per interval between
# consecutive edges, one below the first and one from the last on; a missing
# year falls in the first bin).
YEAR_BIN_EDGES = (1930, 1950, 1960, 1970, 1980, 1985, 1990, 1993, 1995, 1997, 1999)


def public_movie_features(data: MovieLens) -> np.ndarray:
  """float32 [M, G + 12]: what the movies file publishes about each movie, no rating.

  The genres (multi-hot, scaled to unit L2 norm per movie) and the release
  year (one-hot over YEAR_BIN_EDGES's bins). Public metadata, not private
  data: a model may use them at no privacy cost.
  """
  genres = genre_multi_hot(data)
  genres /= np.maximum(np.linalg.norm(genres, axis=1, keepdims=True), 1.0)
  years = np.zeros((data.num_movies, len(YEAR_BIN_EDGES) + 1), np.float32)
  years[np.arange(data.num_movies), np.searchsorted(YEAR_BIN_EDGES, release_year(data),
                                                    side="right")] = 1.0
  return np.concatenate([genres, years], axis=1)
