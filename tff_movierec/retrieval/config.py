"""Configuration of the two-tower models (validated on construction)."""

import dataclasses
from typing import Tuple

from tff_movierec.errors import ConfigError, require


@dataclasses.dataclass(frozen=True)
class TowerConfig:
  """Which features the towers read and how large they are.

  Attributes:
    embedding_dim: D, the size of query and candidate embeddings.
    use_user_id: query tower embeds the user index. Ships one row per user in
      the global model, so federated training should leave it off.
    use_demographics: query tower embeds gender, age bucket and occupation.
    use_history: query tower averages embeddings of the user's rated movies.
    use_genres: candidate tower adds a projection of the movie's genres.
    history_length: L, history movies per training example (a random sample
      of the user's other training movies; evaluation uses all of them).
    demographic_dim: embedding size of each demographic feature.
    hidden_units: sizes of ReLU layers between the joined query features and
      the final linear projection to D (empty = linear).
  """

  embedding_dim: int = 64
  use_user_id: bool = False
  use_demographics: bool = True
  use_history: bool = True
  use_genres: bool = True
  history_length: int = 50
  demographic_dim: int = 8
  hidden_units: Tuple[int, ...] = ()

  def __post_init__(self):
    require(self.embedding_dim >= 1, "embedding_dim", self.embedding_dim, "must be >= 1.")
    if not (self.use_user_id or self.use_demographics or self.use_history):
      raise ConfigError(
          f"use_user_id={self.use_user_id!r}, use_demographics={self.use_demographics!r}, "
          f"use_history={self.use_history!r}: the query tower needs at least one of "
          "them set.", ("use_user_id", "use_demographics", "use_history"))
    require(self.history_length >= 1, "history_length", self.history_length,
            "must be >= 1.")
    require(self.demographic_dim >= 1, "demographic_dim", self.demographic_dim,
            "must be >= 1.")
    require(all(units >= 1 for units in self.hidden_units), "hidden_units",
            self.hidden_units, "sizes must be >= 1.")


@dataclasses.dataclass(frozen=True)
class RetrievalTaskConfig:
  """Options of the in-batch softmax retrieval loss.

  Attributes:
    temperature: softmax temperature applied to the query-candidate scores.
    normalize: L2-normalize both embeddings (scores become cosines).
    logq_correction: subtract log(candidate sampling probability) from the
      in-batch logits (popularity of the movie in the training data), so the
      in-batch softmax approximates a full softmax.
    remove_accidental_hits: do not count in-batch copies of the positive
      movie as negatives.
    corpus_negatives: append every movie of the corpus to the batch's
      candidates as extra negatives (mixed negative sampling, Yang et al.,
      WWW 2020): the softmax then covers the full catalogue; the logQ
      correction uses the mixture's rate (B p_j + 1) / (B + M).
  """

  temperature: float = 1.0
  normalize: bool = False
  logq_correction: bool = False
  remove_accidental_hits: bool = True
  corpus_negatives: bool = False

  def __post_init__(self):
    require(self.temperature > 0, "temperature", self.temperature, "must be > 0.")
