"""Runs one tff_movierec experiment, configured by absl flags.

  python run_experiment.py --data_dir=DIR --root_output_dir=OUT [flags]

With no task flag this is the project's main study: 10 non-IID (Dirichlet
over genre taste) clients, the feature-fused rating network with the user
embedding kept on the clients (Federated Reconstruction), FedAvg-style
aggregation of everything else with an Adam server optimizer, evaluated on
the canonical per-user 10% holdout beside local-only and centralized training.

This is the only module that reads FLAGS: it turns them into the validated
config objects of the library (all checked before any training starts).
"""

import collections
import os
import sys
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import pandas as pd
# TensorFlow must be imported before absl's app.run: imported inside main()
# (after flag parsing), tf.keras.Input returns graph tensors instead of
# KerasTensors and functional models cannot be built.
import tensorflow as tf

from tasks import movielens_rating, movielens_recon
from tff_movierec import centralized, eda, reconstruction
from tff_movierec import tff_runtime
from tff_movierec.data import movielens, partitions, preprocessing, synthetic
from tff_movierec.data.download import DataError
from tff_movierec.models import rating_ffnn
from tff_movierec.privacy import accounting, aggregators
from tff_movierec.retrieval import experiment as retrieval_experiment
from tff_movierec.training import algorithms, evaluation, loop, managers
from tff_movierec.training.optimizers import OptimizerSpec

_TASKS = ("movielens_rating", "movielens_recon", "eda", "centralized", "movielens_retrieval")

# Task.
_TASK = flags.DEFINE_enum(
    "task", "movielens_rating", _TASKS,
    "What to run. movielens_recon: cross-device Federated Reconstruction of a matrix "
    "factorization, one client per user; unless given, its flags default to 200 rounds "
    "of 200 users, --embedding_dim=32, --client_weighting=uniform, learning rates "
    "client 1.0, server 0.02, local (reconstruction) 0.5, --rounds_per_eval=50.")
_EXPERIMENT_NAME = flags.DEFINE_string(
    "experiment_name", None, "Folder name under --root_output_dir (default: the task name).")
_SEED = flags.DEFINE_integer(
    "seed", 0, "Seed of the split, partition, client sampling and the Keras comparison "
    "models' weights. Training shuffles are not seeded (a seed would replay each client's "
    "order every round), nor are TFF's initial weights: runs differ slightly.")
_USE_SYNTHETIC_DATA = flags.DEFINE_bool(
    "use_synthetic_data", False, "Use small generated data instead of MovieLens (for tests).")

_RETRIEVAL_MODE = flags.DEFINE_enum(
    "retrieval_mode", "federated", ["centralized", "federated"],
    "movielens_retrieval: Keras fit (--total_rounds epochs) or FedAvg (--total_rounds rounds).")
_RANKING_PROTOCOL = flags.DEFINE_enum(
    "ranking_protocol", "recbole_ml1m", ["recbole_ml1m", "holdout"],
    "movielens_retrieval: split and full-ranking protocol.")

# Data and partition.
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Folder with users.dat, movies.dat and ratings.dat|ratings.csv; "
    "default: the cache (downloads ml-1m.zip if missing).")
_TEST_FRACTION = flags.DEFINE_float(
    "test_fraction", 0.1, "Per-user fraction of ratings held out for evaluation.")
_PARTITION = flags.DEFINE_enum(
    "partition", "dirichlet", ["natural", "iid", "dirichlet", "demographic"],
    "How users are split into clients.")
_NUM_CLIENTS = flags.DEFINE_integer("num_clients", 10, "Clients (not for --partition=natural).")
_DIRICHLET_CONCENTRATION = flags.DEFINE_float(
    "dirichlet_concentration", 0.5, "Dirichlet concentration (smaller = more skewed).")
_PARTITION_ATTRIBUTE = flags.DEFINE_enum(
    "partition_attribute", "age", ["age", "occupation", "gender"],
    "User attribute of --partition=demographic.")

