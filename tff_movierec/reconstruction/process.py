"""FedRecon training and evaluation processes for the factorization model.

Per round, each sampled client (one user):
  1. reconstructs its local user embedding and bias from zero with
     `reconstruction_steps` full-batch steps of the reconstruction optimizer
     on the reconstruction part of its ratings (loss + `reconstruction_l2` *
     their squared norms), movie-side weights frozen;
  2. takes `post_reconstruction_steps` full-batch steps of the client
     optimizer on the movie-side (global) weights, on the other part, with
     the user side frozen;
  3. sends only the change of the global weights to the aggregator.
The server applies the aggregate with the server optimizer (Adam with
`server_weight_decay` > 0: AdamW, which shrinks the movie side every round).
Evaluation reconstructs from a user's training ratings and scores its held-out
ones.
"""

import dataclasses
from typing import Callable, Optional

import numpy as np
import tensorflow_federated as tff

from tff_movierec import privacy
from tff_movierec.reconstruction import client_datasets, model, regularization
from tff_movierec.training.optimizers import OptimizerSpec

# Name -> the shared optimizer spec (TFF's own defaults for every other argument:
# Yogi keeps TFF's epsilon 1e-3).
_OPTIMIZERS = {
    "sgd": lambda lr: OptimizerSpec("sgd", lr),
    "sgdm": lambda lr: OptimizerSpec("sgd", lr, momentum=0.9),
    "adam": lambda lr: OptimizerSpec("adam", lr),
    "adagrad": lambda lr: OptimizerSpec("adagrad", lr),
    "yogi": lambda lr: OptimizerSpec("yogi", lr, epsilon=1e-3),
}
OPTIMIZER_NAMES = tuple(_OPTIMIZERS)


def build_optimizer(name: str, learning_rate: float, flag: str = "--optimizer"):
  """A `tff.learning.optimizers.Optimizer` by name; `flag` names it in errors."""
  if name not in _OPTIMIZERS:
    raise ValueError(f"{flag}={name!r}: must be one of {', '.join(OPTIMIZER_NAMES)}.")
  if learning_rate <= 0:
    raise ValueError(f"{flag} learning rate {learning_rate}: must be > 0.")
  return _OPTIMIZERS[name](learning_rate).build()


@dataclasses.dataclass(frozen=True)
class ReconConfig:
  """Optimization of one FedRecon round.

  Attributes:
    server_optimizer, server_learning_rate: applied to the aggregated update.
    server_weight_decay: decoupled weight decay of the server optimizer
      (AdamW, Loshchilov & Hutter 2019); > 0 requires server_optimizer 'adam'.
    client_optimizer, client_learning_rate: trains global weights on clients.
    reconstruction_optimizer, reconstruction_learning_rate: reconstructs the
      local (user) weights, in training and in evaluation.
    reconstruction_l2: L2 penalty on the reconstructed user embedding and
      bias, relative to the mean squared error of the client's ratings.
    reconstruction_steps: full-batch reconstruction steps per client.
    post_reconstruction_steps: full-batch steps on global weights per client.
    uniform_weighting: weight clients equally in the aggregate (required by
      the DP aggregators) instead of by their number of ratings.
  """

  server_optimizer: str = "adam"
  server_learning_rate: float = 0.01
  server_weight_decay: float = 0.0
  client_optimizer: str = "sgd"
  client_learning_rate: float = 1.0
  reconstruction_optimizer: str = "sgd"
  reconstruction_learning_rate: float = 1.0
  reconstruction_l2: float = 0.0
  reconstruction_steps: int = 10
  post_reconstruction_steps: int = 1
  uniform_weighting: bool = False

  def __post_init__(self):
    if self.server_weight_decay < 0:
      raise ValueError(f"--server_weight_decay={self.server_weight_decay}: must be >= 0.")
    if self.server_weight_decay > 0 and self.server_optimizer != "adam":
      raise ValueError(
          f"--server_weight_decay={self.server_weight_decay} needs "
          f"--server_optimizer=adam (AdamW), not {self.server_optimizer!r}.")
    self.server()
    self.client()
    self.reconstruction()
    if self.reconstruction_l2 < 0:
      raise ValueError(f"--reconstruction_l2={self.reconstruction_l2}: must be >= 0.")
    if self.reconstruction_steps < 1:
      raise ValueError(f"--reconstruction_steps={self.reconstruction_steps}: must be >= 1.")
    if self.post_reconstruction_steps < 1:
      raise ValueError(
          f"--post_reconstruction_steps={self.post_reconstruction_steps}: must be >= 1.")

  def server(self):
    optimizer = build_optimizer(self.server_optimizer, self.server_learning_rate,
                                "--server_optimizer")
    if self.server_weight_decay > 0:
      return tff.learning.optimizers.build_adamw(
          self.server_learning_rate, weight_decay=self.server_weight_decay)
    return optimizer

  def client(self):
    return build_optimizer(self.client_optimizer, self.client_learning_rate,
                           "--client_optimizer")

  def reconstruction(self):
    optimizer = build_optimizer(self.reconstruction_optimizer,
                                self.reconstruction_learning_rate,
                                "--reconstruction_optimizer")
    if self.reconstruction_l2 > 0:
      return regularization.L2Regularized(optimizer, self.reconstruction_l2)
    return optimizer


