"""One client step of a TFF optimizer, applied in place to model variables.

`tff.learning.optimizers` densify every `tf.IndexedSlices` gradient: the
gradient of an embedding lookup becomes a full [V, D] table, and the step
rewrites every row although a batch touches at most B of them. For plain SGD
(no momentum) the rows outside the batch do not change, so `apply_step`
updates only the touched rows (`scatter_sub` of lr x the gradient slices,
duplicate indices summed) — the same result as the dense step, at a cost that
grows with the batch instead of the vocabulary. Every other optimizer, and
every dense gradient, goes through the optimizer's own `next`.

On the rating task this is the difference between writing the 6,040 x 32 user
table and the 3,883 x 32 movie table at each step and writing 2 x 256 rows:
a round of the default study went from 86k to 119k examples/s
(bench/round_ablation.py, BENCHMARKS.md issue 4).
"""

from typing import Any, Sequence

import tensorflow as tf
import tensorflow_federated as tff

_SGD_TYPE = type(tff.learning.optimizers.build_sgdm(1.0))
_LEARNING_RATE = "learning_rate"


def is_plain_sgd(optimizer: tff.learning.optimizers.Optimizer, state: Any) -> bool:
  """Whether `optimizer` (with its `state`) is SGD without momentum: its step
  is `w - learning_rate * g` and it keeps no other state."""
  return (isinstance(optimizer, _SGD_TYPE) and isinstance(state, dict)
          and set(state) == {_LEARNING_RATE})


def apply_step(optimizer: tff.learning.optimizers.Optimizer, state: Any,
               variables: Sequence[tf.Variable], gradients: Sequence[Any]) -> Any:
  """Applies one step of `optimizer` to `variables` in place; returns the new
  optimizer state. `gradients` match `variables` (tensors, `tf.IndexedSlices`
  or None for a variable without gradient)."""
  if not is_plain_sgd(optimizer, state):
    state, updated = optimizer.next(state, tuple(variables), tuple(gradients))
    for variable, value in zip(variables, updated):
      variable.assign(value)
    return state
  learning_rate = state[_LEARNING_RATE]
  for variable, gradient in zip(variables, gradients):
    if gradient is None:
      continue
    rate = tf.cast(learning_rate, variable.dtype)
    if isinstance(gradient, tf.IndexedSlices):
      variable.scatter_sub(tf.IndexedSlices(rate * gradient.values, gradient.indices,
                                            gradient.dense_shape))
    else:
      variable.assign_sub(rate * gradient)
  return state
