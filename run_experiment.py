"""Runs one tff_movierec experiment, configured by absl flags.

  python run_experiment.py --task=TASK --data_dir=DIR --root_output_dir=OUT [flags]

Every task is registered in `tasks/registry.py` and declares the flags it
reads; a flag set on the command line that the chosen task does not read is
refused before anything loads, and so is every invalid or contradictory
value. Federated tasks then run through the one training loop
(`tff_movierec/training/loop.py`): metrics.csv and TensorBoard every round,
checkpoints, resume, ε with a DP aggregator.

This is the only module that reads FLAGS. The library's errors name config
fields; `FIELD_FLAGS` below maps them to flag names, in one place.

The console shows only the project's own lines: TensorFlow's C++ log, Python
warnings and absl's INFO lines (e.g. checkpoint chatter) are silenced before
TensorFlow is imported, unless absl's `--verbosity` (`-v`) is given: then
everything is shown from that level on (0 = INFO, 1 = DEBUG).
"""

import collections
import logging as std_logging
import os
import re
import sys
from typing import List, Sequence
import warnings


def _verbosity_given(argv: Sequence[str]) -> bool:
  return any(arg.startswith(("--verbosity", "-v")) for arg in argv[1:])


def _import_tensorflow_silently() -> None:
  """Imports TensorFlow with file descriptor 2 (stderr) sent to /dev/null.

  On import, TensorFlow 2.14's XLA writes three "Unable to register
  cuDNN/cuFFT/cuBLAS factory" error lines, even on machines without a GPU,
  and no log level (TF_CPP_MIN_LOG_LEVEL=3 included) hides them.
  """
  saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
  os.dup2(null, 2)
  try:
    import tensorflow  # noqa: F401
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(null)


QUIET = not _verbosity_given(sys.argv)
if QUIET:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  warnings.simplefilter("ignore")
  _import_tensorflow_silently()

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402
# TensorFlow must be imported before absl's app.run: imported inside main()
# (after flag parsing), tf.keras.Input returns graph tensors instead of
# KerasTensors and functional models cannot be built.
import tensorflow as tf  # noqa: E402

from tasks import registry, runner  # noqa: E402
from tasks.definition import NO_PRESET, Hparams, TaskDefinition  # noqa: E402
from tff_movierec.data import releases  # noqa: E402
from tff_movierec.data.download import DataError  # noqa: E402
from tff_movierec.errors import ConfigError, DivergenceError, ExperimentFolderError  # noqa: E402
from tff_movierec.models import rating_ffnn  # noqa: E402
from tff_movierec.remote_workers import WorkerUnreachableError  # noqa: E402
from tff_movierec.training import algorithms, sampling  # noqa: E402

_TASK_LINES = "\n".join(f"  {name}: {task.summary}." for name, task in registry.TASKS.items())

# Task.
flags.DEFINE_enum("task", "movielens_rating", list(registry.TASKS),
                  f"What to run:\n{_TASK_LINES}")
flags.DEFINE_string("experiment_name", None,
                    "Folder name under --root_output_dir (default: the task name).")
flags.DEFINE_integer(
    "seed", 0,
    "Seeds everything random in a federated task: the split, the partition, each round's "
    "clients, each client's shuffle order in each round, the initial model weights and the "
    "Keras comparison models, so the same command gives the same metrics.csv. What can "
    "still vary: the speed/ columns (times), and the last digits of sums that "
    "TensorFlow's multithreaded kernels add up in a different order from run to run.")
flags.DEFINE_bool("use_synthetic_data", False,
                  "Use small generated data (with timestamps) instead of MovieLens.")

# Data and partition.
flags.DEFINE_string("data_dir", None,
                    "Folder with the files of --dataset (ml-1m: users.dat, movies.dat and "
                    "ratings.dat|ratings.csv); default: the cache (downloads the release's zip "
                    "if missing).")
