"""`movielens_rating`: predict a user's rating of a movie (regression, MSE).

Clients hold the ratings of their users (a partition of users, see
`tff_movierec.data.partitions`). Each client's examples carry only what that
client owns: user and movie indices, the rating, the user's demographics and
the user's own shrunk mean rating (computed from that user's training
ratings, which live on that client only). Public movie metadata (genres) and
the movie statistics released by a federated sum (`movie_stats.py`) are joined
in during preprocessing.
"""

import collections
import dataclasses
import functools
import os
import warnings
from typing import Any, Mapping, Optional

import numpy as np
import pandas as pd
import tensorflow as tf

from tasks import common
from tasks.definition import TaskDefinition
from tff_movierec import movie_stats, privacy, progress
from tff_movierec.data import client_data as client_data_lib
from tff_movierec.data import features, movielens, partitions, preprocessing, splits
from tff_movierec.errors import ConfigError, require
from tff_movierec.metrics import keras_metrics
from tff_movierec.models import rating_ffnn
from tff_movierec.privacy import aggregators
from tff_movierec.reporting import plots
from tff_movierec.training import (algorithms, evaluation, federated_task, initialization,
                                   stateful_local)
from tff_movierec.training.federated_run import FederatedRun, Report
from tff_movierec.training.optimizers import OptimizerSpec
from tff_movierec.training.round_datasets import RoundDatasets
from tff_movierec.training.sampling import ClientSampler

# Evaluation datasets of FedRecon carry a `holdout` marker that the Keras model
# does not consume; Keras warns about (and ignores) such extra inputs.
warnings.filterwarnings("ignore", message="Input dict contained keys")

USER_MEAN_SHRINKAGE = 5.0
MOVIE_MEAN_SHRINKAGE = 10.0


def user_means(train: pd.DataFrame, num_users: int, global_mean: float) -> np.ndarray:
  """float32 [U]: each user's mean training rating shrunk toward global_mean.

  Only the user's own ratings enter their value, so a client can compute it for
  its users from its own data.
  """
  users = train["user"].to_numpy()
  sums = np.bincount(users, weights=train["rating"].to_numpy(), minlength=num_users)
  counts = np.bincount(users, minlength=num_users)
  return ((sums + USER_MEAN_SHRINKAGE * global_mean) /
          (counts + USER_MEAN_SHRINKAGE)).astype(np.float32)


def client_examples(data: movielens.MovieLens, ratings: pd.DataFrame,
                    user_mean: np.ndarray, holdout: Optional[int] = None) -> dict:
  """Per-rating arrays a client holds: the raw elements of its ClientData.

  `holdout` (0 or 1), if given, is stored in every example under
  `algorithms.HOLDOUT_KEY`: it tells FedRecon evaluation which ratings
  reconstruct the user embedding (0) and which are scored (1).
  """
  users = ratings["user"].to_numpy(np.int32)
  demographics = features.user_features(data)
  examples = {
      "user": users,
      "movie": ratings["movie"].to_numpy(np.int32),
      "rating": ratings["rating"].to_numpy(np.float32),
      "user_mean": user_mean[users],
  }
  for name, values in demographics.items():
    examples[name] = values[users]
  if holdout is not None:
    examples[algorithms.HOLDOUT_KEY] = np.full(len(users), holdout, np.int32)
  return examples


def make_batch_map_fn(config: rating_ffnn.RatingModelConfig, genres: np.ndarray,
                      stats: movie_stats.MovieStats):
  """Returns batch dict -> (x, y): joins public movie features; y is [B, 1]."""
  genre_table = tf.constant(genres)
  mean_table = tf.constant(stats.shrunk_means(MOVIE_MEAN_SHRINKAGE))
  log_count_table = tf.constant(stats.log_counts())
  names = rating_ffnn.input_names(config)
  if config.user_embedding == "local":
    names += (algorithms.HOLDOUT_KEY,)

  def batch_map(batch):
    movie = batch["movie"]
    joined = dict(batch)
    joined["genres"] = tf.gather(genre_table, movie)
    joined["movie_mean"] = tf.gather(mean_table, movie)
    joined["movie_log_count"] = tf.gather(log_count_table, movie)
    x = collections.OrderedDict((name, joined[name]) for name in sorted(names))
    return x, tf.expand_dims(batch["rating"], -1)

  return batch_map


