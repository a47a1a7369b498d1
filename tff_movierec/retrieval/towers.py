"""Query and candidate towers: functional Keras models mapping features to [B, D].

Both towers are built with `tf.keras.Input`s, so their variables exist as soon
as they are constructed (which TFF needs to type the model weights).

Query tower inputs (dict, all int32): `user` [B] (if `use_user_id`),
`gender` [B], `age` [B], `occupation` [B] (if `use_demographics`),
`history` [B, L] movie indices padded with -1 (if `use_history`).
Candidate tower input: `movie` int32 [B].
"""

from typing import Dict

import numpy as np
import tensorflow as tf

from tff_movierec.data.features import NUM_AGE_BUCKETS
from tff_movierec.data.movielens import NUM_OCCUPATIONS
from tff_movierec.retrieval.config import TowerConfig

_DEMOGRAPHIC_VOCABULARY = {"gender": 2, "age": NUM_AGE_BUCKETS, "occupation": NUM_OCCUPATIONS}


class MaskedMeanEmbedding(tf.keras.layers.Layer):
  """int32 [B, L] indices (-1 = padding) -> float32 [B, D] mean of embeddings.

  A row with no valid index maps to zeros.
  """

  def __init__(self, vocabulary_size: int, dim: int, **kwargs):
    super().__init__(**kwargs)
    self.vocabulary_size = vocabulary_size
    self.embedding = tf.keras.layers.Embedding(vocabulary_size + 1, dim)

  def call(self, indices):
    valid = indices >= 0
    safe = tf.where(valid, indices, self.vocabulary_size)
    weights = tf.cast(valid, tf.float32)[..., None]
    total = tf.reduce_sum(self.embedding(safe) * weights, axis=1)
    return total / tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)


class ConstantLookup(tf.keras.layers.Layer):
  """int32 [B] row indices -> rows of a fixed float32 table [V, F] (no weights)."""

  def __init__(self, table: np.ndarray, **kwargs):
    super().__init__(**kwargs)
    self.table = tf.constant(table, tf.float32)

  def call(self, indices):
    return tf.gather(self.table, indices)


def query_inputs(config: TowerConfig) -> Dict[str, tf.keras.Input]:
  """The query tower's `tf.keras.Input`s, keyed by feature name."""
  inputs = {}
  if config.use_user_id:
    inputs["user"] = tf.keras.Input(shape=(), dtype=tf.int32, name="user")
  if config.use_demographics:
    for name in _DEMOGRAPHIC_VOCABULARY:
      inputs[name] = tf.keras.Input(shape=(), dtype=tf.int32, name=name)
  if config.use_history:
    inputs["history"] = tf.keras.Input(shape=(None,), dtype=tf.int32, name="history")
  return inputs


def build_query_tower(config: TowerConfig, num_users: int, num_movies: int) -> tf.keras.Model:
  """Query features -> float32 [B, D] (see module docstring for the inputs)."""
  inputs = query_inputs(config)
  parts = []
  if config.use_user_id:
    parts.append(tf.keras.layers.Embedding(
        num_users, config.embedding_dim, name="user_embedding")(inputs["user"]))
  if config.use_demographics:
    for name, size in _DEMOGRAPHIC_VOCABULARY.items():
      parts.append(tf.keras.layers.Embedding(
          size, config.demographic_dim, name=f"{name}_embedding")(inputs[name]))
  if config.use_history:
    parts.append(MaskedMeanEmbedding(
        num_movies, config.embedding_dim, name="history_embedding")(inputs["history"]))
  hidden = parts[0] if len(parts) == 1 else tf.keras.layers.Concatenate()(parts)
  for layer, units in enumerate(config.hidden_units):
    hidden = tf.keras.layers.Dense(units, activation="relu", name=f"query_hidden_{layer}")(hidden)
  output = tf.keras.layers.Dense(config.embedding_dim, name="query_projection")(hidden)
  return tf.keras.Model(inputs, output, name="query_tower")


def movie_vector(config: TowerConfig, genres: np.ndarray, movie: tf.Tensor) -> tf.Tensor:
  """float32 [B, D] of int32 [B] `movie`: movie-id embedding (+ a projection of
  the movie's genres, `genres` float32 [M, G] multi-hot)."""
  vector = tf.keras.layers.Embedding(
      genres.shape[0], config.embedding_dim, name="movie_embedding")(movie)
  if config.use_genres:
    genre_vector = ConstantLookup(genres, name="genres")(movie)
    vector = vector + tf.keras.layers.Dense(
        config.embedding_dim, use_bias=False, name="genre_projection")(genre_vector)
  return vector


def build_candidate_tower(config: TowerConfig, genres: np.ndarray) -> tf.keras.Model:
  """int32 [B] `movie` -> float32 [B, D]: `movie_vector`.

  Args:
    genres: float32 [M, G] multi-hot genres of every movie.
  """
  movie = tf.keras.Input(shape=(), dtype=tf.int32, name="movie")
  return tf.keras.Model({"movie": movie}, movie_vector(config, genres, movie),
                        name="candidate_tower")


def build_rating_head(embedding_dim: int, initial_rating: float,
                      hidden_units=()) -> tf.keras.Model:
  """[B, D + 1] query and [B, D + 1] candidate outputs -> float32 [B, 1] rating.

  Each input is an embedding (its first D columns) followed by a bias (p_u,
  b_u and q_i, b_i; see `ranking`). The rating is
  initial_rating + b_u + b_i + <p_u, q_i>, plus, with `hidden_units`, a ReLU
  MLP on [p_u, q_i] whose output layer starts at zero, so training starts
  from the biased dot product (and, with zero biases, from `initial_rating`,
  the training mean).
  """
  query = tf.keras.Input(shape=(embedding_dim + 1,), name="query_embedding")
  candidate = tf.keras.Input(shape=(embedding_dim + 1,), name="candidate_embedding")
  vectors = [tf.keras.layers.Lambda(lambda x: x[:, :embedding_dim])(t)
             for t in (query, candidate)]
  biases = [tf.keras.layers.Lambda(lambda x: x[:, embedding_dim:])(t)
            for t in (query, candidate)]
  dot = tf.keras.layers.Dot(axes=1, name="dot")(vectors)
  terms = [dot] + biases
  if hidden_units:
    hidden = tf.keras.layers.Concatenate()(vectors)
    for layer, units in enumerate(hidden_units):
      hidden = tf.keras.layers.Dense(units, activation="relu", name=f"head_hidden_{layer}")(hidden)
    terms.append(tf.keras.layers.Dense(1, kernel_initializer="zeros", name="head_output")(hidden))
  total = tf.keras.layers.Add()(terms)
  rating = tf.keras.layers.Rescaling(1.0, offset=float(initial_rating), name="rating")(total)
  return tf.keras.Model([query, candidate], rating, name="rating_head")
