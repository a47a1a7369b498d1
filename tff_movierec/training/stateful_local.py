"""FedAvg of the global weights with stateful client-local layers (cross-silo).

Each client keeps the task's `local_layers` (the user embedding) across
rounds, the way a hospital or a regional service would keep its users' rows:
the local weights are trained on the client together with the global ones
and never leave it; only the update of the global weights is aggregated.
This is partial model personalization with simultaneous local and global
updates (FedSim in Pillutla et al., 2022, "Federated Learning with Partial
Model Personalization", https://arxiv.org/abs/2204.03809); Federated
Reconstruction (`fed_recon`) is its stateless counterpart, suited to
cross-device clients that cannot keep state.

TFF's `LearningProcess` returns only server-placed values, so this algorithm
is a plain federated computation whose clients-placed output, the updated
local weights, the simulation stores per client id (`LocalStore`) and feeds
back the next time that client is sampled:

  next: (<state@SERVER, {(x, y)*}@CLIENTS, local@CLIENTS, int32@CLIENTS> ->
         <state@SERVER, metric sums@SERVER, <int32, local>@CLIENTS>)

with `state` = <model=ModelWeights, optimizer=server optimizer state,
aggregator=aggregation process state> and `local` the client's local
`ModelWeights` (for the rating task: the [U, D] user-embedding table, of which
a client only ever changes the rows of its own users). The int32 is the
client's position in the round; each new `local` comes back with it, because
TFF's mergeable context (remote workers) returns clients-placed values in the
order its subrounds finish, not in the clients' order.
"""

import collections
import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_movierec.training import federated_task
from tff_movierec import privacy
from tff_movierec.training import initialization, sparse_updates
from tff_movierec.training.server_update import ServerUpdate

ReconstructionModel = tff.learning.models.ReconstructionModel

# Per-client sums released to the server each round (finalized in `next`).
_SUMS = ("squared_error", "absolute_error", "examples")


@dataclasses.dataclass
class StatefulOutput:
  """What one round returns: the new program state and finalized metrics."""

  state: dict
  metrics: dict


def _tensors(weights):
  return tf.nest.map_structure(lambda v: v.read_value(), weights)


def _assign(variables, values):
  tf.nest.map_structure(lambda v, t: v.assign(t), variables, values, check_types=False)