def create_rating_task_from_data(
    data: movielens.MovieLens,
    train: pd.DataFrame,
    test: pd.DataFrame,
    user_to_client: np.ndarray,
    train_client_spec: preprocessing.ClientSpec,
    model_config: rating_ffnn.RatingModelConfig = rating_ffnn.RatingModelConfig(),
    eval_batch_size: int = 1024,
) -> federated_task.FederatedTask:
  """Builds the task from a train/test split and a user -> client assignment.

  Args:
    data: the MovieLens tables (vocabularies, metadata, demographics).
    train, test: ratings frames (e.g. `splits.per_user_holdout`).
    user_to_client: int32 [U], see `partitions.partition_users`.
    train_client_spec: per-round client iteration (epochs, batch, shuffle).
    model_config: the network.
    eval_batch_size: batch size of evaluation datasets.
  """
  num_clients = int(user_to_client.max()) + 1
  train_global_mean = float(train["rating"].mean())
  user_mean = user_means(train, data.num_users, train_global_mean)
  reconstructs = model_config.user_embedding == "local"
  train_examples = client_examples(data, train, user_mean, 0 if reconstructs else None)
  test_examples = client_examples(data, test, user_mean, 1 if reconstructs else None)
  train_data = client_data_lib.make_client_data(
      train_examples, user_to_client[train["user"].to_numpy()], num_clients)
  if reconstructs:
    # FedRecon evaluation: each client's training ratings (reconstruction)
    # followed by its held-out ratings (scored); see algorithms.split_by_holdout.
    test_examples = {name: np.concatenate([train_examples[name], test_examples[name]])
                     for name in train_examples}
    test_users = np.concatenate([train["user"].to_numpy(), test["user"].to_numpy()])
  else:
    test_users = test["user"].to_numpy()
  test_data = client_data_lib.make_client_data(
      test_examples, user_to_client[test_users], num_clients)
  stats = movie_stats.federated_movie_stats(train_data, data.num_movies)
  genres = features.genre_multi_hot(data)
  batch_map = make_batch_map_fn(model_config, genres, stats)
  vocabulary = features.vocabulary_sizes(data)

  def keras_model_fn():
    return rating_ffnn.build_rating_model(
        model_config, vocabulary, genres.shape[1], stats.global_mean, data.rating_scale)

  local_layers = model_config.user_layers() if reconstructs else ()
  return federated_task.FederatedTask(
      name="movielens_rating",
      train_data=train_data,
      test_data=test_data,
      train_preprocess=preprocessing.build_preprocess_fn(train_client_spec, batch_map),
      eval_preprocess=preprocessing.build_preprocess_fn(
          preprocessing.ClientSpec(1, eval_batch_size, shuffle=False), batch_map),
      keras_model_fn=keras_model_fn,
      loss_fn=tf.keras.losses.MeanSquaredError,
      metrics_fn=lambda: keras_metrics.rating_metrics() + [keras_metrics.ExampleCount()],
      local_layers=local_layers,
      penalty_fn=(functools.partial(rating_ffnn.factor_penalty, model_config)
                  if model_config.penalizes_factors else None),
      description=(f"rating regression, {num_clients} clients, user embedding "
                   f"{model_config.user_embedding}"),
  )


@dataclasses.dataclass(frozen=True)
class RatingConfigs:
  """The validated settings of the rating study (see `configure`)."""

  hparams: Mapping[str, Any]
  partition: partitions.PartitionSpec
  client: preprocessing.ClientSpec
  model: rating_ffnn.RatingModelConfig
  algorithm: algorithms.AlgorithmConfig
  aggregator: aggregators.AggregatorSpec
  eval_split: str


