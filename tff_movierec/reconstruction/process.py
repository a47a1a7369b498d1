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
from tff_movierec.errors import ConfigError, require
from tff_movierec.training.optimizers import OptimizerSpec

@dataclasses.dataclass(frozen=True)
class ReconConfig:
  """Optimization of one FedRecon round.

  Attributes:
    server_optimizer: applied to the aggregated update.
    server_weight_decay: decoupled weight decay of the server optimizer
      (AdamW, Loshchilov & Hutter 2019); > 0 requires an 'adam' server.
    client_optimizer: trains the global weights on the clients.
    reconstruction_optimizer: reconstructs the local (user) weights, in
      training and in evaluation.
    reconstruction_l2: L2 penalty on the reconstructed user embedding and
      bias, relative to the mean squared error of the client's ratings.
    reconstruction_steps: full-batch reconstruction steps per client.
    post_reconstruction_steps: full-batch steps on global weights per client.
    uniform_weighting: weight clients equally in the aggregate (required by
      the DP aggregators) instead of by their number of ratings.
  """

  server_optimizer: OptimizerSpec = OptimizerSpec("adam", 0.01, role="server")
  server_weight_decay: float = 0.0
  client_optimizer: OptimizerSpec = OptimizerSpec("sgd", 1.0, role="client")
  reconstruction_optimizer: OptimizerSpec = OptimizerSpec("sgd", 1.0, role="local")
  reconstruction_l2: float = 0.0
  reconstruction_steps: int = 10
  post_reconstruction_steps: int = 1
  uniform_weighting: bool = False

  def __post_init__(self):
    require(self.server_weight_decay >= 0, "server_weight_decay", self.server_weight_decay,
            "must be >= 0.")
    if self.server_weight_decay > 0 and self.server_optimizer.name != "adam":
      raise ConfigError(
          f"server_weight_decay={self.server_weight_decay} needs server_optimizer='adam' "
          f"(AdamW), not {self.server_optimizer.name!r}.",
          ("server_weight_decay", "server_optimizer"))
    require(self.reconstruction_l2 >= 0, "reconstruction_l2", self.reconstruction_l2,
            "must be >= 0.")
    require(self.reconstruction_steps >= 1, "reconstruction_steps",
            self.reconstruction_steps, "must be >= 1.")
    require(self.post_reconstruction_steps >= 1, "post_reconstruction_steps",
            self.post_reconstruction_steps, "must be >= 1.")

  def server(self) -> tff.learning.optimizers.Optimizer:
    if self.server_weight_decay > 0:
      return tff.learning.optimizers.build_adamw(
          self.server_optimizer.learning_rate, beta_1=self.server_optimizer.beta_1,
          beta_2=self.server_optimizer.beta_2, weight_decay=self.server_weight_decay)
    return self.server_optimizer.build()

  def client(self) -> tff.learning.optimizers.Optimizer:
    return self.client_optimizer.build()

  def reconstruction(self) -> tff.learning.optimizers.Optimizer:
    optimizer = self.reconstruction_optimizer.build()
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
