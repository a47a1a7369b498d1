"""Synthetic ratings at the shape of MovieLens-25M, for benchmarks at scale.

Writes `ratings.csv` and `movies.csv` in the exact ML-25M formats:

  ratings.csv  header `userId,movieId,rating,timestamp`; rows sorted by userId
               then movieId; ratings are half stars `0.5`..`5.0`, timestamps
               are Unix seconds between 1995-01-09 and 2019-11-21 (the ML-25M
               range); each (userId, movieId) pair occurs once.
  movies.csv   header `movieId,title,genres`; titles `Movie 123 (1995)`, about
               one in ten `Movie 123, The (1995)`, which is quoted as MovieLens
               does (`"Movie 123, The (1995)"`); genres are `|`-separated names
               from `GENRES` (the ML-20M/25M list), or `(no genres listed)`.

User ids are 1..num_users; movie ids are sorted random ids up to about 3.35 ×
num_movies (ML-25M: 62,423 ids up to 209,171), so they are not contiguous.
Exactly `num_rated_movies` of the movies are rated (the others only appear in
movies.csv, as in ML-25M) and there are exactly `num_ratings` ratings.

The laws (defaults: the ML-25M shape; `shape_for_users` scales it down):

  User activity: count = 20 + s·X with X ~ LogNormal(ln 51, 1.39), which alone
    gives median 71 and mean 154 ratings per user, as in ML-25M; the maximum
    at full size is about 23k (ML-25M: 32,202). s is chosen so that the
    counts sum to `num_ratings`, and a user rates at most 55% of the rated
    movies (ML-25M's heaviest user: 32,202 of 59,047).
  Movie popularity: Zipf-Mandelbrot weights p_j ∝ (j + 195)^-2.35 over the
    popularity ranks j = 1..R of the R rated movies (a random subset of all
    movies, in random order). Each user draws their movies by successive
    sampling without replacement with these weights: the first `count`
    distinct movies of a with-replacement stream, or Gumbel top-k for users
    rating over 1% of the movies (both are exact). Movies left unrated then
    take one rating each from random ratings of movies rated at least twice,
    so that exactly R movies are rated. With the full shape the most rated
    movie has about 80k ratings, the median movie 6 and about 10k movies one
    (ML-25M: 81,491 for the top movie, a median of about 4, item Gini 0.94).
  Ratings: 3.66 + b_u + b_m + p_u·q_m + noise, with b_u ~ N(0, 0.45²),
    b_m ~ N(0, 0.45²) + 0.15·(log popularity, centred on its rating-weighted
    mean, over its standard deviation), p_u ~ N(0, I) of size `rank`, q_m the
    mean of its genres' N(0, I) factors plus N(0, 0.5²) noise, over √rank, and
    noise ~ N(0, 0.5²); rounded to half stars and clipped to [0.5, 5]. Users
    who start before 2003-02-18 give whole stars only, clipped to [1, 5]
    (MovieLens had no half stars before). Global mean about 3.5, standard
    deviation about 1.1 (ML-25M: 3.53 and 1.06).
  Timestamps: each user starts at a uniform time in the ML-25M range and rates
    uniformly within a LogNormal(ln 1 day, 2.5) span, cut at the range's end.
"""

import argparse
import csv
import os
import time

import numpy as np
import pandas as pd

# The genres of ML-20M/25M in the order MovieLens lists a movie's genres
# (alphabetical, IMAX last, e.g. `Action|Adventure|Sci-Fi|IMAX`), with their
# rough frequencies among ML-25M movies (used as sampling weights).
GENRES = (
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical",
    "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western", "IMAX",
)
NO_GENRES = "(no genres listed)"
_GENRE_WEIGHTS = np.array([
    7348, 4145, 2929, 2935, 16870, 5319, 5605, 25606, 2731, 353, 5989, 1054,
    2925, 7719, 3595, 8654, 1874, 1399, 195], dtype=float)
_NO_GENRES_FRACTION = 0.08
_COMMA_TITLE_FRACTION = 0.1

ML25M_SHAPE = dict(num_users=162_541, num_movies=62_423,
                   num_rated_movies=59_047, num_ratings=25_000_095)
_MAX_MOVIE_ID_RATIO = 209_171 / 62_423
_FIRST_TIME, _LAST_TIME = 789_652_009, 1_574_327_703
_HALF_STARS_TIME = 1_045_526_400  # 2003-02-18

MIN_RATINGS_PER_USER = 20
_ACTIVITY_MU, _ACTIVITY_SIGMA = np.log(51.0), 1.39
_MAX_USER_FRACTION = 0.55
_ZIPF_EXPONENT, _ZIPF_OFFSET = 2.35, 195
_INTERCEPT = 3.66
_NOISE = 0.5
_MIN_SCALED_RATED_MOVIES = 1000

