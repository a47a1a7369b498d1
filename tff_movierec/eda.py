"""Exploratory data analysis of MovieLens: headline figures, tables and plots.

`run_eda` loads the data, `summarize`s it into a JSON-serialisable dict,
`write_report`s Markdown, JSON and PNG plots, and `headline` renders the figures
a reader checks first (counts with thousands separators).

Counting conventions:
  users, movies      rows of users.dat / movies.dat (3,883 movies in ML-1M,
                     including 177 that nobody rated).
  rated movies       movies with at least one rating; active users likewise.
  sparsity           1 - ratings / (active users * rated movies), in percent.
  genre popularity   a rating counts once for every genre of its movie.
  quantiles          over active users / rated movies (zeros excluded).
"""

import datetime
import json
import os
from typing import List, Optional, Tuple

import numpy as np
import matplotlib.ticker
import pandas as pd

from tff_movierec.data import features
from tff_movierec.reporting import plots
from tff_movierec.data.movielens import (AGE_LABELS, GENDERS, GENRES,
                                         OCCUPATIONS, MovieLens,
                                         load_movielens)

QUANTILES = (
    ("min", 0.0), ("25%", 0.25), ("50%", 0.5), ("75%", 0.75), ("90%", 0.9),
    ("99%", 0.99), ("max", 1.0),
)
SUMMARY_JSON = "eda_summary.json"
SUMMARY_MARKDOWN = plots.SUMMARY_FILE
RATING_PLOT = "rating_distribution.png"
GENRE_PLOT = "genre_popularity.png"
LONG_TAIL_PLOT = "user_activity_long_tail.png"
DEMOGRAPHICS_PLOT = "demographics.png"


def _quantiles(counts: np.ndarray) -> dict:
  """{label: value} of QUANTILES (lower interpolation, so values are counts)."""
  values = np.quantile(counts, [q for _, q in QUANTILES], method="lower")
  return {label: int(v) for (label, _), v in zip(QUANTILES, values)}


def _rating_label(value: float) -> str:
  return f"{value:g}"


def summarize(data: MovieLens) -> dict:
  """Summary statistics of `data`; every value is JSON-serialisable.

  Returns:
    A dict with keys `ratings_file`, `users`, `active_users`, `movies`,
    `rated_movies`, `ratings`, `sparsity_percent`, `mean_rating`,
    `rating_histogram` ({"1": count, ...}), `genres` (list of {genre, ratings,
    movies}, by ratings then movies, descending), `ratings_per_user` and `ratings_per_movie`
    ({"min", "25%", ..., "max"}), `demographics` ({"gender"|"age"|"occupation":
    {label: users}}), `has_timestamps`, `missing_features`, `time_range`
    ([first, last] ISO dates, or None) and `user_activity` (ratings per active
    user, descending: the long-tail curve).
  """
  ratings = data.ratings
  per_user = np.bincount(ratings["user"].to_numpy(), minlength=data.num_users)
  per_movie = np.bincount(ratings["movie"].to_numpy(), minlength=data.num_movies)
  active_users = per_user[per_user > 0]
  rated_movies = per_movie[per_movie > 0]
  num_ratings = len(ratings)
  values, counts = np.unique(ratings["rating"].to_numpy(), return_counts=True)

  genre_matrix = features.genre_multi_hot(data)
  ratings_per_genre = per_movie @ genre_matrix
  movies_per_genre = genre_matrix.sum(axis=0)
  genres = [
      {"genre": GENRES[g], "ratings": int(ratings_per_genre[g]),
       "movies": int(movies_per_genre[g])}
      for g in np.lexsort((-movies_per_genre, -ratings_per_genre))
  ]

  def user_counts(column, labels):
    tally = np.bincount(data.users[column].to_numpy(), minlength=len(labels))
    return {label: int(n) for label, n in zip(labels, tally)}

  time_range = None
  if data.has_timestamps and num_ratings:
    stamps = ratings["timestamp"].to_numpy()
    time_range = [
        datetime.datetime.fromtimestamp(int(t), datetime.timezone.utc)
        .date().isoformat() for t in (stamps.min(), stamps.max())
    ]
  return {
      "ratings_file": data.ratings_path,
      "users": data.num_users,
      "active_users": len(active_users),
      "movies": data.num_movies,
      "rated_movies": len(rated_movies),
      "ratings": num_ratings,
      "sparsity_percent": 100.0 * (
          1.0 - num_ratings / (len(active_users) * len(rated_movies))),
      "mean_rating": float(ratings["rating"].to_numpy(np.float64).mean()),
      "rating_histogram": {
          _rating_label(v): int(n) for v, n in zip(values, counts)},
      "genres": genres,
      "ratings_per_user": _quantiles(active_users),
      "ratings_per_movie": _quantiles(rated_movies),
      "demographics": {
          "gender": user_counts("gender", GENDERS),
          "age": user_counts("age", AGE_LABELS),
          "occupation": user_counts("occupation", OCCUPATIONS),
      },
      "has_timestamps": data.has_timestamps,
      "missing_features": list(data.missing_features()),
      "time_range": time_range,
      "user_activity": [int(n) for n in np.sort(active_users)[::-1]],
  }


