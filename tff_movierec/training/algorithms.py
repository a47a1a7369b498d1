"""Builds the federated training and evaluation processes of a task.

Three algorithms:
  fedavg     `tff.learning.algorithms.build_weighted_fed_avg` (clients weighted
             by example count) or `build_unweighted_fed_avg` (uniform); every
             model weight is global and its update is sent to the server.
  fed_recon  `tff.learning.algorithms.build_fed_recon` (Singhal et al., 2021,
             "Federated Reconstruction"): the task's `local_layers` (the user
             embedding) are never sent; each round a client first reconstructs
             them from its data with the global weights frozen, then trains the
             global weights. Evaluation reconstructs on the client's training
             ratings and scores its held-out ratings. Clients keep no state.
  stateful_local  `stateful_local.StatefulLocalProcess`: the `local_layers`
             are never sent either, but each client keeps them across rounds
             and trains them with the global weights (cross-silo clients that
             can keep state). Evaluation scores each client's held-out
             ratings with its own local weights.
"""

import dataclasses
from typing import Optional

import tensorflow as tf
import tensorflow_federated as tff

from tff_movierec.training import federated_task
from tff_movierec.data import preprocessing
from tff_movierec.errors import ConfigError, require
from tff_movierec.privacy import aggregators
from tff_movierec.training import stateful_local
from tff_movierec.training.optimizers import OptimizerSpec

ALGORITHMS = ("fedavg", "fed_recon", "stateful_local")
LOCAL_LAYER_ALGORITHMS = ("fed_recon", "stateful_local")
# The algorithms whose own training loop adds a task's `penalty_fn`; TFF builds
# the others from the Keras model and the loss, and would drop it.
PENALTY_ALGORITHMS = ("stateful_local",)
CLIENT_WEIGHTINGS = aggregators.WEIGHTINGS
HOLDOUT_KEY = "holdout"


@dataclasses.dataclass(frozen=True)
class AlgorithmConfig:
  """Federated algorithm and its optimizers.

  Attributes:
    algorithm: one of ALGORITHMS.
    client_weighting: "num_examples" or "uniform".
    client_optimizer: local training optimizer.
    server_optimizer: applied to the averaged client update (Adam by default).
    local_optimizer: trains local variables (fed_recon: in the
      reconstruction passes; stateful_local: alongside the global ones).
    reconstruction_epochs: passes over the client's data to reconstruct local
      variables before training the global ones (fed_recon only).
  """

  algorithm: str = "fedavg"
  client_weighting: str = "num_examples"
  client_optimizer: OptimizerSpec = OptimizerSpec("sgd", 0.05, role="client")
  server_optimizer: OptimizerSpec = OptimizerSpec("adam", 1e-3, role="server")
  local_optimizer: OptimizerSpec = OptimizerSpec("sgd", 20.0, role="local")
  reconstruction_epochs: int = 1

  def __post_init__(self):
    require(self.algorithm in ALGORITHMS, "algorithm", self.algorithm,
            f"expected one of {ALGORITHMS}.")
    require(self.client_weighting in CLIENT_WEIGHTINGS, "client_weighting",
            self.client_weighting, f"expected one of {CLIENT_WEIGHTINGS}.")
    require(self.reconstruction_epochs >= 1, "reconstruction_epochs",
            self.reconstruction_epochs, "must be >= 1.")

  def check_task(self, task: federated_task.FederatedTask) -> None:
    """Raises ConfigError if the algorithm cannot train the task's model."""
    if self.algorithm in LOCAL_LAYER_ALGORITHMS and not task.local_layers:
      raise ConfigError(
          f"algorithm={self.algorithm!r} needs a model with client-local layers; use "
          "user_embedding='local' (or algorithm='fedavg').", ("algorithm", "user_embedding"))
    if self.algorithm == "fedavg" and task.local_layers:
      raise ConfigError(
          f"algorithm='fedavg' would send the local layers {task.local_layers} to the "
          "server; use algorithm='fed_recon' or 'stateful_local', or user_embedding="
          "'global' or 'none'.", ("algorithm", "user_embedding"))
    if task.penalty_fn is not None and self.algorithm not in PENALTY_ALGORITHMS:
      raise ConfigError(
          f"algorithm={self.algorithm!r} cannot apply the task's training penalty (TFF "
          f"builds its training, which drops it); use {', '.join(PENALTY_ALGORITHMS)}.",
          ("algorithm",))

  @property
  def weighting(self) -> tff.learning.ClientWeighting:
    return (tff.learning.ClientWeighting.NUM_EXAMPLES
            if self.client_weighting == "num_examples"
            else tff.learning.ClientWeighting.UNIFORM)