flags.DEFINE_enum("dataset", releases.DEFAULT, list(releases.NAMES),
                  "MovieLens release: the zip downloaded without --data_dir, and the files "
                  "expected in --data_dir (ml-10m: movies.dat, ratings.dat; ml-20m, ml-25m: "
                  "movies.csv, ratings.csv). Only ml-1m has demographics; from ml-10m on "
                  "ratings are half stars from 0.5.")
flags.DEFINE_string("ratings_path", None,
                    "A ratings file to use instead of the folder's, e.g. one with timestamps "
                    "(ml-1m-latest20/ratings.csv for the next-movie task).")
flags.DEFINE_float("test_fraction", 0.1,
                   "Per-user fraction of ratings held out for evaluation.")
flags.DEFINE_enum("eval_split", "test", ["test", "validation"],
                  "Evaluate on the test ratings, or on a validation split carved from the "
                  "training ratings (to choose settings; the test ratings stay unseen).")
flags.DEFINE_enum("partition", "dirichlet", ["natural", "iid", "dirichlet", "demographic"],
                  "How users are split into clients (natural: one client per user).")
flags.DEFINE_integer("num_clients", None, "Clients (default 10; not for --partition=natural).")
flags.DEFINE_float("dirichlet_concentration", 0.5,
                   "Dirichlet concentration (smaller = more skewed).")
flags.DEFINE_enum("partition_attribute", "age", ["age", "occupation", "gender"],
                  "User attribute of --partition=demographic.")
flags.DEFINE_enum("ranking_protocol", "recbole_ml1m", ["recbole_ml1m", "holdout"],
                  "Split and full-ranking protocol of the retrieval task.")

# Model.
flags.DEFINE_enum("model", "fused_mf", list(rating_ffnn.MODELS),
                  "Rating network: fused_mf (the seed's feature-fused MLP plus a biased "
                  "matrix-factorization path) or seed_ffnn (the seed's network alone).")
flags.DEFINE_integer("mf_dim", None,
                     f"Factor size of fused_mf's MF path (default "
                     f"{rating_ffnn.RatingModelConfig.mf_dim}).")
flags.DEFINE_float("factor_l2", None,
                   "L2 weight of fused_mf's factors and biases, per rated row (default "
                   f"{rating_ffnn.RatingModelConfig.factor_l2} with --algorithm=stateful_local; "
                   "0 with the algorithms TFF builds, which cannot apply it).")
flags.DEFINE_enum("user_embedding", "local", ["local", "global", "none"],
                  "local: user rows stay on the client (--algorithm=fed_recon or "
                  "stateful_local); global: an ordinary weight (FedAvg sends every sampled "
                  "user's row to the server); none.")
flags.DEFINE_integer("embedding_dim", 32, "Embedding size.")
flags.DEFINE_list("hidden_units", ["256", "128"], "Hidden layer sizes.")
flags.DEFINE_float("dropout", 0.2, "Dropout after each hidden layer.")
flags.DEFINE_enum("dropout_masks", "hashed", list(rating_ffnn.DROPOUT_MASKS),
                  "hashed: keep-masks from a counter hash, the rate rounded to 1/256 (fast "
                  "in TFF); keras: tf.keras.layers.Dropout.")
flags.DEFINE_list("drop_features", [],
                  "Feature groups the rating network leaves out (the seed's ablation): "
                  f"{', '.join(rating_ffnn.FEATURE_GROUPS)}. user_mean is computed on the "
                  "client; movie_mean and popularity come from a federated sum. The user ID "
                  "is --user_embedding.")

# Training.
flags.DEFINE_enum("algorithm", "stateful_local", list(algorithms.ALGORITHMS),
                  "fedavg; fed_recon (user embedding reconstructed on the client each "
                  "round); stateful_local (user embedding kept and trained on the client "
                  "across rounds).")
flags.DEFINE_integer("total_rounds", 15, "Training rounds (raise it to extend a run).")
flags.DEFINE_integer("clients_per_round", 10,
                     "Clients per round (the expected number with Poisson sampling); "
                     "movielens_recon and movielens_fedrecon: 0 = every user, every round.")
