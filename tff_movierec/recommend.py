"""Top-K movie recommendations for one user: retrieval, then re-ranking.

  python -m tff_movierec.recommend --user 1841 --k 5 --model_dir DIR \
      [--candidates 100] [--ranking_model_dir RDIR | --retrieval_only] \
      [--data_dir /path/to/ml-1m] [--ratings_path FILE]

The two stages of TFRS's design. Loads the SavedModels written by
`tff_movierec.retrieval.export` with `tf.saved_model.load` (no training code
is imported), builds the user's query from their ratings in the data
(history = movies rated >= the model's `min_history_rating`, plus
demographics) and retrieves with the BruteForce index of --model_dir the
best `--candidates` movies the user has not rated (default 100). The ranking
model then predicts the user's rating of each candidate (its own history:
the movies the user rated >= its `min_history_rating`, with their ratings)
and the K candidates with the highest predicted rating are shown (ties keep
the retrieval order). `--retrieval_only` skips the second stage and shows
the first K retrieved movies.

Where the ranking model is found: --ranking_model_dir, else the folder
`ranking/` inside --model_dir (`export.RANKING_DIR`, where
`bench/retrieval.py --kind ranking --export_dir` writes it beside the
retrieval model); `run_experiment.py --task=movielens_ranking` exports to
OUTPUT/movielens_ranking/export/ranking, which --ranking_model_dir names. A
ranking export is compatible with a retrieval export when both list the same
movie ids in the same order (ranking.json `movie_ids`, vocabulary.json).

For each movie it prints the title, year, genres, the retrieval score (and,
re-ranked, the predicted rating and the movie's rank among the candidates)
and why it was recommended:

  * the user's top-rated genres it shares: genres ranked by the user's mean
    rating, among genres the user rated at least `MIN_GENRE_RATINGS` times;
  * the movie the user rated highly (>= 4, else their best rating) whose
    candidate embedding is closest to it by cosine similarity.

Bad input (unknown user, a model directory without an export, a missing or
incompatible ranking export, --candidates < --k, --ranking_model_dir or
--candidates with --retrieval_only, data that does not match the model's
vocabulary) ends with a message naming the flag or path and exit status 2.
"""

import argparse
import json
import os
import re
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

from tff_movierec.data.movielens import (AGE_LABELS, GENDERS, GENRES, OCCUPATIONS, DataError,
                                        load_movielens)

MODEL_FILES = ("vocabulary.json", "query_tower", "candidate_tower", "index")
# Kept in step with tff_movierec.retrieval.export (not imported: it needs tfrs).
RANKING_DIR = "ranking"
RANKING_FILES = ("ranking.json", "model")
RANKING_FORMAT_VERSION = 1
DEFAULT_CANDIDATES = 100
MIN_GENRE_RATINGS = 3
TOP_GENRES = 3
LIKED_RATING = 4.0
_YEAR_SUFFIX = re.compile(r"\s*\(\d{4}\)\s*$")


class RecommendError(Exception):
  """Bad command-line input; the message names the flag or path."""


def load_model(model_dir: str):
  """(vocabulary dict, query tower, candidate tower, index) of an export."""
  if not os.path.isdir(model_dir):
    raise RecommendError(f"--model_dir={model_dir}: no such directory.")
  missing = [f for f in MODEL_FILES if not os.path.exists(os.path.join(model_dir, f))]
  if missing:
    raise RecommendError(
        f"--model_dir={model_dir} holds no exported model (missing: "
        f"{', '.join(missing)}). Export one with "
        "tff_movierec.retrieval.export.export_model or bench/retrieval.py --export_dir.")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with open(os.path.join(model_dir, "vocabulary.json"), encoding="utf-8") as f:
    vocabulary = json.load(f)
  loaded = [tf.saved_model.load(os.path.join(model_dir, name))
            for name in ("query_tower", "candidate_tower", "index")]
  return (vocabulary, *loaded)


