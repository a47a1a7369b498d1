"""L2 regularization of FedRecon's reconstruction as an optimizer wrapper.

FedRecon reconstructs the local variables by minimizing `loss_fn(labels,
predictions)` only, and a Keras loss never sees the model's variables. An L2
penalty l2 * ||w||^2 on the weights an optimizer updates is the same as adding
its gradient 2 * l2 * w to theirs, so wrapping the reconstruction optimizer
regularizes exactly the reconstructed variables (the user embedding and user
bias), in training and in evaluation alike, without touching TFF.
"""

import tensorflow as tf
import tensorflow_federated as tff

from tff_movierec.errors import require


class L2Regularized(tff.learning.optimizers.Optimizer):
  """`optimizer` minimizing loss + l2 * sum of squared weights.

  Every weight the wrapped optimizer updates is penalized; with a mean loss
  over a client's n ratings the penalty weighs like n * l2 on the summed loss
  (weighted-λ regularization, as in ALS-WR).
  """

  def __init__(self, optimizer: tff.learning.optimizers.Optimizer, l2: float):
    require(l2 >= 0, "l2", l2, "must be >= 0.")
    self._optimizer = optimizer
    self._l2 = l2

  def initialize(self, specs):
    return self._optimizer.initialize(specs)

  def next(self, state, weights, gradients):
    gradients = tf.nest.map_structure(lambda w, g: g + 2.0 * self._l2 * w,
                                      weights, gradients)
    return self._optimizer.next(state, weights, gradients)

  def get_hparams(self, state):
    return self._optimizer.get_hparams(state)

  def set_hparams(self, state, hparams):
    return self._optimizer.set_hparams(state, hparams)
