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
    movie_frequency: float32 [M] in-batch sampling probability of each movie,
      required when `task_config.logq_correction`.
  """

  def __init__(self, query_tower, candidate_tower, task: tfrs.tasks.Retrieval,
               task_config: RetrievalTaskConfig,
               movie_frequency: Optional[np.ndarray] = None):
    super().__init__(query_tower, candidate_tower, normalize=task_config.normalize)
    if task_config.logq_correction and movie_frequency is None:
      raise ValueError("logq_correction needs the movie frequencies.")
    self.task = task
    self.movie_frequency = (
        tf.constant(movie_frequency, tf.float32) if task_config.logq_correction else None)

  def compute_loss(self, inputs, training=False) -> tf.Tensor:
    features = inputs["x"]
    queries = self.query_embeddings(features, training=training)
    candidates = self.candidate_embeddings(features, training=training)
    probability = (None if self.movie_frequency is None
                   else tf.gather(self.movie_frequency, features["movie"]))
    return self.task(queries, candidates, candidate_sampling_probability=probability,
                     candidate_ids=features["movie"], compute_metrics=False)


class RankingModel(TwoTowerEmbeddings):
  """Rating regression on the two towers' embeddings, `tfrs.tasks.Ranking`."""

  def __init__(self, query_tower, candidate_tower, rating_head: tf.keras.Model,
               task: tfrs.tasks.Ranking):
    super().__init__(query_tower, candidate_tower)
    self.rating_head = rating_head
    self.task = task

  def call(self, features, training=False) -> tf.Tensor:
    """float32 [B] predicted ratings."""
    queries = self.query_embeddings(features, training=training)
    candidates = self.candidate_embeddings(features, training=training)
    return tf.squeeze(self.rating_head([queries, candidates], training=training), -1)

  def compute_loss(self, inputs, training=False) -> tf.Tensor:
    predictions = self(inputs["x"], training=training)
    return self.task(labels=inputs["y"], predictions=predictions)
