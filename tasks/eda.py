"""`eda`: a summary of the data set (counts, sparsity, histogram, genres,
activity quantiles, demographics) as Markdown/JSON and PNG plots, and how
the ratings fall into the clients of the chosen partition (ratings per
client, each client's genre mix). The partition is computed here from all
ratings; the federated tasks compute it from their training ratings, so
their clients differ slightly.

Every --dataset works: a release without demographics (ML-10M on) gets no
gender/age/occupation tallies, and its summary.md says so;
--partition=demographic needs them and is refused there (common.partition_spec)."""

from typing import Any, Mapping, NamedTuple

from tasks import common
from tasks.definition import TaskDefinition
from tff_movierec import eda
from tff_movierec.data import features, partitions


class EdaConfigs(NamedTuple):
  hparams: Mapping[str, Any]
  partition: partitions.PartitionSpec


def configure(hp: Mapping[str, Any]) -> EdaConfigs:
  return EdaConfigs(hp, common.partition_spec(hp))


def run(configs: EdaConfigs, output_dir: str) -> str:
  data = common.load_movielens(configs.hparams, configs.hparams["ratings_path"])
  summary = eda.summarize(data)
  user_to_client = partitions.partition_users(configs.partition, data.ratings, data.users,
                                              features.genre_multi_hot(data))
  eda.write_report(summary, output_dir, eda.client_mix(data, user_to_client))
  return f"{eda.headline(summary)}\nEDA report and plots: {output_dir}/summary.md"


TASK = TaskDefinition(
    name="eda", summary="summary statistics and plots of the data set and of its clients",
    reads=("ratings_path", "seed") + common.PARTITION, configure=configure, run=run)
