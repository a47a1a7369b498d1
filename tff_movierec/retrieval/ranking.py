"""The ranking model's towers and features: a biased, SVD++-like rating model.

The rating of user u for movie i is predicted as

  r(u, i) = mu + b_u + b_i + <p_u, q_i> [+ MLP([p_u, q_i])]

with mu the training mean rating (a federated sum: `movie_stats`), q_i and b_i
the movie's embedding (movie id, plus a projection of its genres) and bias,
and p_u and b_u computed by the query tower from what the user's own device
holds, with no per-user row in the model (Koren's asymmetric SVD, KDD 2008):

  * implicit feedback: the mean embedding of the movies the user rated;
  * explicit feedback: the mean of (r_uj - mu) x_j over those movies;
  * the shrunk mean offset sum_j (r_uj - mu) / (n_u + `offset_shrinkage`);
  * demographics (where the release has them).

Query tower inputs (dict): `history` int32 [B, L] movie indices padded with
-1, `history_rating` float32 [B, L] their ratings (0 at padding), `gender`,
`age`, `occupation` int32 [B] (if `use_demographics`). It returns float32
[B, D + 1]: p_u, then b_u. The candidate tower maps `movie` int32 [B] to
float32 [B, D + 1]: q_i, then b_i. `towers.build_rating_head` joins them.

Training examples carry a sample of L of the user's *other* training movies
(`examples.training_examples`) and their ratings (`add_history_ratings`).
"""

import dataclasses
from typing import Dict, Mapping, Tuple

import numpy as np
import pandas as pd
import tensorflow as tf

from tff_movierec.errors import require
from tff_movierec.retrieval import examples, towers
from tff_movierec.retrieval.config import TowerConfig
from tff_movierec.retrieval.towers import _DEMOGRAPHIC_VOCABULARY, MaskedMeanEmbedding

HISTORY_RATING = "history_rating"


@dataclasses.dataclass(frozen=True)
class RankingTaskConfig:
  """Options of the rating model beyond its towers' sizes (`TowerConfig`).

  Attributes:
    head_units: sizes of the ReLU layers of an MLP on [p_u, q_i] added to the
      biased dot product (empty = the dot product alone).
    l2: weight of the mean over the batch of ||query output||^2 +
      ||candidate output||^2 (embeddings and biases of the batch's users and
      movies, as in SGD matrix factorization); part of the loss, so it applies
      to federated clients as well.
    offset_shrinkage: k of the user's mean offset sum(r - mu) / (n + k).
  """

  head_units: Tuple[int, ...] = ()
  l2: float = 0.0
  offset_shrinkage: float = 5.0

  def __post_init__(self):
    require(all(units >= 1 for units in self.head_units), "head_units", self.head_units,
            "sizes must be >= 1.")
    require(self.l2 >= 0, "l2", self.l2, "must be >= 0.")
    require(self.offset_shrinkage >= 0, "offset_shrinkage", self.offset_shrinkage,
            "must be >= 0.")


def history_ratings(history: np.ndarray, users: np.ndarray, interactions: pd.DataFrame,
                    num_movies: int) -> np.ndarray:
  """float32 [N, L]: the rating user `users[n]` gave movie `history[n, l]` (0 at padding).

  Args:
    history: int32 [N, L] movie indices, -1 = padding.
    users: int [N] user index of each row.
    interactions: the ratings (`user`, `movie`, `rating`) the histories come
      from; each (user, movie) at most once.
  """
  keys = (interactions["user"].to_numpy(np.int64) * num_movies
          + interactions["movie"].to_numpy(np.int64))
  order = np.argsort(keys, kind="stable")
  sorted_keys = keys[order]
  sorted_ratings = interactions["rating"].to_numpy(np.float32)[order]
  valid = history >= 0
  wanted = np.asarray(users, np.int64)[:, None] * num_movies + np.maximum(history, 0)
  position = np.minimum(np.searchsorted(sorted_keys, wanted), max(len(keys) - 1, 0))
  found = valid & (sorted_keys[position] == wanted) if len(keys) else np.zeros_like(valid)
  if not np.array_equal(found, valid):
    raise ValueError("history holds a movie the user did not rate in `interactions`.")
  return np.where(valid, sorted_ratings[position] if len(keys) else 0.0,
                  0.0).astype(np.float32)


def add_history_ratings(arrays: Dict[str, np.ndarray], interactions: pd.DataFrame,
                        num_movies: int) -> Dict[str, np.ndarray]:
  """`arrays` (with `history` [N, L] and `user` [N]) plus `history_rating` [N, L]."""
  return {**arrays, HISTORY_RATING: history_ratings(arrays["history"], arrays["user"],
                                                    interactions, num_movies)}


class RatedHistoryMean(tf.keras.layers.Layer):
  """history [B, L] int32 (-1 = padding), history_rating [B, L] float32 ->
  [B, D] mean over the valid slots of (rating - center) * embedding."""

  def __init__(self, vocabulary_size: int, dim: int, center: float, **kwargs):
    super().__init__(**kwargs)
    self.vocabulary_size = vocabulary_size
    self.center = center
    self.embedding = tf.keras.layers.Embedding(vocabulary_size + 1, dim)

  def call(self, history, history_rating):
    valid = tf.cast(history >= 0, tf.float32)
    safe = tf.where(history >= 0, history, self.vocabulary_size)
    weights = ((history_rating - self.center) * valid)[..., None]
    total = tf.reduce_sum(self.embedding(safe) * weights, axis=1)
    return total / tf.maximum(tf.reduce_sum(valid, axis=1, keepdims=True), 1.0)


