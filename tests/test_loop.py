"""The one training loop, on a stand-in process (no TFF computation): schema,
evaluation cadence, ε, checkpoints, resume and divergence."""

import csv
import os
from typing import NamedTuple

import numpy as np
import pytest
import tensorflow_federated as tff

from tff_movierec import tff_runtime
from tff_movierec.errors import ConfigError, DivergenceError
from tff_movierec.privacy import accounting
from tff_movierec.training import loop, managers
from tff_movierec.training.federated_run import DpAccounting, FederatedRun
from tff_movierec.training.sampling import ClientSampler

CLIENTS = [str(i) for i in range(6)]


class Output(NamedTuple):
  state: dict
  metrics: dict


class CountingProcess:
  """State: one weight that grows by the number of clients each round; the
  loss of round r is `losses[r]` (default 1 / r)."""

  def __init__(self, losses=None):
    self.losses = losses or {}
    self.calls = []

  def initialize(self):
    return {"w": np.zeros(2, np.float32), "round": np.int32(0)}

  def next(self, state, client_data):
    round_num = int(state["round"]) + 1
    self.calls.append((round_num, list(client_data)))
    metrics = {"client_work": {"train": {"loss": self.losses.get(round_num, 1.0 / round_num),
                                         "num_examples": 10.0 * len(client_data)}},
               "finalizer": {"update_non_finite": 0}}
    return Output({"w": state["w"] + len(client_data), "round": np.int32(round_num)}, metrics)

  def get_model_weights(self, state):
    return tff.learning.models.ModelWeights([state["w"]], [])


def _run(process, **kwargs):
  return FederatedRun(
      process=process, initial_state_fn=process.initialize,
      sampler=ClientSampler(CLIENTS, 2, "uniform", seed=1),
      client_data_fn=lambda clients, round_num: [f"{c}@{round_num}" for c in clients],
      evaluate_fn=lambda state, round_num: {"w": float(state["w"][0])}, **kwargs)


def _train(tmp_path, run, total_rounds, rounds_per_eval=2, name="run"):
  folder = managers.open_experiment(str(tmp_path), name, {"total_rounds": total_rounds})
  try:
    experiment = folder.create_managers()
    state = loop.run_training(run, loop.LoopConfig(total_rounds, rounds_per_eval),
                              experiment, log=lambda line: None)
  finally:
    folder.close()
  with open(experiment.metrics_csv) as f:
    return state, list(csv.DictReader(f))


def test_rows_have_one_schema_and_evaluations_every_n_rounds(tmp_path):
  process = CountingProcess()
  state, rows = _train(tmp_path, _run(process), total_rounds=5)
  assert [int(r["round_num"]) for r in rows] == [1, 2, 3, 4, 5]
  assert {"train/loss", "train/num_examples", "finalizer/update_non_finite", "clients",
          "speed/round_seconds", "speed/examples_per_second", "eval/w"} <= set(rows[0])
  assert [r["eval/w"] != "" for r in rows] == [False, True, False, True, True]
  assert float(rows[3]["eval/w"]) == 8.0  # 2 clients a round, 4 rounds
  assert float(rows[0]["train/loss"]) == 1.0 and float(rows[0]["clients"]) == 2.0
  assert state["w"][0] == 10.0
  # Clients come from the sampler, datasets from client_data_fn, per round.
  assert process.calls[2] == (3, [f"{c}@3" for c in ClientSampler(CLIENTS, 2, seed=1)(3)])


def test_dp_runs_report_epsilon_of_every_round(tmp_path):
  run = _run(CountingProcess(), dp=DpAccounting(noise_multiplier=1.0, delta=1e-3))
  _, rows = _train(tmp_path, run, total_rounds=3)
  epsilons = [float(r["privacy/epsilon"]) for r in rows]
  assert epsilons == pytest.approx(
      [accounting.epsilon(1.0, 2 / 6, r, 1e-3) for r in (1, 2, 3)], rel=1e-5)  # 6 digits
  assert epsilons[0] < epsilons[1] < epsilons[2]
  assert {float(r["privacy/delta"]) for r in rows} == {1e-3}


