"""Assignments of users to federated clients.

A partition is an int32 array `user_to_client` of shape [U]: the client index
(0..K-1) of every user. Every user is in exactly one client, and every client
holds at least one user. All schemes are deterministic for a seed.

Schemes:
  natural      one client per user (K = U): cross-device.
  iid          K clients of (nearly) equal numbers of users, at random.
  dirichlet    K non-IID clients: each user's "label" is the genre that user
               over-rates most relative to everyone (argmax of the user's genre
               share over the global genre share); per label, client shares are
               drawn from Dirichlet(concentration); small concentration means
               clients specialise in genres.
  demographic  K clients formed by whole groups of a user attribute (`age`:
               7 groups, `occupation`: 21 groups), balanced by rating count.
"""

import dataclasses

import numpy as np
import pandas as pd

from tff_movierec.errors import ConfigError, require

SCHEMES = ("natural", "iid", "dirichlet", "demographic")
DEMOGRAPHIC_ATTRIBUTES = ("age", "occupation", "gender")


@dataclasses.dataclass(frozen=True)
class PartitionSpec:
  """How users are split into clients (validated on construction)."""

  scheme: str = "dirichlet"
  num_clients: int = 10
  concentration: float = 0.5
  attribute: str = "age"
  seed: int = 0

  def __post_init__(self):
    require(self.scheme in SCHEMES, "scheme", self.scheme, f"expected one of {SCHEMES}.")
    if self.scheme != "natural":
      require(self.num_clients >= 1, "num_clients", self.num_clients, "must be >= 1.")
    if self.scheme == "dirichlet":
      require(self.concentration > 0, "concentration", self.concentration, "must be > 0.")
    if self.scheme == "demographic":
      require(self.attribute in DEMOGRAPHIC_ATTRIBUTES, "attribute", self.attribute,
              f"expected one of {DEMOGRAPHIC_ATTRIBUTES}.")


def _check_num_clients(num_clients, num_users, scheme):
  if num_clients > num_users:
    raise ConfigError(
        f"num_clients={num_clients!r} exceeds the {num_users} users available "
        f"to the scheme={scheme!r} partition.", ("num_clients", "scheme"))


def iid(num_users: int, num_clients: int, seed: int) -> np.ndarray:
  _check_num_clients(num_clients, num_users, "iid")
  permutation = np.random.default_rng(seed).permutation(num_users)
  result = np.empty(num_users, np.int32)
  result[permutation] = np.arange(num_users) % num_clients
  return result


def user_genre_labels(ratings: pd.DataFrame, genres: np.ndarray, num_users: int) -> np.ndarray:
  """int [U]: the genre each user rates most often relative to all users."""
  profile = np.zeros((num_users, genres.shape[1]))
  np.add.at(profile, ratings["user"].to_numpy(), genres[ratings["movie"].to_numpy()])
  share = profile / np.maximum(profile.sum(axis=1, keepdims=True), 1e-9)
  overall = profile.sum(axis=0) / max(profile.sum(), 1e-9)
  return np.argmax(share / np.maximum(overall, 1e-9), axis=1)


def dirichlet(labels: np.ndarray, num_clients: int, concentration: float, seed: int) -> np.ndarray:
  """Label-skewed assignment; every client gets at least one user."""
  num_users = len(labels)
  _check_num_clients(num_clients, num_users, "dirichlet")
  rng = np.random.default_rng(seed)
  result = np.empty(num_users, np.int32)
  for label in np.unique(labels):
    members = np.flatnonzero(labels == label)
    shares = rng.dirichlet(np.full(num_clients, concentration))
    result[members] = rng.choice(num_clients, size=len(members), p=shares)
  # Give each empty client one user from the largest client, so K is exact.
  for client in range(num_clients):
    if not np.any(result == client):
      largest = np.argmax(np.bincount(result, minlength=num_clients))
      donor = rng.choice(np.flatnonzero(result == largest))
      result[donor] = client
  return result


def demographic(values: np.ndarray, weights: np.ndarray, num_clients: int,
                attribute: str = "") -> np.ndarray:
  """Whole attribute groups to clients, largest first, to the lightest client.

  `attribute` (the name of the attribute in `values`) is only used in errors.
  """
  groups, group_of_user = np.unique(values, return_inverse=True)
  if num_clients > len(groups):
    raise ConfigError(
        f"num_clients={num_clients!r} exceeds the {len(groups)} groups of "
        f"attribute={attribute!r}; lower num_clients or choose another attribute.",
        ("num_clients", "attribute"))
  group_weight = np.bincount(group_of_user, weights=weights, minlength=len(groups))
  load = np.zeros(num_clients)
  client_of_group = np.empty(len(groups), np.int32)
  for group in np.argsort(-group_weight, kind="stable"):
    client = int(np.argmin(load))
    client_of_group[group] = client
    load[client] += group_weight[group]
  return client_of_group[group_of_user]


def partition_users(spec: PartitionSpec, ratings: pd.DataFrame, users: pd.DataFrame,
                    genres: np.ndarray) -> np.ndarray:
  """Returns `user_to_client` (int32 [U]) for `spec`.

  Args:
    spec: the partition scheme and its parameters.
    ratings: the ratings the partition may look at (use the training split).
    users: the users table of a `MovieLens` (demographic attributes).
    genres: float32 [M, 18] multi-hot genres (dirichlet labels).
  """
  num_users = len(users)
  if spec.scheme == "natural":
    return np.arange(num_users, dtype=np.int32)
  if spec.scheme == "iid":
    return iid(num_users, spec.num_clients, spec.seed)
  if spec.scheme == "dirichlet":
    labels = user_genre_labels(ratings, genres, num_users)
    return dirichlet(labels, spec.num_clients, spec.concentration, spec.seed)
  ratings_per_user = np.bincount(ratings["user"].to_numpy(), minlength=num_users)
  return demographic(users[spec.attribute].to_numpy(), ratings_per_user, spec.num_clients,
                     spec.attribute)


def client_sizes(user_to_client: np.ndarray, ratings: pd.DataFrame) -> pd.DataFrame:
  """Per-client counts: columns client, users, ratings (one row per client)."""
  num_clients = int(user_to_client.max()) + 1
  users = np.bincount(user_to_client, minlength=num_clients)
  rating_clients = user_to_client[ratings["user"].to_numpy()]
  counts = np.bincount(rating_clients, minlength=num_clients)
  return pd.DataFrame({"client": np.arange(num_clients), "users": users, "ratings": counts})
