"""Settings shared by several tasks: their names, and the configs built from them.

Each tuple below names a group of settings; a task lists the groups it reads
in its `TaskDefinition.reads`. The builders turn those settings into the
library's validated configs (which raise ConfigError naming the fields).
"""

import tempfile
from typing import Dict, Mapping, Optional, Tuple

from tff_movierec.data import movielens, partitions, preprocessing, releases, synthetic
from tff_movierec.errors import ConfigError, require
from tff_movierec.privacy import accounting, aggregators
from tff_movierec.training.federated_run import DpAccounting
from tff_movierec.training.optimizers import OptimizerSpec

PARTITION = ("partition", "num_clients", "dirichlet_concentration", "partition_attribute")
CLIENT_SPEC = ("client_epochs", "client_batch_size", "shuffle_client_examples",
               "max_client_examples")
CLIENT_OPTIMIZER = ("client_optimizer", "client_learning_rate", "client_momentum")
SERVER_OPTIMIZER = ("server_optimizer", "server_learning_rate", "server_momentum",
                    "server_beta_1", "server_beta_2", "server_lr_decay_rounds")
PRIVACY = ("aggregator", "noise_multiplier", "target_epsilon", "clip_norm",
           "target_unclipped_quantile", "dp_delta", "client_weighting")
EVAL_SPLIT = ("eval_split",)
EVAL_SPLITS = ("test", "validation")
# Training losses above these mean a run diverged, even if finite: an MSE of
# 100 on ratings from 1 to 5 (predicting any constant rating stays below 16),
# a softmax cross-entropy of 1,000 (a uniform guess over all 3,883 movies
# scores 8.3).
RATING_LOSS_BOUND = 100.0
SOFTMAX_LOSS_BOUND = 1000.0


def release(hp: Mapping) -> releases.Release:
  """The MovieLens release of `dataset` (the synthetic data is ML-1M-like)."""
  return releases.get(hp["dataset"])


def require_demographics(hp: Mapping, purpose: str, instead: str = "",
                         fields: Tuple[str, ...] = ()) -> None:
  """ConfigError if the release of `dataset` has no demographics (a users
  file), which `purpose` needs; `instead` says how to do without them (naming
  `fields`)."""
  data = release(hp)
  if not data.has_demographics:
    with_users = " or ".join(r.name for r in releases.RELEASES.values() if r.has_demographics)
    raise ConfigError(
        f"dataset={data.name}: {data.title} has no demographics (no users file; gender, "
        f"age and occupation exist in {with_users} only), and {purpose} needs them. Use "
        f"dataset={with_users}{', or ' + instead if instead else ''}.",
        ("dataset",) + tuple(fields))


def partition_spec(hp: Mapping) -> partitions.PartitionSpec:
  """Users -> clients from the partition settings."""
  if hp["partition"] == "demographic":
    require_demographics(hp, f"partition='demographic' (by {hp['partition_attribute']})",
                         "another partition", ("partition",))
  if hp["partition"] == "natural" and hp["num_clients"] is not None:
    raise ConfigError("num_clients does not apply to partition='natural' (one client per "
                      "user).", ("num_clients", "partition"))
  return partitions.PartitionSpec(
      hp["partition"], hp["num_clients"] or partitions.PartitionSpec.num_clients,
      hp["dirichlet_concentration"], hp["partition_attribute"], hp["seed"])


def check_clients_per_round(hp: Mapping, spec: partitions.PartitionSpec) -> None:
  """clients_per_round must not exceed a fixed number of clients (the
  population of `natural` partitions is checked once the data is loaded)."""
  if spec.scheme != "natural" and hp["clients_per_round"] > spec.num_clients:
    raise ConfigError(
        f"clients_per_round={hp['clients_per_round']} exceeds num_clients="
        f"{spec.num_clients}: a round cannot sample more clients than exist.",
        ("clients_per_round", "num_clients"))


def client_spec(hp: Mapping) -> preprocessing.ClientSpec:
  """How a client iterates over its data in a training round."""
  return preprocessing.ClientSpec(hp["client_epochs"], hp["client_batch_size"],
                                  hp["shuffle_client_examples"], hp["max_client_examples"])


def client_optimizer(hp: Mapping) -> OptimizerSpec:
  return OptimizerSpec(hp["client_optimizer"], hp["client_learning_rate"],
                       momentum=hp["client_momentum"], role="client")


def server_optimizer(hp: Mapping) -> OptimizerSpec:
  return OptimizerSpec(hp["server_optimizer"], hp["server_learning_rate"],
                       momentum=hp["server_momentum"], beta_1=hp["server_beta_1"],
                       beta_2=hp["server_beta_2"],
                       decay_steps=hp["server_lr_decay_rounds"], role="server")


def aggregator_spec(hp: Mapping) -> aggregators.AggregatorSpec:
  """The model-update aggregator; checks dp_delta against it."""
  spec = aggregators.AggregatorSpec(
      hp["aggregator"], hp["noise_multiplier"], hp["target_epsilon"], hp["clip_norm"],
      hp["target_unclipped_quantile"], hp["clients_per_round"], hp["client_weighting"])
  check_dp_delta(hp, spec.is_dp, "the DP aggregators (dp_fixed, dp_adaptive)")
  return spec


