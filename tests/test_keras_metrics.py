"""Keras rating metrics: values vs numpy, and exact federated aggregation."""

import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from tff_movierec.metrics import keras_metrics
from tff_movierec.metrics import rating

_RNG = np.random.default_rng(0)
Y_TRUE = _RNG.integers(1, 6, size=40).astype(np.float32)
Y_PRED = np.clip(Y_TRUE + _RNG.normal(0.0, 0.8, size=40), 1, 5).astype(np.float32)


def _results(metrics):
  return {m.name: float(m.result()) for m in metrics}


def _updated(y_true, y_pred):
  metrics = keras_metrics.rating_metrics()
  for metric in metrics:
    metric.update_state(y_true, y_pred)
  return metrics


@pytest.mark.parametrize("true_shape,pred_shape", [((-1,), (-1, 1)), ((-1, 1), (-1, 1)),
                                                   ((-1,), (-1,))])
def test_values_match_numpy_for_both_label_shapes(true_shape, pred_shape):
  metrics = _updated(Y_TRUE.reshape(true_shape), Y_PRED.reshape(pred_shape))
  expected = rating.rating_metrics(Y_TRUE, Y_PRED)
  got = _results(metrics)
  for name in ("mae", "rmse", "r2", "mape"):
    assert got[name] == pytest.approx(expected[name], rel=1e-5), name


def test_r_squared_hand_computed():
  metric = keras_metrics.RSquared()
  metric.update_state([1.0, 2.0, 3.0], [1.0, 3.0, 3.0])
  # SST = 2, SSE = 1.
  assert float(metric.result()) == pytest.approx(0.5)
  metric.reset_state()
  assert float(metric.result()) == 0.0


def test_summing_variables_of_two_halves_equals_whole():
  halves = [_updated(Y_TRUE[:15], Y_PRED[:15]), _updated(Y_TRUE[15:], Y_PRED[15:])]
  whole = _results(_updated(Y_TRUE, Y_PRED))
  for index, template in enumerate(keras_metrics.rating_metrics()):
    # What TFF's finalizer does: a metric re-created from its config, with the
    # summed variables assigned.
    merged = type(template).from_config(template.get_config())
    for position, variable in enumerate(merged.variables):
      variable.assign(sum(h[index].variables[position] for h in halves))
    assert float(merged.result()) == pytest.approx(whole[merged.name], rel=1e-6)
  # The halves differ from the whole, so the check above is not vacuous.
  assert _results(halves[0])["r2"] != pytest.approx(whole["r2"], rel=1e-3)


def test_tff_federated_evaluation_equals_pooled_metric():
  def keras_model():
    inputs = tf.keras.Input(shape=(1,), dtype=tf.float32)
    outputs = tf.keras.layers.Dense(1, kernel_initializer="ones",
                                    bias_initializer="zeros")(inputs)
    return tf.keras.Model(inputs, outputs)

  def client_dataset(start, stop):
    return tf.data.Dataset.from_tensor_slices(
        (Y_PRED[start:stop].reshape(-1, 1), Y_TRUE[start:stop])).batch(7)

  clients = [client_dataset(0, 15), client_dataset(15, 40)]

  def model_fn():
    return tff.learning.models.from_keras_model(
        keras_model(), loss=tf.keras.losses.MeanSquaredError(),
        input_spec=clients[0].element_spec, metrics=keras_metrics.rating_metrics())

  evaluation = tff.learning.algorithms.build_fed_eval(model_fn)
  state = evaluation.initialize()
  output = evaluation.next(state, clients).metrics
  got = output["client_work"]["eval"]["current_round_metrics"]
  expected = rating.rating_metrics(Y_TRUE, Y_PRED)
  for name in ("mae", "rmse", "r2", "mape"):
    assert got[name] == pytest.approx(expected[name], rel=1e-5), name


def test_integer_sample_weights_equal_repeated_examples():
  weights = np.arange(1, 41) % 3
  weighted = keras_metrics.rating_metrics()
  for metric in weighted:
    metric.update_state(Y_TRUE, Y_PRED.reshape(-1, 1), sample_weight=weights)
  repeated = _results(_updated(np.repeat(Y_TRUE, weights), np.repeat(Y_PRED, weights)))
  for name, value in _results(weighted).items():
    assert value == pytest.approx(repeated[name], rel=1e-5), name