class StatefulLocalProcess:
  """Builds the computations once; `next` runs a round for given clients.

  The program state (what is checkpointed) is a dict
  `{"server": server state, "local": {client_id: local weights}}`: the local
  weights are part of the simulation's state, held per client, never an
  input of any server-placed computation.
  """

  def __init__(self, task: federated_task.FederatedTask,
               client_optimizer: tff.learning.optimizers.Optimizer,
               local_optimizer: tff.learning.optimizers.Optimizer,
               server_optimizer: tff.learning.optimizers.Optimizer,
               uniform_weighting: bool = False,
               model_aggregator: Optional[tff.aggregators.AggregationFactory] = None):
    """
    Args:
      task: a task with `local_layers` and `reconstruction_model_fn`.
      client_optimizer: trains the global weights on the clients.
      local_optimizer: trains the local weights on the clients (its state,
        if any, starts afresh each round; the weights persist).
      server_optimizer: applies the aggregated update (e.g. Adam).
      uniform_weighting: weight clients equally instead of by examples (an
        unweighted aggregator such as DP requires it).
      model_aggregator: aggregation factory of the global-weight updates;
        None = (weighted) mean.
    """
    if not task.local_layers:
      raise ValueError(f"Task {task.name!r} has no local layers to keep on the clients.")
    unweighted = privacy.check_weighting(model_aggregator, uniform_weighting)
    model_fn = task.reconstruction_model_fn
    self._task = task

    @tff.tensorflow.computation
    def initial_global():
      return _tensors(ReconstructionModel.get_global_variables(model_fn()))

    @tff.tensorflow.computation
    def initial_local():
      return _tensors(ReconstructionModel.get_local_variables(model_fn()))

    global_type = initial_global.type_signature.result
    local_type = initial_local.type_signature.result
    dataset_type = tff.SequenceType(tff.types.tensorflow_to_type(task.input_spec))

    @tff.tensorflow.computation(global_type, dataset_type, local_type, np.int32)
    @tf.function
    def client_update(incoming, dataset, local, position):
      with tf.init_scope():
        keras_model = task.keras_model_fn()
        model = task.reconstruction_model(keras_model)
        loss_fn = task.loss_fn()
      global_vars = ReconstructionModel.get_global_variables(model)
      local_vars = ReconstructionModel.get_local_variables(model)
      _assign(global_vars, incoming)
      _assign(local_vars, local)
      trainable = (tuple(global_vars.trainable), tuple(local_vars.trainable))
      specs = tf.nest.map_structure(lambda v: tf.TensorSpec(v.shape, v.dtype), trainable)

      def step(state, batch):
        sums, client_state, local_state = state
        with tf.GradientTape() as tape:
          output = model.forward_pass(batch, training=True)
          batch_loss = loss_fn(output.labels, output.predictions)
          if task.penalty_fn is not None:
            batch_loss += task.penalty_fn(keras_model, batch[0])
        global_grads, local_grads = tape.gradient(batch_loss, trainable)
        client_state = sparse_updates.apply_step(
            client_optimizer, client_state, trainable[0], global_grads)
        local_state = sparse_updates.apply_step(
            local_optimizer, local_state, trainable[1], local_grads)
        error = tf.cast(output.predictions, tf.float64) - tf.cast(output.labels, tf.float64)
        sums = collections.OrderedDict(
            squared_error=sums["squared_error"] + tf.reduce_sum(error ** 2),
            absolute_error=sums["absolute_error"] + tf.reduce_sum(tf.abs(error)),
            examples=sums["examples"] + tf.cast(output.num_examples, tf.float64))
        return sums, client_state, local_state

      zeros = collections.OrderedDict((k, tf.constant(0.0, tf.float64)) for k in _SUMS)
      sums, _, _ = dataset.reduce(
          (zeros, client_optimizer.initialize(specs[0]), local_optimizer.initialize(specs[1])),
          step)
      delta = tf.nest.map_structure(lambda a, b: a - b, incoming.trainable,
                                    _tensors(global_vars.trainable))
      weight = (tf.constant(1.0) if uniform_weighting
                else tf.cast(sums["examples"], tf.float32))
      return delta, weight, (position, _tensors(local_vars)), sums

    delta_type, weight_type = client_update.type_signature.result[:2]
    if model_aggregator is None:
      model_aggregator = (tff.aggregators.UnweightedMeanFactory() if uniform_weighting
                          else tff.aggregators.MeanFactory())
    server = ServerUpdate(initial_global, delta_type, weight_type, server_optimizer,
                          model_aggregator, unweighted)
    initialize = server.initialize

    @tff.federated_computation(server.state_type, tff.FederatedType(dataset_type, tff.CLIENTS),
                               tff.FederatedType(local_type, tff.CLIENTS),
                               tff.FederatedType(np.int32, tff.CLIENTS))
    def next_fn(state, datasets, local, positions):
      incoming = tff.federated_broadcast(state.model)
      delta, weight, new_local, sums = tff.federated_map(
          client_update, (incoming, datasets, local, positions))
      return server.apply(state, delta, weight), tff.federated_sum(sums), new_local

    self._initialize = initialize
    self._next = next_fn

  def initialize(self, seed: int = 0) -> dict:
    """Server state, and every client's local weights at their initial value
    (the checkpointed structure is fixed from the start); the initial global
    and local weights are drawn from `seed`."""
    model_fn = self._task.reconstruction_model_fn
    server = dict(self._initialize())
    server["model"] = initialization.seeded_model_weights(model_fn, seed)
    local = initialization.seeded_local_weights(model_fn, seed)
    return {"server": server, "local": {c: local for c in self._task.train_data.client_ids}}

  def next(self, state: dict, client_data: Sequence[Tuple[str, tf.data.Dataset]]
           ) -> StatefulOutput:
    """One round with the given (client id, preprocessed dataset) pairs."""
    client_ids = [client for client, _ in client_data]
    server, sums, tagged_local = self._next(
        state["server"], [dataset for _, dataset in client_data],
        [state["local"][c] for c in client_ids], list(range(len(client_ids))))
    local = dict(state["local"])
    positions = sorted(int(position) for position, _ in tagged_local)
    if positions != list(range(len(client_ids))):
      raise RuntimeError(f"The round returned local weights for client positions "
                         f"{positions}, not one per client of {client_ids}.")
    local.update((client_ids[int(position)], weights) for position, weights in tagged_local)
    return StatefulOutput({"server": server, "local": local},
                          {"client_work": {"train": finalize(sums)}})

  def get_model_weights(self, state: dict) -> tff.learning.models.ModelWeights:
    return state["server"]["model"]


def finalize(sums: Dict[str, float]) -> Dict[str, float]:
  """Sums of squared/absolute errors and examples -> loss (MSE), mae, examples."""
  examples = float(sums["examples"])
  return collections.OrderedDict(
      loss=float(sums["squared_error"]) / max(examples, 1.0),
      mae=float(sums["absolute_error"]) / max(examples, 1.0),
      examples=examples)


def predict(task: federated_task.FederatedTask, model_weights, local_weights,
            dataset: tf.data.Dataset) -> List[np.ndarray]:
  """(y_true, y_pred) float [N] of a client's model on `dataset` (batched (x, y)).

  Runs on the client: its local weights never leave it.
  """
  model = task.reconstruction_model_fn()
  _assign(ReconstructionModel.get_global_variables(model), model_weights)
  _assign(ReconstructionModel.get_local_variables(model), local_weights)
  y_true, y_pred = [], []
  for batch in dataset:
    output = model.forward_pass(batch, training=False)
    y_true.append(np.reshape(output.labels, -1))
    y_pred.append(np.reshape(output.predictions, -1))
  return np.concatenate(y_true), np.concatenate(y_pred)