ModelFn = Callable[[], tff.learning.models.ReconstructionModel]


def model_fn_for(config: model.MFConfig, genres: Optional[np.ndarray] = None) -> ModelFn:
  return lambda: model.build_reconstruction_model(config, genres)


def build_training_process(
    model_fn: ModelFn, config: ReconConfig,
    model_aggregator: Optional[tff.aggregators.AggregationFactory] = None,
) -> tff.learning.templates.LearningProcess:
  """`tff.learning.algorithms.build_fed_recon` over two-batch client datasets.

  Type signature of `next`: (<state@SERVER, {(<movie=int32[?],
  rating=float32[?]>)*}@CLIENTS> -> <state@SERVER, metrics@SERVER>), metrics
  `client_work.train` with `loss`, `rmse`, `mae` on post-reconstruction data.

  Args:
    model_fn: builds a fresh `ReconstructionModel`.
    config: optimizers and local steps.
    model_aggregator: aggregation factory for the global-weight updates (e.g.
      from `tff_movierec.privacy.build_aggregator`); None = weighted mean.
      An unweighted factory requires `config.uniform_weighting`.
  """
  privacy.check_weighting(model_aggregator, config.uniform_weighting)
  weighting = (tff.learning.ClientWeighting.UNIFORM if config.uniform_weighting
               else tff.learning.ClientWeighting.NUM_EXAMPLES)
  return tff.learning.algorithms.build_fed_recon(
      model_fn,
      loss_fn=model.loss_fn,
      metrics_fn=model.metrics_fn,
      server_optimizer_fn=config.server(),
      client_optimizer_fn=config.client(),
      reconstruction_optimizer_fn=config.reconstruction(),
      dataset_split_fn=client_datasets.split_fn(
          config.reconstruction_steps, config.post_reconstruction_steps),
      client_weighting=weighting,
      model_aggregator_factory=model_aggregator)


def build_evaluation_process(
    model_fn: ModelFn, config: ReconConfig) -> tff.learning.templates.LearningProcess:
  """`tff.learning.algorithms.build_fed_recon_eval` over evaluation datasets.

  Reconstructs the user from batch 0 (its training ratings) with the same
  reconstruction optimizer and steps as training, then scores batch 1.
  Metrics: `client_work.eval.current_round_metrics.{loss,rmse,mae}`.
  """
  return tff.learning.algorithms.build_fed_recon_eval(
      model_fn,
      loss_fn=model.loss_fn,
      metrics_fn=model.metrics_fn,
      reconstruction_optimizer_fn=config.reconstruction(),
      dataset_split_fn=client_datasets.split_fn(config.reconstruction_steps, 1))
