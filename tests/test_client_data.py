"""Per-client datasets (TFF ClientData) and client preprocessing."""

import collections

import numpy as np
import pytest
import tensorflow as tf

from tff_movierec.data import client_data, features, splits
from tff_movierec.data.movielens import load_movielens
from tff_movierec.data.partitions import PartitionSpec, partition_users
from tff_movierec.data.preprocessing import (ClientSpec, build_preprocess_fn, round_seed,
                                             shuffled_batches)
from tff_movierec.data.synthetic import write_synthetic_movielens
from tff_movierec.errors import ConfigError

NUM_CLIENTS = 6


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  """(train ratings, user_to_client, ClientData) on small synthetic data."""
  data = load_movielens(write_synthetic_movielens(
      str(tmp_path_factory.mktemp("ml")), num_users=30, num_movies=40,
      ratings_per_user=8))
  train, _ = splits.per_user_holdout(data.ratings, seed=0)
  user_to_client = partition_users(
      PartitionSpec("dirichlet", num_clients=NUM_CLIENTS), train, data.users,
      features.genre_multi_hot(data))
  examples = {
      "user": train["user"].to_numpy(),
      "movie": train["movie"].to_numpy(),
      "rating": train["rating"].to_numpy(),
  }
  example_client = user_to_client[examples["user"]]
  return train, user_to_client, client_data.make_client_data(
      examples, example_client, NUM_CLIENTS)


def client_examples(data, cid):
  """List of (user, movie, rating) in dataset order."""
  return [(int(e["user"]), int(e["movie"]), float(e["rating"]))
          for e in data.create_tf_dataset_for_client(cid).as_numpy_iterator()]


def test_client_ids(setup):
  _, _, data = setup
  assert data.client_ids == [str(k) for k in range(NUM_CLIENTS)]


def test_element_spec_keeps_names_and_dtypes(setup):
  _, _, data = setup
  assert data.element_type_structure == {
      "user": tf.TensorSpec([], tf.int32),
      "movie": tf.TensorSpec([], tf.int32),
      "rating": tf.TensorSpec([], tf.float32),
  }


def test_each_client_holds_exactly_its_users_ratings(setup):
  train, user_to_client, data = setup
  for k in range(NUM_CLIENTS):
    mine = train[user_to_client[train["user"].to_numpy()] == k]
    expected = list(zip(mine["user"].tolist(), mine["movie"].tolist(),
                        mine["rating"].tolist()))
    assert client_examples(data, str(k)) == expected  # also keeps file order


def test_sizes_add_up_and_no_example_in_two_clients(setup):
  train, _, data = setup
  seen = collections.Counter()
  for cid in data.client_ids:
    seen.update((u, m) for u, m, _ in client_examples(data, cid))
  assert sum(seen.values()) == len(train)
  assert max(seen.values()) == 1
  assert set(seen) == set(zip(train["user"], train["movie"]))


def test_serializable_dataset_fn_runs_in_tf_function(setup):
  train, user_to_client, data = setup

  @tf.function
  def count(cid):
    return data.serializable_dataset_fn(cid).reduce(0, lambda n, _: n + 1)

  expected = np.sum(user_to_client[train["user"].to_numpy()] == 2)
  assert int(count(tf.constant("2"))) == expected


def test_empty_clients_are_allowed():
  data = client_data.make_client_data(
      {"x": np.arange(3, dtype=np.int64)}, np.array([0, 2, 2]), 4)
  sizes = [len(list(data.create_tf_dataset_for_client(c))) for c in data.client_ids]
  assert sizes == [1, 0, 2, 0]


@pytest.mark.parametrize("bad_client", [-1, 3])
def test_example_client_out_of_range(bad_client):
  with pytest.raises(ValueError, match=r"example_client must be in \[0, 3\)"):
    client_data.make_client_data(
        {"x": np.arange(2)}, np.array([0, bad_client]), 3)


def to_xy(batch):
  return batch["x"], batch["x"] * 10


def examples(num_examples=10):
  return tf.data.Dataset.from_tensor_slices({"x": tf.range(num_examples, dtype=tf.int64)})


def as_lists(dataset):
  return [(x.tolist(), y.tolist()) for x, y in dataset.as_numpy_iterator()]


def batches(spec, num_examples=10, seed=None):
  preprocess = build_preprocess_fn(spec, to_xy)
  return as_lists(preprocess(examples(num_examples), seed=seed))


def test_preprocess_batches_and_maps_in_order_without_shuffle():
  result = batches(ClientSpec(batch_size=4, shuffle=False))
  assert [x for x, _ in result] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
  assert [y for _, y in result] == [[0, 10, 20, 30], [40, 50, 60, 70], [80, 90]]


def test_preprocess_repeats_epochs():
  result = batches(ClientSpec(num_epochs=3, batch_size=4, shuffle=False))
  flat = [v for x, _ in result for v in x]
  assert flat == list(range(10)) * 3
  assert [len(x) for x, _ in result] == [4] * 7 + [2]


def test_preprocess_caps_elements_after_repeat():
  result = batches(ClientSpec(num_epochs=2, batch_size=4, shuffle=False,
                              max_elements=13))
  flat = [v for x, _ in result for v in x]
  assert flat == list(range(10)) + [0, 1, 2]


def test_preprocess_shuffles_each_epoch_deterministically_for_a_seed():
  spec = ClientSpec(num_epochs=2, batch_size=20)
  (first, first_y), = batches(spec, seed=(3, 0))
  (again, _), = batches(spec, seed=(3, 0))
  assert first == again
  assert first_y == [10 * x for x in first]  # columns stay aligned
  assert sorted(first[:10]) == sorted(first[10:]) == list(range(10))
  assert first[:10] != list(range(10))
  assert first[:10] != first[10:]  # reshuffled for the second epoch


