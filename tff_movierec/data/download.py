"""Finds MovieLens-1M on disk, or downloads and verifies `ml-1m.zip` into a cache.

The cache is written atomically: the archive is downloaded to a temporary name,
its MD5 checked, unpacked into a temporary directory, and only then renamed to
its final place, so an interrupted or corrupt download never leaves a
half-written data set behind.
"""

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from typing import Optional

ML_1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
ML_1M_MD5 = "c4d9eecfca2ab87c1945afe126590906"
CACHE_ENV_VAR = "TFF_MOVIEREC_CACHE"
REQUIRED_FILES = ("users.dat", "movies.dat")
RATINGS_FILES = ("ratings.dat", "ratings.csv")
DOWNLOAD_TIMEOUT_SECONDS = 60


class DataError(ValueError):
  """Bad or missing input data; the message names the file (and line)."""


def default_cache_dir() -> str:
  return os.environ.get(
      CACHE_ENV_VAR, os.path.join(os.path.expanduser("~"), ".cache", "tff_movierec")
  )


def missing_movielens_files(directory: str) -> list:
  """Names of the MovieLens files absent from `directory` (empty if complete)."""
  missing = [
      f for f in REQUIRED_FILES if not os.path.isfile(os.path.join(directory, f))
  ]
  if not any(os.path.isfile(os.path.join(directory, f)) for f in RATINGS_FILES):
    missing.append(" or ".join(RATINGS_FILES))
  return missing


def has_movielens_files(directory: str) -> bool:
  return not missing_movielens_files(directory)


def md5_of(path: str) -> str:
  digest = hashlib.md5()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def extract_verified_archive(
    zip_path: str, cache_dir: str, expected_md5: str = ML_1M_MD5
) -> str:
  """Verifies `zip_path` and unpacks its `ml-1m/` folder into `cache_dir`.

  Returns the path of `cache_dir/ml-1m`. Raises DataError (and writes nothing)
  if the checksum differs or the archive is corrupt.
  """
  actual = md5_of(zip_path)
  if actual != expected_md5:
    raise DataError(
        f"{zip_path}: MD5 {actual} does not match the published "
        f"{expected_md5} of ml-1m.zip; the file is corrupt or not MovieLens-1M."
    )
  os.makedirs(cache_dir, exist_ok=True)
  final_dir = os.path.join(cache_dir, "ml-1m")
  staging = tempfile.mkdtemp(prefix=".ml-1m-", dir=cache_dir)
  try:
    try:
      with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(staging)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
      raise DataError(f"{zip_path}: not a valid zip archive ({e}).") from e
    unpacked = os.path.join(staging, "ml-1m")
    if not has_movielens_files(unpacked):
      raise DataError(
          f"{zip_path}: archive has no ml-1m/ folder with users.dat, movies.dat"
          " and ratings.dat."
      )
    if os.path.isdir(final_dir):
      shutil.rmtree(final_dir)
    os.replace(unpacked, final_dir)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return final_dir


def download_movielens(cache_dir: str, url: str = ML_1M_URL) -> str:
  """Downloads ml-1m.zip into `cache_dir`, verifies and unpacks it.

  Returns the path of `cache_dir/ml-1m`. On any failure raises DataError and
  leaves nothing behind (not even `cache_dir`, if this call created it).
  """
  created_cache_dir = not os.path.isdir(cache_dir)
  os.makedirs(cache_dir, exist_ok=True)
  fd, tmp_zip = tempfile.mkstemp(prefix=".ml-1m-", suffix=".zip", dir=cache_dir)
  try:
    try:
      with os.fdopen(fd, "wb") as out, urllib.request.urlopen(
          url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
        shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError) as e:
      raise DataError(
          f"MovieLens-1M is not in {cache_dir} and downloading {url} failed "
          f"({e}). Download ml-1m.zip by hand and unpack it, then pass "
          "--data_dir=/path/to/ml-1m (the folder holding users.dat, "
          "movies.dat and ratings.dat or ratings.csv)."
      ) from e
    return extract_verified_archive(tmp_zip, cache_dir)
  finally:
    os.remove(tmp_zip)
    if created_cache_dir and not os.listdir(cache_dir):
      os.rmdir(cache_dir)


def resolve_data_dir(data_dir: Optional[str]) -> str:
  """Returns a directory holding the MovieLens-1M files.

  Args:
    data_dir: a folder with users.dat, movies.dat and ratings.dat or
      ratings.csv; or None to use (and, if needed, fill) the cache.
  """
  if data_dir:
    if not os.path.isdir(data_dir):
      raise DataError(f"--data_dir={data_dir}: no such directory.")
    missing = missing_movielens_files(data_dir)
    if missing:
      raise DataError(
          f"--data_dir={data_dir}: missing {', '.join(missing)}; expected the "
          "MovieLens-1M files users.dat, movies.dat and ratings.dat (or "
          "ratings.csv) in this folder."
      )
    return data_dir
  cached = os.path.join(default_cache_dir(), "ml-1m")
  if has_movielens_files(cached):
    return cached
  return download_movielens(default_cache_dir())
