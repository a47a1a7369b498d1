"""The two-tower models: building them, their client data, their evaluation,
and their centralized training (a Keras fit, one epoch per round).

Federated training goes through the one training loop
(`tff_movierec.training.loop`) with what `federated_setup` builds.

Metrics passed to `on_round` by `train_centralized`: `train_loss`, `seconds`,
and every `eval_every` epochs (and after the last) the retrieval metrics of
`evaluation.evaluate` on `eval_split`, prefixed `"{eval_split}_"` (e.g.
`valid_ndcg@10`); ranking models report `{eval_split}_rmse` and `_mae`
instead.
"""

import collections
import dataclasses
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_movierec import movie_stats
from tff_movierec.data.client_data import make_client_data
from tff_movierec.data.features import genre_multi_hot
from tff_movierec.data.movielens import MovieLens
from tff_movierec.data.partitions import PartitionSpec, partition_users
from tff_movierec.data.preprocessing import ClientSpec, build_preprocess_fn
from tff_movierec.errors import require
from tff_movierec.metrics import protocols
from tff_movierec.retrieval import (evaluation, examples, federated, models, ranking, tasks,
                                    towers)
from tff_movierec.retrieval.config import RetrievalTaskConfig, TowerConfig

MODEL_KINDS = ("retrieval", "ranking")
OnRound = Callable[[int, Dict[str, float]], None]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Settings of centralized (Keras fit) training.

  Attributes:
    rounds: epochs.
    batch_size: examples per batch (also the number of in-batch candidates).
    learning_rate: Adam step.
    eval_every: evaluate every this many epochs (and after the last); 0 = only
      after the last.
    eval_split: "valid" (tuning) or "test" (reporting).
    seed: seeds weights, history sampling and shuffling.
  """

  rounds: int = 10
  batch_size: int = 1024
  learning_rate: float = 0.005
  eval_every: int = 1
  eval_split: str = "valid"
  seed: int = 0

  def __post_init__(self):
    require(self.rounds >= 1, "rounds", self.rounds, "must be >= 1.")
    require(self.batch_size >= 2, "batch_size", self.batch_size,
            "in-batch softmax needs >= 2.")
    require(self.learning_rate > 0, "learning_rate", self.learning_rate, "must be > 0.")
    require(self.eval_every >= 0, "eval_every", self.eval_every, "must be >= 0.")
    require(self.eval_split in ("valid", "test"), "eval_split", self.eval_split,
            "'valid' or 'test'.")


def pooled_movie_stats(ratings, num_movies: int) -> movie_stats.MovieStats:
  """Per-movie rating sums and counts of a ratings frame (centralized training)."""
  movies = ratings["movie"].to_numpy()
  return movie_stats.MovieStats(
      np.bincount(movies, ratings["rating"].to_numpy(), num_movies).astype(np.float32),
      np.bincount(movies, minlength=num_movies).astype(np.float32))


def build_model(kind: str, data: MovieLens, stats: movie_stats.MovieStats,
                tower_config: TowerConfig, task_config: RetrievalTaskConfig,
                with_metrics: bool = True) -> models.TwoTowerEmbeddings:
  """A fresh retrieval or ranking tfrs model with functional towers.

  Args:
    stats: per-movie rating sums and counts of the training data; they set
      the logQ correction of the retrieval loss (interaction share per movie),
      and the mean rating and initial movie biases of the ranking model.
    task_config: a `RetrievalTaskConfig`, or for kind "ranking" a
      `ranking.RankingTaskConfig`.
  """
  if kind == "ranking":
    return build_ranking_model(data, stats, tower_config, task_config, with_metrics)
  query_tower = towers.build_query_tower(tower_config, data.num_users, data.num_movies)
  candidate_tower = towers.build_candidate_tower(tower_config, genre_multi_hot(data))
  if kind == "retrieval":
    return models.RetrievalModel(
        query_tower, candidate_tower, tasks.retrieval_task(task_config), task_config,
        data.num_movies, (stats.counts / max(stats.counts.sum(), 1.0)).astype(np.float32))
  raise ValueError(f"model kind {kind!r}: expected one of {MODEL_KINDS}.")


# Shrinkage (pseudo-ratings at the mean) of the movies' initial biases.
_MOVIE_BIAS_SHRINKAGE = 10.0


def build_ranking_model(data: MovieLens, stats: movie_stats.MovieStats,
                        tower_config: TowerConfig, task_config: ranking.RankingTaskConfig,
                        with_metrics: bool = True) -> models.RankingModel:
  """The biased SVD++-like rating model of `ranking`; movie biases start at
  their shrunk mean minus the global mean (from the federated sums)."""
  if not isinstance(task_config, ranking.RankingTaskConfig):
    raise TypeError(f"the ranking model takes a RankingTaskConfig, not {task_config!r}.")
  mean = stats.global_mean
  query_tower = ranking.build_query_tower(tower_config, task_config, data.num_movies, mean)
  candidate_tower = ranking.build_candidate_tower(
      tower_config, genre_multi_hot(data), stats.shrunk_means(_MOVIE_BIAS_SHRINKAGE) - mean)
  head = towers.build_rating_head(tower_config.embedding_dim, mean, task_config.head_units)
  return models.RankingModel(query_tower, candidate_tower, head,
                             tasks.ranking_task(with_metrics), task_config.l2,
                             data.rating_scale)


def to_batch(tower_config: TowerConfig, kind: str = "retrieval"):
  """Batched example dict -> `OrderedDict(x=features, y=rating)`.

  The user index and the demographics are kept only when the query tower
  embeds them; the ranking model reads `ranking.query_features`.
  """
  if kind == "ranking":
    names = list(ranking.query_features(tower_config))
  else:
    names = [n for n in examples.QUERY_FEATURES
             if (n != "user" or tower_config.use_user_id)
             and (n not in examples.DEMOGRAPHICS or tower_config.use_demographics)]

  def convert(batch):
    features = collections.OrderedDict((n, batch[n]) for n in names + ["movie"])
    return collections.OrderedDict(x=features, y=batch["rating"])

  return convert


def _example_arrays(data, ratings, tower_config, seed, kind="retrieval"):
  if ratings.empty:
    raise ValueError("The protocol's training split is empty (too little data for "
                     "its filtering, e.g. the 10-core of recbole_ml1m).")
  arrays = examples.training_examples(ratings, data.users, tower_config.history_length, seed)
  if kind == "ranking":
    arrays = ranking.add_history_ratings(arrays, ratings, data.num_movies)
  return arrays


def evaluate_model(kind: str, model: models.TwoTowerEmbeddings, data: MovieLens,
                   protocol: protocols.RankingProtocol, split: str) -> Dict[str, float]:
  """Metrics of `model` on `split`, keys prefixed `"{split}_"`.

  Retrieval: `evaluation.evaluate` (recall/ndcg/hr/precision/mrr@10,
  num_users); ranking: `rmse`, `mae` and `num_examples` of the predicted
  held-out ratings (`ranking_errors`).
  """
  if kind == "retrieval":
    result = evaluation.evaluate(model, protocol, data.users, split)
  else:
    result = ranking_errors(model, data, protocol, split)
  return {f"{split}_{name}": float(value) for name, value in result.items()}


def ranking_predictions(model: models.RankingModel, data: MovieLens, history,
                        held_out) -> np.ndarray:
  """float32 [N] predicted ratings of the (user, movie) rows of `held_out`,
  each user's query built from all their ratings in `history`."""
  users, row_user = np.unique(held_out["user"].to_numpy(), return_inverse=True)
  features = [n for n in model.query_tower.input]
  query_outputs = np.concatenate([
      model.query_embeddings(ranking.user_queries(
          history, data.users, users[i:i + 256], data.num_movies, features)).numpy()
      for i in range(0, len(users), 256)]) if len(users) else np.zeros((0, 1), np.float32)
  candidates = model.candidate_embeddings(
      {"movie": np.arange(data.num_movies, dtype=np.int32)}).numpy()
  movies = held_out["movie"].to_numpy()
  return np.concatenate([
      model.rate(query_outputs[row_user[i:i + 8192]], candidates[movies[i:i + 8192]]).numpy()
      for i in range(0, len(held_out), 8192)] or [np.zeros(0, np.float32)])