# Model.
_USER_EMBEDDING = flags.DEFINE_enum(
    "user_embedding", "local", ["local", "global", "none"],
    "local: user rows stay on the client (--algorithm=fed_recon or stateful_local); global: an "
    "ordinary weight (FedAvg sends every sampled user's row to the server); none.")
_EMBEDDING_DIM = flags.DEFINE_integer("embedding_dim", 32, "User and movie embedding size.")
_HIDDEN_UNITS = flags.DEFINE_list("hidden_units", ["256", "128"], "Hidden layer sizes.")
_DROPOUT = flags.DEFINE_float("dropout", 0.2, "Dropout after each hidden layer.")
_DROPOUT_MASKS = flags.DEFINE_enum(
    "dropout_masks", "hashed", rating_ffnn.DROPOUT_MASKS,
    "hashed: keep-masks from a counter hash, the rate rounded to 1/256 (fast in TFF); "
    "keras: tf.keras.layers.Dropout.")
_ENGINEERED_FEATURES = flags.DEFINE_bool(
    "engineered_features", True,
    "Use user mean (client-side), movie mean and popularity (federated sum).")

# Training.
_ALGORITHM = flags.DEFINE_enum(
    "algorithm", "stateful_local", algorithms.ALGORITHMS,
    "fedavg; fed_recon (user embedding reconstructed on the client each round); "
    "stateful_local (user embedding kept and trained on the client across rounds).")
_TOTAL_ROUNDS = flags.DEFINE_integer("total_rounds", 15, "Training rounds.")
_CLIENTS_PER_ROUND = flags.DEFINE_integer("clients_per_round", 10, "Clients per round.")
_CLIENT_EPOCHS = flags.DEFINE_integer("client_epochs", 1, "Local epochs per round.")
_CLIENT_BATCH_SIZE = flags.DEFINE_integer("client_batch_size", 256, "Local batch size.")
_SHUFFLE_CLIENT_EXAMPLES = flags.DEFINE_bool(
    "shuffle_client_examples", True,
    "Visit each client's examples in a fresh random order every epoch.")
_MAX_CLIENT_EXAMPLES = flags.DEFINE_integer(
    "max_client_examples", None, "Cap on examples a client processes per round.")
_CLIENT_WEIGHTING = flags.DEFINE_enum(
    "client_weighting", "num_examples", ["num_examples", "uniform"],
    "Weight of each client's update in the average.")
_RECONSTRUCTION_EPOCHS = flags.DEFINE_integer(
    "reconstruction_epochs", 1, "fed_recon: epochs reconstructing the user embedding.")

# Optimizers.
_CLIENT_OPTIMIZER = flags.DEFINE_enum(
    "client_optimizer", "sgd", ["sgd", "adam", "adagrad", "yogi"], "Client optimizer.")
_CLIENT_LEARNING_RATE = flags.DEFINE_float("client_learning_rate", 0.05, "Client LR.")
_CLIENT_MOMENTUM = flags.DEFINE_float("client_momentum", 0.0, "Client SGD momentum.")
_SERVER_OPTIMIZER = flags.DEFINE_enum(
    "server_optimizer", "adam", ["sgd", "adam", "adagrad", "yogi"], "Server optimizer.")
_SERVER_LEARNING_RATE = flags.DEFINE_float("server_learning_rate", 0.01, "Server LR.")
_SERVER_BETA_1 = flags.DEFINE_float("server_beta_1", 0.9, "Server Adam/Yogi beta_1.")
_SERVER_BETA_2 = flags.DEFINE_float("server_beta_2", 0.999, "Server Adam/Yogi beta_2.")
_LOCAL_OPTIMIZER = flags.DEFINE_enum(
    "local_optimizer", "sgd", ["sgd", "adam", "adagrad", "yogi"],
    "Optimizer of the client-local user embedding (fed_recon: reconstruction; "
    "stateful_local: its training alongside the global weights).")
_LOCAL_LEARNING_RATE = flags.DEFINE_float(
    "local_learning_rate", 20.0,
    "LR of --local_optimizer (large: a user's row gets a 1/batch share of a batch's "
    "mean-loss gradient).")

