"""Next-movie prediction on MovieLens: the seed's sequence network, federated.

Given the previous `history_length` movies a user rated (and optionally the
user's id), predict the next movie with logits over all M movies; sparse
categorical cross-entropy. Users are partitioned into clients; each client
holds the next-movie examples of its users (`tff_movierec.sequences`).

Evaluation is leave-one-out by time: each user's last movie is the target,
ranked among all movies (full ranking, HR@10 and NDCG@10). The metrics the TFF
model reports (`hr_at_10`, `ndcg_at_10`) rank against every movie;
`evaluate_next_movie` and `evaluate_popularity` by default exclude the movies
the user already rated (they can never be the target).

What the server receives under FedAvg: the whole model each round, i.e. the
movie embeddings, the dense layers and, with `user_embedding="global"`, the
user-embedding table [U, d] in which every user's row is trained only by the
client holding that user, so every user's learned vector is sent to the
server. With `user_embedding="none"` (the default) no per-user parameter
exists: a user is represented only by their recent movies.
"""

import collections
import dataclasses
import math
import os
from typing import Any, Dict, Mapping, Optional, Union

import numpy as np
import pandas as pd
from scipy import sparse
import tensorflow as tf

from tasks import common
from tasks.definition import TaskDefinition
from tff_movierec import privacy, sequences
from tff_movierec.data import client_data
from tff_movierec.data import features
from tff_movierec.data import movielens
from tff_movierec.data import partitions
from tff_movierec.data import preprocessing
from tff_movierec.errors import ConfigError, require
from tff_movierec.metrics import ranking
from tff_movierec.privacy import aggregators
from tff_movierec.training import algorithms, federated_task, initialization
from tff_movierec.training.federated_run import FederatedRun, Report
from tff_movierec.training.optimizers import OptimizerSpec
from tff_movierec.training.round_datasets import RoundDatasets
from tff_movierec.training.sampling import ClientSampler

TASK_NAME = "movielens_next_movie"
TOP_K = 10
USER_EMBEDDING_MODES = ("none", "global")


@dataclasses.dataclass(frozen=True)
class NextMovieModelConfig:
  """The sequence network: embeddings -> Dense -> ReLU -> Dropout -> logits.

  Attributes:
    history_length: L, previous movies per example.
    movie_embedding_dim: size of each history movie's embedding.
    user_embedding: "none", or "global": also embed the user id (a [U, d]
      table in the global model, so every user's vector reaches the server
      under FedAvg). ("local", kept on clients by Federated Reconstruction as
      in the rating task, is not supported for this task.)
    user_embedding_dim: size of the user embedding, if used.
    hidden_units: width of the hidden Dense layer.
    dropout: dropout rate after the hidden layer, in [0, 1).
  """

  history_length: int = sequences.HISTORY_LENGTH
  movie_embedding_dim: int = 32
  user_embedding: str = "none"
  user_embedding_dim: int = 32
  hidden_units: int = 256
  dropout: float = 0.2

  def __post_init__(self):
    for name in ("history_length", "movie_embedding_dim", "user_embedding_dim",
                 "hidden_units"):
      require(getattr(self, name) >= 1, name, getattr(self, name), "must be >= 1.")
    require(0.0 <= self.dropout < 1.0, "dropout", self.dropout, "must be in [0, 1).")
    require(self.user_embedding in USER_EMBEDDING_MODES, "user_embedding",
            self.user_embedding,
            f"the next-movie task supports {USER_EMBEDDING_MODES}.")

  @property
  def uses_user(self) -> bool:
    return self.user_embedding != "none"


def build_next_movie_model(num_users: int, num_movies: int,
                           config: NextMovieModelConfig) -> tf.keras.Model:
  """A functional Keras model of the next movie.

  Inputs: `history` int32 [B, L] (movie indices, `num_movies` = padding) and,
  unless `config.user_embedding` is "none", `user` int32 [B]. Output: float32 logits
  [B, num_movies].
  """
  history = tf.keras.Input(shape=(config.history_length,), dtype=tf.int32, name="history")
  inputs = {"history": history}
  movie_vectors = tf.keras.layers.Embedding(
      num_movies + 1, config.movie_embedding_dim, name="movie_embedding")(history)
  parts = [tf.keras.layers.Flatten(name="history_vectors")(movie_vectors)]
  if config.uses_user:
    user = tf.keras.Input(shape=(), dtype=tf.int32, name="user")
    inputs["user"] = user
    parts.append(tf.keras.layers.Embedding(
        num_users, config.user_embedding_dim, name="user_embedding")(user))
  hidden = parts[0] if len(parts) == 1 else tf.keras.layers.Concatenate(name="concat")(parts)
  hidden = tf.keras.layers.Dense(config.hidden_units, name="hidden")(hidden)
  hidden = tf.keras.layers.ReLU(name="relu")(hidden)
  hidden = tf.keras.layers.Dropout(config.dropout, name="dropout")(hidden)
  logits = tf.keras.layers.Dense(num_movies, name="logits")(hidden)
  return tf.keras.Model(inputs, logits, name="next_movie")