def load_ranking_model(ranking_dir: str, flag: str, vocabulary: dict):
  """(ranking.json dict, the `rate` SavedModel) of a ranking export.

  Args:
    ranking_dir: the export folder; `flag` names where it came from in errors.
    vocabulary: the retrieval export's vocabulary.json, which the ranking
      model's movie ids must match.
  """
  export_hint = ("Export one with run_experiment.py --task=movielens_ranking or "
                 "bench/retrieval.py --kind ranking --export_dir, or use --retrieval_only.")
  if not os.path.isdir(ranking_dir):
    raise RecommendError(f"{flag}: no such directory (no ranking model). {export_hint}")
  missing = [f for f in RANKING_FILES if not os.path.exists(os.path.join(ranking_dir, f))]
  if missing:
    raise RecommendError(f"{flag} holds no exported ranking model (missing: "
                         f"{', '.join(missing)}). {export_hint}")
  try:
    with open(os.path.join(ranking_dir, "ranking.json"), encoding="utf-8") as f:
      description = json.load(f)
  except ValueError as e:
    raise RecommendError(f"{flag}: ranking.json is not valid JSON ({e}).") from e
  if not isinstance(description, dict) or description.get("kind") != "ranking":
    raise RecommendError(f"{flag}: ranking.json does not describe a ranking model.")
  if description.get("format_version") != RANKING_FORMAT_VERSION:
    raise RecommendError(
        f"{flag}: ranking export format_version {description.get('format_version')!r}, "
        f"this program reads {RANKING_FORMAT_VERSION}; export the model again.")
  movie_ids = [m["movie_id"] for m in vocabulary["movies"]]
  if description.get("movie_ids") != movie_ids:
    raise RecommendError(
        f"{flag}: the ranking model's {len(description.get('movie_ids') or [])} movie ids do "
        f"not match the {len(movie_ids)} movies of the retrieval model (--model_dir); "
        "both must be trained on the same data.")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return description, tf.saved_model.load(os.path.join(ranking_dir, "model"))


def check_vocabulary(vocabulary: dict, data, data_flag: str) -> None:
  movie_ids = [m["movie_id"] for m in vocabulary["movies"]]
  if movie_ids != data.movies["movie_id"].tolist():
    raise RecommendError(
        f"{data_flag}: movies.dat lists {data.num_movies} movies that do not match "
        f"the {len(movie_ids)} movies of the model's vocabulary.json; use the data "
        "the model was trained on.")


def user_index(data, user_id: int, data_flag: str) -> int:
  ids = data.users["user_id"].to_numpy()
  position = np.searchsorted(ids, user_id)
  if position >= len(ids) or ids[position] != user_id:
    raise RecommendError(
        f"--user={user_id}: no such user in {data_flag} (user ids range over "
        f"{ids.min()}..{ids.max()}, {len(ids)} users).")
  return int(position)


def genre_profile(rated_genres: Sequence[str], ratings: np.ndarray) -> List[tuple]:
  """[(genre, mean rating, count)] best first, genres rated >= MIN_GENRE_RATINGS times.

  Falls back to all rated genres if none reaches the minimum count. Ties in
  mean rating go to the genre with more ratings.
  """
  totals: Dict[str, List[float]] = {}
  for genres, rating in zip(rated_genres, ratings):
    for genre in genres.split("|"):
      totals.setdefault(genre, []).append(float(rating))
  rows = [(g, float(np.mean(r)), len(r)) for g, r in totals.items()]
  frequent = [row for row in rows if row[2] >= MIN_GENRE_RATINGS] or rows
  return sorted(frequent, key=lambda row: (-row[1], -row[2], GENRES.index(row[0])))


def _user_features(data, user: int, own, min_history_rating: float, names) -> dict:
  """The user's query features (lists, one row) that a model reads (`names`)."""
  history = own[own["rating"] >= min_history_rating]
  features = {
      "user": [user],
      "history": [history["movie"].to_numpy().tolist() or [-1]],
      "history_rating": [history["rating"].to_numpy().tolist() or [0.0]],
  }
  for name in ("gender", "age", "occupation"):
    if name in data.users.columns:
      features[name] = [int(data.users[name].iloc[user])]
  missing = [name for name in names if name not in features]
  if missing:
    raise RecommendError(f"the model reads {', '.join(missing)}, which the data does not "
                         "have (e.g. demographics): use the data the model was trained on.")
  return {name: features[name] for name in names}


