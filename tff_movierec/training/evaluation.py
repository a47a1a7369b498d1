"""Per-client evaluation tables: federated global model, local-only, centralized.

Every table has one row per client plus a row `all` (every client's held-out
ratings pooled) and the columns `client, mae, mape, r2, mse, rmse,
num_examples` and `setting` (`federated`, `local_only` or `centralized`);
`per_client_table` joins them and adds each client's training ratings and
the difference to local-only training.

The comparison models (local-only, centralized) advance an optional
`progress.Progress` by one unit per training batch; `comparison_batches`
gives the total (`fit_batches` that of one model).
"""

import math
import time
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf

from tff_movierec import progress as progress_lib
from tff_movierec.training import federated_task
from tff_movierec.data import preprocessing
from tff_movierec.metrics import rating as rating_metrics
from tff_movierec.training import algorithms, stateful_local
from tff_movierec.training.loop import flatten_metrics

COLUMNS = ("setting", "client", "mae", "mape", "r2", "mse", "rmse", "num_examples")
POOLED = "all"
COMPARISON_BATCH_SIZE = 1024


def _metric_values(flat: Dict[str, float]) -> Dict[str, float]:
  """Picks mae, mape, r2, rmse (and derives mse) from flattened TFF metrics."""
  picked = {}
  for name in ("mae", "mape", "r2", "rmse", "examples"):
    matches = [v for k, v in flat.items()
               if k.endswith("/" + name) and "total_rounds" not in k]
    if matches:
      picked[name] = matches[0]
  picked["mse"] = picked["rmse"] ** 2
  picked["num_examples"] = picked.pop("examples")
  return picked


def federated_evaluator(task: federated_task.FederatedTask, config: algorithms.AlgorithmConfig,
                        client_spec: preprocessing.ClientSpec
                        ) -> Callable[[Any, List[str]], Dict[str, float]]:
  """Returns (model_weights, client_ids) -> pooled metrics over those clients.

  Uses `build_fed_eval` (FedAvg) or `build_fed_recon_eval` (FedRecon, which
  reconstructs with the batch size and shuffling of `client_spec`, the
  training clients' spec); the evaluation process is built once.
  """
  process = algorithms.build_evaluation_process(
      task, config, client_spec.batch_size, client_spec.shuffle)
  state = process.initialize()

  def evaluate(model_weights, client_ids: List[str]) -> Dict[str, float]:
    eval_state = process.set_model_weights(state, model_weights)
    datasets = [task.eval_preprocess(task.test_data.create_tf_dataset_for_client(c))
                for c in client_ids]
    return _metric_values(flatten_metrics(process.next(eval_state, datasets).metrics))

  return evaluate


def federated_table(evaluate, model_weights, client_ids: List[str]) -> pd.DataFrame:
  """Per-client and pooled metrics of the global model (setting `federated`)."""
  rows = [dict(client=c, **evaluate(model_weights, [c])) for c in client_ids]
  rows.append(dict(client=POOLED, **evaluate(model_weights, client_ids)))
  return _table(rows, "federated")


def _table(rows, setting) -> pd.DataFrame:
  frame = pd.DataFrame(rows)
  frame.insert(0, "setting", setting)
  frame["num_examples"] = frame["num_examples"].astype(int)
  return frame[list(COLUMNS)]


def _held_out(task: federated_task.FederatedTask, client: str) -> tf.data.Dataset:
  dataset = task.eval_preprocess(task.test_data.create_tf_dataset_for_client(client))
  if task.local_layers:
    _, dataset = algorithms.split_by_holdout(dataset, reconstruction_batch_size=1024,
                                             shuffle=False)
  return dataset


def _predictions(model: tf.keras.Model, task: federated_task.FederatedTask, client: str):
  """(y_true, y_pred), float [N] each, on `client`'s held-out ratings."""
  dataset = _held_out(task, client)
  y_true = np.concatenate([y.numpy().reshape(-1) for _, y in dataset])
  y_pred = model.predict(dataset.map(lambda x, y: x), verbose=0).reshape(-1)
  return y_true, y_pred


def _rows(predictions: Dict[str, tuple]) -> List[dict]:
  """Rows per client of {client: (y_true, y_pred)}, then the pooled row."""
  named = list(predictions.items())
  named.append((POOLED, tuple(np.concatenate(parts) for parts in zip(*predictions.values()))))
  return [dict(client=client, num_examples=len(y_true),
               **rating_metrics.rating_metrics(y_true, y_pred))
          for client, (y_true, y_pred) in named]