def test_a_resumed_run_continues_after_its_checkpoint_and_releases_each_round_once(tmp_path):
  _train(tmp_path, _run(CountingProcess()), total_rounds=3)
  process = CountingProcess()
  state, rows = _train(tmp_path, _run(process), total_rounds=5)
  assert [call[0] for call in process.calls] == [4, 5]  # rounds 1-3 were not re-run
  assert [int(r["round_num"]) for r in rows] == [1, 2, 3, 4, 5]
  assert state["w"][0] == 10.0
  with pytest.raises(ConfigError, match="total_rounds=2: the experiment already has a "
                                        "checkpoint of round 5"):
    _train(tmp_path, _run(CountingProcess()), total_rounds=2)


def test_a_crash_between_release_and_checkpoint_leaves_each_round_once(tmp_path):
  run = _run(CountingProcess())
  folder = managers.open_experiment(str(tmp_path), "run", {})
  experiment = folder.create_managers()
  saved = []

  async def save_two_rounds_only(state, version):
    if version > 2:
      raise KeyboardInterrupt  # killed after releasing round 3, before saving it
    saved.append(version)
    await managers_save(state, version)

  managers_save = experiment.program_state_manager.save
  experiment.program_state_manager.save = save_two_rounds_only
  with pytest.raises(KeyboardInterrupt):
    loop.run_training(run, loop.LoopConfig(4, 0), experiment, log=lambda line: None)
  folder.close()
  assert saved == [1, 2]
  _, rows = _train(tmp_path, _run(CountingProcess()), total_rounds=4)
  assert [int(r["round_num"]) for r in rows] == [1, 2, 3, 4]


@pytest.mark.parametrize("losses,cause", [({2: float("nan")}, "the training loss is nan"),
                                          ({2: float("inf")}, "the training loss is inf")])
def test_divergence_stops_the_run_naming_the_round_and_keeps_the_last_good_state(
    tmp_path, losses, cause):
  run = _run(CountingProcess(losses), divergence_hint={"client_learning_rate": 30.0})
  with pytest.raises(DivergenceError, match=rf"round 2: {cause}\. Likely cause: a step size "
                                            r"too large \(client_learning_rate=30\.0\)") as e:
    _train(tmp_path, run, total_rounds=4)
  assert e.value.round_num == 2 and e.value.fields == ("client_learning_rate",)
  checkpoints = os.listdir(os.path.join(tmp_path, "run", "checkpoints"))
  assert checkpoints == ["program_state_1"]
  with open(os.path.join(tmp_path, "run", "metrics.csv")) as f:
    assert [row["round_num"] for row in csv.DictReader(f)] == ["1"]


def test_non_finite_weights_are_divergence_too(tmp_path):
  class NanWeights(CountingProcess):
    def next(self, state, client_data):
      output = super().next(state, client_data)
      output.state["w"][1] = np.nan
      return output

  with pytest.raises(DivergenceError, match="round 1: a model weight is not finite"):
    _train(tmp_path, _run(NanWeights()), total_rounds=2)


def test_a_round_without_clients_changes_nothing_but_counts_for_dp(tmp_path):
  process = CountingProcess()
  run = FederatedRun(process=process, initial_state_fn=process.initialize,
                     sampler=ClientSampler(CLIENTS, 1, "poisson", seed=0),
                     client_data_fn=lambda clients, round_num: clients,
                     dp=DpAccounting(1.0, 1e-3))
  state, rows = _train(tmp_path, run, total_rounds=12)
  empty = [r for r in rows if float(r["clients"]) == 0]
  assert empty, "seed 0 gives rounds without clients"
  assert all(r["train/loss"] == "" and r["privacy/epsilon"] != "" for r in empty)
  assert len(process.calls) == 12 - len(empty)


