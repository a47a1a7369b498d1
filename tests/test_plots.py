"""Tests of the run plots and summary.md (tiny synthetic tables only)."""

import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tff_movierec.reporting import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path, written):
  assert written == path
  with open(path, "rb") as f:
    assert f.read(8) == PNG_SIGNATURE
  with Image.open(path) as image:
    width, height = image.size
  # At 110 dpi: at least ~5 x 2.5 in, at most ~13 x 9 in.
  assert 550 <= width <= 1430 and 275 <= height <= 990, image.size
  assert width > height


def _metrics(rounds=6, evaluate=True, privacy=False):
  frame = pd.DataFrame({
      "round_num": np.arange(1, rounds + 1),
      "train/loss": np.linspace(1.5, 0.8, rounds),
      "train/mae": np.linspace(1.0, 0.75, rounds),
      "clients": 3.0,
  })
  if evaluate:
    frame["eval/mae"] = [0.9 if r % 2 == 0 else np.nan
                         for r in frame["round_num"]]
  if privacy:
    frame["privacy/epsilon"] = np.linspace(0.5, 3.0, rounds)
    frame["privacy/delta"] = 1e-6
  return frame


def _per_client_table(settings=("federated", "local_only", "centralized")):
  rows = []
  for s, setting in enumerate(settings):
    for c, client in enumerate(["0", "1", "2", "3", "all"]):
      mae = 0.70 + 0.01 * s + 0.005 * c
      rows.append({"setting": setting, "client": client, "mae": mae,
                   "rmse": mae + 0.2, "r2": 0.3})
  return pd.DataFrame(rows)


@pytest.mark.parametrize("evaluate,comparisons", [
    (True, {"local-only": 0.7173, "centralized": 0.6849}),
    (True, {}),
    (False, {}),
    (False, {"centralized": 0.6849}),
])
def test_learning_curves(tmp_path, evaluate, comparisons):
  path = str(tmp_path / plots.LEARNING_CURVES)
  written = plots.learning_curves(_metrics(evaluate=evaluate), path, "mae",
                                  comparisons)
  _assert_png(path, written)


def test_learning_curves_without_metric_columns(tmp_path):
  metrics = pd.DataFrame({"round_num": [1, 2, 3]})
  path = str(tmp_path / "empty.png")
  _assert_png(path, plots.learning_curves(metrics, path, "rmse"))


def test_per_client(tmp_path):
  path = str(tmp_path / plots.PER_CLIENT)
  _assert_png(path, plots.per_client(_per_client_table(), path))


def test_per_client_federated_only(tmp_path):
  path = str(tmp_path / plots.PER_CLIENT)
  _assert_png(path, plots.per_client(_per_client_table(("federated",)), path,
                                     "rmse"))


def test_per_client_rejects_unknown_setting(tmp_path):
  with pytest.raises(ValueError, match="federated_dp"):
    plots.per_client(_per_client_table(("federated_dp",)),
                     str(tmp_path / "x.png"))


def test_privacy_curve(tmp_path):
  path = str(tmp_path / plots.PRIVACY)
  _assert_png(path, plots.privacy_curve(_metrics(privacy=True), path))


def test_privacy_curve_needs_epsilon(tmp_path):
  path = tmp_path / plots.PRIVACY
  with pytest.raises(ValueError, match="privacy/epsilon"):
    plots.privacy_curve(_metrics(), str(path))
  assert not path.exists()


def test_client_partition(tmp_path):
  clients = [str(c) for c in range(5)]
  genres = [f"genre {g}" for g in range(18)]
  rng = np.random.default_rng(0)
  raw = rng.random((len(clients), len(genres)))
  share = pd.DataFrame(raw / raw.sum(axis=1, keepdims=True), index=clients,
                       columns=genres)
  counts = pd.Series([1200, 45000, 300, 9999, 20000], index=clients)
  path = str(tmp_path / plots.CLIENT_PARTITION)
  _assert_png(path, plots.client_partition(counts, share, path))


def test_ablation(tmp_path):
  variants = ["all features", "no user ID", "no genres", "no features"]
  table = pd.DataFrame([
      {"variant": v, "setting": s, "mae": 0.68 + 0.02 * i + 0.01 * j}
      for i, v in enumerate(variants)
      for j, s in enumerate(("federated", "centralized"))])
  path = str(tmp_path / plots.ABLATION)
  _assert_png(path, plots.ablation(table, path))


def test_write_summary(tmp_path):
  output_dir = tmp_path / "run"
  output_dir.mkdir()
  image = output_dir / plots.PER_CLIENT
  image.write_bytes(PNG_SIGNATURE)
  elsewhere = tmp_path / "eda" / plots.CLIENT_PARTITION
  elsewhere.parent.mkdir()
  elsewhere.write_bytes(PNG_SIGNATURE)
  table = pd.DataFrame({"client": ["0", "all"], "mae": [0.71234567, 0.7],
                        "num_examples": [1234, 5678]})

  written = plots.write_summary(
      str(output_dir), "Run 7", ["rounds: 10", "final MAE 0.7123"],
      {"Per-client MAE": str(image),
       "Learning curves": str(output_dir / plots.LEARNING_CURVES),
       "Partition": str(elsewhere)},
      {"Per-client metrics": table})

  assert written == str(output_dir / plots.SUMMARY_FILE)
  text = (output_dir / plots.SUMMARY_FILE).read_text(encoding="utf-8")
  lines = text.splitlines()
  assert lines[0] == "# Run 7"
  assert "- rounds: 10" in lines and "- final MAE 0.7123" in lines
  assert "## Per-client metrics" in lines
  assert "| client | mae | num_examples |" in lines
  assert "| 0 | 0.7123 | 1,234 |" in lines
  assert "| all | 0.7000 | 5,678 |" in lines
  assert "![Per-client MAE](per_client.png)" in lines
  assert "![Partition](../eda/client_partition.png)" in lines
  assert "learning_curves.png" not in text and "Learning curves" not in text
  assert str(tmp_path) not in text  # no absolute paths
  # Bullets, then tables, then images.
  assert (lines.index("- rounds: 10") < lines.index("## Per-client metrics")
          < lines.index("## Per-client MAE"))


def test_ablation_without_full_model_or_some_values(tmp_path):
  table = pd.DataFrame({"variant": ["no genres", "no genres", "no features"],
                        "setting": ["federated", "centralized", "centralized"],
                        "mae": [0.74, 0.73, 0.79]})
  path = str(tmp_path / plots.ABLATION)
  _assert_png(path, plots.ablation(table, path))


def test_privacy_utility_draws_points_and_references(tmp_path):
  path = str(tmp_path / "pu.png")
  written = plots.privacy_utility([1.0, 2.0, 5.0, 10.0], [0.08, 0.13, 0.17, 0.2], path,
                                  "ndcg@10", 1e-6, {"no DP": 0.285, "popularity": 0.119})
  _assert_png(path, written)