# Users rating more than this fraction of the movies are sampled by Gumbel
# top-k (cost: one key per movie); the others from a with-replacement stream.
_GUMBEL_FRACTION = 0.01
_RATINGS_PER_CHUNK = 2_000_000


def shape_for_users(num_users: int) -> dict:
  """The ML-25M shape scaled to `num_users`, keeping ratings/movies per user.

  At least 1,000 movies are rated, so that small shapes can keep the per-user
  law (mean 154) under the cap of 55% of the rated movies per user.
  """
  scale = num_users / ML25M_SHAPE["num_users"]
  num_rated = max(_MIN_SCALED_RATED_MOVIES, round(ML25M_SHAPE["num_rated_movies"] * scale))
  return dict(
      num_users=num_users,
      num_movies=round(num_rated * ML25M_SHAPE["num_movies"] / ML25M_SHAPE["num_rated_movies"]),
      num_rated_movies=num_rated,
      num_ratings=round(ML25M_SHAPE["num_ratings"] * scale))


def _max_per_user(num_rated_movies):
  return max(MIN_RATINGS_PER_USER, int(_MAX_USER_FRACTION * num_rated_movies))


def _user_counts(rng, num_users, num_ratings, cap):
  """Ratings per user: 20 + s·LogNormal, capped, summing to `num_ratings`."""
  excess = rng.lognormal(_ACTIVITY_MU, _ACTIVITY_SIGMA, size=num_users)
  target = num_ratings - MIN_RATINGS_PER_USER * num_users
  room = cap - MIN_RATINGS_PER_USER

  def total(s):
    return np.minimum(np.floor(s * excess), room).sum()

  low, high = 0.0, 1.0
  while total(high) < target:
    high *= 2
  for _ in range(100):
    middle = (low + high) / 2
    low, high = (middle, high) if total(middle) < target else (low, middle)
  extra = np.minimum(np.floor(low * excess), room).astype(np.int64)
  # Hand the remaining few ratings, one each, to random users below the cap.
  missing = target - extra.sum()
  open_users = np.flatnonzero(extra < room)
  extra[rng.choice(open_users, size=missing, replace=False)] += 1
  return MIN_RATINGS_PER_USER + extra


def _popularity(num_rated_movies):
  ranks = np.arange(1, num_rated_movies + 1)
  weights = (ranks + _ZIPF_OFFSET) ** -_ZIPF_EXPONENT
  return weights / weights.sum()