# Privacy and aggregation.
_AGGREGATOR = flags.DEFINE_enum(
    "aggregator", "none", ["none", "dp_fixed", "dp_adaptive", "secure", "compression"],
    "Model-update aggregator. DP kinds are unweighted: need --client_weighting=uniform.")
_NOISE_MULTIPLIER = flags.DEFINE_float("noise_multiplier", None, "DP noise / clip.")
_CLIP_NORM = flags.DEFINE_float("clip_norm", None, "DP L2 clip (initial clip if adaptive).")
_TARGET_UNCLIPPED_QUANTILE = flags.DEFINE_float(
    "target_unclipped_quantile", None, "dp_adaptive: target quantile of update norms.")
_DP_DELTA = flags.DEFINE_float(
    "dp_delta", None, "δ of the reported (ε, δ); default 1 / num_clients^1.1.")

# Cross-device Federated Reconstruction (--task=movielens_recon).
_CLIENT_SAMPLING = flags.DEFINE_enum(
    "client_sampling", "poisson", list(reconstruction.SAMPLINGS),
    "movielens_recon: each user joins a round with probability clients_per_round / "
    "users (poisson, what the DP accounting assumes) or exactly clients_per_round "
    "distinct users (uniform).")
_RECONSTRUCTION_STEPS = flags.DEFINE_integer(
    "reconstruction_steps", 10, "movielens_recon: full-batch steps that reconstruct a "
    "user's embedding from half of its ratings.")
_POST_RECONSTRUCTION_STEPS = flags.DEFINE_integer(
    "post_reconstruction_steps", 3, "movielens_recon: full-batch steps on the movie side "
    "with the other half.")
_RECONSTRUCTION_L2 = flags.DEFINE_float(
    "reconstruction_l2", 0.01, "movielens_recon: L2 penalty on the reconstructed user "
    "embedding and bias.")
_SERVER_WEIGHT_DECAY = flags.DEFINE_float(
    "server_weight_decay", 0.5, "movielens_recon: decoupled weight decay of the server "
    "Adam (AdamW); 0 = plain Adam.")
_COLD_START_FRACTION = flags.DEFINE_float(
    "cold_start_fraction", 0.0, "movielens_recon: fraction of users held out of training "
    "entirely, evaluated after reconstructing from their ratings.")
_FINAL_EVAL_CLIENTS = flags.DEFINE_integer(
    "final_eval_clients", None, "movielens_recon: users in the final evaluation (a fixed "
    "random subset; default all).")

# Evaluation.
_ROUNDS_PER_EVAL = flags.DEFINE_integer(
    "rounds_per_eval", 5, "Evaluate every this many rounds (0: only at the end).")
_BASELINE_EPOCHS = flags.DEFINE_integer(
    "baseline_epochs", 3, "Epochs of the local-only and centralized comparison models "
    "(0: skip them).")

# Output.
_ROOT_OUTPUT_DIR = flags.DEFINE_string(
    "root_output_dir", "output", "Root folder of experiment outputs.")
_ROUNDS_PER_CHECKPOINT = flags.DEFINE_integer(
    "rounds_per_checkpoint", 1, "Save program state every this many rounds.")

FLAGS = flags.FLAGS
_GROUPS = collections.OrderedDict([
    ("task", ["task", "experiment_name", "seed", "use_synthetic_data", "retrieval_mode",
              "ranking_protocol"]),
    ("data", ["data_dir", "test_fraction", "partition", "num_clients",
              "dirichlet_concentration", "partition_attribute"]),
    ("model", ["user_embedding", "embedding_dim", "hidden_units", "dropout",
               "dropout_masks", "engineered_features"]),
    ("training", ["algorithm", "total_rounds", "clients_per_round", "client_epochs",
                  "client_batch_size", "shuffle_client_examples", "max_client_examples",
                  "client_weighting", "reconstruction_epochs"]),
    ("optimizers", ["client_optimizer", "client_learning_rate", "client_momentum",
                    "server_optimizer", "server_learning_rate", "server_beta_1",
                    "server_beta_2", "local_optimizer",
                    "local_learning_rate"]),
    ("privacy", ["aggregator", "noise_multiplier", "clip_norm",
                 "target_unclipped_quantile", "dp_delta"]),
    ("reconstruction", ["client_sampling", "reconstruction_steps",
                        "post_reconstruction_steps", "reconstruction_l2",
                        "server_weight_decay", "cold_start_fraction", "final_eval_clients"]),
    ("evaluation", ["rounds_per_eval", "baseline_epochs"]),
    ("output", ["root_output_dir", "rounds_per_checkpoint"]),
])