flags.DEFINE_enum("client_sampling", "poisson", list(sampling.SCHEMES),
                  "movielens_recon, movielens_fedrecon: each user joins a round with probability "
                  "clients_per_round / users (poisson, what the DP accounting assumes) or "
                  "exactly clients_per_round distinct users (uniform).")
flags.DEFINE_integer("client_epochs", 1, "Local epochs per round.")
flags.DEFINE_integer("client_batch_size", 256, "Local batch size.")
flags.DEFINE_bool("shuffle_client_examples", True,
                  "Visit each client's examples in a fresh random order every epoch.")
flags.DEFINE_integer("max_client_examples", None, "Cap on examples a client processes per round.")
flags.DEFINE_enum("client_weighting", "num_examples", ["num_examples", "uniform"],
                  "Weight of each client's update in the average.")
flags.DEFINE_integer("reconstruction_epochs", 1,
                     "fed_recon: epochs reconstructing the user embedding.")

# Optimizers.
flags.DEFINE_enum("client_optimizer", "sgd", ["sgd", "adam", "adagrad", "yogi"],
                  "Client optimizer.")
flags.DEFINE_float("client_learning_rate", 0.02, "Client learning rate.")
flags.DEFINE_float("client_momentum", 0.0, "Client SGD momentum.")
flags.DEFINE_enum("server_optimizer", "adam", ["sgd", "adam", "adagrad", "yogi"],
                  "Server optimizer.")
flags.DEFINE_float("server_learning_rate", 0.03, "Server learning rate.")
flags.DEFINE_integer("server_lr_decay_rounds", 0,
                     "Cosine-decay the server learning rate to a tenth of it over this many "
                     "rounds (then constant); 0: constant.")
flags.DEFINE_float("server_momentum", 0.0, "Server SGD momentum (--server_optimizer=sgd).")
flags.DEFINE_float("server_beta_1", 0.9, "Server Adam/Yogi beta_1.")
flags.DEFINE_float("server_beta_2", 0.999, "Server Adam/Yogi beta_2.")
flags.DEFINE_enum("local_optimizer", "sgd", ["sgd", "adam", "adagrad", "yogi"],
                  "Optimizer of the client-local user embedding (fed_recon and "
                  "movielens_fedrecon: reconstruction; stateful_local: its training alongside "
                  "the global weights).")
flags.DEFINE_float("local_learning_rate", 20.0,
                   "Learning rate of --local_optimizer (large for the rating task: a user's "
                   "row gets a 1/batch share of a batch's mean-loss gradient).")

# Privacy and aggregation.
flags.DEFINE_string("privacy", NO_PRESET,
                    "A privacy preset of the task, e.g. movielens_recon's user_dp (user-level "
                    "DP settings chosen on validation; flags given beside it override them).")
flags.DEFINE_enum("aggregator", "none", ["none", "dp_fixed", "dp_adaptive", "secure",
                                         "compression"],
                  "Model-update aggregator. DP kinds are unweighted: they need "
                  "--client_weighting=uniform.")
flags.DEFINE_float("noise_multiplier", None, "DP noise std / clip norm.")
flags.DEFINE_float("target_epsilon", None,
                   "DP: calibrate the noise multiplier so that ε <= this after --total_rounds "
                   "rounds at --dp_delta (printed and written to hparams.csv as "
                   "calibrated_noise_multiplier); excludes --noise_multiplier.")
flags.DEFINE_float("clip_norm", None, "DP L2 clip (the initial clip if adaptive).")
flags.DEFINE_float("target_unclipped_quantile", None,
                   "dp_adaptive: target quantile of update norms.")
flags.DEFINE_float("dp_delta", None, "δ of the reported (ε, δ); default 1 / clients^1.1.")

# Cross-device: exact user solves (movielens_recon).
flags.DEFINE_float("user_l2", 0.06,
                   "movielens_recon: ridge of each user's exact solve, per rating of the user "
                   "(ALS-WR's λ).")
flags.DEFINE_float("item_l2", 0.15,
                   "movielens_recon: L2 of a movie's factors and bias, per rating of the movie.")