def _stateful_predictions(task: federated_task.FederatedTask,
                          process: stateful_local.StatefulLocalProcess,
                          state) -> Dict[str, tuple]:
  """{client: (y_true, y_pred)} on each client's held-out ratings, scored on
  the client with the global weights and that client's own local weights."""
  weights = process.get_model_weights(state)
  return {c: stateful_local.predict(task, weights, state["local"][c], _held_out(task, c))
          for c in task.train_data.client_ids}


class FederatedEvaluation(NamedTuple):
  """pooled: state -> metrics over every client's held-out ratings (mae, r2,
  rmse, ...); table: state -> per-client table (setting `federated`)."""

  pooled: Callable[[Any], Dict[str, float]]
  table: Callable[[Any], pd.DataFrame]


def federated_evaluation(task: federated_task.FederatedTask, config: algorithms.AlgorithmConfig,
                         client_spec: preprocessing.ClientSpec,
                         process) -> FederatedEvaluation:
  """Evaluation of the training `process`'s state, whatever the algorithm."""
  clients = list(task.test_data.client_ids)
  if isinstance(process, stateful_local.StatefulLocalProcess):
    def table(state):
      return _table(_rows(_stateful_predictions(task, process, state)), "federated")

    def pooled(state):
      return table(state).set_index("client").loc[POOLED, list(COLUMNS[2:])].to_dict()

    return FederatedEvaluation(pooled, table)
  evaluate = federated_evaluator(task, config, client_spec)
  return FederatedEvaluation(
      lambda state: evaluate(process.get_model_weights(state), clients),
      lambda state: federated_table(evaluate, process.get_model_weights(state), clients))


def _train_dataset(task: federated_task.FederatedTask, client_ids: List[str]) -> tf.data.Dataset:
  """Training ratings of `client_ids` as one dataset, one pass (no repeat)."""
  return federated_task.keras_dataset(task.train_data, task.eval_preprocess, client_ids)


def train_examples(task: federated_task.FederatedTask) -> Dict[str, int]:
  """{client: its number of training examples}."""
  return {c: int(task.train_data.create_tf_dataset_for_client(c).cardinality())
          for c in task.train_data.client_ids}


def fit_batches(examples: int, epochs: int, batch_size: int = COMPARISON_BATCH_SIZE) -> int:
  """Training batches of one comparison model fitted on `examples` examples."""
  return epochs * math.ceil(examples / batch_size)


def comparison_batches(train_counts: Mapping[str, int], epochs: int,
                       batch_size: int = COMPARISON_BATCH_SIZE) -> int:
  """Training batches of `local_only_table` plus `centralized_table`, from
  each client's training examples (`train_examples`)."""
  return (sum(fit_batches(n, epochs, batch_size) for n in train_counts.values()) +
          fit_batches(sum(train_counts.values()), epochs, batch_size))


def _compiled_model(task: federated_task.FederatedTask, learning_rate: float) -> tf.keras.Model:
  """A new Keras model of `task` with Adam, its loss and its penalty_fn."""
  model = task.keras_model_fn()
  if task.penalty_fn is not None:
    model.add_loss(task.penalty_fn(model, model.input))
  model.compile(tf.keras.optimizers.Adam(learning_rate), loss=task.loss_fn())
  return model


def _fit(task, client_ids, epochs, learning_rate, batch_size,
         progress: Optional[progress_lib.Progress]):
  # TFF builds Keras models inside temporary graphs; a fresh Keras session
  # keeps those from leaking into this eager model.
  tf.keras.backend.clear_session()
  model = _compiled_model(task, learning_rate)
  x, y = _train_arrays(task, client_ids)
  callbacks = [progress_lib.KerasProgress(progress)] if progress is not None else []
  # In-memory arrays, shuffled by Keras each epoch (a permutation of indices):
  # 3-5x faster than an element-wise tf.data shuffle of the same examples.
  model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0,
            callbacks=callbacks)
  return model