def check_dp_delta(hp: Mapping, is_dp: bool, dp_kinds: str) -> None:
  """dp_delta, if given, needs a DP aggregator (`dp_kinds` names them) and
  lies in (0, 1)."""
  delta = hp["dp_delta"]
  if delta is not None:
    if not is_dp:
      raise ConfigError(f"dp_delta={delta} applies only to {dp_kinds}, not "
                        f"aggregator={hp['aggregator']!r}.", ("dp_delta", "aggregator"))
    require(0 < delta < 1, "dp_delta", delta, "must be in (0, 1).")


def dp_delta(hp: Mapping, population: int) -> float:
  """--dp_delta, or 1 / population^1.1."""
  return hp["dp_delta"] or accounting.default_delta(population)


def noise_for_target(hp: Mapping, sampling_probability: float, population: int) -> float:
  """The smallest noise multiplier whose ε after --total_rounds rounds, each
  client taking part with `sampling_probability`, is <= --target_epsilon at
  `dp_delta(hp, population)`; printed."""
  delta = dp_delta(hp, population)
  noise = accounting.noise_for_epsilon(hp["target_epsilon"], sampling_probability,
                                       hp["total_rounds"], delta)
  print(f"target_epsilon={hp['target_epsilon']:g}: noise multiplier {noise:.4f} (δ={delta:.3g}, "
      f"{hp['total_rounds']} rounds, sampling probability {sampling_probability:.4g})")
  return noise


def dp_aggregator(hp: Mapping, spec: aggregators.AggregatorSpec, population: int
                  ) -> Tuple[aggregators.AggregatorSpec, Optional[DpAccounting]]:
  """The aggregator over `population` clients, with clients_per_round = 0
  resolved to `population` and its noise calibrated (--target_epsilon), and
  its ε accounting (None if not DP)."""
  spec = spec.for_population(population)
  if not spec.is_dp:
    return spec, None
  if spec.target_epsilon is not None:
    spec = spec.with_noise(noise_for_target(hp, spec.clients_per_round / population,
                                            population))
  return spec, DpAccounting(spec.noise_multiplier, dp_delta(hp, population),
                            hp["target_epsilon"], _mechanism(spec, population))


def _mechanism(spec: aggregators.AggregatorSpec, population: int) -> str:
  """One line naming what is noised, the clip, the participation, the accounting."""
  if spec.kind == "dp_fixed":
    clip = f"clipped to L2 norm {spec.clip_norm:g}"
  else:
    initial = spec.clip_norm or aggregators.DEFAULT_ADAPTIVE_INITIAL_CLIP
    quantile = spec.target_unclipped_quantile or aggregators.DEFAULT_TARGET_UNCLIPPED_QUANTILE
    clip = (f"clipped adaptively (from {initial:g} towards the {quantile:g} quantile of "
            "update norms, part of the noise spent on it)")
  q = spec.clients_per_round / population
  participation = ("every client in every round" if q >= 1 else
                   f"{spec.clients_per_round} of {population} clients per round (accounted "
                   f"as Poisson sampling, q = {q:.4g})")
  return (f"Gaussian mechanism on the sum of client updates {clip}, noise multiplier "
          f"{spec.noise_multiplier:.4g}; {participation}; one client per user; RDP accounting")


def eval_split(hp: Mapping) -> str:
  """'test', or 'validation': evaluate on ratings carved from the training
  ratings (for choosing settings; the test ratings stay unseen)."""
  require(hp["eval_split"] in EVAL_SPLITS, "eval_split", hp["eval_split"],
          f"must be one of {EVAL_SPLITS}.")
  return hp["eval_split"]


def load_movielens(hp: Mapping, ratings_path: Optional[str] = None,
                   **synthetic_kwargs) -> movielens.MovieLens:
  """MovieLens release `dataset` from `data_dir` (default: the download
  cache), or small synthetic data (ML-1M's format, with timestamps) when
  `use_synthetic_data`."""
  if hp["use_synthetic_data"]:
    with tempfile.TemporaryDirectory(prefix="tff_movierec_synthetic_") as folder:
      return movielens.load_movielens(synthetic.write_synthetic_movielens(
          folder, seed=hp["seed"], **synthetic_kwargs))
  return movielens.load_movielens(hp["data_dir"], ratings_path, hp["dataset"])


def require_fraction(hp: Mapping, name: str) -> None:
  """Settings that are fractions of a user's ratings lie in (0, 1)."""
  require(0 < hp[name] < 1, name, hp[name], "must be in (0, 1).")


def learning_rates(hp: Mapping, roles=("client", "server")) -> Dict[str, float]:
  """The learning-rate settings named when training diverges."""
  return {f"{role}_learning_rate": hp[f"{role}_learning_rate"] for role in roles}
