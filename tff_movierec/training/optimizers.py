"""TFF optimizers from small validated specs (Keras optimizers are not accepted
by TFF 0.87's learning algorithms)."""

import dataclasses

import tensorflow_federated as tff

OPTIMIZERS = ("sgd", "adam", "adagrad", "yogi")


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
  """A `tff.learning.optimizers` optimizer.

  Attributes:
    name: one of OPTIMIZERS.
    learning_rate: > 0.
    momentum: SGD momentum in [0, 1) (sgd only).
    beta_1, beta_2, epsilon: Adam/Yogi moments (adam, yogi only).
    flag_prefix: prefix of the flags this spec came from, for error messages
      (e.g. "server" for --server_optimizer / --server_learning_rate).
  """

  name: str = "sgd"
  learning_rate: float = 0.1
  momentum: float = 0.0
  beta_1: float = 0.9
  beta_2: float = 0.999
  epsilon: float = 1e-7
  flag_prefix: str = ""

  def __post_init__(self):
    prefix = f"{self.flag_prefix}_" if self.flag_prefix else ""
    if self.name not in OPTIMIZERS:
      raise ValueError(f"--{prefix}optimizer={self.name!r}: expected one of {OPTIMIZERS}.")
    if self.learning_rate <= 0:
      raise ValueError(f"--{prefix}learning_rate={self.learning_rate}: must be > 0.")
    if not 0.0 <= self.momentum < 1.0:
      raise ValueError(f"--{prefix}momentum={self.momentum}: must be in [0, 1).")
    if self.momentum and self.name != "sgd":
      raise ValueError(
          f"--{prefix}momentum={self.momentum} applies only to "
          f"--{prefix}optimizer=sgd, not {self.name!r}.")
    for name in ("beta_1", "beta_2"):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise ValueError(f"--{prefix}{name}={getattr(self, name)}: must be in [0, 1).")

  def build(self) -> tff.learning.optimizers.Optimizer:
    if self.name == "sgd":
      return tff.learning.optimizers.build_sgdm(self.learning_rate, self.momentum or None)
    if self.name == "adam":
      return tff.learning.optimizers.build_adam(
          self.learning_rate, self.beta_1, self.beta_2, self.epsilon)
    if self.name == "yogi":
      return tff.learning.optimizers.build_yogi(
          self.learning_rate, self.beta_1, self.beta_2, self.epsilon)
    return tff.learning.optimizers.build_adagrad(self.learning_rate, epsilon=self.epsilon)
