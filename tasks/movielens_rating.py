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
import tempfile
import warnings
from typing import Optional

import numpy as np
import pandas as pd
import tensorflow as tf

from tasks import base
from tff_movierec import movie_stats
from tff_movierec.data import client_data as client_data_lib
from tff_movierec.data import features, movielens, partitions, preprocessing, splits, synthetic
from tff_movierec.metrics import keras_metrics
from tff_movierec.models import rating_ffnn
from tff_movierec.training import algorithms

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
    seed: Optional[int] = None,
) -> base.FederatedTask:
  """Builds the task from a train/test split and a user -> client assignment.

  Args:
    data: the MovieLens tables (vocabularies, metadata, demographics).
    train, test: ratings frames (e.g. `splits.per_user_holdout`).
    user_to_client: int32 [U], see `partitions.partition_users`.
    train_client_spec: per-round client iteration (epochs, batch, shuffle).
    model_config: the network.
    eval_batch_size: batch size of evaluation datasets.
    seed: shuffle seed of training datasets (None: nondeterministic).
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
        model_config, vocabulary, genres.shape[1], stats.global_mean)

  local_layers = (
      (rating_ffnn.USER_EMBEDDING_LAYER,) if model_config.user_embedding == "local" else ())
  return base.FederatedTask(
      name="movielens_rating",
      train_data=train_data,
      test_data=test_data,
      train_preprocess=preprocessing.build_preprocess_fn(train_client_spec, batch_map, seed),
      eval_preprocess=preprocessing.build_preprocess_fn(
          preprocessing.ClientSpec(1, eval_batch_size, shuffle=False), batch_map),
      keras_model_fn=keras_model_fn,
      loss_fn=tf.keras.losses.MeanSquaredError,
      metrics_fn=lambda: keras_metrics.rating_metrics() + [keras_metrics.ExampleCount()],
      local_layers=local_layers,
      description=(f"rating regression, {num_clients} clients, user embedding "
                   f"{model_config.user_embedding}"),
  )


def create_rating_task(
    data_dir: Optional[str],
    partition_spec: partitions.PartitionSpec,
    train_client_spec: preprocessing.ClientSpec,
    model_config: rating_ffnn.RatingModelConfig = rating_ffnn.RatingModelConfig(),
    test_fraction: float = 0.1,
    seed: int = 0,
    use_synthetic_data: bool = False,
) -> base.FederatedTask:
  """Loads MovieLens-1M (or small synthetic data) and builds the task.

  The split is the canonical per-user holdout (`test_fraction`, `seed`); the
  partition is computed on the training ratings only. Training shuffles are
  not seeded: a seeded shuffle would replay each client's order in every
  round (and every Keras epoch), an unseeded one draws a fresh order each time.
  """
  if use_synthetic_data:
    data_dir = synthetic.write_synthetic_movielens(
        tempfile.mkdtemp(prefix="tff_movierec_synthetic_"), seed=seed)
  data = movielens.load_movielens(data_dir)
  train, test = splits.per_user_holdout(data.ratings, test_fraction, seed)
  user_to_client = partitions.partition_users(
      partition_spec, train, data.users, features.genre_multi_hot(data))
  return create_rating_task_from_data(
      data, train, test, user_to_client, train_client_spec, model_config, seed=None)