# --task=movielens_recon: defaults of the shared flags that differ from the rating
# task's (the best settings measured on ML-1M, BENCHMARKS.md issue 5), and the
# flags that do not apply to it.
_RECON_DEFAULTS = {
    "total_rounds": 200, "clients_per_round": 200, "embedding_dim": 32,
    "client_weighting": "uniform", "client_learning_rate": 1.0,
    "server_learning_rate": 0.02, "local_learning_rate": 0.5, "rounds_per_eval": 50,
}
_RECON_ONLY = tuple(_GROUPS["reconstruction"])
_NOT_FOR_RECON = ("retrieval_mode", "ranking_protocol", "partition", "num_clients",
                  "dirichlet_concentration", "partition_attribute", "user_embedding",
                  "hidden_units", "dropout", "dropout_masks", "engineered_features",
                  "algorithm",
                  "client_epochs", "client_batch_size", "shuffle_client_examples",
                  "max_client_examples", "reconstruction_epochs", "client_momentum",
                  "server_beta_1", "server_beta_2", "baseline_epochs",
                  "rounds_per_checkpoint")


def hparams() -> dict:
  """Every flag of every group that applies to --task, by name (hparams.csv)."""
  skip = _NOT_FOR_RECON if _TASK.value == "movielens_recon" else _RECON_ONLY
  return {name: FLAGS[name].value for group in _GROUPS.values() for name in group
          if name not in skip}


class FlagError(ValueError):
  """Contradictory or invalid flags, detected before any training."""


def _given(name: str) -> bool:
  """Whether flag `name` was set (on the command line or programmatically)."""
  return not FLAGS[name].using_default_value


def _check_task_flags() -> None:
  """Rejects flags given for a task they do not apply to; sets the
  movielens_recon defaults of the shared flags not given."""
  recon = _TASK.value == "movielens_recon"
  stray = _NOT_FOR_RECON if recon else _RECON_ONLY
  given = [f"--{name}" for name in stray if _given(name)]
  if given:
    raise FlagError(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply "
                    f"to --task={_TASK.value}.")
  if recon:
    for name, value in _RECON_DEFAULTS.items():
      if not _given(name):
        FLAGS.set_default(name, value)


def _recon_config() -> reconstruction.ExperimentConfig:
  """The movielens_recon experiment from flags; raises FlagError naming them."""
  try:
    recon = reconstruction.ReconConfig(
        server_optimizer=_SERVER_OPTIMIZER.value,
        server_learning_rate=_SERVER_LEARNING_RATE.value,
        server_weight_decay=_SERVER_WEIGHT_DECAY.value,
        client_optimizer=_CLIENT_OPTIMIZER.value,
        client_learning_rate=_CLIENT_LEARNING_RATE.value,
        reconstruction_optimizer=_LOCAL_OPTIMIZER.value,
        reconstruction_learning_rate=_LOCAL_LEARNING_RATE.value,
        reconstruction_l2=_RECONSTRUCTION_L2.value,
        reconstruction_steps=_RECONSTRUCTION_STEPS.value,
        post_reconstruction_steps=_POST_RECONSTRUCTION_STEPS.value,
        uniform_weighting=_CLIENT_WEIGHTING.value == "uniform")
    aggregator = _aggregator_spec()
    if not 0 <= _COLD_START_FRACTION.value < 1:
      raise ValueError(f"--cold_start_fraction={_COLD_START_FRACTION.value}: must be in [0, 1).")
    _check_dp_delta(aggregator)
    return reconstruction.ExperimentConfig(
        rounds=_TOTAL_ROUNDS.value, clients_per_round=_CLIENTS_PER_ROUND.value,
        sampling=_CLIENT_SAMPLING.value, eval_every=_ROUNDS_PER_EVAL.value,
        final_eval_clients=_FINAL_EVAL_CLIENTS.value, embedding_dim=_EMBEDDING_DIM.value,
        recon=recon, aggregator=aggregator, dp_delta=_DP_DELTA.value, seed=_SEED.value)
  except ValueError as e:
    raise FlagError(str(e)) from e