flags.DEFINE_bool("implicit_feedback", True,
                  "movielens_recon: add SVD++'s term from the set of movies a user rated "
                  "(known only on its device).")
flags.DEFINE_bool("public_movie_features", False,
                  "movielens_recon: each user also fits weights on the movies' public "
                  "metadata (genres, release year): no privacy cost.")
flags.DEFINE_bool("movie_bias_feature", False,
                  "movielens_recon: each user also fits its own weight on the movie bias "
                  "(how much it agrees with the crowd), solved on its device.")
flags.DEFINE_integer("users_per_client_call", None,
                     "movielens_recon: users simulated in one TFF client call (their "
                     "aggregate equals one client per user with --aggregator=none); default "
                     "512 with --aggregator=none, else 1 (required by per-client clipping).")

# Cross-device Federated Reconstruction with SGD (movielens_fedrecon).
flags.DEFINE_integer("reconstruction_steps", 10,
                     "movielens_fedrecon: full-batch steps that reconstruct a user's embedding "
                     "from half of its ratings.")
flags.DEFINE_integer("post_reconstruction_steps", 3,
                     "movielens_fedrecon: full-batch steps on the movie side with the other "
                     "half.")
flags.DEFINE_float("reconstruction_l2", 0.01,
                   "movielens_fedrecon: L2 penalty on the reconstructed user embedding and "
                   "bias.")
flags.DEFINE_float("server_weight_decay", 0.5,
                   "movielens_fedrecon: decoupled weight decay of the server Adam (AdamW); "
                   "0 = plain Adam.")
flags.DEFINE_float("cold_start_fraction", 0.0,
                   "movielens_recon, movielens_fedrecon: fraction of users held out of "
                   "training entirely, evaluated after solving or reconstructing their user "
                   "side from their ratings.")
flags.DEFINE_integer("eval_clients", 1000,
                     "movielens_recon, movielens_fedrecon: users in the periodic evaluations "
                     "(a fixed random subset; movielens_recon's default: all).")
flags.DEFINE_integer("final_eval_clients", None,
                     "movielens_recon, movielens_fedrecon: users in the final evaluation (a fixed random subset; "
                     "default all).")

# Federated EASE.
flags.DEFINE_float("ease_l2", 1000.0,
                   "movielens_ease: EASE's λ (1000 was chosen on the recbole_ml1m validation "
                   "split for centralized EASE).")
flags.DEFINE_float("ease_dropout", 0.0,
                   "movielens_ease: EDLAE's dropout p (0: EASE): the diagonal of the Gram "
                   "matrix, scaled by p / (1 - p), is added to the regularization.")
flags.DEFINE_integer("max_user_history", None,
                     "movielens_ease: interactions each user contributes to the Gram matrix "
                     "(a random subset; default all). Required with --aggregator=dp_fixed: "
                     "it bounds one user's contribution, so the noise std is "
                     "noise_multiplier * max_user_history.")

# Evaluation.
flags.DEFINE_integer("rounds_per_eval", 5,
                     "Evaluate every this many rounds and after the last (0: only after the "
                     "last).")
flags.DEFINE_integer("baseline_epochs", 3,
                     "Epochs of the local-only and centralized comparison models (0: skip).")

# Output.
flags.DEFINE_string("root_output_dir", "output", "Root folder of experiment outputs.")
flags.DEFINE_integer("rounds_per_checkpoint", 1, "Save program state every this many rounds.")

# Runtime.
flags.DEFINE_list("workers", [],
                  "TFF workers host:port,... (`python -m tff_movierec.worker --port=P` on each): "
                  "each round's clients are split across them and the partial aggregates "
                  "merged (TFF's mergeable context). Default: one local worker.")
flags.DEFINE_integer("num_subrounds", None,
                     "Subrounds each round is split into across --workers (default: one per "
                     "worker).")
flags.DEFINE_enum("client_data_source", "auto", ["auto", "controller", "workers"],
                  "With --workers (movielens_recon): where the users' ratings (training and "
                  "evaluation) come from. workers: each worker reads them from "
                  "--worker_data_dir, so a round sends "
                  "keys instead of ratings; controller: sent every round; auto: workers if every "
                  "worker reads the folder, else controller.")
