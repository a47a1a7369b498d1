"""`movielens_ablation`: the seed's feature ablation on the rating network
(`--model`: fused_mf by default, seed_ffnn for the seed's own network).

The rating study is trained once per variant: with every feature, with each
feature group left out (the user ID, the movie ID, demographics, genres, the
user mean, the movie mean, popularity) and with none of them. Each variant
is trained federated (the one training loop, in its own sub-folder, so an
interrupted ablation resumes where it stopped) and centralized (the same
network fitted with Keras on the pooled training ratings, `baseline_epochs`
epochs; 0 skips it). The ablation writes ablation.csv, ablation.png and
summary.md.

Leaving out the user ID means `user_embedding='none'`, which FedAvg trains
(`algorithm='fedavg'`): the local-embedding algorithms need a user embedding.
fused_mf's MF path reads both IDs, so leaving out either ID drops it too.
"""

import dataclasses
import os
import time
from typing import Any, List, Mapping, Tuple

import pandas as pd
import tensorflow as tf

from tasks import common, movielens_rating, runner
from tasks.definition import LOOP, RUNTIME, Hparams, TaskDefinition
from tff_movierec import progress
from tff_movierec.models import rating_ffnn
from tff_movierec.reporting import plots
from tff_movierec.training import evaluation

ALL_FEATURES = plots.FULL_MODEL  # the variant plots.ablation draws as the reference
NO_FEATURES = "no features"
_GROUP_NAMES = {"movie_id": "movie ID", "demographics": "demographics", "genres": "genres",
                "user_mean": "user mean", "movie_mean": "movie mean",
                "popularity": "popularity"}
_NO_USER_ID = {"user_embedding": "none", "algorithm": "fedavg"}
_METRICS = ("mae", "rmse", "r2")


@dataclasses.dataclass(frozen=True)
class Variant:
  """One network of the ablation: its name, the rating study's settings and
  their validated configs."""

  name: str
  hparams: Hparams
  configs: movielens_rating.RatingConfigs


def variants(hp: Mapping[str, Any]) -> List[Tuple[str, dict]]:
  """(name, settings changed from `hp`) of every variant, in table order."""
  drop_all = {"drop_features": list(rating_ffnn.FEATURE_GROUPS)}
  named = [(ALL_FEATURES, {})]
  if hp["user_embedding"] != "none":
    named.append(("no user ID", _NO_USER_ID))
  named += [(f"no {label}", {"drop_features": [group]})
            for group, label in _GROUP_NAMES.items()]
  named.append((NO_FEATURES, dict(drop_all, **_NO_USER_ID)))
  return named


def _slug(name: str) -> str:
  return name.replace(" ", "_").lower()


@dataclasses.dataclass(frozen=True)
class Ablation:
  """The ablation's own settings and its variants."""

  hparams: Mapping[str, Any]
  variants: List[Variant]


def configure(hp: Mapping[str, Any]) -> Ablation:
  """Checks the settings of every variant; loads nothing."""
  common.require_demographics(hp, "the ablation (its variants read the demographics group)")
  result = []
  for name, changes in variants(hp):
    values = {key: hp[key] for key in movielens_rating.TASK.all_reads if key in hp}
    values.update({"task": movielens_rating.TASK.name, "drop_features": [],
                   "baseline_epochs": 0, "experiment_name": _slug(name), **changes})
    variant_hp = Hparams(movielens_rating.TASK.name, values)
    result.append(Variant(name, variant_hp, movielens_rating.configure(variant_hp)))
  return Ablation(hp, result)


def _centralized(variant: Variant, epochs: int, seed: int) -> Mapping[str, float]:
  """Pooled held-out metrics of the variant's network trained centrally."""
  task = movielens_rating.create_rating_task(variant.configs)
  tf.keras.utils.set_random_seed(seed)
  batches = evaluation.fit_batches(sum(evaluation.train_examples(task).values()), epochs)
  with progress.Progress(f"{variant.name}: centralized", batches, "batches",
                         log=lambda line: None) as bar:
    table = evaluation.centralized_table(task, epochs, progress=bar)
  return table.set_index("client").loc[evaluation.POOLED].to_dict()


def run(ablation: Ablation, output_dir: str) -> str:
  """Trains every variant (federated, then centralized); writes the table."""
  hp, configs = ablation.hparams, ablation.variants
  epochs = hp["baseline_epochs"]
  rows = []
  for index, variant in enumerate(configs, 1):
    started = time.time()
    print(f"[{index}/{len(configs)}] {variant.name}: training...", flush=True)
    sub_hp = Hparams(movielens_rating.TASK.name,
                     dict(variant.hparams, root_output_dir=output_dir))
    trained = runner.train(movielens_rating.TASK, sub_hp, log=lambda line: None)
    final = pd.read_csv(trained.experiment.metrics_csv).iloc[-1]
    rows.append(dict(variant=variant.name, setting="federated",
                     **{m: final[f"eval/{m}"] for m in _METRICS}))
    line = f"[{index}/{len(configs)}] {variant.name}: federated MAE {final['eval/mae']:.4f}"
    if epochs:
      pooled = _centralized(variant, epochs, hp["seed"])
      rows.append(dict(variant=variant.name, setting="centralized",
                       **{m: pooled[m] for m in _METRICS}))
      line += f" | centralized MAE {pooled['mae']:.4f}"
    print(f"{line}  ({time.time() - started:.0f} s)", flush=True)
  table = pd.DataFrame(rows)
  reference = table[table["variant"] == ALL_FEATURES].set_index("setting")["mae"]
  table["mae_change"] = table["mae"] - table["setting"].map(reference)
  path = os.path.join(output_dir, "ablation.csv")
  table.to_csv(path, index=False, float_format="%.4f")
  image = plots.ablation(table, os.path.join(output_dir, plots.ABLATION), "mae")
  summary = plots.write_summary(
      output_dir, "movielens_ablation",
      [f"{len(configs)} variants of the {hp['model']} network, {hp['total_rounds']} "
       f"federated rounds each; centralized: {epochs} Keras epochs (0: not trained)",
       "mae_change: the variant's MAE minus the same setting's MAE with every feature "
       "(positive: the left-out group helped)"],
      {"Feature ablation": image}, {"Ablation": table})
  shown = table.pivot(index="variant", columns="setting", values="mae").reindex(
      [variant.name for variant in configs])
  return (f"Pooled held-out MAE by variant:\n"
          f"{shown.to_string(float_format=lambda v: f'{v:.4f}')}\n"
          f"Ablation table: {path}\nSummary and plot: {summary}")


TASK = TaskDefinition(
    name="movielens_ablation",
    summary=("the seed's feature ablation: the rating study with each feature group of the "
             "network left out, federated and centralized"),
    reads=LOOP + RUNTIME + ("seed",) + tuple(name for name in movielens_rating.TASK.reads
                                   if name != "drop_features"),
    configure=configure,
    run=run,
    defaults=movielens_rating.TASK.defaults,
    synthetic_defaults=movielens_rating.TASK.synthetic_defaults,
)
