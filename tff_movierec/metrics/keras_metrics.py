"""Keras rating metrics for centralized Keras and federated (TFF) evaluation.

TFF's default metrics aggregation (`tff.learning.metrics.sum_then_finalize`)
sums every metric variable over clients and then calls `result()` on a metric
re-created from `get_config()`. A metric is therefore aggregated exactly iff
its variables are additive sufficient statistics. All metrics here are, and
they are float64 so that sums over a million ratings stay exact:

  mae   MeanAbsoluteError             (Σw·|y-ŷ|, Σw)
  rmse  RootMeanSquaredError          (Σw·(y-ŷ)², Σw)
  mape  MeanAbsolutePercentageError   (Σw·100|y-ŷ|/|y|, Σw), in percent
  r2    RSquared                      (Σw, Σw·y, Σw·y², Σw·(y-ŷ)²)

R² = 1 - SSE/SST with SST = Σy² - (Σy)²/n is the R² of the pooled data (the
variance of y around the pooled mean), not a mean of per-client R²s.

Every metric flattens y_true and y_pred, so labels of shape [B] or [B, 1] and
predictions of shape [B] or [B, 1] all count B examples. (Keras's built-in
`MeanAbsoluteError` and `MeanAbsolutePercentageError` average over the last
axis first, so with [B]-shaped inputs they count a whole batch as one example
and weight clients wrongly; that is why they are not used.)
"""

from typing import List, Optional

import tensorflow as tf


def _flat(values):
  return tf.reshape(tf.cast(values, tf.float64), [-1])


def _flat_weight(sample_weight, y_true):
  if sample_weight is None:
    return tf.ones_like(y_true)
  return tf.broadcast_to(_flat(sample_weight), tf.shape(y_true))


class _PerExampleMean(tf.keras.metrics.Metric):
  """Weighted mean of a per-example error, from float64 (total, count) sums."""

  def __init__(self, name: str, dtype: Optional[tf.DType] = None):
    super().__init__(name=name, dtype=dtype)
    self.total = self.add_weight(name="total", shape=(), dtype=tf.float64,
                                 initializer="zeros")
    self.count = self.add_weight(name="count", shape=(), dtype=tf.float64,
                                 initializer="zeros")

  def _per_example(self, y_true, y_pred):
    raise NotImplementedError

  def update_state(self, y_true, y_pred, sample_weight=None):
    y_true, y_pred = _flat(y_true), _flat(y_pred)
    weight = _flat_weight(sample_weight, y_true)
    self.total.assign_add(tf.reduce_sum(weight * self._per_example(y_true, y_pred)))
    self.count.assign_add(tf.reduce_sum(weight))

  def _mean(self):
    return tf.math.divide_no_nan(self.total, self.count)

  def result(self):
    return tf.cast(self._mean(), self.dtype)

  def reset_state(self):
    for variable in self.variables:
      variable.assign(tf.zeros_like(variable))


class MeanAbsoluteError(_PerExampleMean):
  """Mean of |y - ŷ|."""

  def __init__(self, name: str = "mae", dtype: Optional[tf.DType] = None):
    super().__init__(name=name, dtype=dtype)

  def _per_example(self, y_true, y_pred):
    return tf.abs(y_true - y_pred)


class RootMeanSquaredError(_PerExampleMean):
  """Square root of the mean of (y - ŷ)²."""

  def __init__(self, name: str = "rmse", dtype: Optional[tf.DType] = None):
    super().__init__(name=name, dtype=dtype)

  def _per_example(self, y_true, y_pred):
    return tf.square(y_true - y_pred)

  def result(self):
    return tf.cast(tf.sqrt(self._mean()), self.dtype)


class MeanAbsolutePercentageError(_PerExampleMean):
  """Mean of 100·|y - ŷ| / max(|y|, 1e-7), in percent (as Keras defines it)."""

  def __init__(self, name: str = "mape", dtype: Optional[tf.DType] = None):
    super().__init__(name=name, dtype=dtype)

  def _per_example(self, y_true, y_pred):
    return 100.0 * tf.abs(y_true - y_pred) / tf.maximum(tf.abs(y_true), 1e-7)


class RSquared(tf.keras.metrics.Metric):
  """Coefficient of determination from additive float64 sums.

  Variables (float64 scalars, summed across clients by TFF): `count` (Σw),
  `sum_y` (Σw·y), `sum_y2` (Σw·y²), `sse` (Σw·(y-ŷ)²); w = sample_weight or 1.
  `result()` is 1 - sse / (sum_y2 - sum_y²/count); 0 when there is no data or
  y is constant (SST = 0).
  """

  def __init__(self, name: str = "r2", dtype: Optional[tf.DType] = None):
    super().__init__(name=name, dtype=dtype)
    self.count = self._scalar("count")
    self.sum_y = self._scalar("sum_y")
    self.sum_y2 = self._scalar("sum_y2")
    self.sse = self._scalar("sse")

  def _scalar(self, name):
    return self.add_weight(name=name, shape=(), dtype=tf.float64, initializer="zeros")

  def update_state(self, y_true, y_pred, sample_weight=None):
    y_true, y_pred = _flat(y_true), _flat(y_pred)
    weight = _flat_weight(sample_weight, y_true)
    self.count.assign_add(tf.reduce_sum(weight))
    self.sum_y.assign_add(tf.reduce_sum(weight * y_true))
    self.sum_y2.assign_add(tf.reduce_sum(weight * tf.square(y_true)))
    self.sse.assign_add(tf.reduce_sum(weight * tf.square(y_true - y_pred)))

  def result(self):
    sst = self.sum_y2 - tf.math.divide_no_nan(tf.square(self.sum_y), self.count)
    r2 = tf.where(sst > 0, 1.0 - tf.math.divide_no_nan(self.sse, sst),
                  tf.zeros_like(sst))
    return tf.cast(r2, self.dtype)

  def reset_state(self):
    for variable in self.variables:
      variable.assign(tf.zeros_like(variable))


def rating_metrics() -> List[tf.keras.metrics.Metric]:
  """New instances of the four rating metrics, named mae, rmse, r2, mape.

  Pass as `metrics=rating_metrics()` to `tff.learning.models.from_keras_model`
  (each instance is re-creatable from its `get_config()`), or to
  `keras.Model.compile`. MSE is rmse².
  """
  return [MeanAbsoluteError(), RootMeanSquaredError(), RSquared(),
          MeanAbsolutePercentageError()]


class ExampleCount(tf.keras.metrics.Metric):
  """Number of examples seen (float64 sum of batch sizes), named `examples`.

  TFF's FedAvg reports `num_examples` itself, FedRecon does not; this metric
  gives both the same count (for throughput and per-client tables).
  """

  def __init__(self, name: str = "examples", dtype: Optional[tf.DType] = None):
    super().__init__(name=name, dtype=dtype)
    self.count = self.add_weight(name="count", shape=(), dtype=tf.float64,
                                 initializer="zeros")

  def update_state(self, y_true, y_pred, sample_weight=None):
    del y_pred, sample_weight  # Unused: every example counts once.
    self.count.assign_add(tf.cast(tf.size(y_true), tf.float64))

  def result(self):
    return tf.cast(self.count, self.dtype)

  def reset_state(self):
    self.count.assign(tf.zeros_like(self.count))
