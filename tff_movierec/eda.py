"""Exploratory data analysis of MovieLens: headline figures, tables and plots.

`run_eda` loads the data, `summarize`s it into a JSON-serialisable dict,
`write_report`s Markdown, JSON and PNG plots, and `headline` renders the figures
a reader checks first (counts with thousands separators).

Every MovieLens release is summarized; what a release lacks is left out and
said so: without demographics (no users file, ML-10M on) there are no gender,
age and occupation tallies nor demographics.png; ratings are half stars from
ML-10M on, and the genres are the release's own (`MovieLens.genre_names`).

Counting conventions:
  users, movies      rows of users.dat / the movies file (3,883 movies in
                     ML-1M, including 177 that nobody rated); without a
                     users file, the distinct users of the ratings.
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

from tff_movierec.data import features, releases
from tff_movierec.reporting import plots
from tff_movierec.data.movielens import (AGE_LABELS, GENDERS, OCCUPATIONS,
                                         MovieLens, load_movielens)

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
# client_partition.png draws at most this many clients (a natural partition
# has one per user: 6,040 on ML-1M, 162,541 on ML-25M).
MAX_PLOTTED_CLIENTS = 25


def _quantiles(counts: np.ndarray) -> dict:
  """{label: value} of QUANTILES (lower interpolation, so values are counts)."""
  values = np.quantile(counts, [q for _, q in QUANTILES], method="lower")
  return {label: int(v) for (label, _), v in zip(QUANTILES, values)}


def _rating_label(value: float) -> str:
  return f"{value:g}"


def summarize(data: MovieLens) -> dict:
  """Summary statistics of `data`; every value is JSON-serialisable.

  Returns:
    A dict with keys `ratings_file`, `dataset` (the --dataset name, e.g.
    "ml-20m"), `release` (e.g. "MovieLens-20M"), `users`, `active_users`,
    `movies`, `rated_movies`, `ratings`, `sparsity_percent`, `mean_rating`,
    `rating_histogram` ({"1": count, ...; "0.5", "1.5", ... from ML-10M on},
    ratings that occur, ascending), `genres` (list of {genre, ratings,
    movies} over the release's genres, by ratings then movies, descending),
    `ratings_per_user` and `ratings_per_movie` ({"min", "25%", ..., "max"}),
    `has_demographics`, `demographics` ({"gender"|"age"|"occupation":
    {label: users}}; {} without demographics), `has_timestamps`,
    `missing_features`, `time_range` ([first, last] ISO dates, or None) and
    `user_activity` (ratings per active user, descending: the long-tail
    curve).
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
      {"genre": data.genre_names[g], "ratings": int(ratings_per_genre[g]),
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
      "dataset": data.release.name,
      "release": data.release.title,
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
      "has_demographics": data.has_demographics,
      "demographics": {
          "gender": user_counts("gender", GENDERS),
          "age": user_counts("age", AGE_LABELS),
          "occupation": user_counts("occupation", OCCUPATIONS),
      } if data.has_demographics else {},
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
  lines = [
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
  ]
  if not summary["has_demographics"]:
    lines.append(f"demographics: none in {summary['release']} (no users file)")
  return "\n".join(lines)


def _no_demographics(summary: dict) -> str:
  """Why a release without demographics has no demographic tallies."""
  with_users = " and ".join(r.name for r in releases.RELEASES.values() if r.has_demographics)
  return (f"{summary['release']} (--dataset={summary['dataset']}) has no demographics (no "
          f"users file; gender, age and occupation exist in {with_users} only), so they "
          "are not tallied.")


def _table(header: List[str], rows: List[list]) -> List[str]:
  lines = ["| " + " | ".join(header) + " |",
           "|" + "|".join(" --- " for _ in header) + "|"]
  for row in rows:
    lines.append("| " + " | ".join(
        f"{v:,}" if isinstance(v, int) else str(v) for v in row) + " |")
  return lines + [""]


def _markdown(summary: dict, images: List[str], clients_note: str = "") -> str:
  lines = [f"# {summary['release']} EDA", "", "```", headline(summary), "```", ""]
  lines += [f"![{os.path.splitext(name)[0]}]({name})" for name in images] + [""]
  if clients_note:
    lines += [clients_note, ""]
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
  if not summary["has_demographics"]:
    lines += ["## Demographics", "", _no_demographics(summary), ""]
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
  stars = list(summary["rating_histogram"])
  counts = list(summary["rating_histogram"].values())
  half_stars = len(stars) > 5  # ten bars from ML-10M on: wider, smaller labels
  figure = plots.new_figure(8.4 if half_stars else 6.4, 4.2)
  axes = figure.add_subplot()
  bars = axes.bar(stars, counts, color="tab:blue")
  axes.bar_label(bars, labels=[f"{n:,}" for n in counts], padding=2,
                 fontsize="x-small" if half_stars else None)
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
    of ratings per genre, one column per genre of the release, rows summing
    to 1 (or 0 for a client without genre-tagged ratings) — a rating
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
  return counts, pd.DataFrame(share, index=ids, columns=list(data.genre_names))


def plotted_clients(counts: pd.Series, limit: int) -> pd.Series:
  """At most `limit` of the clients' rating counts `counts` (indexed by
  client id): all of them if there are few enough, else clients evenly
  spaced in rank by ratings, from the most to the least active (in that
  order)."""
  if len(counts) <= limit:
    return counts
  ranked = counts.sort_values(ascending=False, kind="stable")
  return ranked.iloc[np.linspace(0, len(ranked) - 1, limit).round().astype(int)]


def write_report(summary: dict, output_dir: str,
                 partition: Optional[Tuple[pd.Series, pd.DataFrame]] = None) -> List[str]:
  """Writes the summary as Markdown (linking the plots), JSON and PNG plots.

  Args:
    summary: see `summarize`.
    output_dir: created if needed.
    partition: `client_mix` of a user partition, drawn as client_partition.png.

  Returns:
    The paths written: summary.md, eda_summary.json, rating_distribution.png,
    genre_popularity.png, user_activity_long_tail.png, demographics.png (with
    demographics only) and client_partition.png (with `partition`; at most
    MAX_PLOTTED_CLIENTS clients, see `plotted_clients`, said in summary.md).
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
  if summary["has_demographics"]:
    _plot_demographics(summary, target(DEMOGRAPHICS_PLOT))
  clients_note = ""
  if partition is not None:
    counts, share = partition
    shown = plotted_clients(counts, MAX_PLOTTED_CLIENTS)
    plots.client_partition(shown, share, target(plots.CLIENT_PARTITION))
    if len(shown) < len(counts):
      clients_note = (f"client_partition.png shows {len(shown)} of the {len(counts):,} "
                      "clients, evenly spaced in rank by ratings (from the most to the "
                      "least active).")
  with open(markdown_path, "w", encoding="utf-8") as f:
    f.write(_markdown(summary, [os.path.basename(p) for p in paths[2:]], clients_note))
  with open(json_path, "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=1)
  return paths


def run_eda(
    data_dir: Optional[str], output_dir: str, ratings_path: Optional[str] = None,
    dataset: str = releases.DEFAULT,
) -> dict:
  """Loads MovieLens, writes the EDA report into `output_dir`, returns summary.

  Args:
    data_dir: folder with the MovieLens files (None: the download cache).
    output_dir: where the report files go (created if needed).
    ratings_path: optional ratings file replacing the folder's own.
    dataset: the release (a key of `releases.RELEASES`).
  """
  summary = summarize(load_movielens(data_dir, ratings_path, dataset))
  write_report(summary, output_dir)
  return summary
