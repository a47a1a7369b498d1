"""rating_store: the users' ratings written once, rebuilt from keys where the clients run."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from tff_movierec.reconstruction import exact, rating_store, user_groups

NUM_MOVIES = 40


def _ratings(users=30, seed=0, heavy_user_ratings=0) -> user_groups.UserRatings:
  """Users with 1..20 ratings (half stars), and optionally one with many more."""
  rng = np.random.default_rng(seed)
  rows = []
  for user in range(users):
    count = heavy_user_ratings if user == 7 and heavy_user_ratings else int(rng.integers(1, 21))
    movies = rng.choice(NUM_MOVIES if count <= NUM_MOVIES else 10 * count, count,
                        replace=False)
    rows += [(user, int(m), float(rng.integers(1, 11)) / 2) for m in movies]
  return user_groups.UserRatings(pd.DataFrame(rows, columns=["user", "movie", "rating"]))


@pytest.fixture(scope="module")
def ratings():
  return _ratings(heavy_user_ratings=300)


@pytest.fixture
def small_shards(monkeypatch):
  # 256 bytes = 32 ratings per shard: most users share one, the heavy one has its own.
  monkeypatch.setattr(rating_store, "SHARD_BYTES", 256)


def test_keys_rebuild_exactly_the_packed_groups(tmp_path, ratings, small_shards):
  store = rating_store.write(str(tmp_path), {"train": ratings})
  shards = sorted(name for name in os.listdir(tmp_path) if name.endswith(".bin"))
  assert len(shards) > 3
  build = rating_store.group_builder(store.folder)
  ids = ratings.client_ids[::2] + ["7"]
  plans = user_groups.plan(ratings, ids, 4)
  packed = user_groups.pack(ratings, ids, 4)
  assert len(plans) == len(packed) > 2
  for members, group in zip(plans, packed):
    built = build(store.keys("train", members))
    np.testing.assert_array_equal(built["movies"], group["movies"])
    np.testing.assert_array_equal(built["ratings"], group["ratings"])
    assert built["ratings"].dtype == np.float32


def test_scored_keys_rebuild_exactly_the_packed_evaluation_groups(tmp_path, ratings,
                                                                  small_shards):
  scored = _ratings(seed=9)
  store = rating_store.write(str(tmp_path), {"train": ratings, "scored": scored})
  build = rating_store.scored_group_builder(store.folder)
  ids = ratings.client_ids[1::2]
  packed = user_groups.pack(ratings, ids, 4, scored)
  for members, group in zip(user_groups.plan(ratings, ids, 4, scored), packed):
    built = build(store.scored_keys("train", "scored", members))
    assert list(built) == list(group)
    for name in group:
      np.testing.assert_array_equal(built[name], group[name], err_msg=name)


def test_every_rating_is_stored_once_in_user_order(tmp_path, ratings, small_shards):
  store = rating_store.write(str(tmp_path), {"train": ratings})
  data = b"".join(open(os.path.join(tmp_path, rating_store.shard_name(i)), "rb").read()
                  for i in range(json.loads(store.manifest)["shards"]))
  records = np.frombuffer(data, dtype=[("movie", "<i4"), ("rating", "<f4")])
  movies = np.concatenate([ratings.rows(c)[0] for c in ratings.client_ids])
  values = np.concatenate([ratings.rows(c)[1] for c in ratings.client_ids])
  np.testing.assert_array_equal(records["movie"], movies)
  np.testing.assert_array_equal(records["rating"], values)
  manifest = json.loads(store.manifest)["tables"]["train"]
  assert manifest == {"users": len(ratings), "ratings": len(records)}


def test_a_matching_store_is_reused_and_another_rewritten(tmp_path, ratings):
  first = rating_store.write(str(tmp_path), {"train": ratings})
  shard = os.path.join(tmp_path, rating_store.shard_name(0))
  os.utime(shard, (0, 0))
  again = rating_store.write(str(tmp_path), {"train": ratings})
  assert again.manifest == first.manifest and os.stat(shard).st_mtime == 0
  other = _ratings(users=12, seed=5)
  rewritten = rating_store.write(str(tmp_path), {"train": other})
  assert rewritten.manifest != first.manifest and os.stat(shard).st_mtime > 0
  shards = [name for name in os.listdir(tmp_path) if name.endswith(".bin")]
  assert len(shards) == json.loads(rewritten.manifest)["shards"]
  build = rating_store.group_builder(rewritten.folder)
  (members,) = user_groups.plan(other, other.client_ids, 12, max_length_ratio=None)
  np.testing.assert_array_equal(build(rewritten.keys("train", members))["movies"],
                                other.pad(members)[0])


def test_the_manifest_reader_reads_the_written_manifest(tmp_path, ratings):
  store = rating_store.write(str(tmp_path), {"train": ratings})
  assert rating_store.manifest_reader(store.folder)().decode() == store.manifest


def test_the_process_builds_its_groups_from_keys_like_from_ratings(tmp_path, ratings):
  config = exact.ExactConfig(num_movies=10 * 300, embedding_dim=3)
  store = rating_store.write(str(tmp_path), {"train": ratings})
  plain = exact.ExactReconstructionProcess(config, tff.learning.optimizers.build_adam(0.05))
  keyed = exact.ExactReconstructionProcess(
      config, tff.learning.optimizers.build_adam(0.05),
      client_input=rating_store.group_builder(store.folder))
  ids = ratings.client_ids
  want = plain.next(plain.initialize(seed=1), user_groups.pack(ratings, ids, 8))
  got = keyed.next(keyed.initialize(seed=1),
                   [store.keys("train", m) for m in user_groups.plan(ratings, ids, 8)])
  for g, w in zip(got.state["model"].trainable, want.state["model"].trainable):
    np.testing.assert_array_equal(g, w)
  assert got.metrics == want.metrics


def test_the_process_evaluates_from_keys_like_from_ratings(tmp_path, ratings):
  config = exact.ExactConfig(num_movies=10 * 300, embedding_dim=3)
  scored = _ratings(seed=4)
  store = rating_store.write(str(tmp_path), {"train": ratings, "scored": scored})
  plain = exact.ExactReconstructionProcess(config, tff.learning.optimizers.build_adam(0.05))
  keyed = exact.ExactReconstructionProcess(
      config, tff.learning.optimizers.build_adam(0.05),
      eval_client_input=rating_store.scored_group_builder(store.folder))
  weights = plain.get_model_weights(plain.initialize(seed=3))
  ids = scored.client_ids
  want = plain.evaluate(weights, user_groups.pack(ratings, ids, 8, scored))
  got = keyed.evaluate(weights, [store.scored_keys("train", "scored", m)
                                 for m in user_groups.plan(ratings, ids, 8, scored)])
  assert got == want and want["num_ratings"] > 0


def test_a_client_input_that_builds_no_group_is_refused():
  @tff.tensorflow.computation(tf.TensorSpec([None], tf.int32))
  def not_a_group(x):
    return x

  with pytest.raises(TypeError, match="not a group"):
    exact.ExactReconstructionProcess(exact.ExactConfig(num_movies=5, embedding_dim=2),
                                     tff.learning.optimizers.build_adam(0.05),
                                     client_input=not_a_group)