def _sample_stream(rng, counts, cdf):
  """Per user, the first counts[i] distinct movies of a with-replacement stream.

  Returns (user index into `counts`, movie index), grouped by user.
  """
  num_movies = len(cdf)
  users = movies = np.zeros(0, dtype=np.int64)
  draw_user = np.repeat(np.arange(len(counts)), counts + counts // 4 + 2)
  while len(draw_user):
    draw_movie = np.searchsorted(cdf, rng.random(len(draw_user)), side="right")
    users = np.concatenate([users, draw_user])
    movies = np.concatenate([movies, np.minimum(draw_movie, num_movies - 1)])
    _, first = np.unique(users * num_movies + movies, return_index=True)
    first.sort()  # stream order, so each user's earliest distinct movies lead
    first = first[np.argsort(users[first], kind="stable")]
    users, movies = users[first], movies[first]
    starts = np.searchsorted(users, np.arange(len(counts)))
    keep = np.arange(len(users)) - starts[users] < counts[users]
    users, movies = users[keep], movies[keep]
    short = counts - np.bincount(users, minlength=len(counts))
    draw_user = np.repeat(np.arange(len(counts)), np.where(short > 0, 2 * short + 10, 0))
  return users, movies


def _sample_gumbel(rng, counts, log_popularity):
  """Per user, counts[i] movies by Gumbel top-k (exact successive sampling)."""
  users, movies = [], []
  for user, count in enumerate(counts):
    keys = log_popularity + rng.gumbel(size=len(log_popularity))
    users.append(np.full(count, user))
    movies.append(np.argpartition(-keys, count - 1)[:count])
  return np.concatenate(users), np.concatenate(movies)


def _user_chunks(counts):
  """Consecutive user ranges (start, stop) of about _RATINGS_PER_CHUNK ratings."""
  chunk = (np.cumsum(counts) - 1) // _RATINGS_PER_CHUNK
  bounds = np.concatenate([[0], np.flatnonzero(np.diff(chunk)) + 1, [len(counts)]])
  return list(zip(bounds[:-1], bounds[1:]))


def _sample_pairs(rng, counts, popularity):
  """All (user, movie-rank) pairs by successive sampling, sorted by user."""
  cdf = np.cumsum(popularity)
  heavy = counts > _GUMBEL_FRACTION * len(popularity)
  users, movies = [], []
  for start, stop in _user_chunks(counts):
    chunk = np.arange(start, stop)
    for selected, sampler, arg in ((chunk[~heavy[chunk]], _sample_stream, cdf),
                                   (chunk[heavy[chunk]], _sample_gumbel, np.log(popularity))):
      if len(selected):
        chunk_users, chunk_movies = sampler(rng, counts[selected], arg)
        users.append(selected[chunk_users].astype(np.int32))
        movies.append(chunk_movies.astype(np.int32))
  users, movies = np.concatenate(users), np.concatenate(movies)
  order = np.argsort(users, kind="stable")
  return users[order], movies[order]


def _rate_every_movie(rng, movies, num_movies):
  """Moves one rating to each unrated movie from movies rated at least twice.

  A moved rating keeps its user, who cannot have rated the unrated movie, so
  (user, movie) pairs stay unique and per-user counts do not change.
  """
  movie_counts = np.bincount(movies, minlength=num_movies)
  unrated = np.flatnonzero(movie_counts == 0)
  if not len(unrated):
    return
  candidates = rng.permutation(np.flatnonzero(movie_counts[movies] > 1))
  # Among the shuffled candidates, the n-th rating of a movie may go while n
  # is below its count - 1, so that every donor keeps a rating.
  order = np.argsort(movies[candidates], kind="stable")
  donor_movies = movies[candidates[order]]
  group_starts = np.searchsorted(donor_movies, donor_movies)
  allowed = np.zeros(len(candidates), dtype=bool)
  allowed[order] = np.arange(len(order)) - group_starts < movie_counts[donor_movies] - 1
  movies[candidates[allowed][:len(unrated)]] = rng.permutation(unrated)


def _write_movies(rng, directory, movie_ids, genre_sets):
  years = rng.integers(1902, 2020, size=len(movie_ids))
  commas = rng.random(len(movie_ids)) < _COMMA_TITLE_FRACTION
  with open(os.path.join(directory, "movies.csv"), "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(["movieId", "title", "genres"])
    for movie_id, year, comma, genres in zip(movie_ids, years, commas, genre_sets):
      title = f"Movie {movie_id}{', The' if comma else ''} ({year})"
      names = "|".join(GENRES[g] for g in genres) if len(genres) else NO_GENRES
      writer.writerow([movie_id, title, names])


def _genre_sets(rng, num_movies):
  """1-3 genres per movie by ML-25M frequency; 8% with no genres listed."""
  sizes = np.where(rng.random(num_movies) < _NO_GENRES_FRACTION, 0,
                   rng.integers(1, 4, size=num_movies))
  p = _GENRE_WEIGHTS / _GENRE_WEIGHTS.sum()
  return [np.sort(rng.choice(len(GENRES), size=size, replace=False, p=p)) for size in sizes]


def write_ml25m_shape(
    directory: str,
    *,
    num_users: int = ML25M_SHAPE["num_users"],
    num_movies: int = ML25M_SHAPE["num_movies"],
    num_rated_movies: int = ML25M_SHAPE["num_rated_movies"],
    num_ratings: int = ML25M_SHAPE["num_ratings"],
    seed: int = 0,
    rank: int = 8,
    verbose: bool = False,
) -> str:
  """Writes ratings.csv and movies.csv at the given shape; returns `directory`.

  See the module docstring for the formats and laws. With `verbose`, prints
  summary statistics (ratings per user and per movie, rating mean).
  """
  cap = _max_per_user(num_rated_movies)
  if not MIN_RATINGS_PER_USER <= num_rated_movies <= num_movies:
    raise ValueError(f"Need {MIN_RATINGS_PER_USER} <= num_rated_movies <= num_movies, "
                     f"got {num_rated_movies} and {num_movies}.")
  if not max(MIN_RATINGS_PER_USER * num_users, num_rated_movies) <= num_ratings <= cap * num_users:
    raise ValueError(
        f"num_ratings={num_ratings} must be at least {MIN_RATINGS_PER_USER} per user and "
        f"one per rated movie, and at most {cap} per user ({_MAX_USER_FRACTION:.0%} of "
        "the rated movies).")
  rng = np.random.default_rng(seed)
  os.makedirs(directory, exist_ok=True)

  max_id = max(num_movies, round(num_movies * _MAX_MOVIE_ID_RATIO))
  movie_ids = np.sort(rng.choice(max_id, size=num_movies, replace=False)) + 1
  genre_sets = _genre_sets(rng, num_movies)
  _write_movies(rng, directory, movie_ids, genre_sets)
  # rated[j] is the movie (index into movie_ids) of popularity rank j.
  rated = rng.choice(num_movies, size=num_rated_movies, replace=False)
  popularity = _popularity(num_rated_movies)

  counts = _user_counts(rng, num_users, num_ratings, cap)
  users, movies = _sample_pairs(rng, counts, popularity)
  _rate_every_movie(rng, movies, num_rated_movies)
  movies = rated[movies]

  genres = np.zeros((num_movies, len(GENRES)))
  for movie, genre_set in enumerate(genre_sets):
    genres[movie, genre_set] = 1 / max(1, len(genre_set))
  movie_factors = genres @ rng.normal(size=(len(GENRES), rank))
  movie_factors = (movie_factors + 0.5 * rng.normal(size=movie_factors.shape)) / np.sqrt(rank)
  user_factors = rng.normal(size=(num_users, rank))
  movie_bias = 0.45 * rng.normal(size=num_movies)
  # Popular movies are rated higher; centred so the mean rating stays put.
  log_popularity = np.log(popularity)
  movie_bias[rated] += 0.15 * (log_popularity - popularity @ log_popularity) / log_popularity.std()
  user_bias = 0.45 * rng.normal(size=num_users)
  user_start = rng.integers(_FIRST_TIME, _LAST_TIME, size=num_users)
  whole_stars = user_start < _HALF_STARS_TIME
  user_span = np.minimum(rng.lognormal(np.log(86_400), 2.5, size=num_users),
                         _LAST_TIME - user_start)

  path = os.path.join(directory, "ratings.csv")
  rating_sum = 0.0
  row_bounds = np.concatenate([[0], np.cumsum(counts)])
  with open(path, "w", newline="") as f:
    f.write("userId,movieId,rating,timestamp\n")
    for start, stop in _user_chunks(counts):
      start, stop = row_bounds[start], row_bounds[stop]
      u, m = users[start:stop], movies[start:stop]
      order = np.lexsort((movie_ids[m], u))
      u, m = u[order], m[order]
      score = (_INTERCEPT + user_bias[u] + movie_bias[m]
               + np.einsum("ij,ij->i", user_factors[u], movie_factors[m])
               + _NOISE * rng.normal(size=len(u)))
      rating = np.where(whole_stars[u], np.clip(np.rint(score), 1, 5),
                        np.clip(np.rint(2 * score) / 2, 0.5, 5))
      rating_sum += rating.sum()
      timestamp = user_start[u] + (rng.random(len(u)) * user_span[u]).astype(np.int64)
      pd.DataFrame({"userId": u + 1, "movieId": movie_ids[m], "rating": rating,
                    "timestamp": timestamp}).to_csv(f, header=False, index=False)
  if verbose:
    per_movie = np.bincount(movies, minlength=num_movies)
    per_movie = per_movie[per_movie > 0]
    print(f"users {num_users:,}, movies {num_movies:,} ({len(per_movie):,} rated), "
          f"ratings {len(users):,}, mean rating {rating_sum / len(users):.3f}")
    print(f"ratings per user: min {counts.min()}, median {np.median(counts):.0f}, "
          f"mean {counts.mean():.1f}, max {counts.max():,}")
    print(f"ratings per movie: median {np.median(per_movie):.0f}, mean {per_movie.mean():.1f}, "
          f"max {per_movie.max():,}; rated once {np.sum(per_movie == 1):,}, "
          f"twice {np.sum(per_movie == 2):,}")
    print(f"ratings.csv {os.path.getsize(path) / 2**20:,.0f} MiB")
  return directory


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--output_dir", required=True)
  for name, default in ML25M_SHAPE.items():
    parser.add_argument(f"--{name}", type=int, default=default)
  parser.add_argument("--scale_users", type=int, default=None,
                      help="If set, the ML-25M shape scaled to this many users "
                           "(shape_for_users); overrides the four sizes.")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--rank", type=int, default=8)
  args = parser.parse_args(argv)
  shape = (shape_for_users(args.scale_users) if args.scale_users
           else {name: getattr(args, name) for name in ML25M_SHAPE})
  started = time.time()
  write_ml25m_shape(args.output_dir, seed=args.seed, rank=args.rank, verbose=True, **shape)
  print(f"wrote {args.output_dir} in {time.time() - started:.0f} s")


if __name__ == "__main__":
  main()