def test_preprocess_shuffled_batches_cover_epochs_and_cap():
  result = batches(ClientSpec(num_epochs=3, batch_size=4, max_elements=25), seed=(0, 0))
  assert [len(x) for x, _ in result] == [4] * 6 + [1]
  flat = [v for x, _ in result for v in x]
  assert sorted(flat[:10]) == sorted(flat[10:20]) == list(range(10))
  assert sorted(flat[20:]) == sorted(set(flat[20:]))


@pytest.fixture
def no_global_tf_seed():
  """Clears TF's global seed, which other tests set (e.g. through
  `initialization.seeded_model`): without it, datasets created anew draw
  different orders (with it, a reproducible sequence)."""
  tf.random.set_seed(None)


def test_preprocess_differs_between_creations_without_seed(no_global_tf_seed):
  spec = ClientSpec(batch_size=1000)
  orders = {tuple(batches(spec, num_examples=50)[0][0]) for _ in range(3)}
  assert len(orders) > 1


def test_preprocess_seed_pair_fixes_the_order_per_call():
  preprocess = build_preprocess_fn(ClientSpec(batch_size=1000), to_xy)
  order = lambda seed: as_lists(preprocess(examples(50), seed=seed))[0][0]
  assert order((4, 7)) == order((4, 7))
  # A seeded dataset replays its order on every iteration.
  seeded = preprocess(examples(50), seed=(4, 7))
  assert as_lists(seeded) == as_lists(seeded)
  # Another pair (also when only one of its two ints differs) -> another order.
  assert len({tuple(order(seed)) for seed in [(4, 7), (4, 8), (5, 7)]}) == 3
  assert sorted(order((4, 8))) == list(range(50))


def test_preprocess_without_seed_differs_between_iterations(no_global_tf_seed):
  dataset = build_preprocess_fn(ClientSpec(batch_size=1000), to_xy)(examples(50))
  orders = {tuple(as_lists(dataset)[0][0]) for _ in range(3)}
  assert len(orders) > 1
  assert all(sorted(order) == list(range(50)) for order in orders)


def test_preprocess_without_seed_differs_between_iterations_under_a_global_seed():
  tf.random.set_seed(0)
  try:
    dataset = build_preprocess_fn(ClientSpec(batch_size=1000), to_xy)(examples(50))
    orders = {tuple(as_lists(dataset)[0][0]) for _ in range(3)}
  finally:
    tf.random.set_seed(None)
  assert len(orders) > 1


def test_round_seed_is_a_pair_fixed_by_seed_round_and_client():
  seed = round_seed(0, 1, 2)
  assert isinstance(seed, tuple) and len(seed) == 2
  assert all(isinstance(part, int) for part in seed)
  assert round_seed(0, 1, 2) == seed
  others = [round_seed(1, 1, 2), round_seed(0, 2, 2), round_seed(0, 1, 3)]
  assert len(set(others + [seed])) == 4
  # Usable as a stateless seed: each round's order differs, the same round's repeats.
  preprocess = build_preprocess_fn(ClientSpec(batch_size=1000), to_xy)
  order = lambda s: as_lists(preprocess(examples(50), seed=s))[0][0]
  assert order(round_seed(0, 1, 2)) == order(round_seed(0, 1, 2))
  assert order(round_seed(0, 1, 2)) != order(round_seed(0, 2, 2))


def test_shuffled_batches_of_empty_and_unknown_size_datasets():
  empty = tf.data.Dataset.from_tensor_slices({"x": tf.zeros([0, 2])})
  assert list(shuffled_batches(empty, 4)) == []
  # A filter makes the cardinality unknown; more than one collection chunk.
  odd = tf.data.Dataset.range(5000).filter(lambda v: v % 2 == 1)
  got = np.concatenate(list(shuffled_batches(odd, 300, seed=(1, 0)).as_numpy_iterator()))
  assert sorted(got.tolist()) == list(range(1, 5000, 2))
  pairs = tf.data.Dataset.range(10).map(lambda v: (v, -v))
  for x, y in shuffled_batches(pairs, 3, seed=(2, 0)):
    assert (x.numpy() == -y.numpy()).all()


def test_client_data_preprocess_applies_to_every_client(setup):
  _, _, data = setup
  spec = ClientSpec(batch_size=3, shuffle=False)
  processed = data.preprocess(build_preprocess_fn(
      spec, lambda b: (b["user"], b["rating"])))
  for cid in data.client_ids:
    expected = client_examples(data, cid)
    got = [(int(u), r) for users, ratings
           in processed.create_tf_dataset_for_client(cid).as_numpy_iterator()
           for u, r in zip(users, ratings)]
    assert got == [(u, r) for u, _, r in expected]


@pytest.mark.parametrize("kwargs, field, message", [
    (dict(num_epochs=0), "num_epochs", "num_epochs=0: must be >= 1."),
    (dict(batch_size=0), "batch_size", "batch_size=0: must be >= 1."),
    (dict(max_elements=0), "max_elements",
     "max_elements=0: must be >= 1 (or None for no limit)."),
])
def test_client_spec_errors_name_the_field(kwargs, field, message):
  with pytest.raises(ConfigError) as error:
    ClientSpec(**kwargs)
  assert str(error.value) == message
  assert error.value.fields == (field,)
  assert isinstance(error.value, ValueError)
