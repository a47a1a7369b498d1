"""Invariants of the user -> client partitions, on synthetic MovieLens."""

import numpy as np
import pytest

from tff_movierec.data import features, partitions
from tff_movierec.data.movielens import load_movielens
from tff_movierec.data.partitions import PartitionSpec, partition_users
from tff_movierec.data.synthetic import write_synthetic_movielens
from tff_movierec.errors import ConfigError

SCHEMES_WITH_K = [
    PartitionSpec("iid", num_clients=7),
    PartitionSpec("dirichlet", num_clients=7, concentration=0.5),
    PartitionSpec("demographic", num_clients=4, attribute="age"),
    PartitionSpec("demographic", num_clients=5, attribute="occupation"),
    PartitionSpec("demographic", num_clients=2, attribute="gender"),
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  directory = write_synthetic_movielens(
      str(tmp_path_factory.mktemp("ml")), num_users=200, num_movies=80,
      ratings_per_user=10)
  return load_movielens(directory)


@pytest.fixture(scope="module")
def genres(data):
  return features.genre_multi_hot(data)


def partition(spec, data, genres):
  return partition_users(spec, data.ratings, data.users, genres)


def test_natural_gives_each_user_a_client(data, genres):
  user_to_client = partition(PartitionSpec("natural"), data, genres)
  np.testing.assert_array_equal(user_to_client, np.arange(data.num_users))
  assert user_to_client.dtype == np.int32


@pytest.mark.parametrize("spec", SCHEMES_WITH_K, ids=str)
def test_every_user_in_exactly_one_of_k_clients(data, genres, spec):
  user_to_client = partition(spec, data, genres)
  assert user_to_client.shape == (data.num_users,)
  assert user_to_client.dtype == np.int32
  # One client per user by construction of the array; all K clients used.
  assert set(user_to_client.tolist()) == set(range(spec.num_clients))


@pytest.mark.parametrize("spec", SCHEMES_WITH_K, ids=str)
def test_client_sizes_add_up(data, genres, spec):
  user_to_client = partition(spec, data, genres)
  sizes = partitions.client_sizes(user_to_client, data.ratings)
  assert sizes["client"].tolist() == list(range(spec.num_clients))
  assert sizes["users"].sum() == data.num_users
  assert sizes["ratings"].sum() == len(data.ratings)
  assert (sizes["users"] >= 1).all()
  per_user = np.bincount(data.ratings["user"], minlength=data.num_users)
  for client, ratings in zip(sizes["client"], sizes["ratings"]):
    assert ratings == per_user[user_to_client == client].sum()


@pytest.mark.parametrize("spec", SCHEMES_WITH_K, ids=str)
def test_deterministic_for_a_seed(data, genres, spec):
  first = partition(spec, data, genres)
  np.testing.assert_array_equal(first, partition(spec, data, genres))


@pytest.mark.parametrize("scheme", ["iid", "dirichlet"])
def test_seed_changes_random_partitions(data, genres, scheme):
  first = partition(PartitionSpec(scheme, num_clients=5, seed=0), data, genres)
  other = partition(PartitionSpec(scheme, num_clients=5, seed=1), data, genres)
  assert not np.array_equal(first, other)


def test_iid_clients_have_equal_user_counts(data, genres):
  user_to_client = partition(PartitionSpec("iid", num_clients=7), data, genres)
  counts = np.bincount(user_to_client)
  assert counts.max() - counts.min() <= 1


def label_skew(user_to_client, labels):
  """Mean total-variation distance of client label mixes from the global one."""
  overall = np.bincount(labels) / len(labels)
  distances = []
  for client in np.unique(user_to_client):
    mix = np.bincount(labels[user_to_client == client],
                      minlength=len(overall)) / np.sum(user_to_client == client)
    distances.append(0.5 * np.abs(mix - overall).sum())
  return np.mean(distances)


def test_small_dirichlet_concentration_is_more_skewed(data, genres):
  labels = partitions.user_genre_labels(data.ratings, genres, data.num_users)
  assert len(np.unique(labels)) >= 5  # enough labels for skew to show
  def mean_skew(concentration):
    return np.mean([
        label_skew(partition(PartitionSpec(
            "dirichlet", num_clients=5, concentration=concentration, seed=seed),
            data, genres), labels)
        for seed in range(5)])
  skewed, mixed = mean_skew(0.05), mean_skew(100.0)
  assert skewed > 2 * mixed, (skewed, mixed)


@pytest.mark.parametrize("attribute", ["age", "occupation", "gender"])
def test_demographic_groups_are_never_split(data, genres, attribute):
  num_groups = data.users[attribute].nunique()
  user_to_client = partition(PartitionSpec(
      "demographic", num_clients=min(num_groups, 3), attribute=attribute),
      data, genres)
  clients_per_group = (
      data.users.assign(client=user_to_client)
      .groupby(attribute)["client"].nunique())
  assert (clients_per_group == 1).all()


def test_too_many_clients_for_users(data, genres):
  spec = PartitionSpec("iid", num_clients=data.num_users + 1)
  with pytest.raises(ConfigError, match=f"^num_clients={data.num_users + 1} "
                     f"exceeds the {data.num_users} users available to the "
                     "scheme='iid' partition") as error:
    partition(spec, data, genres)
  assert error.value.fields == ("num_clients", "scheme")
  spec = PartitionSpec("dirichlet", num_clients=data.num_users + 1)
  with pytest.raises(ValueError, match="exceeds the 200 users available to the "
                     "scheme='dirichlet' partition"):
    partition(spec, data, genres)


def test_too_many_clients_for_groups(data, genres):
  spec = PartitionSpec("demographic", num_clients=3, attribute="gender")
  with pytest.raises(ConfigError, match="^num_clients=3 exceeds the 2 groups of "
                     "attribute='gender'; lower num_clients or choose another "
                     "attribute") as error:
    partition(spec, data, genres)
  assert error.value.fields == ("num_clients", "attribute")


@pytest.mark.parametrize("kwargs, field, message", [
    (dict(scheme="by_zip"), "scheme", "scheme='by_zip': expected one of "
     "('natural', 'iid', 'dirichlet', 'demographic')."),
    (dict(scheme="iid", num_clients=0), "num_clients", "num_clients=0: must be >= 1."),
    (dict(scheme="dirichlet", concentration=0.0), "concentration",
     "concentration=0.0: must be > 0."),
    (dict(scheme="dirichlet", concentration=-1.0), "concentration",
     "concentration=-1.0: must be > 0."),
    (dict(scheme="demographic", attribute="zip_code"), "attribute",
     "attribute='zip_code': expected one of ('age', 'occupation', 'gender')."),
])
def test_bad_spec_names_the_field(kwargs, field, message):
  with pytest.raises(ConfigError) as error:
    PartitionSpec(**kwargs)
  assert str(error.value) == message
  assert error.value.fields == (field,)
  assert isinstance(error.value, ValueError)
