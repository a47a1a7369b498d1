"""Users' ratings in files the TFF workers read, so that a round sends keys, not ratings.

With remote workers (`--workers`), a round of `movielens_recon` otherwise
serializes every sampled user's ratings on the controller and sends them to
a worker. When a folder is readable at the same path on the controller and on
every worker (the same machine, or a shared filesystem), the controller
writes the users' ratings there once (`write`), in named tables (e.g. the
ratings users are trained on, and those evaluation scores); each round then
sends, per user, a key of three int32 (shard, start, count) instead of its
ratings (8 bytes per rating), and the worker builds the users' padded block
itself: `group_builder` (training) and `scored_group_builder` (evaluation)
are `tff.tensorflow.computation`s that run where the client work runs,
composed in front of it by `exact.ExactReconstructionProcess(client_input=...,
eval_client_input=...)`.

Layout of the folder:
  ratings-NNNNN.bin  shards of at most SHARD_BYTES (one user's ratings are
                     never split; a user with more gets a shard of its own):
                     each user's ratings as little-endian records of
                     (movie int32, rating float32), 8 bytes each, table by
                     table, users in the order of `UserRatings.client_ids`.
  manifest.json      users and ratings per table, shards and the SHA-256 of
                     the shards: written last; a store whose manifest
                     matches is reused (e.g. on resume), and
                     `unreadable_by_workers` asks every worker for it, to
                     know that the worker sees these very files.

A key block holds G users: shard, start (in records) and count, each int32
[G]; the worker reads each user's shard (at most SHARD_BYTES, or that user's
own ratings) and slices its records, so a round reads O(G * SHARD_BYTES)
bytes whatever the size of the data.
"""

import collections
import glob
import hashlib
import json
import os
from typing import Dict, List, Mapping, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_movierec import tff_runtime
from tff_movierec.reconstruction.user_groups import UserRatings

# Most bytes in a shard (unless one user alone has more).
SHARD_BYTES = 1 << 16
# One rating: int32 movie, float32 rating.
RECORD_BYTES = 8
MANIFEST = "manifest.json"
_FORMAT = 2

# {table: {client id: (shard, start, count)}}
Locations = Dict[str, Dict[str, Tuple[int, int, int]]]


def shard_name(shard: int) -> str:
  return f"ratings-{shard:05d}.bin"


def key_spec() -> collections.OrderedDict:
  """Type of one client call's key block: int32 [G] each (see the module docstring)."""
  return collections.OrderedDict(
      (name, tf.TensorSpec([None], tf.int32)) for name in ("shard", "start", "count"))


class RatingStore:
  """Where each user's ratings are in a written store (`write`).

  Attributes:
    folder: the store's absolute path.
    manifest: the text of its manifest.json.
  """

  def __init__(self, folder: str, manifest: str, locations: Locations):
    self.folder = folder
    self.manifest = manifest
    self._locations = locations

  def keys(self, table: str, members: List[str]) -> collections.OrderedDict:
    """The key block of the users `members` (client ids) in `table`, in their order."""
    rows = np.array([self._locations[table][client_id] for client_id in members], np.int32)
    return collections.OrderedDict(shard=rows[:, 0], start=rows[:, 1], count=rows[:, 2])

  def scored_keys(self, rated: str, scored: str, members: List[str]
                  ) -> collections.OrderedDict:
    """The input of `scored_group_builder` for `members`: their keys in the
    tables `rated` (solved from) and `scored`."""
    return collections.OrderedDict(rated=self.keys(rated, members),
                                   scored=self.keys(scored, members))


def _records(movies: np.ndarray, ratings: np.ndarray) -> bytes:
  records = np.empty(len(movies), dtype=[("movie", "<i4"), ("rating", "<f4")])
  records["movie"], records["rating"] = movies, ratings
  return records.tobytes()


