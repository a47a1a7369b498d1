"""A federated task over a functional Keras model: client data, preprocessing,
model, loss and metrics (the contract of the Keras-model tasks in `tasks/`)."""

import dataclasses
from typing import Any, Callable, Optional, Tuple

import tensorflow as tf
import tensorflow_federated as tff

Preprocess = Callable[[tf.data.Dataset], tf.data.Dataset]


@dataclasses.dataclass(frozen=True)
class FederatedTask:
  """Data and model of one federated learning task.

  Attributes:
    name: registry name of the task.
    train_data: raw (unbatched) training examples per client.
    test_data: raw held-out examples per client, same client ids as train;
      for tasks with `local_layers`, preceded by the client's training
      examples, marked for reconstruction (see algorithms.split_by_holdout).
    train_preprocess: raw client dataset -> batched (x, y) dataset for training
      (shuffle -> repeat -> take -> batch -> map).
    eval_preprocess: raw client dataset -> batched (x, y) dataset for
      evaluation (no shuffle, one pass).
    keras_model_fn: () -> a new, uncompiled functional `tf.keras.Model`
      mapping x to predictions (also used for centralized and local-only runs).
    loss_fn: () -> a Keras loss.
    metrics_fn: () -> list of Keras metrics, reported by the TFF model.
    model_fn: () -> `tff.learning.models.VariableModel` wrapping a fresh
      `keras_model_fn()` with `loss_fn` and `metrics_fn`; input spec taken from
      `train_preprocess` applied to a client dataset.
    local_layers: names of Keras layers whose weights stay on the client
      (trained by Federated Reconstruction, never aggregated); empty for tasks
      trained with FedAvg.
    description: one line shown in logs and hparams.
    penalty_fn: (Keras model, batch x) -> float32 [] added to the training
      loss of each batch (e.g. L2 of the embedding rows the batch reads), or
      None. Applied by the algorithms that train through their own loops
      (`stateful_local`) and by the comparison models (`evaluation`); those
      built by TFF cannot apply it (`algorithms.PENALTY_ALGORITHMS`; the
      others refuse such a task, see `AlgorithmConfig.check_task`).
    input_spec: (derived) element spec of a preprocessed client dataset.
  """

  name: str
  train_data: tff.simulation.datasets.ClientData
  test_data: tff.simulation.datasets.ClientData
  train_preprocess: Preprocess
  eval_preprocess: Preprocess
  keras_model_fn: Callable[[], tf.keras.Model]
  loss_fn: Callable[[], tf.keras.losses.Loss]
  metrics_fn: Callable[[], list]
  local_layers: Tuple[str, ...] = ()
  description: str = ""
  penalty_fn: Optional[Callable[[tf.keras.Model, Any], tf.Tensor]] = None
  input_spec: Any = dataclasses.field(init=False, repr=False)

  def __post_init__(self):
    # Computed eagerly here: model_fn runs inside TFF's graph tracing, where the
    # in-memory client tensors cannot be captured.
    sample = self.train_data.create_tf_dataset_for_client(self.train_data.client_ids[0])
    object.__setattr__(self, "input_spec", self.eval_preprocess(sample).element_spec)

  def model_fn(self) -> tff.learning.models.VariableModel:
    return tff.learning.models.from_keras_model(
        self.keras_model_fn(), loss=self.loss_fn(), input_spec=self.input_spec,
        metrics=self.metrics_fn())

  def reconstruction_model_fn(self) -> tff.learning.models.ReconstructionModel:
    """The Keras model split into global layers and `local_layers`."""
    return self.reconstruction_model(self.keras_model_fn())

  def reconstruction_model(self, model: tf.keras.Model
                           ) -> tff.learning.models.ReconstructionModel:
    """`model` (from `keras_model_fn`) split into global and `local_layers`."""
    if not self.local_layers:
      raise ValueError(f"Task {self.name!r} has no local layers to reconstruct.")
    weighted = [layer for layer in model.layers if layer.weights]
    missing = set(self.local_layers) - {layer.name for layer in weighted}
    if missing:
      raise ValueError(f"Task {self.name!r}: no layers named {sorted(missing)}.")
    return tff.learning.models.ReconstructionModel.from_keras_model_and_layers(
        model,
        global_layers=[l for l in weighted if l.name not in self.local_layers],
        local_layers=[l for l in weighted if l.name in self.local_layers],
        input_spec=self.input_spec)


def keras_dataset(client_data: tff.simulation.datasets.ClientData,
                  preprocess: Preprocess,
                  client_ids: Optional[list] = None) -> tf.data.Dataset:
  """All (or the given) clients' data, preprocessed, as one centralized dataset."""
  ids = client_data.client_ids if client_ids is None else client_ids
  datasets = [preprocess(client_data.create_tf_dataset_for_client(c)) for c in ids]
  result = datasets[0]
  for dataset in datasets[1:]:
    result = result.concatenate(dataset)
  return result
