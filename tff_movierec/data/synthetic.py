"""Small synthetic MovieLens-format data for tests and `--use_synthetic_data`.

Ratings come from a low-rank model (user and movie factors plus biases, with
genre-dependent movie factors), rounded to 1..5, so models have signal to learn.
Files are written in the original ML-1M formats, so the real loader is used.
"""

import os
from typing import Optional

import numpy as np

from tff_movierec.data.movielens import AGE_BUCKETS, GENRES, NUM_OCCUPATIONS

_START_TIME = 956_703_932  # 2000-04-25, the first ML-1M timestamp


def write_synthetic_movielens(
    directory: str,
    num_users: int = 60,
    num_movies: int = 80,
    ratings_per_user: int = 25,
    seed: int = 0,
    ratings_format: str = "dat",
    with_timestamps: bool = True,
    rank: int = 4,
) -> str:
  """Writes users.dat, movies.dat and ratings.dat|ratings.csv into `directory`.

  Args:
    ratings_format: "dat" (`::`, always with timestamps) or "csv" (header
      `userId,movieId,rating[,timestamp]`).
    with_timestamps: for "csv", whether to write the timestamp column.

  Returns:
    `directory`. User ids are 1..U and movie ids 1..M (every other id skipped
    for movies, as in ML-1M where ids are not contiguous).
  """
  if ratings_per_user > num_movies:
    raise ValueError("ratings_per_user cannot exceed num_movies.")
  rng = np.random.default_rng(seed)
  os.makedirs(directory, exist_ok=True)
  movie_ids = 1 + 2 * np.arange(num_movies)
  with open(os.path.join(directory, "users.dat"), "w", encoding="latin-1") as f:
    for user in range(1, num_users + 1):
      f.write(f"{user}::{rng.choice(['F', 'M'])}::{rng.choice(AGE_BUCKETS)}::"
              f"{rng.integers(NUM_OCCUPATIONS)}::{rng.integers(10000, 99999)}\n")
  genre_sets = []
  with open(os.path.join(directory, "movies.dat"), "w", encoding="latin-1") as f:
    for movie_id in movie_ids:
      chosen = rng.choice(len(GENRES), size=rng.integers(1, 4), replace=False)
      genre_sets.append(chosen)
      genres = "|".join(GENRES[g] for g in sorted(chosen))
      f.write(f"{movie_id}::Movie {movie_id} ({rng.integers(1930, 2001)})::{genres}\n")
  genre_factors = rng.normal(size=(len(GENRES), rank))
  movie_factors = np.stack([genre_factors[g].mean(axis=0) for g in genre_sets])
  movie_factors += 0.5 * rng.normal(size=movie_factors.shape)
  user_factors = rng.normal(size=(num_users, rank)) / np.sqrt(rank)
  user_bias = 0.4 * rng.normal(size=num_users)
  movie_bias = 0.4 * rng.normal(size=num_movies)
  popularity = rng.dirichlet(np.full(num_movies, 0.7))
  rows = []
  for user in range(num_users):
    movies = rng.choice(num_movies, size=ratings_per_user, replace=False, p=popularity)
    score = 3.6 + user_bias[user] + movie_bias[movies] + movie_factors[movies] @ user_factors[user]
    ratings = np.clip(np.rint(score + 0.3 * rng.normal(size=len(movies))), 1, 5).astype(int)
    times = _START_TIME + np.sort(rng.integers(0, 10**7, size=len(movies)))
    rows.extend(zip([user + 1] * len(movies), movie_ids[movies], ratings, times))
  _write_ratings(directory, rows, ratings_format, with_timestamps)
  return directory


def _write_ratings(directory, rows, ratings_format, with_timestamps):
  if ratings_format == "dat":
    with open(os.path.join(directory, "ratings.dat"), "w") as f:
      f.writelines(f"{u}::{m}::{r}::{t}\n" for u, m, r, t in rows)
  elif ratings_format == "csv":
    with open(os.path.join(directory, "ratings.csv"), "w") as f:
      f.write("userId,movieId,rating" + (",timestamp\n" if with_timestamps else "\n"))
      for u, m, r, t in rows:
        f.write(f"{u},{m},{r},{t}\n" if with_timestamps else f"{u},{m},{r}\n")
  else:
    raise ValueError(f"ratings_format must be 'dat' or 'csv', got {ratings_format!r}.")


def synthetic_dir(root: Optional[str] = None, **kwargs) -> str:
  """Writes synthetic data under `root` (a temp dir if None) and returns it."""
  import tempfile
  directory = root or tempfile.mkdtemp(prefix="tff_movierec_synthetic_")
  return write_synthetic_movielens(directory, **kwargs)
