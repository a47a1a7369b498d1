"""`eda`: a summary of the data set (counts, sparsity, histogram, genres,
activity quantiles, demographics) as Markdown/JSON and PNG plots."""

import tempfile
from typing import Any, Mapping

from tasks.definition import TaskDefinition
from tff_movierec import eda
from tff_movierec.data import synthetic


def configure(hp: Mapping[str, Any]) -> Mapping[str, Any]:
  return hp


def run(hp: Mapping[str, Any], output_dir: str) -> str:
  if hp["use_synthetic_data"]:
    with tempfile.TemporaryDirectory(prefix="tff_movierec_synthetic_") as folder:
      summary = eda.run_eda(synthetic.write_synthetic_movielens(folder), output_dir)
  else:
    summary = eda.run_eda(hp["data_dir"], output_dir, hp["ratings_path"])
  return f"{eda.headline(summary)}\nEDA report and plots written to {output_dir}"


TASK = TaskDefinition(
    name="eda", summary="summary statistics and plots of the data set",
    reads=("ratings_path",), configure=configure, run=run)