def configure(hp: Mapping[str, Any]) -> RatingConfigs:
  """Checks every setting of the rating study; loads nothing."""
  common.require_fraction(hp, "test_fraction")
  try:
    hidden_units = tuple(int(units) for units in hp["hidden_units"])
  except ValueError as e:
    raise ConfigError(f"hidden_units={','.join(hp['hidden_units'])}: integers expected.",
                      ("hidden_units",)) from e
  partition = common.partition_spec(hp)
  common.check_clients_per_round(hp, partition)
  mf_settings = {name: hp[name] for name in ("mf_dim", "factor_l2") if hp[name] is not None}
  if mf_settings and hp["model"] != "fused_mf":
    raise ConfigError(f"{', '.join(mf_settings)} with model={hp['model']!r}: only "
                      "model='fused_mf' has an MF path.", tuple(mf_settings) + ("model",))
  if hp["algorithm"] not in algorithms.PENALTY_ALGORITHMS:
    if mf_settings.get("factor_l2"):
      raise ConfigError(
          f"factor_l2={hp['factor_l2']!r} with algorithm={hp['algorithm']!r}: the penalty is "
          f"applied only by {', '.join(algorithms.PENALTY_ALGORITHMS)} (TFF builds the others' "
          "training, which drops it); give factor_l2=0 or leave it out.",
          ("factor_l2", "algorithm"))
    mf_settings["factor_l2"] = 0.0
  configs = RatingConfigs(
      hparams=hp,
      partition=partition,
      client=common.client_spec(hp),
      model=rating_ffnn.RatingModelConfig(
          hp["user_embedding"], hp["embedding_dim"], hidden_units, hp["dropout"],
          tuple(hp["drop_features"]), hp["dropout_masks"], hp["model"], **mf_settings),
      algorithm=algorithms.AlgorithmConfig(
          hp["algorithm"], hp["client_weighting"], common.client_optimizer(hp),
          common.server_optimizer(hp),
          OptimizerSpec(hp["local_optimizer"], hp["local_learning_rate"], role="local"),
          hp["reconstruction_epochs"]),
      aggregator=common.aggregator_spec(hp),
      eval_split=common.eval_split(hp))
  local = configs.model.user_embedding == "local"
  if local != (configs.algorithm.algorithm in algorithms.LOCAL_LAYER_ALGORITHMS):
    raise ConfigError(
        f"user_embedding={configs.model.user_embedding!r} with algorithm="
        f"{configs.algorithm.algorithm!r}: a local user embedding is trained only by "
        "algorithm='fed_recon' or 'stateful_local', and those need user_embedding='local'.",
        ("user_embedding", "algorithm"))
  if configs.algorithm.algorithm == "stateful_local" and partition.scheme == "natural":
    raise ConfigError(
        "algorithm='stateful_local' with partition='natural': keeping a user-embedding "
        "table on each of thousands of one-user clients is a cross-device setting; use "
        "algorithm='fed_recon' there.", ("algorithm", "partition"))
  require(hp["baseline_epochs"] >= 0, "baseline_epochs", hp["baseline_epochs"],
          "must be >= 0.")
  if configs.model.uses("demographics"):
    common.require_demographics(hp, "the rating network's demographics feature group",
                                "leave it out with drop_features=demographics",
                                ("drop_features",))
  return configs


def create_rating_task(configs: RatingConfigs) -> federated_task.FederatedTask:
  """Loads MovieLens-1M (or small synthetic data) and builds the task.

  The split is the canonical per-user holdout (`test_fraction`, `seed`); with
  eval_split 'validation' the same holdout is carved again from the training
  ratings, and the task is scored on those (the test ratings stay unseen).
  The partition is computed on the training ratings only.
  """
  hp = configs.hparams
  data = common.load_movielens(hp)
  train, test = splits.per_user_holdout(data.ratings, hp["test_fraction"], hp["seed"])
  if configs.eval_split == "validation":
    train, test = splits.per_user_holdout(train, hp["test_fraction"], hp["seed"])
  user_to_client = partitions.partition_users(
      configs.partition, train, data.users, features.genre_multi_hot(data))
  return create_rating_task_from_data(
      data, train, test, user_to_client, configs.client, configs.model)