def ranking_errors(model: models.RankingModel, data: MovieLens,
                   protocol: protocols.RankingProtocol, split: str) -> Dict[str, float]:
  """{"rmse", "mae", "num_examples"} of predicted ratings on `split`'s held-out ratings."""
  held_out = protocol.test_ratings if split == "test" else protocol.valid_ratings
  history = evaluation.known_interactions(protocol, split)
  errors = (ranking_predictions(model, data, history, held_out)
            - held_out["rating"].to_numpy(np.float32))
  return {"rmse": float(np.sqrt(np.mean(errors ** 2))), "mae": float(np.mean(np.abs(errors))),
          "num_examples": float(len(errors))}


def _should_evaluate(round_num, config):
  last = round_num == config.rounds
  return last or (config.eval_every > 0 and round_num % config.eval_every == 0)


def train_centralized(kind: str, data: MovieLens, protocol: protocols.RankingProtocol,
                      tower_config: TowerConfig, task_config: RetrievalTaskConfig,
                      config: TrainConfig, on_round: Optional[OnRound] = None
                      ) -> models.TwoTowerEmbeddings:
  """Keras `fit` of a tfrs model, one epoch per round; histories resampled per epoch."""
  tf.keras.utils.set_random_seed(config.seed)
  stats = pooled_movie_stats(protocol.train_ratings, data.num_movies)
  model = build_model(kind, data, stats, tower_config, task_config)
  model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
  convert = to_batch(tower_config, kind)
  for round_num in range(1, config.rounds + 1):
    start = time.time()
    arrays = _example_arrays(data, protocol.train_ratings, tower_config,
                             config.seed * 1000 + round_num, kind)
    dataset = (tf.data.Dataset.from_tensor_slices(arrays)
               .shuffle(len(arrays["movie"]), seed=config.seed + round_num)
               .batch(config.batch_size).map(convert))
    history = model.fit(dataset, epochs=1, verbose=0)
    metrics = {"train_loss": float(history.history["loss"][0])}
    if _should_evaluate(round_num, config):
      metrics.update(evaluate_model(kind, model, data, protocol, config.eval_split))
    metrics["seconds"] = time.time() - start
    if on_round:
      on_round(round_num, metrics)
  return model