@pytest.mark.parametrize("field,kwargs", [("total_rounds", dict(total_rounds=0)),
                                          ("rounds_per_eval", dict(rounds_per_eval=-1)),
                                          ("rounds_per_checkpoint",
                                           dict(rounds_per_checkpoint=0))])
def test_loop_config_names_the_bad_field(field, kwargs):
  with pytest.raises(ConfigError, match=rf"^{field}=-?\d+: must be >= ") as e:
    loop.LoopConfig(**kwargs)
  assert e.value.fields == (field,)


def test_a_finite_loss_above_the_task_bound_is_divergence(tmp_path):
  run = _run(CountingProcess({3: 2.8e24}), loss_bound=100.0,
             divergence_hint={"client_learning_rate": 1e6})
  with pytest.raises(DivergenceError, match=r"round 3: the training loss is 2\.8e\+24, above "
                                            r"100\. Likely cause: a step size too large "
                                            r"\(client_learning_rate=1000000\.0\)"):
    _train(tmp_path, run, total_rounds=4)


def test_tidy_rounds_to_six_significant_digits_and_counts_to_ints():
  tidied = loop.tidy({"train/loss": 0.123456789, "clients": 10.0, "eval/num_examples": 99.0,
                      "speed/round_seconds": 12345.678, "eval/mae": float("nan")})
  assert tidied["train/loss"] == 0.123457 and tidied["speed/round_seconds"] == 12345.7
  assert tidied["clients"] == 10 and isinstance(tidied["clients"], int)
  assert isinstance(tidied["eval/num_examples"], int)
  assert np.isnan(tidied["eval/mae"])


def test_every_loop_metric_has_a_description():
  from tff_movierec.training import tensorboard
  for name in ("train/loss", "train/mae", "eval/ndcg@10", "speed/round_seconds",
               "speed/examples_per_second", "speed/eval_seconds", "speed/elapsed_seconds",
               "privacy/epsilon"):
    assert tensorboard.describe(name), name
  assert tensorboard.describe("aggregator/clip") == ""
  assert tensorboard.is_count("clients") and tensorboard.is_count("eval/num_examples")
  assert not tensorboard.is_count("eval/mae")


class WorkerKillingProcess(CountingProcess):
  """Kills the local TFF worker before the TFF call of round `kill_round`."""

  def __init__(self, kill_round):
    super().__init__()
    self.kill_round = kill_round

  def next(self, state, client_data):
    round_num = int(state["round"]) + 1
    if round_num == self.kill_round and not self.killed:
      self.killed = True
      tff_runtime._worker.process.kill()  # pylint: disable=protected-access
      tff_runtime._worker.process.wait()  # pylint: disable=protected-access
    assert _add(np.float32(1.0)) == 2.0  # a TFF call on the current worker
    return super().next(state, client_data)

  killed = False


@tff.tensorflow.computation(np.float32)
def _add(x):
  return x + 1.0


def test_a_dead_tff_worker_is_restarted_and_the_round_repeated(tmp_path):
  tff_runtime.install()
  process = WorkerKillingProcess(kill_round=2)
  lines = []
  folder = managers.open_experiment(str(tmp_path), "run", {"total_rounds": 3})
  try:
    experiment = folder.create_managers()
    state = loop.run_training(_run(process), loop.LoopConfig(3, 0), experiment,
                              log=lines.append)
  finally:
    folder.close()
  assert process.killed and int(state["round"]) == 3
  # Round 2 was repeated with the same clients, and released once.
  assert [r for r, _ in process.calls] == [1, 2, 3]
  assert any("died" in line and "(1/3 restarts)" in line for line in lines), lines
  with open(experiment.metrics_csv) as f:
    assert [int(row["round_num"]) for row in csv.DictReader(f)] == [1, 2, 3]