def predicted_ratings(ranking, data, user: int, own, movies: np.ndarray) -> np.ndarray:
  """float32 [C]: the ranking model's predicted ratings of `movies` by `user`.

  Args:
    ranking: (ranking.json dict, `rate` SavedModel) of `load_ranking_model`.
    own: the user's rows of `data.ratings`.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  description, rater = ranking
  features = _user_features(data, user, own, description["min_history_rating"],
                            description["query_features"])
  rows = len(movies)
  batch = {name: tf.repeat(tf.constant(value, tf.float32 if name == "history_rating"
                                       else tf.int32), rows, axis=0)
           for name, value in features.items()}
  batch["movie"] = tf.constant(np.asarray(movies, np.int32))
  return rater.rate(batch).numpy()


def recommend(vocabulary, query_tower, candidate_tower, index, data, user: int,
              k: int, ranking=None, candidates: int = DEFAULT_CANDIDATES) -> dict:
  """Top-k unrated movies for user index `user`, with explanations.

  Args:
    ranking: (ranking.json dict, `rate` SavedModel) to re-rank the first
      `candidates` retrieved movies by predicted rating; None: retrieval only.

  Returns:
    {"profile": [(genre, mean, count)], "num_ratings": int, "num_candidates":
    int (None without ranking), "items": [dict(title, year, genres, score,
    predicted_rating (None without ranking), retrieval_rank (1-based),
    shared_genres, similar_title, similar_rating, similarity)]}.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  own = data.ratings[data.ratings["user"] == user]
  rated = own["movie"].to_numpy()
  features = _user_features(data, user, own, vocabulary["min_history_rating"],
                            vocabulary["query_features"])
  features = {name: tf.constant(value, tf.int32) for name, value in features.items()}
  pool = k if ranking is None else candidates
  wanted = min(pool + len(rated), len(vocabulary["movies"]))
  scores, movies = index.top_k(features, tf.constant(wanted, tf.int32))
  scores, movies = scores.numpy()[0], movies.numpy()[0]
  keep = ~np.isin(movies, rated)
  scores, movies = scores[keep][:pool], movies[keep][:pool]
  retrieval_rank = np.arange(1, len(movies) + 1)
  num_candidates = len(movies) if ranking is not None else None
  ratings = [None] * len(movies)
  if ranking is not None:
    ratings = predicted_ratings(ranking, data, user, own, movies)
    order = np.argsort(-ratings, kind="stable")[:k]
    scores, movies, retrieval_rank = scores[order], movies[order], retrieval_rank[order]
    ratings = ratings[order]

  catalog = vocabulary["movies"]
  profile = genre_profile([catalog[m]["genres"] for m in rated], own["rating"].to_numpy())
  top_genres = [g for g, _, _ in profile[:TOP_GENRES]]
  liked = own[own["rating"] >= min(LIKED_RATING, own["rating"].max())]
  embed = lambda ids: candidate_tower.embed({"movie": tf.constant(ids, tf.int32)}).numpy()
  liked_vectors = _unit(embed(liked["movie"].to_numpy()))
  similarity = _unit(embed(movies)) @ liked_vectors.T  # [k, liked]
  items = []
  for row, (movie, score) in enumerate(zip(movies, scores)):
    nearest = int(np.argmax(similarity[row]))
    entry = catalog[int(movie)]
    items.append({
        "title": _YEAR_SUFFIX.sub("", entry["title"]),
        "year": entry["year"],
        "genres": entry["genres"],
        "score": float(score),
        "predicted_rating": None if ratings[row] is None else float(ratings[row]),
        "retrieval_rank": int(retrieval_rank[row]),
        "shared_genres": [g for g in top_genres if g in entry["genres"].split("|")],
        "similar_title": catalog[int(liked["movie"].iloc[nearest])]["title"],
        "similar_rating": float(liked["rating"].iloc[nearest]),
        "similarity": float(similarity[row, nearest]),
    })
  return {"profile": profile, "num_ratings": len(rated), "items": items,
          "num_candidates": num_candidates}