def federated_client_data(data: MovieLens, protocol: protocols.RankingProtocol,
                          tower_config: TowerConfig, user_to_client: np.ndarray,
                          seed: int = 0, kind: str = "retrieval"
                          ) -> tff.simulation.datasets.ClientData:
  """Training examples of `protocol`, one client per partition cell
  (`user_to_client`: int [U], each user's client, `partitions.partition_users`).

  A user's history feature is built from that user's own ratings only, so it
  lives on the user's client. Histories are sampled once (seed `seed`); the
  centralized loop resamples them every epoch.
  """
  arrays = _example_arrays(data, protocol.train_ratings, tower_config, seed, kind)
  num_clients = int(user_to_client.max()) + 1
  return make_client_data(arrays, user_to_client[arrays["user"]], num_clients)


@dataclasses.dataclass(frozen=True)
class FederatedSetup:
  """What a federated run of a two-tower model needs.

  Attributes:
    client_data: raw training examples per client (see `federated_client_data`).
    client_ids: the clients that hold at least one example.
    preprocess: raw client dataset -> batches `OrderedDict(x=..., y=...)`.
    model_fn: () -> a new `TfrsVariableModel` (for TFF's learning processes).
    movie_stats: per-movie rating sums and counts from a federated sum (only
      the totals reach the server, never a user's interactions).
    user_to_client: int [U], each user's client (the partition of the
      protocol's training users).
  """

  client_data: tff.simulation.datasets.ClientData
  client_ids: List[str]
  preprocess: Callable[[tf.data.Dataset], tf.data.Dataset]
  model_fn: Callable[[], federated.TfrsVariableModel]
  movie_stats: movie_stats.MovieStats
  user_to_client: np.ndarray


def federated_setup(kind: str, data: MovieLens, protocol: protocols.RankingProtocol,
                    tower_config: TowerConfig, task_config: RetrievalTaskConfig,
                    partition: PartitionSpec, client_spec: ClientSpec,
                    seed: int = 0) -> FederatedSetup:
  """Client data, preprocessing and model_fn of a federated two-tower run."""
  user_to_client = partition_users(partition, protocol.train_ratings, data.users,
                                   genre_multi_hot(data))
  client_data = federated_client_data(data, protocol, tower_config, user_to_client, seed, kind)
  preprocess = build_preprocess_fn(client_spec, to_batch(tower_config, kind))
  client_ids = [c for c in client_data.client_ids
                if len(client_data.create_tf_dataset_for_client(c)) > 0]
  # Computed eagerly: model_fn runs inside TFF tracing, where the in-memory
  # client tensors cannot be captured.
  input_spec = preprocess(client_data.create_tf_dataset_for_client(client_ids[0])).element_spec
  stats = movie_stats.federated_movie_stats(client_data, data.num_movies)

  def model_fn():
    return federated.TfrsVariableModel(
        build_model(kind, data, stats, tower_config, task_config, with_metrics=False),
        input_spec)

  return FederatedSetup(client_data, client_ids, preprocess, model_fn, stats, user_to_client)
