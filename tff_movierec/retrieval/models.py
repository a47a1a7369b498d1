"""`tfrs.Model`s joining towers and tasks.

Every model consumes batches `OrderedDict(x=features, y=rating)` where
`features` holds the query features (see `towers`) and `movie` int32 [B],
and `rating` is float32 [B]. The same batches feed Keras `fit` (centralized)
and the TFF wrapper in `federated` (whose forward pass is `compute_loss`).
"""

from typing import Mapping, Optional

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tff_movierec.retrieval.config import RetrievalTaskConfig


def select_inputs(tower: tf.keras.Model, features: Mapping[str, tf.Tensor]):
  """The subset of `features` that `tower` (a dict-input Keras model) reads."""
  return {name: features[name] for name in tower.input}


class TwoTowerEmbeddings(tfrs.Model):
  """Query and candidate embeddings, optionally L2-normalized (shared base)."""

  def __init__(self, query_tower: tf.keras.Model, candidate_tower: tf.keras.Model,
               normalize: bool = False):
    super().__init__()
    self.query_tower = query_tower
    self.candidate_tower = candidate_tower
    self.normalize = normalize

  def query_embeddings(self, features, training=False) -> tf.Tensor:
    """float32 [B, D] embeddings of the query features."""
    return self._maybe_normalize(
        self.query_tower(select_inputs(self.query_tower, features), training=training))

  def candidate_embeddings(self, features, training=False) -> tf.Tensor:
    """float32 [B, D] embeddings of `features["movie"]`."""
    return self._maybe_normalize(
        self.candidate_tower(select_inputs(self.candidate_tower, features),
                             training=training))

  def _maybe_normalize(self, embeddings):
    return tf.math.l2_normalize(embeddings, axis=-1) if self.normalize else embeddings


class RetrievalModel(TwoTowerEmbeddings):
  """Two-tower retrieval trained with `tfrs.tasks.Retrieval` (in-batch softmax).

  Args:
    num_movies: M, the size of the corpus (movie indices 0..M-1).
    movie_frequency: float32 [M] in-batch sampling probability of each movie,
      required when `task_config.logq_correction`.
  """

  def __init__(self, query_tower, candidate_tower, task: tfrs.tasks.Retrieval,
               task_config: RetrievalTaskConfig, num_movies: int,
               movie_frequency: Optional[np.ndarray] = None):
    super().__init__(query_tower, candidate_tower, normalize=task_config.normalize)
    if task_config.logq_correction and movie_frequency is None:
      raise ValueError("logq_correction needs the movie frequencies.")
    self.task = task
    self.corpus_negatives = task_config.corpus_negatives
    self.num_movies = num_movies
    self.movie_frequency = (
        tf.constant(movie_frequency, tf.float32) if task_config.logq_correction else None)

  def compute_loss(self, inputs, training=False) -> tf.Tensor:
    features = inputs["x"]
    queries = self.query_embeddings(features, training=training)
    candidate_ids = features["movie"]
    num_queries = tf.shape(candidate_ids)[0]
    if self.corpus_negatives:
      corpus = tf.range(self.num_movies, dtype=candidate_ids.dtype)
      candidate_ids = tf.concat([candidate_ids, corpus], axis=0)
    candidates = self.candidate_embeddings({"movie": candidate_ids}, training=training)
    return self.task(queries, candidates,
                     candidate_sampling_probability=self._sampling_rate(
                         candidate_ids, num_queries),
                     candidate_ids=candidate_ids, compute_metrics=False)

  def _sampling_rate(self, candidate_ids, num_queries):
    """float32 [C]: probability that a negative slot holds each candidate, or None.

    In-batch slots hold movie j with its interaction share p_j; with corpus
    negatives, a slot is one of B in-batch or M corpus slots, so the rate is
    (B p_j + 1) / (B + M).
    """
    if self.movie_frequency is None:
      return None
    share = tf.gather(self.movie_frequency, candidate_ids)
    if not self.corpus_negatives:
      return share
    batch = tf.cast(num_queries, tf.float32)
    return (batch * share + 1.0) / (batch + float(self.num_movies))


class RankingModel(TwoTowerEmbeddings):
  """Rating regression on the two towers' outputs, `tfrs.tasks.Ranking`.

  The towers return [B, D + 1] (embedding, then bias) and the rating head
  joins them (`towers.build_rating_head`, `ranking`).

  Args:
    l2: weight of the batch mean of ||query output||^2 + ||candidate
      output||^2, added to the loss in `compute_loss` (so federated clients
      apply it too).
    rating_scale: (lowest, highest); predictions outside training are
      clipped to it.
  """

  def __init__(self, query_tower, candidate_tower, rating_head: tf.keras.Model,
               task: tfrs.tasks.Ranking, l2: float = 0.0, rating_scale=(1.0, 5.0)):
    super().__init__(query_tower, candidate_tower)
    self.rating_head = rating_head
    self.task = task
    self.l2 = float(l2)
    self.rating_scale = tuple(float(r) for r in rating_scale)

  def rate(self, queries, candidates, training=False) -> tf.Tensor:
    """float32 [B] ratings from [B, D + 1] query and candidate outputs."""
    ratings = tf.squeeze(self.rating_head([queries, candidates], training=training), -1)
    if training:
      return ratings
    return tf.clip_by_value(ratings, *self.rating_scale)

  def call(self, features, training=False) -> tf.Tensor:
    """float32 [B] predicted ratings (clipped to the scale unless training)."""
    queries = self.query_embeddings(features, training=training)
    candidates = self.candidate_embeddings(features, training=training)
    return self.rate(queries, candidates, training=training)

  def compute_loss(self, inputs, training=False) -> tf.Tensor:
    features = inputs["x"]
    queries = self.query_embeddings(features, training=training)
    candidates = self.candidate_embeddings(features, training=training)
    predictions = self.rate(queries, candidates, training=training)
    loss = self.task(labels=inputs["y"], predictions=predictions)
    if self.l2:
      loss += self.l2 * tf.reduce_mean(tf.reduce_sum(tf.square(queries), -1)
                                       + tf.reduce_sum(tf.square(candidates), -1))
    return loss