def _top_genres(summary: dict, key: str, n: int = 3) -> str:
  ranked = sorted(summary["genres"], key=lambda g: -g[key])[:n]
  return ", ".join(f"{g['genre']} {g[key]:,}" for g in ranked)


def _quantile_text(quantiles: dict) -> str:
  return ", ".join(f"{label} {value:,}" for label, value in quantiles.items())


def headline(summary: dict) -> str:
  """The headline figures as multi-line text, e.g. "ratings: 1,000,209"."""
  histogram = " / ".join(
      f"{n:,}" for n in summary["rating_histogram"].values())
  stars = " / ".join(summary["rating_histogram"])
  if summary["has_timestamps"]:
    time_line = "timestamps: {} to {}".format(*summary["time_range"])
  else:
    time_line = ("timestamps: absent; unavailable: "
                 + ", ".join(summary["missing_features"]))
  return "\n".join([
      f"MovieLens summary of {summary['ratings_file']}",
      f"ratings: {summary['ratings']:,}",
      f"users: {summary['users']:,} ({summary['active_users']:,} with ratings)",
      f"movies: {summary['movies']:,} ({summary['rated_movies']:,} rated)",
      f"sparsity: {summary['sparsity_percent']:.2f}%",
      f"mean rating: {summary['mean_rating']:.4f}",
      f"rating histogram ({stars} stars): {histogram}",
      f"top genres by ratings: {_top_genres(summary, 'ratings')}",
      f"top genres by movies: {_top_genres(summary, 'movies')}",
      f"ratings per user: {_quantile_text(summary['ratings_per_user'])}",
      f"ratings per movie: {_quantile_text(summary['ratings_per_movie'])}",
      time_line,
  ])


def _table(header: List[str], rows: List[list]) -> List[str]:
  lines = ["| " + " | ".join(header) + " |",
           "|" + "|".join(" --- " for _ in header) + "|"]
  for row in rows:
    lines.append("| " + " | ".join(
        f"{v:,}" if isinstance(v, int) else str(v) for v in row) + " |")
  return lines + [""]


def _markdown(summary: dict, images: List[str]) -> str:
  lines = ["# MovieLens EDA", "", "```", headline(summary), "```", ""]
  lines += [f"![{os.path.splitext(name)[0]}]({name})" for name in images] + [""]
  lines += ["## Rating histogram", ""]
  lines += _table(["rating", "ratings", "share"], [
      [stars, n, f"{100 * n / summary['ratings']:.2f}%"]
      for stars, n in summary["rating_histogram"].items()])
  lines += ["## Genre popularity", "",
            "A rating counts once for each genre of its movie.", ""]
  lines += _table(["genre", "ratings", "movies"], [
      [g["genre"], g["ratings"], g["movies"]] for g in summary["genres"]])
  lines += ["## Activity quantiles", ""]
  lines += _table(["", *summary["ratings_per_user"]], [
      ["ratings per user", *summary["ratings_per_user"].values()],
      ["ratings per movie", *summary["ratings_per_movie"].values()]])
  for attribute, tally in summary["demographics"].items():
    lines += [f"## Users by {attribute}", ""]
    lines += _table([attribute, "users"], [[k, v] for k, v in tally.items()])
  return "\n".join(lines)


def _thousands(axis, max_ticks: int = 6) -> None:
  """Integer tick labels with thousands separators, at most ~max_ticks."""
  axis.set_major_locator(matplotlib.ticker.MaxNLocator(max_ticks, integer=True))
  axis.set_major_formatter(
      matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:,.0f}"))


def _plot_ratings(summary: dict, path: str) -> None:
  figure = plots.new_figure(6.4, 4.2)
  axes = figure.add_subplot()
  stars = list(summary["rating_histogram"])
  counts = list(summary["rating_histogram"].values())
  bars = axes.bar(stars, counts, color="tab:blue")
  axes.bar_label(bars, labels=[f"{n:,}" for n in counts], padding=2)
  axes.set_title(f"Rating distribution ({summary['ratings']:,} ratings, "
                 f"mean {summary['mean_rating']:.2f})")
  axes.set_xlabel("rating (stars)")
  axes.set_ylabel("number of ratings")
  _thousands(axes.yaxis)
  axes.margins(y=0.12)
  figure.savefig(path)


def _plot_genres(summary: dict, path: str) -> None:
  genres = summary["genres"][::-1]  # most popular at the top
  names = [g["genre"] for g in genres]
  figure = plots.new_figure(10, 5.5)
  left, right = figure.subplots(1, 2, sharey=True)
  left.barh(names, [g["ratings"] for g in genres], color="tab:blue")
  left.set_title("Ratings per genre")
  left.set_xlabel("number of ratings")
  _thousands(left.xaxis, max_ticks=4)
  right.barh(names, [g["movies"] for g in genres], color="tab:orange")
  right.set_title("Movies per genre")
  right.set_xlabel("number of movies")
  _thousands(right.xaxis, max_ticks=4)
  figure.suptitle("Genre popularity (a movie counts for each of its genres)")
  figure.savefig(path)