def build(configs: RatingConfigs) -> FederatedRun:
  """The federated rating study, ready for the training loop.

  Evaluation (every rounds_per_eval rounds): pooled held-out metrics of the
  federated model. Report: per_client.csv and per_client.png, the federated
  model beside local-only and centralized Keras training (baseline_epochs > 0).
  """
  hp = configs.hparams
  privacy.set_simulation_context(configs.aggregator)
  task = create_rating_task(configs)
  clients = task.train_data.client_ids
  train_counts = evaluation.train_examples(task)
  spec, dp = common.dp_aggregator(hp, configs.aggregator, len(clients))
  aggregator = privacy.build_aggregator(spec)
  process = algorithms.build_training_process(task, configs.algorithm, aggregator)
  evaluate = evaluation.federated_evaluation(task, configs.algorithm, configs.client, process)
  seed = hp["seed"]
  stateful = isinstance(process, stateful_local.StatefulLocalProcess)
  if stateful:
    initial_state_fn = lambda: process.initialize(seed)
  else:
    model_fn = (task.reconstruction_model_fn if task.local_layers else task.model_fn)
    initial_state_fn = lambda: initialization.seeded_initial_state(process, model_fn, seed)

  def report(state, output_dir: str) -> Report:
    tables = [evaluate.table(state)]
    epochs = hp["baseline_epochs"]
    if epochs:
      tf.keras.utils.set_random_seed(seed)
      with progress.Progress("comparison models (local-only, centralized)",
                             evaluation.comparison_batches(train_counts, epochs),
                             "batches") as bar:
        tables += [evaluation.local_only_table(task, epochs, progress=bar),
                   evaluation.centralized_table(task, epochs, progress=bar)]
    return per_client_report(evaluation.per_client_table(tables, train_counts), output_dir)

  return FederatedRun(
      process=process,
      initial_state_fn=initial_state_fn,
      sampler=ClientSampler(clients, hp["clients_per_round"], "uniform", seed),
      client_data_fn=RoundDatasets(task.train_data, task.train_preprocess, seed, keyed=stateful),
      evaluate_fn=lambda state, round_num: evaluate.pooled(state),
      report_fn=report,
      dp=dp,
      loss_bound=common.RATING_LOSS_BOUND,
      divergence_hint=common.learning_rates(
          hp, ("client", "server", "local") if task.local_layers else ("client", "server")),
      description=task.description,
      key_metric="mae",
      report_seconds=(evaluation.comparison_seconds(task, train_counts, hp["baseline_epochs"])
                      if hp["baseline_epochs"] else 0.0))


def per_client_report(table: pd.DataFrame, output_dir: str) -> Report:
  """Writes per_client.csv and per_client.png; the console gets the pooled
  rows and a headline (federated against the comparison models)."""
  path = os.path.join(output_dir, "per_client.csv")
  table.to_csv(path, index=False, float_format="%.4f")
  image = plots.per_client(table, os.path.join(output_dir, plots.PER_CLIENT), "mae")
  pooled = table[table["client"] == evaluation.POOLED].set_index("setting")
  maes = {plots.SETTING_LABELS[setting]: row["mae"] for setting, row in pooled.iterrows()}
  headline = "pooled MAE: " + " | ".join(f"{name} {mae:.4f}" for name, mae in maes.items())
  if "local-only" in maes:
    better, clients = evaluation.better_than_local_only(table)
    headline += f"; federated better than local-only on {better}/{clients} clients"
  shown = pooled[["mae", "rmse", "r2", "num_examples"]].rename(index=plots.SETTING_LABELS)
  text = ("Pooled held-out ratings:\n" +
          shown.to_string(float_format=lambda v: f"{v:.4f}") +
          f"\nPer-client table: {path}")
  return Report(text=text, headline=headline,
                comparisons={name: mae for name, mae in maes.items() if name != "federated"},
                tables={"Per-client table": table}, images={"Per-client MAE": image})


TASK = TaskDefinition(
    name="movielens_rating",
    summary=("the federated rating study: non-IID clients, the feature-fused network with "
             "an MF path (--model=seed_ffnn: without it), user rows kept on the clients, "
             "server Adam; per-client table beside local-only and centralized training"),
    reads=(("test_fraction",) + common.EVAL_SPLIT + common.PARTITION + common.CLIENT_SPEC +
           ("clients_per_round", "model", "mf_dim", "factor_l2", "user_embedding",
            "embedding_dim", "hidden_units",
            "dropout", "dropout_masks", "drop_features", "algorithm",
            "reconstruction_epochs") +
           common.CLIENT_OPTIMIZER + common.SERVER_OPTIMIZER +
           ("local_optimizer", "local_learning_rate") + common.PRIVACY +
           ("baseline_epochs",)),
    configure=configure,
    build=build,
    # Chosen on the validation split (BENCHMARKS.md, issue 18): Adam on the
    # clients, for the global weights and for the client-held user rows (its
    # state starts afresh each round), under server Adam.
    defaults={"client_optimizer": "adam", "client_learning_rate": 0.001,
              "local_optimizer": "adam", "local_learning_rate": 0.002},
    # The synthetic clients hold ~135 ratings, one batch a round: server Adam's
    # first steps (server_learning_rate in every weight) then overshoot. At
    # 0.03 the loss exceeded 100 in round 2; at 0.001 it fell from 0.99 to 0.76
    # in 6 rounds.
    synthetic_defaults={"server_learning_rate": 0.001},
)
