"""TFF optimizers from small validated specs (Keras optimizers are not accepted
by TFF 0.87's learning algorithms)."""

import dataclasses
import math

import tensorflow as tf
import tensorflow_federated as tff

from tff_movierec.errors import ConfigError, require

OPTIMIZERS = ("sgd", "adam", "adagrad", "yogi")
# A decayed learning rate ends at this fraction of the initial one.
DECAY_FLOOR = 0.1


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
  """A `tff.learning.optimizers` optimizer.

  Attributes:
    name: one of OPTIMIZERS.
    learning_rate: > 0.
    momentum: SGD momentum in [0, 1) (sgd only).
    beta_1, beta_2, epsilon: Adam/Yogi moments (adam, yogi only).
    decay_steps: 0 for a constant learning rate; else the learning rate of
      step i (the i-th `next`, e.g. the server's i-th round) is cosine-decayed
      from `learning_rate` to DECAY_FLOOR x `learning_rate` over `decay_steps`
      steps and stays there (`tff.learning.optimizers.schedule_learning_rate`).
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
  decay_steps: int = 0
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
    require(self.decay_steps >= 0, self.field("lr_decay_rounds"), self.decay_steps,
            "must be >= 0.")
    for name in ("beta_1", "beta_2"):
      require(0.0 <= getattr(self, name) < 1.0, self.field(name), getattr(self, name),
              "must be in [0, 1).")

  def learning_rate_at(self, step):
    """The learning rate of step `step` (a Python or TF number), see decay_steps."""
    if not self.decay_steps:
      return self.learning_rate
    progress = tf.minimum(tf.cast(step, tf.float32) / self.decay_steps, 1.0)
    cosine = 0.5 * (1.0 + tf.cos(math.pi * progress))
    return self.learning_rate * (DECAY_FLOOR + (1.0 - DECAY_FLOOR) * cosine)

  def build(self) -> tff.learning.optimizers.Optimizer:
    optimizer = self._build_constant()
    if self.decay_steps:
      optimizer = tff.learning.optimizers.schedule_learning_rate(optimizer,
                                                                 self.learning_rate_at)
    return optimizer

  def _build_constant(self) -> tff.learning.optimizers.Optimizer:
    if self.name == "sgd":
      return tff.learning.optimizers.build_sgdm(self.learning_rate, self.momentum or None)
    if self.name == "adam":
      return tff.learning.optimizers.build_adam(
          self.learning_rate, self.beta_1, self.beta_2, self.epsilon)
    if self.name == "yogi":
      return tff.learning.optimizers.build_yogi(
          self.learning_rate, self.beta_1, self.beta_2, self.epsilon)
    return tff.learning.optimizers.build_adagrad(self.learning_rate, epsilon=self.epsilon)
