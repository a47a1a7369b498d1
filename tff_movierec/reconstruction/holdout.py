"""The held-out ratings of the cross-device tasks: seen and unseen users.

Ratings are split with the canonical per-user holdout
(`splits.per_user_holdout(ratings, test_fraction, seed)`); with `validation`,
the same holdout is applied again to the training ratings, whose carved part
is scored instead (the test ratings then stay unseen). Optionally a fraction
of users is held out of training entirely (`splits.cold_start_users`): they
are evaluated by solving or reconstructing their user side from their
training ratings, with a movie side that never saw them.
"""

import dataclasses

import numpy as np
import pandas as pd

from tff_movierec.data import movielens, splits
from tff_movierec.errors import require


@dataclasses.dataclass(frozen=True)
class UserHoldout:
  """Ratings (user, movie, rating frames) of the seen and unseen users.

  Attributes:
    seen_train: training ratings of the users trained on.
    seen_test: their scored (held-out or validation) ratings.
    unseen_train: ratings the unseen users are solved from (empty if none).
    unseen_test: their scored ratings (empty if none).
  """

  seen_train: pd.DataFrame
  seen_test: pd.DataFrame
  unseen_train: pd.DataFrame
  unseen_test: pd.DataFrame

  @property
  def num_unseen_users(self) -> int:
    return int(self.unseen_test["user"].nunique())

  def describe(self, test_fraction: float) -> str:
    return (f"{self.seen_train['user'].nunique()} training clients (one per user), "
            f"{self.num_unseen_users} unseen users, {len(self.seen_train)} training "
            f"ratings, per-user holdout {test_fraction}")


def user_holdout(data: movielens.MovieLens, test_fraction: float = 0.1,
                 cold_start_fraction: float = 0.0, seed: int = 0,
                 validation: bool = False) -> UserHoldout:
  """Splits `data.ratings` (see the module docstring); seeded by `seed`."""
  require(0 <= cold_start_fraction < 1, "cold_start_fraction", cold_start_fraction,
          "must be in [0, 1).")
  train, test = splits.per_user_holdout(data.ratings, test_fraction, seed=seed)
  if validation:
    train, test = splits.per_user_holdout(train, test_fraction, seed=seed)
  unseen_users = np.array([], np.int32)
  if cold_start_fraction > 0:
    _, unseen = splits.cold_start_users(data.ratings, cold_start_fraction, seed=seed)
    unseen_users = np.unique(unseen["user"].to_numpy())
  train_unseen = np.isin(train["user"].to_numpy(), unseen_users)
  test_unseen = np.isin(test["user"].to_numpy(), unseen_users)
  return UserHoldout(seen_train=train[~train_unseen], seen_test=test[~test_unseen],
                     unseen_train=train[train_unseen], unseen_test=test[test_unseen])
