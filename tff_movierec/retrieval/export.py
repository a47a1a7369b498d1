"""Export of a trained two-tower model for serving without the training code.

Layout of a model directory:
  query_tower/      SavedModel; `embed(features) -> float32 [B, D]`
  candidate_tower/  SavedModel; `embed({"movie": int32 [B]}) -> float32 [B, D]`
  index/            SavedModel of a `tfrs.layers.factorized_top_k.BruteForce`
                    over all M movies with the query tower inside;
                    `top_k(features, k) -> (float32 [B, k] scores,
                    int32 [B, k] movie indices)`
  vocabulary.json   movie index -> movie_id, title, year, genres; the query
                    features the towers read; the minimum rating that counts
                    as a history interaction.

`features` is a dict of int32 tensors: `history` [B, H] (movie indices, -1 =
padding) and/or `gender`, `age`, `occupation`, `user` [B], as listed under
`query_features` in vocabulary.json. Embeddings are already L2-normalized when
the model was trained with normalized embeddings, so scores are comparable.
Load with `tf.saved_model.load(path)` in any process.

A ranking (rating) model is exported by `export_ranking_model`, by convention
into the folder `ranking/` of the retrieval export it re-ranks
(`RANKING_DIR`; `python -m tff_movierec.recommend` looks there):
  model/        SavedModel; `rate(features) -> float32 [B]` predicted ratings
                (clipped to the rating scale) of the (user, movie) rows of
                `features`: `movie` int32 [B], `history` int32 [B, H] (-1 =
                padding), `history_rating` float32 [B, H] (0 at padding) and,
                as listed under `query_features`, `gender`, `age`,
                `occupation` int32 [B]
  ranking.json  `kind` "ranking", `format_version`, `query_features`,
                `min_history_rating`, `rating_scale` and `movie_ids` (movie
                index -> movie_id: a retrieval export is compatible iff its
                vocabulary lists the same ids in the same order).
"""

import json
import os
from typing import Dict

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tff_movierec.data.movielens import MovieLens
from tff_movierec.retrieval.models import RankingModel, RetrievalModel

QUERY_TOWER_DIR = "query_tower"
CANDIDATE_TOWER_DIR = "candidate_tower"
INDEX_DIR = "index"
VOCABULARY_FILE = "vocabulary.json"
FORMAT_VERSION = 1
RANKING_DIR = "ranking"
RANKING_MODEL_DIR = "model"
RANKING_FILE = "ranking.json"
RANKING_FORMAT_VERSION = 1


def _feature_spec(tower: tf.keras.Model) -> Dict[str, tf.TensorSpec]:
  return {name: tf.TensorSpec([None] * len(tensor.shape), tf.int32, name=name)
          for name, tensor in tower.input.items()}


def _serving_tower(tower: tf.keras.Model, normalize: bool) -> tf.keras.Model:
  """`tower`, followed by L2 normalization when the model normalizes."""
  if not normalize:
    return tower
  output = tf.keras.layers.UnitNormalization(axis=-1)(tower.output)
  return tf.keras.Model(tower.input, output, name=f"serving_{tower.name}")


class _Embedder(tf.Module):
  """One tower with a traced `embed` signature (any batch and history size)."""

  def __init__(self, tower: tf.keras.Model):
    super().__init__()
    self.tower = tower
    self.embed = tf.function(lambda features: self.tower(features),
                             input_signature=[_feature_spec(tower)])


class _Index(tf.Module):
  """A BruteForce index with a traced `top_k(features, k)` signature."""

  def __init__(self, brute_force: tfrs.layers.factorized_top_k.BruteForce,
               query_tower: tf.keras.Model):
    super().__init__()
    self.brute_force = brute_force
    self.top_k = tf.function(
        lambda features, k: self.brute_force(features, k=k),
        input_signature=[_feature_spec(query_tower), tf.TensorSpec([], tf.int32, name="k")])


def export_model(model: RetrievalModel, data: MovieLens, model_dir: str,
                 min_history_rating: float) -> None:
  """Writes the towers, a BruteForce index over all movies and the vocabulary.

  Args:
    model: a trained retrieval model; its two towers are exported.
    data: the MovieLens the model was trained on (movie vocabulary).
    model_dir: created if needed; existing exports in it are replaced.
    min_history_rating: ratings >= this formed the history feature in training
      (e.g. 3.0 under `recbole_ml1m`); serving must build histories the same way.
  """
  os.makedirs(model_dir, exist_ok=True)
  query_tower = _serving_tower(model.query_tower, model.normalize)
  candidate_tower = _serving_tower(model.candidate_tower, model.normalize)
  tf.saved_model.save(_Embedder(query_tower), os.path.join(model_dir, QUERY_TOWER_DIR))
  tf.saved_model.save(_Embedder(candidate_tower),
                      os.path.join(model_dir, CANDIDATE_TOWER_DIR))

  movies = np.arange(data.num_movies, dtype=np.int32)
  brute_force = tfrs.layers.factorized_top_k.BruteForce(
      query_model=query_tower, k=data.num_movies)
  brute_force.index(candidate_tower({"movie": movies}), tf.constant(movies))
  tf.saved_model.save(_Index(brute_force, query_tower), os.path.join(model_dir, INDEX_DIR))

  vocabulary = {
      "format_version": FORMAT_VERSION,
      "query_features": sorted(query_tower.input),
      "min_history_rating": float(min_history_rating),
      "num_users": data.num_users,
      "movies": [
          {"index": int(i), "movie_id": int(row.movie_id), "title": str(row.title),
           "year": int(row.year), "genres": str(row.genres)}
          for i, row in enumerate(data.movies.itertuples(index=False))
      ],
  }
  with open(os.path.join(model_dir, VOCABULARY_FILE), "w", encoding="utf-8") as f:
    json.dump(vocabulary, f, indent=1)


class _Rater(tf.Module):
  """A ranking model with a traced `rate(features) -> float32 [B]` signature."""

  def __init__(self, model: RankingModel):
    super().__init__()
    self.model = model
    inputs = {**model.query_tower.input, **model.candidate_tower.input}
    spec = {name: tf.TensorSpec([None] * len(tensor.shape), tensor.dtype, name=name)
            for name, tensor in inputs.items()}
    self.rate = tf.function(lambda features: self.model(features, training=False),
                            input_signature=[spec])


def export_ranking_model(model: RankingModel, data: MovieLens, ranking_dir: str,
                         min_history_rating: float) -> None:
  """Writes a ranking model's `rate` SavedModel and ranking.json (module docstring).

  Args:
    model: a trained ranking model.
    data: the MovieLens it was trained on (movie ids, rating scale).
    ranking_dir: created if needed (by convention MODEL_DIR/`RANKING_DIR` of
      the retrieval export it re-ranks); an existing export in it is replaced.
    min_history_rating: ratings >= this formed the history in training.
  """
  os.makedirs(ranking_dir, exist_ok=True)
  tf.saved_model.save(_Rater(model), os.path.join(ranking_dir, RANKING_MODEL_DIR))
  description = {
      "kind": "ranking",
      "format_version": RANKING_FORMAT_VERSION,
      "query_features": sorted(model.query_tower.input),
      "min_history_rating": float(min_history_rating),
      "rating_scale": list(model.rating_scale),
      "movie_ids": [int(i) for i in data.movies["movie_id"]],
  }
  with open(os.path.join(ranking_dir, RANKING_FILE), "w", encoding="utf-8") as f:
    json.dump(description, f)
