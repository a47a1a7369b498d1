"""One call that loads data, trains a two-tower model centrally (Keras fit),
evaluates and exports it: the centralized reference of `bench/retrieval.py`.

Federated training of the same model is the `movielens_retrieval` task of
`run_experiment.py` (the one training loop).
"""

import dataclasses
import tempfile
import time
from typing import Dict, Optional, Sequence

from tff_movierec.data.movielens import load_movielens
from tff_movierec.data import splits
from tff_movierec.data.synthetic import write_synthetic_movielens
from tff_movierec.errors import ConfigError
from tff_movierec.metrics import protocols
from tff_movierec.retrieval import export, ranking, training
from tff_movierec.retrieval.config import RetrievalTaskConfig, TowerConfig

# Ratings >= this are the interactions (and history) of each protocol.
MIN_HISTORY_RATING = {"recbole_ml1m": 3.0, "holdout": 1.0}


def with_validation(protocol: protocols.RankingProtocol,
                    seed: int = 0) -> protocols.RankingProtocol:
  """`protocol`, with a per-user 10% validation split carved from train if it has none.

  The `holdout` protocol has no validation split; tuning on its test split
  would leak. The carved ratings leave training but stay masked at test time
  (test masks train + valid), so the test ranking is unchanged.
  """
  if not protocol.valid_ratings.empty:
    return protocol
  train, valid = splits.per_user_holdout(protocol.train_ratings, 0.1, seed=seed)
  shape = (protocol.num_users, protocol.num_movies)
  return dataclasses.replace(
      protocol, train_ratings=train, valid_ratings=valid,
      train=protocols.interaction_matrix(train, *shape),
      valid=protocols.interaction_matrix(valid, *shape))


def run_experiment(
    data_dir: Optional[str],
    kind: str = "retrieval",
    protocol: str = "recbole_ml1m",
    embedding_dim: int = 64,
    hidden_units: Sequence[int] = (),
    use_user_id: bool = False,
    history_length: int = 50,
    temperature: float = 0.1,
    normalize: bool = True,
    logq_correction: bool = True,
    corpus_negatives: bool = False,
    rounds: int = 10,
    batch_size: int = 1024,
    learning_rate: float = 0.005,
    eval_every: int = 1,
    seed: int = 0,
    export_dir: Optional[str] = None,
    ratings_path: Optional[str] = None,
    use_synthetic_data: bool = False,
    on_round: Optional[training.OnRound] = None,
    ranking_config: Optional[ranking.RankingTaskConfig] = None,
) -> Dict[str, float]:
  """Trains on the protocol's train split, tunes on valid, reports test.

  Args:
    data_dir: MovieLens-1M folder (None: the cache); ignored with
      `use_synthetic_data`.
    rounds: Keras epochs.
    kind: "retrieval" (in-batch softmax) or "ranking" (rating MSE).
    protocol: "recbole_ml1m" or "holdout" (`tff_movierec.metrics.protocols`;
      `holdout` gets a validation split carved from train, `with_validation`).
    learning_rate: Adam step.
    export_dir: if set, the model is exported there (see `export`; a ranking
      model with `export.export_ranking_model`).
    on_round: called with (round_num, metrics) after every epoch; the
      metrics hold `train_loss`, `seconds` and, every `eval_every` rounds,
      `valid_*` metrics (see `training`).
    ranking_config: the ranking model's options (kind "ranking" only;
      default `ranking.RankingTaskConfig()`).

  Returns:
    The final model's `test_*` metrics (retrieval: recall/ndcg/hr/precision/
    mrr@10, num_users; ranking: rmse, mae, num_examples), plus `wall_seconds`
    of training.
  """
  if protocol not in MIN_HISTORY_RATING:
    raise ConfigError(f"protocol={protocol!r}: expected one of {tuple(MIN_HISTORY_RATING)}.",
                      ("protocol",))
  if ranking_config is not None and kind != "ranking":
    raise ConfigError(f"ranking_config applies to kind='ranking', not kind={kind!r}.",
                      ("ranking_config", "kind"))
  if use_synthetic_data:
    data_dir = write_synthetic_movielens(
        tempfile.mkdtemp(prefix="tff_movierec_synthetic_"), num_users=60, num_movies=50,
        ratings_per_user=25, seed=seed)
  data = load_movielens(data_dir, ratings_path)
  ranking = with_validation(
      protocols.build(protocol, data.ratings, data.num_users, data.num_movies, seed=seed), seed)
  tower_config = TowerConfig(embedding_dim=embedding_dim, hidden_units=tuple(hidden_units),
                             use_user_id=use_user_id, history_length=history_length)
  task_config = RetrievalTaskConfig(temperature=temperature, normalize=normalize,
                                    logq_correction=logq_correction,
                                    corpus_negatives=corpus_negatives)
  if kind == "ranking":
    task_config = ranking_config or ranking.RankingTaskConfig()
  config = training.TrainConfig(
      rounds=rounds, batch_size=batch_size, learning_rate=learning_rate,
      eval_every=eval_every, eval_split="valid", seed=seed)
  start = time.time()
  model = training.train_centralized(kind, data, ranking, tower_config, task_config,
                                     config, on_round)
  result = {"wall_seconds": time.time() - start}
  result.update(training.evaluate_model(kind, model, data, ranking, "test"))
  if export_dir:
    write = export.export_model if kind == "retrieval" else export.export_ranking_model
    write(model, data, export_dir, MIN_HISTORY_RATING[protocol])
  return result
