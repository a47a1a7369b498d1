"""HashedDropout: the drop rate, unbiasedness and independence of its masks."""

import numpy as np
import pytest
import tensorflow as tf

from tff_movierec.models import hashed_dropout

_ROWS, _UNITS = 512, 256


def _masks(layer, calls=1):
  """float [calls, rows, units]: 1 where a unit was kept, 0 where dropped, for
  `calls` different inputs (constant c = 1, 2, ...)."""
  return np.stack([layer(tf.fill([_ROWS, _UNITS], float(c)), training=True).numpy() > 0
                   for c in range(1, calls + 1)]).astype(float)


def test_drop_rate_is_the_rate_rounded_to_1_256():
  layer = hashed_dropout.HashedDropout(0.2)
  assert layer.effective_rate == 51 / 256
  dropped = 1.0 - _masks(layer, calls=4)
  # 524,288 Bernoulli draws: the standard error of the mean is 0.00055.
  assert abs(dropped.mean() - 51 / 256) < 0.003
  # Each unit (column) and each example (row) is dropped at the same rate.
  assert np.abs(dropped.mean(axis=(0, 1)) - 51 / 256).max() < 0.06
  assert np.abs(dropped.mean(axis=(0, 2)) - 51 / 256).max() < 0.06


def test_expected_output_equals_input():
  layer = hashed_dropout.HashedDropout(0.5)
  outputs = np.stack([layer(tf.fill([_ROWS, _UNITS], value), training=True).numpy() / value
                      for value in (3.0, 3.5, 4.0, 5.0)])
  assert set(np.unique(outputs)) == {0.0, 2.0}
  assert abs(outputs.mean() - 1.0) < 0.01


def test_masks_are_uncorrelated_across_units_and_inputs():
  masks = _masks(hashed_dropout.HashedDropout(0.3), calls=2) - 0.7
  # Neighbouring units share a hash word (4 units per 32 bits) or follow it.
  for shift in (1, 4):
    corr = (masks[..., :-shift] * masks[..., shift:]).mean() / masks.var()
    assert abs(corr) < 0.02, shift
  assert abs((masks[0] * masks[1]).mean() / masks.var()) < 0.02
  assert not np.array_equal(masks[0], masks[1])


def test_the_same_input_gets_the_same_mask_a_slightly_different_one_another():
  layer = hashed_dropout.HashedDropout(0.3)
  inputs = tf.random.stateless_normal([_ROWS, _UNITS], seed=[1, 2])
  first = layer(inputs, training=True).numpy() != 0
  np.testing.assert_array_equal(layer(inputs, training=True).numpy() != 0, first)
  nudged = tf.tensor_scatter_nd_add(inputs, [[0, 0]], [1e-3])
  other = layer(nudged, training=True).numpy() != 0
  assert 0.3 < (first != other).mean() < 0.5  # independent masks differ in 2 p (1 - p) = 42%


def test_inference_and_rate_zero_are_the_identity():
  inputs = tf.random.normal([8, 5])
  np.testing.assert_array_equal(hashed_dropout.HashedDropout(0.4)(inputs, training=False), inputs)
  np.testing.assert_array_equal(hashed_dropout.HashedDropout(0.0)(inputs, training=True), inputs)


def test_any_shape_and_a_tensor_training_flag():
  layer = hashed_dropout.HashedDropout(0.25)
  inputs = tf.ones([3, 7, 5])  # 105 units: not a multiple of 4
  outputs = layer(inputs, training=tf.constant(True))
  assert outputs.shape == inputs.shape
  assert set(np.unique(outputs.numpy())) <= {0.0, np.float32(256 / 192)}
  np.testing.assert_array_equal(layer(inputs, training=tf.constant(False)), inputs)


def test_random_bytes_are_uniform():
  values = hashed_dropout.random_bytes(tf.constant(256 * 400), tf.constant(7, tf.uint32)).numpy()
  counts = np.bincount(values, minlength=256)
  chi2 = ((counts - 400) ** 2 / 400).sum()
  assert chi2 < 360  # chi-square with 255 degrees of freedom: p < 1e-4 above 360


@pytest.mark.parametrize("rate", [-0.1, 1.0, 0.999])
def test_rejects_rates_outside_0_1(rate):
  with pytest.raises(ValueError, match="rate"):
    hashed_dropout.HashedDropout(rate)


def test_config_round_trip():
  layer = hashed_dropout.HashedDropout(0.2, name="d")
  clone = hashed_dropout.HashedDropout.from_config(layer.get_config())
  assert clone.rate == 0.2 and clone.name == "d"
