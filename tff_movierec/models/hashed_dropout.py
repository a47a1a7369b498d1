"""Dropout whose keep-masks come from a counter hash instead of TF's sampler.

`tf.keras.layers.Dropout` draws one Philox float per unit per step. In TFF's
C++ worker, dropout 0.2 on the two hidden layers of the rating network cost
2.8 of 12.6 worker CPU seconds per round of the default study (9.9 s with
dropout off); with `HashedDropout` a round takes 11.2 s (bench/round_ablation.py,
BENCHMARKS.md issue 4). `HashedDropout` makes
the same Bernoulli keep/drop decision from 8 random bits per unit: one scalar
seed per call, then the murmur3 32-bit finalizer of (position x golden ratio +
seed) gives 32 bits = the bits of 4 units. A few vectorized integer ops
replace the sampler.

The seed is a hash of the layer's input (the sum of its float32 bit
patterns, mixed by the finalizer): masks are a deterministic function of what
the layer sees, so a seeded run is reproducible (no unseeded RNG state in
TFF's worker, whose clients run concurrently), and they are fresh whenever
the input changes (every batch, every step).

The drop probability is quantized to multiples of 1/256 (0.2 -> 51/256 =
0.1992; `effective_rate`); kept units are scaled by 1 / (1 - effective_rate),
so the expected output equals the input, as with Keras dropout. Masks are
independent across units, examples and inputs for the purpose of dropout (not
for cryptography): tests check the drop rate, the unbiasedness, and that
neighbouring units and the masks of different inputs are uncorrelated.
"""

import tensorflow as tf

_GOLDEN = 0x9E3779B9  # odd, so position -> position x _GOLDEN is a bijection mod 2^32
_LEVELS = 256  # one byte per unit


def _murmur3_finalizer(h: tf.Tensor) -> tf.Tensor:
  """uint32 -> uint32, the avalanche step of MurmurHash3 (a bijection)."""
  h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 16))
  h = h * tf.constant(0x85EBCA6B, tf.uint32)
  h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 13))
  h = h * tf.constant(0xC2B2AE35, tf.uint32)
  return tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 16))


def content_seed(inputs: tf.Tensor) -> tf.Tensor:
  """uint32 scalar: a hash of `inputs` (float): the int64 sum of their float32
  bit patterns, both 32-bit halves mixed by the finalizer."""
  bits = tf.bitcast(tf.cast(inputs, tf.float32), tf.int32)
  total = tf.reduce_sum(tf.cast(bits, tf.int64))
  low = tf.cast(tf.math.floormod(total, 2**32), tf.uint32)
  high = tf.cast(tf.math.floordiv(total, 2**32) % 2**32, tf.uint32)
  return _murmur3_finalizer(tf.bitwise.bitwise_xor(low, _murmur3_finalizer(high)))


def random_bytes(num_bytes: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """uint8 [num_bytes] of pseudo-random bytes determined by the uint32 `seed`."""
  num_words = (num_bytes + 3) // 4
  positions = tf.cast(tf.range(num_words), tf.uint32)
  words = _murmur3_finalizer(positions * tf.constant(_GOLDEN, tf.uint32) + seed)
  return tf.reshape(tf.bitcast(words, tf.uint8), [-1])[:num_bytes]


class HashedDropout(tf.keras.layers.Layer):
  """Inverted dropout with hashed masks: in training each unit is zeroed with
  probability `effective_rate` and the others scaled by 1 / (1 -
  effective_rate); at inference the identity. Any input shape; no weights."""

  def __init__(self, rate: float, **kwargs):
    super().__init__(**kwargs)
    if not 0.0 <= rate < 1.0:
      raise ValueError(f"HashedDropout rate={rate}: must be in [0, 1).")
    self.rate = float(rate)
    self._threshold = int(round(self.rate * _LEVELS))
    if self._threshold >= _LEVELS:
      raise ValueError(f"HashedDropout rate={rate}: rounds to 1 at 1/256 steps.")

  @property
  def effective_rate(self) -> float:
    return self._threshold / _LEVELS

  def _drop(self, inputs):
    levels = random_bytes(tf.size(inputs), content_seed(inputs))
    keep = tf.reshape(levels >= tf.constant(self._threshold, tf.uint8), tf.shape(inputs))
    scale = _LEVELS / (_LEVELS - self._threshold)
    return inputs * (tf.cast(keep, inputs.dtype) * scale)

  def call(self, inputs, training=None):
    if training is None:
      training = tf.keras.backend.learning_phase()
    if self._threshold == 0:
      return tf.identity(inputs)
    if isinstance(training, (bool, int)):
      return self._drop(inputs) if training else tf.identity(inputs)
    return tf.cond(tf.cast(training, tf.bool), lambda: self._drop(inputs),
                   lambda: tf.identity(inputs))

  def get_config(self):
    return dict(super().get_config(), rate=self.rate)