flags.DEFINE_string("worker_data_dir", None,
                    "With --workers: a folder at the same path on this machine and every "
                    "worker (e.g. a shared filesystem) where the users' ratings are written "
                    "once for the workers. Default: the experiment folder's worker_data/.")
flags.DEFINE_float("worker_timeout_s", 60.0,
                   "With --workers: end the run, naming the worker, when one cannot be "
                   "reached for this long (resume later with the same command).")

FLAGS = flags.FLAGS
_GROUPS = collections.OrderedDict([
    ("task", ["task", "experiment_name", "seed", "use_synthetic_data"]),
    ("data", ["data_dir", "dataset", "ratings_path", "test_fraction", "eval_split", "partition",
              "num_clients", "dirichlet_concentration", "partition_attribute",
              "ranking_protocol"]),
    ("model", ["model", "mf_dim", "factor_l2", "user_embedding", "embedding_dim",
               "hidden_units", "dropout", "dropout_masks", "drop_features"]),
    ("training", ["algorithm", "total_rounds", "clients_per_round", "client_sampling",
                  "client_epochs", "client_batch_size", "shuffle_client_examples",
                  "max_client_examples", "client_weighting", "reconstruction_epochs"]),
    ("optimizers", ["client_optimizer", "client_learning_rate", "client_momentum",
                    "server_optimizer", "server_learning_rate", "server_momentum",
                    "server_beta_1",
                    "server_beta_2", "server_lr_decay_rounds", "local_optimizer",
                    "local_learning_rate"]),
    ("privacy", ["privacy", "aggregator", "noise_multiplier", "target_epsilon", "clip_norm",
                 "target_unclipped_quantile", "dp_delta"]),
    ("cross_device", ["user_l2", "item_l2", "implicit_feedback", "public_movie_features",
                      "movie_bias_feature",
                      "users_per_client_call",
                      "reconstruction_steps", "post_reconstruction_steps",
                      "reconstruction_l2", "server_weight_decay", "cold_start_fraction",
                      "eval_clients", "final_eval_clients"]),
    ("ease", ["ease_l2", "ease_dropout", "max_user_history"]),
    ("evaluation", ["rounds_per_eval", "baseline_epochs"]),
    ("output", ["root_output_dir", "rounds_per_checkpoint"]),
    ("runtime", ["workers", "num_subrounds", "worker_timeout_s", "client_data_source",
                 "worker_data_dir"]),
])
_FLAG_NAMES = [name for group in _GROUPS.values() for name in group]

# Config field -> flag, where the library's field name is not the flag's.
FIELD_FLAGS = {
    "scheme": "partition", "concentration": "dirichlet_concentration",
    "attribute": "partition_attribute", "num_epochs": "client_epochs",
    "batch_size": "client_batch_size", "shuffle": "shuffle_client_examples",
    "max_elements": "max_client_examples", "kind": "aggregator",
    "uniform_weighting": "client_weighting", "reconstruction_optimizer": "local_optimizer",
    "reconstruction_learning_rate": "local_learning_rate", "protocol": "ranking_protocol",
    "delta": "dp_delta", "l2": "reconstruction_l2", "first_steps": "reconstruction_steps",
    "second_steps": "post_reconstruction_steps", "implicit": "implicit_feedback",
}


class FlagError(ValueError):
  """Contradictory or stray flags, detected before anything loads."""


def flag_message(error) -> str:
  """`error`'s message with each config field it names (`error.fields`)
  written as its flag."""
  message = str(error)
  for field in sorted(set(error.fields), key=len, reverse=True):
    flag = FIELD_FLAGS.get(field, field)
    message = re.sub(rf"(?<![\w-]){re.escape(field)}\b", f"--{flag}", message)
  return message


def _given(name: str) -> bool:
  return not FLAGS[name].using_default_value