def _aggregator_spec() -> aggregators.AggregatorSpec:
  """The model-update aggregator from the privacy flags (raises ValueError)."""
  return aggregators.AggregatorSpec(
      _AGGREGATOR.value, _NOISE_MULTIPLIER.value, _CLIP_NORM.value,
      _TARGET_UNCLIPPED_QUANTILE.value, _CLIENTS_PER_ROUND.value, _CLIENT_WEIGHTING.value)


def _check_dp_delta(aggregator: aggregators.AggregatorSpec) -> None:
  if _DP_DELTA.value is not None and not aggregator.is_dp:
    raise FlagError(f"--dp_delta given but --aggregator={_AGGREGATOR.value} is not DP.")
  if _DP_DELTA.value is not None and not 0 < _DP_DELTA.value < 1:
    raise FlagError(f"--dp_delta={_DP_DELTA.value}: must be in (0, 1).")


def _configs():
  """Validated configs from flags; raises FlagError naming the flags."""
  try:
    hidden_units = tuple(int(units) for units in _HIDDEN_UNITS.value)
  except ValueError as e:
    raise FlagError(f"--hidden_units={','.join(_HIDDEN_UNITS.value)}: integers expected.") from e
  try:
    configs = dict(
        partition=partitions.PartitionSpec(
            _PARTITION.value, _NUM_CLIENTS.value, _DIRICHLET_CONCENTRATION.value,
            _PARTITION_ATTRIBUTE.value, _SEED.value),
        client=preprocessing.ClientSpec(
            _CLIENT_EPOCHS.value, _CLIENT_BATCH_SIZE.value, _SHUFFLE_CLIENT_EXAMPLES.value,
            _MAX_CLIENT_EXAMPLES.value),
        model=rating_ffnn.RatingModelConfig(
            _USER_EMBEDDING.value, _EMBEDDING_DIM.value, hidden_units, _DROPOUT.value,
            _ENGINEERED_FEATURES.value, _DROPOUT_MASKS.value),
        algorithm=algorithms.AlgorithmConfig(
            _ALGORITHM.value, _CLIENT_WEIGHTING.value,
            OptimizerSpec(_CLIENT_OPTIMIZER.value, _CLIENT_LEARNING_RATE.value,
                          _CLIENT_MOMENTUM.value, flag_prefix="client"),
            OptimizerSpec(_SERVER_OPTIMIZER.value, _SERVER_LEARNING_RATE.value,
                          beta_1=_SERVER_BETA_1.value, beta_2=_SERVER_BETA_2.value,
                          flag_prefix="server"),
            OptimizerSpec(_LOCAL_OPTIMIZER.value, _LOCAL_LEARNING_RATE.value,
                          flag_prefix="local"),
            _RECONSTRUCTION_EPOCHS.value),
        aggregator=_aggregator_spec(),
        loop=loop.LoopConfig(
            _TOTAL_ROUNDS.value, _CLIENTS_PER_ROUND.value, _ROUNDS_PER_EVAL.value,
            _ROUNDS_PER_CHECKPOINT.value, _SEED.value),
    )
  except ValueError as e:
    raise FlagError(str(e)) from e
  local = configs["model"].user_embedding == "local"
  if local != (configs["algorithm"].algorithm in algorithms.LOCAL_LAYER_ALGORITHMS):
    raise FlagError(
        f"--user_embedding={_USER_EMBEDDING.value} with --algorithm={_ALGORITHM.value}: "
        "a local user embedding is trained only by --algorithm=fed_recon or "
        "stateful_local, and those need --user_embedding=local.")
  if _ALGORITHM.value == "stateful_local" and _PARTITION.value == "natural":
    raise FlagError(
        "--algorithm=stateful_local with --partition=natural: keeping a user-embedding "
        "table on each of 6,040 one-user clients is a cross-device setting; use "
        "--algorithm=fed_recon there.")
  if _BASELINE_EPOCHS.value < 0:
    raise FlagError(f"--baseline_epochs={_BASELINE_EPOCHS.value}: must be >= 0.")
  _check_dp_delta(configs["aggregator"])
  if _PARTITION.value == "natural" and _given("num_clients"):
    raise FlagError("--num_clients does not apply to --partition=natural (one client per user).")
  return configs