def _plot_long_tail(summary: dict, path: str) -> None:
  activity = np.asarray(summary["user_activity"])
  quantiles = summary["ratings_per_user"]
  figure = plots.new_figure(6.4, 4.2)
  axes = figure.add_subplot()
  axes.plot(np.arange(1, len(activity) + 1), activity, color="tab:blue")
  axes.set_yscale("log")
  axes.axhline(quantiles["50%"], color="gray", linestyle="--",
               label=f"median user: {quantiles['50%']:,} ratings")
  axes.set_title(f"Long tail of user activity ({len(activity):,} users)")
  axes.set_xlabel("user rank (most active first)")
  axes.set_ylabel("ratings per user (log scale)")
  _thousands(axes.xaxis)
  axes.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
  axes.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  axes.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
      lambda y, _: f"{y:,.0f}"))
  axes.legend()
  axes.grid(True, which="major", alpha=0.3)
  figure.savefig(path)


def _plot_demographics(summary: dict, path: str) -> None:
  demographics = summary["demographics"]
  figure = plots.new_figure(12, 5.5)
  grid = figure.add_gridspec(2, 2, width_ratios=(1, 1.6))
  panels = ((grid[0, 0], "gender"), (grid[1, 0], "age"),
            (grid[:, 1], "occupation"))
  for cell, attribute in panels:
    axes = figure.add_subplot(cell)
    tally = demographics[attribute]
    axes.barh(list(tally)[::-1], list(tally.values())[::-1], color="tab:green")
    axes.set_title(f"Users by {attribute}")
    axes.set_xlabel("number of users")
    _thousands(axes.xaxis)
  figure.suptitle(f"Demographics of the {summary['users']:,} users")
  figure.savefig(path)


def client_mix(data: MovieLens, user_to_client: np.ndarray
               ) -> Tuple[pd.Series, pd.DataFrame]:
  """How the ratings fall into the clients of a user partition.

  Args:
    data: the MovieLens tables.
    user_to_client: int [U], each user's client (see partitions.partition_users).

  Returns:
    (ratings per client, indexed by client id "0".."K-1"; each client's share
    of ratings per genre, one column per genre, rows summing to 1 — a rating
    counts once for each genre of its movie, as in genre popularity).
  """
  clients = user_to_client[data.ratings["user"].to_numpy()]
  num_clients = int(user_to_client.max()) + 1
  ids = [str(k) for k in range(num_clients)]
  counts = pd.Series(np.bincount(clients, minlength=num_clients), index=ids, name="ratings")
  genres = features.genre_multi_hot(data)[data.ratings["movie"].to_numpy()]
  per_genre = np.zeros((num_clients, genres.shape[1]))
  np.add.at(per_genre, clients, genres)
  totals = per_genre.sum(axis=1, keepdims=True)
  share = np.divide(per_genre, totals, out=np.zeros_like(per_genre), where=totals > 0)
  return counts, pd.DataFrame(share, index=ids, columns=list(GENRES))


def write_report(summary: dict, output_dir: str,
                 partition: Optional[Tuple[pd.Series, pd.DataFrame]] = None) -> List[str]:
  """Writes the summary as Markdown (linking the plots), JSON and PNG plots.

  Args:
    summary: see `summarize`.
    output_dir: created if needed.
    partition: `client_mix` of a user partition, drawn as client_partition.png.

  Returns:
    The paths written: summary.md, eda_summary.json, rating_distribution.png,
    genre_popularity.png, user_activity_long_tail.png, demographics.png
    (and client_partition.png).
  """
  os.makedirs(output_dir, exist_ok=True)
  paths = []

  def target(name):
    paths.append(os.path.join(output_dir, name))
    return paths[-1]

  markdown_path, json_path = target(SUMMARY_MARKDOWN), target(SUMMARY_JSON)
  _plot_ratings(summary, target(RATING_PLOT))
  _plot_genres(summary, target(GENRE_PLOT))
  _plot_long_tail(summary, target(LONG_TAIL_PLOT))
  _plot_demographics(summary, target(DEMOGRAPHICS_PLOT))
  if partition is not None:
    plots.client_partition(*partition, target(plots.CLIENT_PARTITION))
  with open(markdown_path, "w", encoding="utf-8") as f:
    f.write(_markdown(summary, [os.path.basename(p) for p in paths[2:]]))
  with open(json_path, "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=1)
  return paths


def run_eda(
    data_dir: Optional[str], output_dir: str, ratings_path: Optional[str] = None
) -> dict:
  """Loads MovieLens, writes the EDA report into `output_dir`, returns summary.

  Args:
    data_dir: folder with the MovieLens files (None: the download cache).
    output_dir: where the report files go (created if needed).
    ratings_path: optional ratings file replacing the folder's own.
  """
  summary = summarize(load_movielens(data_dir, ratings_path))
  write_report(summary, output_dir)
  return summary
