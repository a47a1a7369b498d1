"""Top-K movie recommendations for one user from an exported two-tower model.

  python -m tff_movierec.recommend --user 1841 --k 5 --model_dir DIR \
      [--data_dir /path/to/ml-1m] [--ratings_path FILE]

Loads the SavedModels written by `tff_movierec.retrieval.export` with
`tf.saved_model.load` (no training code is imported), builds the user's
query from their ratings in the data (history = movies rated >= the model's
`min_history_rating`, plus demographics), retrieves with the BruteForce
index, drops every movie the user already rated and prints, per movie, its
title, year, genres, score and why it was recommended:

  * the user's top-rated genres it shares: genres ranked by the user's mean
    rating, among genres the user rated at least `MIN_GENRE_RATINGS` times;
  * the movie the user rated highly (>= 4, else their best rating) whose
    candidate embedding is closest to it by cosine similarity.

Bad input (unknown user, a model directory without an export, data that does
not match the model's vocabulary) ends with a message naming the flag or path
and exit status 2.
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


def recommend(vocabulary, query_tower, candidate_tower, index, data, user: int,
              k: int) -> dict:
  """Top-k unrated movies for user index `user`, with explanations.

  Returns:
    {"profile": [(genre, mean, count)], "num_ratings": int, "items": [dict(
    title, year, genres, score, shared_genres, similar_title, similar_rating,
    similarity)]}.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  own = data.ratings[data.ratings["user"] == user]
  rated = own["movie"].to_numpy()
  history = own.loc[own["rating"] >= vocabulary["min_history_rating"], "movie"]
  features = {
      "user": [user],
      "gender": [int(data.users["gender"].iloc[user])],
      "age": [int(data.users["age"].iloc[user])],
      "occupation": [int(data.users["occupation"].iloc[user])],
      "history": [history.to_numpy().tolist() or [-1]],
  }
  features = {name: tf.constant(features[name], tf.int32)
              for name in vocabulary["query_features"]}
  wanted = min(k + len(rated), len(vocabulary["movies"]))
  scores, movies = index.top_k(features, tf.constant(wanted, tf.int32))
  scores, movies = scores.numpy()[0], movies.numpy()[0]
  keep = ~np.isin(movies, rated)
  scores, movies = scores[keep][:k], movies[keep][:k]

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
        "shared_genres": [g for g in top_genres if g in entry["genres"].split("|")],
        "similar_title": catalog[int(liked["movie"].iloc[nearest])]["title"],
        "similar_rating": float(liked["rating"].iloc[nearest]),
        "similarity": float(similarity[row, nearest]),
    })
  return {"profile": profile, "num_ratings": len(rated), "items": items}


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
      f"Top-{k} recommendations (movies the user rated are excluded):",
  ]
  for rank, item in enumerate(result["items"], start=1):
    reasons = []
    if item["shared_genres"]:
      reasons.append("shares your top-rated " + ", ".join(item["shared_genres"]))
    reasons.append(f"closest to {item['similar_title']}, which you rated "
                   f"{item['similar_rating']:g} (cosine {item['similarity']:.2f})")
    lines.append(f"{rank:2d}. {item['title']} ({item['year']}) | {item['genres']} | "
                 f"score {item['score']:.3f}")
    lines.append(f"    why: {'; '.join(reasons)}")
  return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  parser = argparse.ArgumentParser(
      prog="python -m tff_movierec.recommend", description=__doc__.split("\n")[0])
  parser.add_argument("--user", type=int, required=True, help="MovieLens user id.")
  parser.add_argument("--k", type=int, default=5, help="Number of movies.")
  parser.add_argument("--model_dir", required=True, help="An exported model directory.")
  parser.add_argument("--data_dir", default=None,
                      help="MovieLens-1M folder (default: the tff_movierec cache).")
  parser.add_argument("--ratings_path", default=None, help="Ratings file to use instead.")
  args = parser.parse_args(argv)
  try:
    if args.k < 1:
      raise RecommendError(f"--k={args.k}: must be >= 1.")
    vocabulary, query_tower, candidate_tower, index = load_model(args.model_dir)
    data = load_movielens(args.data_dir, args.ratings_path)
    data_flag = f"--data_dir={args.data_dir}" if args.data_dir else "the MovieLens cache"
    check_vocabulary(vocabulary, data, data_flag)
    user = user_index(data, args.user, data_flag)
    if not np.any(data.ratings["user"].to_numpy() == user):
      raise RecommendError(f"--user={args.user} has no ratings in {data_flag}.")
    result = recommend(vocabulary, query_tower, candidate_tower, index, data, user, args.k)
  except (RecommendError, DataError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(format_report(args.user, data, user, result, args.k))
  return 0


if __name__ == "__main__":
  sys.exit(main())