def _output_dir() -> str:
  return os.path.join(_ROOT_OUTPUT_DIR.value, _EXPERIMENT_NAME.value or _TASK.value)


def _data_dir():
  if _USE_SYNTHETIC_DATA.value:
    return synthetic.write_synthetic_movielens(tempfile.mkdtemp(prefix="tff_movierec_"))
  return _DATA_DIR.value


def run_eda() -> None:
  summary = eda.run_eda(_data_dir(), _output_dir())
  print(eda.headline(summary))
  print(f"EDA report and plots written to {_output_dir()}")


def run_centralized() -> None:
  table = centralized.run_centralized(movielens.load_movielens(_data_dir()), _output_dir(),
                                      seed=_SEED.value)
  print(centralized.to_markdown(table.drop(columns=["params"])))
  print(f"Results written to {os.path.join(_output_dir(), 'results.csv')}")


def run_retrieval() -> None:
  """TFRS two-tower retrieval; prints test metrics and exports for `recommend`."""
  def on_round(round_num, metrics):
    logging.info("round %d: %s", round_num, {k: round(v, 4) for k, v in metrics.items()})

  export_dir = os.path.join(_output_dir(), "export")
  result = retrieval_experiment.run_experiment(
      _DATA_DIR.value, mode=_RETRIEVAL_MODE.value, protocol=_RANKING_PROTOCOL.value,
      partition=_PARTITION.value, num_clients=_NUM_CLIENTS.value,
      rounds=_TOTAL_ROUNDS.value, seed=_SEED.value, export_dir=export_dir,
      use_synthetic_data=_USE_SYNTHETIC_DATA.value, on_round=on_round)
  print({k: round(v, 4) for k, v in result.items()})
  print(f"Recommend from the exported model: python -m tff_movierec.recommend "
        f"--user 1841 --k 5 --model_dir {export_dir}")