def build_training_process(
    task: federated_task.FederatedTask,
    config: AlgorithmConfig,
    model_aggregator: Optional[tff.aggregators.AggregationFactory] = None,
) -> tff.learning.templates.LearningProcess:
  """Returns the learning process; `next` has type signature
  (<state@SERVER, {(x, y)*}@CLIENTS> -> <state@SERVER, metrics@SERVER>), or
  for stateful_local a `stateful_local.StatefulLocalProcess` (its `next` also
  takes and returns the clients' local weights).

  Args:
    task: the task (its `train_preprocess` must already be applied to the
      client datasets passed to `next`).
    config: algorithm and optimizers.
    model_aggregator: optional aggregation factory (DP, secure, compression);
      must be unweighted when config.client_weighting is "uniform" and
      weighted otherwise.
  """
  config.check_task(task)
  if config.algorithm == "fed_recon":
    return tff.learning.algorithms.build_fed_recon(
        task.reconstruction_model_fn,
        loss_fn=task.loss_fn,
        metrics_fn=task.metrics_fn,
        server_optimizer_fn=config.server_optimizer.build(),
        client_optimizer_fn=config.client_optimizer.build(),
        reconstruction_optimizer_fn=config.local_optimizer.build(),
        dataset_split_fn=tff.learning.models.ReconstructionModel.build_dataset_split_fn(
            recon_epochs=config.reconstruction_epochs),
        client_weighting=config.weighting,
        model_aggregator_factory=model_aggregator)
  if config.algorithm == "stateful_local":
    return stateful_local.StatefulLocalProcess(
        task, config.client_optimizer.build(), config.local_optimizer.build(),
        config.server_optimizer.build(), config.client_weighting == "uniform",
        model_aggregator)
  return build_fed_avg(task.model_fn, config.client_weighting, config.client_optimizer,
                       config.server_optimizer, model_aggregator)


def build_fed_avg(
    model_fn, client_weighting: str, client_optimizer: OptimizerSpec,
    server_optimizer: OptimizerSpec,
    model_aggregator: Optional[tff.aggregators.AggregationFactory] = None,
) -> tff.learning.templates.LearningProcess:
  """FedAvg of a `VariableModel`: `build_weighted_fed_avg` (clients weighted by
  examples) or `build_unweighted_fed_avg` (client_weighting 'uniform'; what an
  unweighted aggregator such as DP needs).

  `next`: (<state@SERVER, {batches*}@CLIENTS> -> <state@SERVER, metrics@SERVER>).
  """
  aggregators.check_weighting(model_aggregator, client_weighting == "uniform")
  builder = (tff.learning.algorithms.build_unweighted_fed_avg if client_weighting == "uniform"
             else tff.learning.algorithms.build_weighted_fed_avg)
  return builder(model_fn, client_optimizer_fn=client_optimizer.build(),
                 server_optimizer_fn=server_optimizer.build(), model_aggregator=model_aggregator)


def split_by_holdout(dataset: tf.data.Dataset, reconstruction_batch_size: int,
                     held_out_batch_size: int = 1024, shuffle: bool = True,
                     seed: Optional[preprocessing.Seed] = (0, 0)):
  """FedRecon evaluation split: (reconstruction data, held-out data).

  Evaluation client datasets hold the client's training ratings (x[HOLDOUT_KEY]
  == 0, used to reconstruct the local user embedding) followed by its held-out
  ratings (== 1, scored). The reconstruction part is shuffled and batched like
  the training data (`reconstruction_batch_size`): with a mean loss, the step a
  user's embedding takes depends on the batch size, so reconstructing in
  evaluation with other batches than in training would score embeddings that
  training never produced.
  """
  examples = dataset.unbatch()
  recon = examples.filter(lambda x, y: tf.equal(x[HOLDOUT_KEY], 0))
  held_out = examples.filter(lambda x, y: tf.equal(x[HOLDOUT_KEY], 1))
  if shuffle:
    recon = preprocessing.shuffled_batches(recon, reconstruction_batch_size, seed=seed)
  else:
    recon = recon.batch(reconstruction_batch_size)
  return recon, held_out.batch(held_out_batch_size)


def build_evaluation_process(
    task: federated_task.FederatedTask, config: AlgorithmConfig, reconstruction_batch_size: int = 256,
    shuffle: bool = True,
) -> tff.learning.templates.LearningProcess:
  """Returns a process whose `next(state, datasets)` evaluates global weights.

  fedavg: `build_fed_eval` on clients' held-out data. fed_recon:
  `build_fed_recon_eval`, datasets as described in `split_by_holdout`; the
  local variables are reconstructed as in a training round
  (`config.reconstruction_epochs` passes in shuffled batches of
  `reconstruction_batch_size`: pass the training batch size).
  Set the weights with `process.set_model_weights(state, weights)`.
  """
  if config.algorithm == "fed_recon":
    def split(dataset):
      recon, held_out = split_by_holdout(dataset, reconstruction_batch_size,
                                         shuffle=shuffle)
      return recon.repeat(config.reconstruction_epochs), held_out

    return tff.learning.algorithms.build_fed_recon_eval(
        task.reconstruction_model_fn,
        loss_fn=task.loss_fn,
        metrics_fn=task.metrics_fn,
        reconstruction_optimizer_fn=config.local_optimizer.build(),
        dataset_split_fn=split)
  return tff.learning.algorithms.build_fed_eval(task.model_fn)