class MeanOffset(tf.keras.layers.Layer):
  """history [B, L], history_rating [B, L] -> float32 [B, 1]
  sum(rating - center) / (count + shrinkage) over the valid slots."""

  def __init__(self, center: float, shrinkage: float, **kwargs):
    super().__init__(**kwargs)
    self.center = center
    self.shrinkage = shrinkage

  def call(self, history, history_rating):
    valid = tf.cast(history >= 0, tf.float32)
    total = tf.reduce_sum((history_rating - self.center) * valid, axis=1, keepdims=True)
    return total / (tf.reduce_sum(valid, axis=1, keepdims=True) + self.shrinkage)


def query_inputs(config: TowerConfig) -> Dict[str, tf.keras.Input]:
  """The ranking query tower's `tf.keras.Input`s, keyed by feature name."""
  inputs = {"history": tf.keras.Input(shape=(None,), dtype=tf.int32, name="history"),
            HISTORY_RATING: tf.keras.Input(shape=(None,), dtype=tf.float32,
                                           name=HISTORY_RATING)}
  if config.use_demographics:
    for name in _DEMOGRAPHIC_VOCABULARY:
      inputs[name] = tf.keras.Input(shape=(), dtype=tf.int32, name=name)
  return inputs


def build_query_tower(config: TowerConfig, task_config: RankingTaskConfig, num_movies: int,
                      global_mean: float) -> tf.keras.Model:
  """Query features -> float32 [B, D + 1]: p_u, then b_u (module docstring)."""
  require(config.use_history and not config.use_user_id, "use_history/use_user_id",
          (config.use_history, config.use_user_id),
          "the ranking query tower is built from the history only (no user-id row).")
  inputs = query_inputs(config)
  history, rating = inputs["history"], inputs[HISTORY_RATING]
  offset = MeanOffset(global_mean, task_config.offset_shrinkage, name="mean_offset")(
      history, rating)
  parts = [
      MaskedMeanEmbedding(num_movies, config.embedding_dim, name="history_embedding")(history),
      RatedHistoryMean(num_movies, config.embedding_dim, global_mean,
                       name="rated_history_embedding")(history, rating),
      offset,
  ]
  if config.use_demographics:
    for name, size in _DEMOGRAPHIC_VOCABULARY.items():
      parts.append(tf.keras.layers.Embedding(
          size, config.demographic_dim, name=f"{name}_embedding")(inputs[name]))
  joined = tf.keras.layers.Concatenate(name="query_features")(parts)
  hidden = joined
  for layer, units in enumerate(config.hidden_units):
    hidden = tf.keras.layers.Dense(units, activation="relu", name=f"query_hidden_{layer}")(hidden)
  vector = tf.keras.layers.Dense(config.embedding_dim, name="query_projection")(hidden)
  # b_u: the shrunk offset (weight starting at 1) plus a learned correction.
  correction = tf.keras.layers.Dense(1, kernel_initializer="zeros", name="user_bias")(joined)
  bias = tf.keras.layers.Add(name="user_bias_total")([offset, correction])
  output = tf.keras.layers.Concatenate(name="query_output")([vector, bias])
  return tf.keras.Model(inputs, output, name="ranking_query_tower")


def build_candidate_tower(config: TowerConfig, genres: np.ndarray,
                          initial_bias: np.ndarray) -> tf.keras.Model:
  """int32 [B] `movie` -> float32 [B, D + 1]: q_i (id embedding + genre
  projection), then b_i.

  Args:
    genres: float32 [M, G] multi-hot genres of every movie.
    initial_bias: float32 [M] starting movie biases (e.g. shrunk mean - mu).
  """
  movie = tf.keras.Input(shape=(), dtype=tf.int32, name="movie")
  vector = towers.movie_vector(config, genres, movie)
  bias = tf.keras.layers.Embedding(
      genres.shape[0], 1, name="movie_bias",
      embeddings_initializer=tf.keras.initializers.Constant(
          np.asarray(initial_bias, np.float32)[:, None]))(movie)
  output = tf.keras.layers.Concatenate(name="candidate_output")([vector, bias])
  return tf.keras.Model({"movie": movie}, output, name="ranking_candidate_tower")


def query_features(tower_config: TowerConfig) -> Tuple[str, ...]:
  """The example features the ranking query tower reads."""
  names = ("history", HISTORY_RATING)
  return names + (examples.DEMOGRAPHICS if tower_config.use_demographics else ())


def user_queries(interactions: pd.DataFrame, users: pd.DataFrame, user_indices: np.ndarray,
                 num_movies: int, features: Tuple[str, ...]) -> Mapping[str, np.ndarray]:
  """Query features of whole users (all their movies in `interactions`, rated)."""
  queries = examples.user_queries(interactions, users, user_indices)
  queries = add_history_ratings(queries, interactions, num_movies)
  return {name: queries[name] for name in features}