def run_rating(configs) -> None:
  """The federated rating study; writes metrics.csv, per_client.csv, TensorBoard."""

  started = time.time()
  aggregators.set_simulation_context(configs["aggregator"])
  tf.keras.utils.set_random_seed(_SEED.value)  # The Keras comparison models.
  task = movielens_rating.create_rating_task(
      _data_dir(), configs["partition"], configs["client"], configs["model"],
      _TEST_FRACTION.value, _SEED.value)
  num_clients = len(task.train_data.client_ids)
  logging.info("Task %s built in %.1f s.", task.description, time.time() - started)
  aggregator_spec = configs["aggregator"]
  aggregator = (None if aggregator_spec.kind == "none"
                else aggregators.build_aggregator(aggregator_spec))
  process = algorithms.build_training_process(task, configs["algorithm"], aggregator)
  evaluate = evaluation.federated_evaluation(task, configs["algorithm"], configs["client"],
                                             process)
  experiment = managers.create_managers(_ROOT_OUTPUT_DIR.value,
                                        _EXPERIMENT_NAME.value or _TASK.value, hparams())

  def evaluate_global(state, unused_round_num):
    return evaluate.pooled(state)

  round_metrics = None
  if aggregator_spec.is_dp:
    delta = _DP_DELTA.value or accounting.default_delta(num_clients)
    q = min(1.0, configs["loop"].clients_per_round / num_clients)

    def round_metrics(round_num):
      return {"privacy/epsilon": accounting.epsilon(
          _NOISE_MULTIPLIER.value, q, round_num, delta), "privacy/delta": delta}

  baselines = []
  if _BASELINE_EPOCHS.value:
    logging.info("Training the local-only and centralized comparison models.")
    baselines = [evaluation.local_only_table(task, _BASELINE_EPOCHS.value),
                 evaluation.centralized_table(task, _BASELINE_EPOCHS.value)]
  state = loop.run_training(process, task, configs["loop"], experiment,
                            evaluate_global, round_metrics)
  tables = [evaluate.table(state)]
  per_client = pd.concat(tables + baselines, ignore_index=True)
  per_client_path = os.path.join(experiment.output_dir, "per_client.csv")
  per_client.to_csv(per_client_path, index=False, float_format="%.4f")
  print(per_client.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
  if round_metrics is not None:
    final = round_metrics(configs["loop"].total_rounds)
    print(f"Privacy: (ε = {final['privacy/epsilon']:.2f}, δ = {final['privacy/delta']:.2g}) "
          f"user-level DP after {configs['loop'].total_rounds} rounds.")
  print(f"Per-round metrics: {experiment.metrics_csv}\n"
        f"Per-client table:  {per_client_path}\n"
        f"TensorBoard:       tensorboard --logdir {experiment.tensorboard_dir}\n"
        f"Total time: {time.time() - started:.0f} s")


def run_recon(config: reconstruction.ExperimentConfig) -> None:
  """Cross-device FedRecon matrix factorization; writes metrics.csv, TensorBoard."""
  started = time.time()
  aggregators.set_simulation_context(config.aggregator)
  task = movielens_recon.load_recon_task(
      _DATA_DIR.value, synthetic_data=_USE_SYNTHETIC_DATA.value,
      test_fraction=_TEST_FRACTION.value, cold_start_fraction=_COLD_START_FRACTION.value,
      seed=_SEED.value)
  logging.info("%s (built in %.1f s).", task.description, time.time() - started)
  output_dir = _output_dir()
  os.makedirs(output_dir, exist_ok=True)
  managers.write_hparams(hparams(), os.path.join(output_dir, "hparams.csv"))

  def on_round(round_num, metrics):
    logging.info("round %d/%d  %s", round_num, config.rounds,
                 "  ".join(f"{name} {value:.4g}" for name, value in metrics.items()))

  final = reconstruction.run_recon_experiment(
      task.train, task.eval_seen, task.num_movies, config, eval_unseen=task.eval_unseen,
      output_dir=output_dir, on_round=on_round)
  print(f"Held-out ratings of {final['eval/clients']:.0f} training users: "
        f"RMSE {final['eval/rmse']:.4f}, MAE {final['eval/mae']:.4f}")
  if "unseen/rmse" in final:
    print(f"Users never trained on: RMSE {final['unseen/rmse']:.4f}, "
          f"MAE {final['unseen/mae']:.4f}")
  if "epsilon" in final:
    print(f"Privacy: (ε = {final['epsilon']:.2f}, δ = {final['delta']:.2g}) user-level DP "
          f"after {config.rounds} rounds.")
  print(f"Per-round metrics: {os.path.join(output_dir, 'metrics.csv')}\n"
        f"TensorBoard:       tensorboard --logdir {os.path.join(output_dir, 'tensorboard')}\n"
        f"Total time: {time.time() - started:.0f} s")


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  tff_runtime.stop_workers_at_exit()
  try:
    _check_task_flags()
    if _TASK.value == "eda":
      run_eda()
    elif _TASK.value == "centralized":
      run_centralized()
    elif _TASK.value == "movielens_retrieval":
      run_retrieval()
    elif _TASK.value == "movielens_recon":
      run_recon(_recon_config())
    else:
      run_rating(_configs())
  except (FlagError, DataError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


def entry_point() -> None:
  app.run(main)


if __name__ == "__main__":
  entry_point()
