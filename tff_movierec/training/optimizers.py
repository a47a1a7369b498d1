"""TFF optimizers from small validated specs (Keras optimizers are not accepted
by TFF 0.87's learning algorithms)."""

import dataclasses

import tensorflow_federated as tff

from tff_movierec.errors import ConfigError, require

OPTIMIZERS = ("sgd", "adam", "adagrad", "yogi")


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
  """A `tff.learning.optimizers` optimizer.

  Attributes:
    name: one of OPTIMIZERS.
    learning_rate: > 0.
    momentum: SGD momentum in [0, 1) (sgd only).
    beta_1, beta_2, epsilon: Adam/Yogi moments (adam, yogi only).
    role: what the optimizer is for ("client", "server", "local"; "" for
      none); errors name the fields "{role}_optimizer", "{role}_learning_rate",
      "{role}_momentum", "{role}_beta_1", "{role}_beta_2" (without a role:
      "optimizer", "learning_rate", ...).
  """

  name: str = "sgd"
  learning_rate: float = 0.1
  momentum: float = 0.0
  beta_1: float = 0.9
  beta_2: float = 0.999
  epsilon: float = 1e-7
  role: str = ""

  def field(self, attribute: str) -> str:
    """The config field name of `attribute` ("name" is "optimizer") for errors."""
    attribute = "optimizer" if attribute == "name" else attribute
    return f"{self.role}_{attribute}" if self.role else attribute

  def __post_init__(self):
    optimizer, momentum = self.field("name"), self.field("momentum")
    require(self.name in OPTIMIZERS, optimizer, self.name, f"expected one of {OPTIMIZERS}.")
    require(self.learning_rate > 0, self.field("learning_rate"), self.learning_rate,
            "must be > 0.")
    require(0.0 <= self.momentum < 1.0, momentum, self.momentum, "must be in [0, 1).")
    if self.momentum and self.name != "sgd":
      raise ConfigError(
          f"{momentum}={self.momentum!r} applies only to {optimizer}='sgd', not "
          f"{optimizer}={self.name!r}.", (momentum, optimizer))
    for name in ("beta_1", "beta_2"):
      require(0.0 <= getattr(self, name) < 1.0, self.field(name), getattr(self, name),
              "must be in [0, 1).")

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
