"""The TFRS tasks (loss and metrics) of the retrieval and ranking models."""

import tensorflow as tf
import tensorflow_recommenders as tfrs

from tff_movierec.retrieval.config import RetrievalTaskConfig


def retrieval_task(config: RetrievalTaskConfig) -> tfrs.tasks.Retrieval:
  """In-batch softmax: row i's positive is candidate i, the other B-1 negatives.

  The loss is the mean over the batch's queries of the softmax cross-entropy
  (TFRS's default sums it, which would make the step size depend on the batch
  size). No factorized top-K metric is attached: top-K evaluation runs outside
  the training loop, on the server's global weights.
  """
  loss = tf.keras.losses.CategoricalCrossentropy(
      from_logits=True, reduction=tf.keras.losses.Reduction.SUM_OVER_BATCH_SIZE)
  return tfrs.tasks.Retrieval(
      loss=loss, temperature=config.temperature,
      remove_accidental_hits=config.remove_accidental_hits)


def ranking_task(with_metrics: bool = True) -> tfrs.tasks.Ranking:
  """Mean squared error on the rating; an RMSE metric when `with_metrics`.

  Federated models use `with_metrics=False`: Keras metrics create their
  variables lazily, and the TFF wrapper keeps its own additive loss sums.
  """
  metrics = [tf.keras.metrics.RootMeanSquaredError(name="rmse")] if with_metrics else None
  return tfrs.tasks.Ranking(loss=tf.keras.losses.MeanSquaredError(), metrics=metrics)
