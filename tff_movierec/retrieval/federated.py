"""TFF wrapping of the tfrs models (trained by `training.algorithms.build_fed_avg`).

`tff.learning.models.from_keras_model` accepts only functional Keras models
with a pointwise loss, and a `tfrs.Model` is a subclassed model whose loss is
computed over the whole batch (in-batch softmax). `TfrsVariableModel` is a
`tff.learning.models.VariableModel` whose forward pass is the tfrs model's
`compute_loss`, so a client computes exactly the centralized loss on its own
batches. Its weights are the two towers' (and the rating head's) variables;
no top-K index is part of them: top-K evaluation runs on the server on the
global weights (`evaluation`).
"""

import collections

import tensorflow as tf
import tensorflow_federated as tff
import tensorflow_recommenders as tfrs


class TfrsVariableModel(tff.learning.models.VariableModel):
  """A `VariableModel` around a `tfrs.Model` built from functional towers.

  Args:
    model: a tfrs model whose variables all exist (functional towers) and whose
      task has no lazily-built metrics; `compute_loss(batch)` gives the mean
      loss of a batch.
    input_spec: the element spec of the batched client datasets,
      `OrderedDict(x=OrderedDict(features), y=float32 [None] ratings)`.

  Metrics (summed over clients, then finalized): `loss` (example-weighted
  mean batch loss) and `num_examples`.
  """

  def __init__(self, model: tfrs.Model, input_spec):
    self._model = model
    self._input_spec = input_spec
    self._loss_sum = tf.Variable(0.0, trainable=False, name="loss_sum")
    self._example_count = tf.Variable(0.0, trainable=False, name="example_count")

  @property
  def tfrs_model(self) -> tfrs.Model:
    return self._model

  @property
  def trainable_variables(self):
    return self._model.trainable_variables

  @property
  def non_trainable_variables(self):
    return self._model.non_trainable_variables

  @property
  def local_variables(self):
    return [self._loss_sum, self._example_count]

  @property
  def input_spec(self):
    return self._input_spec

  @tf.function
  def predict_on_batch(self, batch_input, training=True):
    """float32 [B, D] query embeddings of the features `batch_input`."""
    return self._model.query_embeddings(batch_input, training=training)

  @tf.function
  def forward_pass(self, batch_input, training=True):
    loss = self._model.compute_loss(batch_input, training=training)
    num_examples = tf.shape(batch_input["y"])[0]
    self._loss_sum.assign_add(loss * tf.cast(num_examples, tf.float32))
    self._example_count.assign_add(tf.cast(num_examples, tf.float32))
    return tff.learning.models.BatchOutput(
        loss=loss, predictions=None, num_examples=num_examples)

  @tf.function
  def report_local_unfinalized_metrics(self):
    return collections.OrderedDict(
        loss=[self._loss_sum.read_value(), self._example_count.read_value()],
        num_examples=[self._example_count.read_value()])

  def metric_finalizers(self):
    return collections.OrderedDict(
        loss=tf.function(lambda values: tf.math.divide_no_nan(values[0], values[1])),
        num_examples=tf.function(lambda values: values[0]))

  @tf.function
  def reset_metrics(self):
    self._loss_sum.assign(0.0)
    self._example_count.assign(0.0)