def _target_ranks(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
  """int32 [B]: movies scored above the target (ties: lower index first)."""
  targets = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
  target_scores = tf.gather(y_pred, targets, batch_dims=1)[:, None]
  lower_index = tf.range(tf.shape(y_pred)[1])[None, :] < targets[:, None]
  above = (y_pred > target_scores) | ((y_pred == target_scores) & lower_index)
  return tf.reduce_sum(tf.cast(above, tf.int32), axis=1)


class HitRateAtK(tf.keras.metrics.Mean):
  """Fraction of targets ranked in the top k of all movies (full ranking).

  A float64 mean (sum, count): TFF sums these over clients exactly.
  """

  def __init__(self, k: int = TOP_K, name: Optional[str] = None, dtype=tf.float64):
    super().__init__(name=name or f"hr_at_{k}", dtype=dtype)
    self.k = k

  def update_state(self, y_true, y_pred, sample_weight=None):
    hits = tf.cast(_target_ranks(y_true, y_pred) < self.k, self.dtype)
    return super().update_state(hits, sample_weight)

  def get_config(self):
    return {**super().get_config(), "k": self.k}


class NdcgAtK(tf.keras.metrics.Mean):
  """Mean of 1 / log2(rank + 2) over targets in the top k of all movies, else 0."""

  def __init__(self, k: int = TOP_K, name: Optional[str] = None, dtype=tf.float64):
    super().__init__(name=name or f"ndcg_at_{k}", dtype=dtype)
    self.k = k

  def update_state(self, y_true, y_pred, sample_weight=None):
    ranks = tf.cast(_target_ranks(y_true, y_pred), self.dtype)
    gains = tf.where(ranks < self.k, math.log(2.0) / tf.math.log(ranks + 2.0), 0.0)
    return super().update_state(gains, sample_weight)

  def get_config(self):
    return {**super().get_config(), "k": self.k}


def next_movie_metrics() -> list:
  """HR@10 and NDCG@10 over all movies, as Keras metrics."""
  return [HitRateAtK(TOP_K), NdcgAtK(TOP_K)]


def next_movie_loss() -> tf.keras.losses.Loss:
  return tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@dataclasses.dataclass(frozen=True)
class NextMovieTask(federated_task.FederatedTask):
  """A `FederatedTask` that also keeps its split, for ranking evaluation.

  Attributes:
    split: the leave-last-out split behind `train_data` / `test_data`.
    model_config: the network `keras_model_fn` builds.
  """

  split: Optional[sequences.NextMovieSplit] = None
  model_config: NextMovieModelConfig = NextMovieModelConfig()

  def __post_init__(self):
    require(self.split is not None, "split", self.split,
            "NextMovieTask needs its leave-last-out split.")
    super().__post_init__()


def _model_inputs(batch: Dict[str, tf.Tensor], use_user: bool):
  x = collections.OrderedDict(history=batch["history"])
  if use_user:
    x["user"] = batch["user"]
  return x


def create_next_movie_task_from_data(
    data: movielens.MovieLens,
    partition_spec: partitions.PartitionSpec = partitions.PartitionSpec(),
    train_client_spec: preprocessing.ClientSpec = preprocessing.ClientSpec(),
    eval_batch_size: int = 1024,
    model_config: NextMovieModelConfig = NextMovieModelConfig(),
    tuning: bool = False,
) -> NextMovieTask:
  """The next-movie task on loaded MovieLens data.

  Args:
    data: MovieLens with timestamps (else DataError).
    partition_spec: how users are split into clients (default: the project's
      10 dirichlet non-IID clients), computed on the training ratings.
    train_client_spec: epochs, batch size, shuffling of each client per round.
    eval_batch_size: batch size of `eval_preprocess`.
    model_config: the network.
    tuning: if True, every user's last movie is removed and the second-to-last
      is the target of `test_data` (validation; the test movie stays unseen).

  Returns:
    A `NextMovieTask`. Client datasets yield {`user`, `history`, `target`};
    preprocessing maps batches to (OrderedDict(history[, user]), target).
  """
  data.require_timestamps("the next-movie task")
  require(eval_batch_size >= 1, "eval_batch_size", eval_batch_size, "must be >= 1.")
  split = sequences.leave_last_out(
      sequences.user_sequences(data.ratings, data.num_users), data.num_movies,
      history_length=model_config.history_length, drop_last=int(tuning))
  user_to_client = partitions.partition_users(
      partition_spec, split.train_ratings(), data.users, features.genre_multi_hot(data))
  num_clients = int(user_to_client.max()) + 1

  def to_client_data(examples: sequences.NextMovieExamples):
    return client_data.make_client_data(
        examples.features(), user_to_client[examples.user], num_clients)

  use_user = model_config.uses_user

  def batch_map_fn(batch):
    return _model_inputs(batch, use_user), batch["target"]

  eval_spec = preprocessing.ClientSpec(
      num_epochs=1, batch_size=eval_batch_size, shuffle=False)
  return NextMovieTask(
      name=TASK_NAME,
      train_data=to_client_data(split.train),
      test_data=to_client_data(split.test),
      train_preprocess=preprocessing.build_preprocess_fn(train_client_spec, batch_map_fn),
      eval_preprocess=preprocessing.build_preprocess_fn(eval_spec, batch_map_fn),
      keras_model_fn=lambda: build_next_movie_model(
          data.num_users, data.num_movies, model_config),
      loss_fn=next_movie_loss,
      metrics_fn=next_movie_metrics,
      description=(
          f"next movie from the previous {model_config.history_length} movies"
          f"{' and the user id' if use_user else ''}; {num_clients} "
          f"{partition_spec.scheme} clients; "
          f"{'validation' if tuning else 'test'} = each user's "
          f"{'second-to-' if tuning else ''}last movie"),
      split=split,
      model_config=model_config,
  )


def _split_of(task_or_split: Union[NextMovieTask, sequences.NextMovieSplit]):
  return task_or_split.split if isinstance(task_or_split, NextMovieTask) else task_or_split


def _evaluate_test_targets(score_fn, split: sequences.NextMovieSplit,
                           exclude_seen: bool) -> Dict[str, float]:
  """Full-ranking metrics of `score_fn` (test rows -> [B, M] scores)."""
  test = split.test
  shape = (split.sequences.num_users, split.padding_index)

  def user_matrix(users, movies):
    return sparse.csr_matrix((np.ones(len(users), np.int8), (users, movies)), shape=shape)

  relevant = user_matrix(test.user, test.target)
  if exclude_seen:
    rows, movies = split.seen_before(test)
    exclude = user_matrix(test.user[rows], movies)
  else:
    exclude = sparse.csr_matrix(shape, dtype=np.int8)
  test_row_of_user = np.full(shape[0], -1)
  test_row_of_user[test.user] = np.arange(len(test))
  result = ranking.evaluate_full_ranking(
      lambda users: score_fn(test_row_of_user[users]), relevant, exclude,
      k_values=(TOP_K,))
  return {f"hr@{TOP_K}": result[f"hr@{TOP_K}"], f"ndcg@{TOP_K}": result[f"ndcg@{TOP_K}"]}


def evaluate_next_movie(
    keras_model: tf.keras.Model,
    task_or_split: Union[NextMovieTask, sequences.NextMovieSplit],
    exclude_seen: bool = True,
) -> Dict[str, float]:
  """Full-ranking HR@10 and NDCG@10 of a model on every user's test target.

  Args:
    keras_model: maps the inputs it names (`history`[, `user`]) to [B, M]
      scores, e.g. global TFF weights assigned into `task.keras_model_fn()`.
    task_or_split: a `NextMovieTask` or its `NextMovieSplit`.
    exclude_seen: rank only movies the user had not rated before the target
      (they can never be the target: MovieLens users rate a movie once).

  Returns:
    {"hr@10": float, "ndcg@10": float}, averaged over users with a target.
  """
  split = _split_of(task_or_split)
  inputs = split.test.features()

  def score_fn(rows):
    x = {name: tf.constant(inputs[name][rows]) for name in keras_model.input_names}
    return keras_model(x, training=False).numpy()

  return _evaluate_test_targets(score_fn, split, exclude_seen)


def evaluate_popularity(
    task_or_split: Union[NextMovieTask, sequences.NextMovieSplit],
    exclude_seen: bool = True,
) -> Dict[str, float]:
  """HR@10 and NDCG@10 of ranking movies by their number of training ratings."""
  split = _split_of(task_or_split)
  popularity = np.bincount(
      split.train_ratings()["movie"].to_numpy(), minlength=split.padding_index)
  return _evaluate_test_targets(
      lambda rows: np.broadcast_to(popularity, (len(rows), len(popularity))),
      split, exclude_seen)


@dataclasses.dataclass(frozen=True)
class NextMovieConfigs:
  """The validated settings of the next-movie task (see `configure`)."""

  hparams: Mapping[str, Any]
  partition: partitions.PartitionSpec
  client: preprocessing.ClientSpec
  model: NextMovieModelConfig
  client_optimizer: OptimizerSpec
  server_optimizer: OptimizerSpec
  aggregator: aggregators.AggregatorSpec
  eval_split: str


def configure(hp: Mapping[str, Any]) -> NextMovieConfigs:
  """Checks every setting of the next-movie task; loads nothing."""
  partition = common.partition_spec(hp)
  common.check_clients_per_round(hp, partition)
  units = hp["hidden_units"]
  if len(units) != 1 or not str(units[0]).isdigit():
    raise ConfigError(f"hidden_units={','.join(map(str, units))}: the next-movie network has "
                      "one hidden layer: give one integer.", ("hidden_units",))
  return NextMovieConfigs(
      hparams=hp, partition=partition, client=common.client_spec(hp),
      model=NextMovieModelConfig(
          movie_embedding_dim=hp["embedding_dim"], user_embedding=hp["user_embedding"],
          user_embedding_dim=hp["embedding_dim"], hidden_units=int(units[0]),
          dropout=hp["dropout"]),
      client_optimizer=common.client_optimizer(hp),
      server_optimizer=common.server_optimizer(hp),
      aggregator=common.aggregator_spec(hp),
      eval_split=common.eval_split(hp))


def build(configs: NextMovieConfigs) -> FederatedRun:
  """Federated next-movie prediction, ready for the training loop.

  Needs timestamps: on ML-1M pass ratings_path=ml-1m-latest20/ratings.csv
  (synthetic data has them). Evaluation: full-ranking HR@10 / NDCG@10 of
  every user's last movie (second-to-last with eval_split 'validation'), on
  the server with the global weights; the report adds popularity.
  """
  hp = configs.hparams
  seed = hp["seed"]
  privacy.set_simulation_context(configs.aggregator)
  data = common.load_movielens(hp, ratings_path=hp["ratings_path"])
  task = create_next_movie_task_from_data(
      data, configs.partition, configs.client, model_config=configs.model,
      tuning=configs.eval_split == "validation")
  spec, dp = common.dp_aggregator(hp, configs.aggregator, len(task.train_data.client_ids))
  aggregator = privacy.build_aggregator(spec)
  process = algorithms.build_fed_avg(task.model_fn, hp["client_weighting"],
                                     configs.client_optimizer, configs.server_optimizer,
                                     aggregator)
  server_model = task.keras_model_fn()

  def evaluate_fn(state, round_num):
    process.get_model_weights(state).assign_weights_to(server_model)
    return evaluate_next_movie(server_model, task)

  def report(state, output_dir: str) -> Report:
    process.get_model_weights(state).assign_weights_to(server_model)
    rows = {"federated": evaluate_next_movie(server_model, task),
            "popularity": evaluate_popularity(task)}
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("model").reset_index()
    path = os.path.join(output_dir, "final_eval.csv")
    table.to_csv(path, index=False, float_format="%.4f")
    return Report(
        text=(table.to_string(index=False, float_format=lambda v: f"{v:.4f}") +
              f"\nFinal evaluation: {path}"),
        headline=" | ".join(f"{name} HR@10 {r['hr@10']:.4f}, NDCG@10 {r['ndcg@10']:.4f}"
                            for name, r in rows.items()),
        comparisons={"popularity": rows["popularity"]["ndcg@10"]},
        tables={"Final evaluation": table})

  return FederatedRun(
      process=process,
      initial_state_fn=lambda: initialization.seeded_initial_state(process, task.model_fn,
                                                                   seed),
      sampler=ClientSampler(task.train_data.client_ids, hp["clients_per_round"], "uniform",
                            seed),
      client_data_fn=RoundDatasets(task.train_data, task.train_preprocess, seed),
      evaluate_fn=evaluate_fn,
      report_fn=report,
      dp=dp,
      loss_bound=common.SOFTMAX_LOSS_BOUND,
      divergence_hint=common.learning_rates(hp),
      description=task.description,
      key_metric="ndcg@10")


TASK = TaskDefinition(
    name=TASK_NAME,
    summary=("next movie from the user's previous movies (softmax over all movies) with "
             "FedAvg; needs timestamps (--ratings_path=ml-1m-latest20/ratings.csv)"),
    reads=(("ratings_path",) + common.EVAL_SPLIT + common.PARTITION + common.CLIENT_SPEC +
           ("clients_per_round", "user_embedding", "embedding_dim", "hidden_units",
            "dropout") + common.CLIENT_OPTIMIZER + common.SERVER_OPTIMIZER + common.PRIVACY),
    configure=configure,
    build=build,
    # Chosen on the validation split (each user's second-to-last movie), bench/next_movie.py.
    defaults={"client_batch_size": 64, "client_optimizer": "adam",
              "client_learning_rate": 2e-3, "server_optimizer": "sgd",
              "server_learning_rate": 1.0, "total_rounds": 20, "user_embedding": "none",
              "hidden_units": ["256"]},
)
