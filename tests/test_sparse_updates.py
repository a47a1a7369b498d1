"""sparse_updates.apply_step: the same result as the optimizer's dense step."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from tff_movierec.training import sparse_updates

_TABLE = np.arange(12, dtype=np.float32).reshape(4, 3)
_DENSE = np.array([0.5, -1.0], np.float32)


def _gradients():
  # Row 1 appears twice: its two slices must both be applied.
  slices = tf.IndexedSlices(tf.constant([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5], [-1.0, 0.0, 1.0]]),
                            tf.constant([1, 3, 1]), tf.constant([4, 3]))
  return slices, tf.constant([0.2, 0.4]), None


def _variables():
  return (tf.Variable(_TABLE), tf.Variable(_DENSE), tf.Variable([7.0]))


def _dense_reference(optimizer):
  """Values after one step of the optimizer's own (densifying) `next`."""
  variables = _variables()
  specs = tuple(tf.TensorSpec(v.shape, v.dtype) for v in variables)
  state = optimizer.initialize(specs)
  _, updated = optimizer.next(state, variables, _gradients())
  return [np.asarray(t) for t in updated]


@pytest.mark.parametrize("optimizer", [
    tff.learning.optimizers.build_sgdm(0.1),
    tff.learning.optimizers.build_sgdm(0.1, momentum=0.9),
    tff.learning.optimizers.build_adam(0.1),
], ids=["sgd", "sgd_momentum", "adam"])
def test_apply_step_matches_dense_step(optimizer):
  variables = _variables()
  specs = tuple(tf.TensorSpec(v.shape, v.dtype) for v in variables)
  state = optimizer.initialize(specs)
  new_state = sparse_updates.apply_step(optimizer, state, variables, _gradients())
  for variable, expected in zip(variables, _dense_reference(optimizer)):
    np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-6)
  assert set(new_state) == set(state)


def test_plain_sgd_touches_only_the_rows_of_the_batch():
  variables = _variables()
  sparse_updates.apply_step(tff.learning.optimizers.build_sgdm(0.1),
                            {"learning_rate": 0.1}, variables, _gradients())
  table = variables[0].numpy()
  np.testing.assert_array_equal(table[[0, 2]], _TABLE[[0, 2]])
  np.testing.assert_allclose(table[1], _TABLE[1] - 0.1 * np.array([0.0, 2.0, 4.0]), rtol=1e-6)
  np.testing.assert_array_equal(variables[2].numpy(), [7.0])


def test_is_plain_sgd():
  sgd = tff.learning.optimizers.build_sgdm(0.1)
  momentum = tff.learning.optimizers.build_sgdm(0.1, momentum=0.5)
  spec = (tf.TensorSpec([2], tf.float32),)
  assert sparse_updates.is_plain_sgd(sgd, sgd.initialize(spec))
  assert not sparse_updates.is_plain_sgd(momentum, momentum.initialize(spec))
  adam = tff.learning.optimizers.build_adam(0.1)
  assert not sparse_updates.is_plain_sgd(adam, adam.initialize(spec))