def task_hparams(task: TaskDefinition) -> Hparams:
  """The flags `task` reads, after applying its defaults; refuses flags it does not read."""
  stray = [f"--{name}" for name in _FLAG_NAMES if _given(name) and name not in task.all_reads]
  if stray:
    raise FlagError(f"{', '.join(stray)} {'is' if len(stray) == 1 else 'are'} not read by "
                    f"--task={task.name}; it reads --{', --'.join(task.all_reads[1:])}.")
  if FLAGS.privacy != NO_PRESET and FLAGS.privacy not in task.presets:
    raise FlagError(f"--privacy={FLAGS.privacy} is not a preset of --task={task.name} (its "
                    f"presets: {', '.join(task.presets) or 'none'}).")
  for name, value in task.defaults_for(FLAGS.use_synthetic_data, FLAGS.privacy).items():
    if not _given(name):
      FLAGS.set_default(name, value)
  needs_workers = [f"--{name}" for name in ("num_subrounds", "worker_timeout_s",
                                            "client_data_source", "worker_data_dir")
                   if _given(name)]
  if needs_workers and not FLAGS.workers:
    raise FlagError(f"{', '.join(needs_workers)} without --workers: they only apply to "
                    "remote TFF workers.")
  if FLAGS.use_synthetic_data:
    given = [f"--{name}" for name in ("data_dir", "dataset", "ratings_path") if _given(name)]
    if given:
      raise FlagError(f"{', '.join(given)} with --use_synthetic_data: choose the real data "
                      "or the synthetic data.")
  return Hparams(task.name, {name: FLAGS[name].value for name in task.all_reads})


def tensorboard_command(root_output_dir: str) -> str:
  """The command that shows every run under `root_output_dir`, with the
  tensorboard of this Python's environment (e.g. .venv/bin/tensorboard)."""
  binary = os.path.join(os.path.dirname(sys.executable), "tensorboard")
  relative = os.path.relpath(binary)
  return f"{binary if relative.startswith('..') else relative} --logdir {root_output_dir}"


def run(task: TaskDefinition, hp: Hparams) -> str:
  """Runs `task` (see tasks/runner.py); returns the console summary, its
  headline last."""
  if not task.federated:
    return runner.run_standalone(task, hp)
  trained = runner.train(task, hp, log=lambda line: print(line, flush=True))
  report = trained.report
  return "\n".join([line for line in (report.text,) if line] + [
      f"Summary and plots: {trained.summary_path}",
      f"TensorBoard:       {tensorboard_command(hp['root_output_dir'])}"] +
      [line for line in (report.headline,) if line])


def main(argv: List[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  if QUIET:
    logging.set_verbosity(logging.WARNING)
    tf.get_logger().setLevel("ERROR")
  logging.get_absl_logger().addFilter(_CHECKPOINT_MESSAGES_AT_DEBUG)  # once: same object
  task = registry.TASKS[FLAGS.task]
  try:
    print(run(task, task_hparams(task)))
  except (ConfigError, ExperimentFolderError) as e:
    _fail(flag_message(e))
  except (FlagError, DataError) as e:
    _fail(str(e))
  except DivergenceError as e:
    _fail(flag_message(e), code=1)
  except WorkerUnreachableError as e:
    _fail(f"{e} The run's checkpoints are kept: run the same command again to resume "
          "once the worker is back.", code=1)


class _CheckpointMessagesAtDebugLevel(std_logging.Filter):
  """TFF logs every checkpoint save, load and removal at INFO ("Program state
  saved: ..."); shown here only from --verbosity=1 (DEBUG) on."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    if record.levelno == std_logging.INFO and record.getMessage().startswith("Program state "):
      record.levelno, record.levelname = std_logging.DEBUG, "DEBUG"
      return logging.get_verbosity() >= logging.DEBUG
    return True


_CHECKPOINT_MESSAGES_AT_DEBUG = _CheckpointMessagesAtDebugLevel()


def _fail(message: str, code: int = 2) -> None:
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(code)


def entry_point() -> None:
  app.run(main)


if __name__ == "__main__":
  entry_point()
