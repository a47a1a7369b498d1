"""The experiment folder: writable, locked, and resumed only with the same settings."""

import os

import pytest

from tff_movierec.errors import ExperimentFolderError
from tff_movierec.training import managers

HPARAMS = {"task": "t", "client_learning_rate": 0.05, "num_clients": 10, "total_rounds": 2,
           "dp_delta": None}


def _checkpointed(root, hparams=HPARAMS):
  folder = managers.open_experiment(str(root), "run", hparams)
  os.makedirs(os.path.join(folder.output_dir, "checkpoints", "program_state_1"))
  folder.close()
  return os.path.join(str(root), "run")


def test_a_second_run_in_the_same_folder_is_refused(tmp_path):
  first = managers.open_experiment(str(tmp_path), "run", HPARAMS)
  try:
    with pytest.raises(ExperimentFolderError, match=rf"in use by another run \(pid {os.getpid()}\)"):
      managers.open_experiment(str(tmp_path), "run", HPARAMS)
  finally:
    first.close()
  managers.open_experiment(str(tmp_path), "run", HPARAMS).close()  # free again


def test_resuming_with_other_settings_is_refused_naming_them(tmp_path):
  output_dir = _checkpointed(tmp_path)
  changed = dict(HPARAMS, client_learning_rate=0.1, num_clients=4)
  with pytest.raises(ExperimentFolderError) as e:
    managers.open_experiment(str(tmp_path), "run", changed)
  message = str(e.value)
  assert "client_learning_rate: 0.05 -> 0.1" in message and "num_clients: 10 -> 4" in message
  assert "total_rounds" in message  # named as the one that may change
  assert managers.read_hparams(os.path.join(output_dir, "hparams.csv")) == dict(
      task="t", client_learning_rate="0.05", num_clients="10", total_rounds="2",
      dp_delta="")  # nothing lost


def test_raising_total_rounds_extends_the_run(tmp_path):
  output_dir = _checkpointed(tmp_path)
  managers.open_experiment(str(tmp_path), "run", dict(HPARAMS, total_rounds=5)).close()
  assert managers.read_hparams(os.path.join(output_dir, "hparams.csv"))["total_rounds"] == "5"


def test_without_a_checkpoint_the_settings_may_change(tmp_path):
  managers.open_experiment(str(tmp_path), "run", HPARAMS).close()
  managers.open_experiment(str(tmp_path), "run", dict(HPARAMS, num_clients=3)).close()


def test_an_unusable_root_is_refused_naming_it(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("x")
  with pytest.raises(ExperimentFolderError, match=r"^root_output_dir='.*a_file/sub'"):
    managers.open_experiment(str(blocker / "sub"), "run", HPARAMS, field="root_output_dir")