def _shards(tables: Mapping[str, UserRatings]) -> Tuple[List[bytes], Locations]:
  """The shards' bytes and each table's users' (shard, start, count)."""
  shards, locations, current = [], {}, []
  used = 0
  for table, rated in tables.items():
    locations[table] = {}
    for client_id in rated.client_ids:
      data = _records(*rated.rows(client_id))
      if current and used + len(data) > SHARD_BYTES:
        shards.append(b"".join(current))
        current, used = [], 0
      locations[table][client_id] = (len(shards), used // RECORD_BYTES,
                                     len(data) // RECORD_BYTES)
      current.append(data)
      used += len(data)
  if current:
    shards.append(b"".join(current))
  return shards, locations


def write(folder: str, tables: Mapping[str, UserRatings]) -> RatingStore:
  """Writes (or reuses, if its manifest matches) the store of `tables` in `folder`."""
  folder = os.path.abspath(folder)
  shards, locations = _shards(tables)
  digest = hashlib.sha256()
  for data in shards:
    digest.update(data)
  manifest = json.dumps({
      "format": _FORMAT, "shards": len(shards), "sha256": digest.hexdigest(),
      "tables": {table: {"users": len(rows), "ratings": sum(c for _, _, c in rows.values())}
                 for table, rows in locations.items()}}, sort_keys=True)
  path = os.path.join(folder, MANIFEST)
  if os.path.exists(path):
    with open(path) as f:
      if f.read() == manifest:
        return RatingStore(folder, manifest, locations)
    os.remove(path)  # Stale: the shards are rewritten below, then the manifest.
  os.makedirs(folder, exist_ok=True)
  names = [shard_name(shard) for shard in range(len(shards))]
  for stale in set(map(os.path.basename, glob.glob(os.path.join(folder, "ratings-*.bin")))
                   ) - set(names):
    os.remove(os.path.join(folder, stale))
  for name, data in zip(names, shards):
    with open(os.path.join(folder, name), "wb") as f:
      f.write(data)
  with open(path + ".tmp", "w") as f:
    f.write(manifest)
  os.replace(path + ".tmp", path)
  return RatingStore(folder, manifest, locations)


def _shard_prefix(folder: str) -> str:
  return os.path.join(os.path.abspath(folder), "ratings-")


def _read_block(prefix: str, key) -> Tuple[tf.Tensor, tf.Tensor]:
  """The key block's users read from the shards at `prefix`: (movies int32
  [G, L] padded with -1, ratings float32 [G, L] padded with 0)."""
  shards, shard_of_user = tf.unique(key["shard"])
  paths = tf.strings.join([prefix, tf.strings.as_string(shards, width=5, fill="0"), ".bin"])
  contents = tf.map_fn(tf.io.read_file, paths, fn_output_signature=tf.string)
  # The shards' records one after another, int32 [R, 2] (movie, rating bits).
  records = tf.reshape(tf.io.decode_raw(tf.strings.reduce_join(contents), tf.int32,
                                        little_endian=True), [-1, 2])
  shard_start = tf.cumsum(tf.strings.length(contents) // RECORD_BYTES, exclusive=True)
  first = tf.gather(shard_start, shard_of_user) + key["start"]
  rows = tf.ragged.range(first, first + key["count"])  # [G, (n_u)] record indices
  movies = rows.with_flat_values(tf.gather(records[:, 0], rows.flat_values))
  ratings = rows.with_flat_values(
      tf.bitcast(tf.gather(records[:, 1], rows.flat_values), tf.float32))
  return movies.to_tensor(default_value=-1), ratings.to_tensor(default_value=0.0)


def group_builder(folder: str) -> tff.Computation:
  """The client-side computation key block -> the users' training block.

  Type signature: (<shard=int32[?], start=int32[?], count=int32[?]> ->
  <movies=int32[?,?], ratings=float32[?,?]>), the block as
  `exact.group_spec(scored=False)`: G users padded with -1 (movies) and 0
  (ratings) to the longest, as `user_groups.pack` builds it. Reads the
  files of the store at `folder` where it runs.
  """
  prefix = _shard_prefix(folder)

  @tff.tensorflow.computation(tff.types.tensorflow_to_type(key_spec()))
  def build_group(key):
    movies, ratings = _read_block(prefix, key)
    return collections.OrderedDict(movies=movies, ratings=ratings)

  return build_group


def scored_group_builder(folder: str) -> tff.Computation:
  """The client-side computation <rated=key block, scored=key block> (the
  same users, `RatingStore.scored_keys`) -> their evaluation block, as
  `exact.group_spec(scored=True)`: movies and ratings from the rated keys,
  score_movies and score_ratings from the scored ones, read from the store at
  `folder` where it runs."""
  prefix = _shard_prefix(folder)
  keys = collections.OrderedDict(rated=key_spec(), scored=key_spec())

  @tff.tensorflow.computation(tff.types.tensorflow_to_type(keys))
  def build_scored_group(key):
    movies, ratings = _read_block(prefix, key["rated"])
    score_movies, score_ratings = _read_block(prefix, key["scored"])
    return collections.OrderedDict(movies=movies, ratings=ratings, score_movies=score_movies,
                                   score_ratings=score_ratings)

  return build_scored_group


def manifest_reader(folder: str) -> tff.Computation:
  """() -> the text of the store's manifest.json, read where it runs."""
  path = os.path.join(os.path.abspath(folder), MANIFEST)

  @tff.tensorflow.computation
  def read_manifest():
    return tf.io.read_file(path)

  return read_manifest


def unreadable_by_workers(store: RatingStore) -> List[str]:
  """Why workers cannot use `store`: one "host:port: reason" per worker that
  cannot read its manifest or reads another one; [] if every remote worker
  reads it (or there are none)."""
  path = os.path.join(store.folder, MANIFEST)
  problems = []
  for address, outcome in tff_runtime.run_on_each_worker(manifest_reader(store.folder)) or []:
    if isinstance(outcome, Exception):
      reason = str(outcome).strip().splitlines()[0] if str(outcome).strip() else repr(outcome)
      problems.append(f"{address}: cannot read {path} ({reason})")
    elif (outcome.decode() if isinstance(outcome, bytes) else str(outcome)) != store.manifest:
      problems.append(f"{address}: {path} there is not the file written here")
  return problems