def _unit(vectors: np.ndarray) -> np.ndarray:
  return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def format_report(user_id: int, data, user: int, result: dict, k: int) -> str:
  demographics = data.users.iloc[user]
  genres = ", ".join(f"{g} ({mean:.2f} avg over {count})"
                     for g, mean, count in result["profile"][:TOP_GENRES])
  lines = [
      f"User {user_id} ({GENDERS[int(demographics['gender'])]}, age "
      f"{AGE_LABELS[int(demographics['age'])]}, {OCCUPATIONS[int(demographics['occupation'])]}), "
      f"{result['num_ratings']} ratings.",
      f"Top-rated genres: {genres}",
      (f"Top-{k} recommendations (movies the user rated are excluded):"
       if result["num_candidates"] is None else
       f"Top-{k} of {result['num_candidates']} retrieved candidates, re-ranked by predicted "
       "rating (movies the user rated are excluded):"),
  ]
  for rank, item in enumerate(result["items"], start=1):
    reasons = []
    if item["shared_genres"]:
      reasons.append("shares your top-rated " + ", ".join(item["shared_genres"]))
    reasons.append(f"closest to {item['similar_title']}, which you rated "
                   f"{item['similar_rating']:g} (cosine {item['similarity']:.2f})")
    ranked = ("" if item["predicted_rating"] is None else
              f"predicted rating {item['predicted_rating']:.2f} | retrieval #"
              f"{item['retrieval_rank']}, ")
    lines.append(f"{rank:2d}. {item['title']} ({item['year']}) | {item['genres']} | "
                 f"{ranked}score {item['score']:.3f}")
    lines.append(f"    why: {'; '.join(reasons)}")
  return "\n".join(lines)


def _check_stages(args) -> int:
  """The number of candidates to re-rank; RecommendError on contradictory flags."""
  if args.retrieval_only:
    given = [f"--{name}" for name in ("candidates", "ranking_model_dir")
             if getattr(args, name) is not None]
    if given:
      raise RecommendError(f"{' and '.join(given)}: re-ranking settings, but --retrieval_only "
                           "skips re-ranking; give one or the other.")
    return 0
  candidates = DEFAULT_CANDIDATES if args.candidates is None else args.candidates
  if candidates < args.k:
    raise RecommendError(f"--candidates={candidates}: must be >= --k={args.k} (the K shown "
                         "are chosen among the candidates).")
  return candidates


def main(argv: Optional[Sequence[str]] = None) -> int:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  parser = argparse.ArgumentParser(
      prog="python -m tff_movierec.recommend", description=__doc__.split("\n")[0])
  parser.add_argument("--user", type=int, required=True, help="MovieLens user id.")
  parser.add_argument("--k", type=int, default=5, help="Number of movies.")
  parser.add_argument("--model_dir", required=True,
                      help="An exported retrieval model directory.")
  parser.add_argument("--candidates", type=int, default=None,
                      help=f"Movies retrieved and re-ranked (default {DEFAULT_CANDIDATES}).")
  parser.add_argument("--ranking_model_dir", default=None,
                      help=f"An exported ranking model (default: MODEL_DIR/{RANKING_DIR}).")
  parser.add_argument("--retrieval_only", action="store_true",
                      help="Show the first K retrieved movies, without re-ranking.")
  parser.add_argument("--data_dir", default=None,
                      help="MovieLens-1M folder (default: the tff_movierec cache).")
  parser.add_argument("--ratings_path", default=None, help="Ratings file to use instead.")
  args = parser.parse_args(argv)
  try:
    if args.k < 1:
      raise RecommendError(f"--k={args.k}: must be >= 1.")
    candidates = _check_stages(args)
    vocabulary, query_tower, candidate_tower, index = load_model(args.model_dir)
    ranking = None
    if not args.retrieval_only:
      ranking_dir = args.ranking_model_dir or os.path.join(args.model_dir, RANKING_DIR)
      flag = (f"--ranking_model_dir={ranking_dir}" if args.ranking_model_dir else
              f"{ranking_dir} (the default: --model_dir's {RANKING_DIR}/; or give "
              "--ranking_model_dir)")
      ranking = load_ranking_model(ranking_dir, flag, vocabulary)
    data = load_movielens(args.data_dir, args.ratings_path)
    data_flag = f"--data_dir={args.data_dir}" if args.data_dir else "the MovieLens cache"
    check_vocabulary(vocabulary, data, data_flag)
    user = user_index(data, args.user, data_flag)
    if not np.any(data.ratings["user"].to_numpy() == user):
      raise RecommendError(f"--user={args.user} has no ratings in {data_flag}.")
    result = recommend(vocabulary, query_tower, candidate_tower, index, data, user, args.k,
                       ranking, candidates)
  except (RecommendError, DataError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(format_report(args.user, data, user, result, args.k))
  return 0


if __name__ == "__main__":
  sys.exit(main())