def comparison_seconds(task: federated_task.FederatedTask, train_counts: Mapping[str, int],
                       epochs: int, batch_size: int = COMPARISON_BATCH_SIZE,
                       warmup: int = 5, timed: int = 20) -> float:
  """Estimated wall time of `local_only_table` plus `centralized_table`.

  One comparison model is timed on the largest client: gathering its
  examples (per example), building and compiling it with its first `warmup`
  batches (per model: tracing dominates), `timed` more batches (per batch)
  and scoring the client's held-out ratings (per model and client). The
  estimate scales these to the K + 1 models, their batches
  (`comparison_batches`) and examples (`train_counts`, see `train_examples`).
  """
  counts = train_counts
  largest = max(counts, key=counts.get)
  started = time.perf_counter()
  x, y = _train_arrays(task, [largest])
  gather_per_example = (time.perf_counter() - started) / len(y)
  steps = min(warmup + timed, math.ceil(len(y) / batch_size))
  if steps <= warmup:
    return 0.0
  clock = _BatchClock(warmup)
  started = time.perf_counter()
  tf.keras.backend.clear_session()
  model = _compiled_model(task, 1e-3)
  model.fit(x, y, batch_size=batch_size, epochs=1, steps_per_epoch=steps, verbose=0,
            callbacks=[clock])
  per_model = clock.warm_at - started
  started = time.perf_counter()
  _predictions(model, task, largest)
  per_prediction = time.perf_counter() - started
  models = len(counts) + 1
  return (models * per_model + 2 * len(counts) * per_prediction +
          2 * sum(counts.values()) * gather_per_example +
          comparison_batches(counts, epochs, batch_size) * clock.seconds_per_batch)


class _BatchClock(tf.keras.callbacks.Callback):
  """When the first `warmup` training batches ended, and the mean wall time
  of the batches after them."""

  def __init__(self, warmup: int):
    super().__init__()
    self._warmup = warmup
    self._times = []

  def on_train_batch_end(self, batch, logs=None):
    self._times.append(time.perf_counter())

  @property
  def warm_at(self) -> float:
    return self._times[self._warmup - 1]

  @property
  def seconds_per_batch(self) -> float:
    times = self._times[self._warmup - 1:]
    return (times[-1] - times[0]) / (len(times) - 1)


def _train_arrays(task: federated_task.FederatedTask, client_ids: List[str]):
  """({input: array}, labels): the training examples of `client_ids` in memory."""
  xs, ys = [], []
  for x, y in _train_dataset(task, client_ids):
    xs.append({name: value.numpy() for name, value in x.items()})
    ys.append(y.numpy())
  return {name: np.concatenate([x[name] for x in xs]) for name in xs[0]}, np.concatenate(ys)


def centralized_table(task: federated_task.FederatedTask, epochs: int,
                      learning_rate: float = 1e-3, batch_size: int = COMPARISON_BATCH_SIZE,
                      progress: Optional[progress_lib.Progress] = None) -> pd.DataFrame:
  """One model trained on all clients' pooled training data (no federation)."""
  client_ids = task.train_data.client_ids
  model = _fit(task, client_ids, epochs, learning_rate, batch_size, progress)
  return _table(_rows({c: _predictions(model, task, c) for c in client_ids}), "centralized")


def local_only_table(task: federated_task.FederatedTask, epochs: int,
                     learning_rate: float = 1e-3, batch_size: int = COMPARISON_BATCH_SIZE,
                     progress: Optional[progress_lib.Progress] = None) -> pd.DataFrame:
  """Each client trains its own model on its own data and is scored on its own
  held-out ratings; the pooled row pools those per-client predictions."""
  predictions = {}
  for client in task.train_data.client_ids:
    model = _fit(task, [client], epochs, learning_rate, batch_size, progress)
    predictions[client] = _predictions(model, task, client)
  return _table(_rows(predictions), "local_only")


def per_client_table(tables: Sequence[pd.DataFrame],
                     train_counts: Dict[str, int]) -> pd.DataFrame:
  """The settings' tables, one after the other, with two more columns:
  `train_examples` (the client's training ratings; all clients' on the pooled
  row) and `mae_minus_local_only` (this row's MAE minus the local-only MAE of
  the same client: negative = better than training alone; empty without a
  local-only table)."""
  table = pd.concat(tables, ignore_index=True)
  counts = dict(train_counts, **{POOLED: sum(train_counts.values())})
  table.insert(2, "train_examples", table["client"].map(counts).astype(int))
  local = table[table["setting"] == "local_only"].set_index("client")["mae"]
  table["mae_minus_local_only"] = table["mae"] - table["client"].map(local)
  return table


def better_than_local_only(table: pd.DataFrame, setting: str = "federated") -> tuple:
  """(clients where `setting` has a lower MAE than local-only, clients)."""
  rows = table[(table["setting"] == setting) & (table["client"] != POOLED)]
  return int((rows["mae_minus_local_only"] < 0).sum()), len(rows)
