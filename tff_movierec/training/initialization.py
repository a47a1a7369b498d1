"""Initial model weights drawn from a seed.

TFF draws a process's initial weights inside `initialize()`, in a graph
without a seed, so two runs start from different models. These helpers draw
them eagerly, after seeding TensorFlow, and put them into the state, so that
the same seed gives the same initial model.
"""

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

ModelWeights = tff.learning.models.ModelWeights


def _values(weights: ModelWeights) -> ModelWeights:
  return ModelWeights(trainable=[np.asarray(v.numpy()) for v in weights.trainable],
                      non_trainable=[np.asarray(v.numpy()) for v in weights.non_trainable])


def seeded_model(model_fn, seed: int):
  """`model_fn()` built after seeding Python, NumPy and TensorFlow with `seed`."""
  tf.keras.utils.set_random_seed(seed)
  return model_fn()


def seeded_model_weights(model_fn, seed: int) -> ModelWeights:
  """The global weights (numpy) of `model_fn()` built from `seed`.

  `model_fn` returns a `tff.learning.models.VariableModel` (all its weights)
  or a `ReconstructionModel` (its global weights only).
  """
  model = seeded_model(model_fn, seed)
  if isinstance(model, tff.learning.models.ReconstructionModel):
    return _values(tff.learning.models.ReconstructionModel.get_global_variables(model))
  return _values(ModelWeights.from_model(model))


def seeded_local_weights(model_fn, seed: int) -> ModelWeights:
  """The local weights (numpy) of the `ReconstructionModel` `model_fn()` built from `seed`."""
  model = seeded_model(model_fn, seed)
  return _values(tff.learning.models.ReconstructionModel.get_local_variables(model))


def seeded_initial_state(process: tff.learning.templates.LearningProcess, model_fn,
                         seed: int):
  """`process.initialize()` with the model weights replaced by seeded ones."""
  return process.set_model_weights(process.initialize(), seeded_model_weights(model_fn, seed))
