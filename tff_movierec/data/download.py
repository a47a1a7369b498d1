"""Finds a MovieLens release on disk, or downloads and verifies its zip into a cache.

The releases (URL, published MD5, folder the zip unpacks to, files) are in
`releases.RELEASES`. The cache is written atomically: the archive is
downloaded to a temporary name, its MD5 checked, unpacked into a temporary
directory, and only then renamed to its final place (`cache/<folder>`), so an
interrupted or corrupt download never leaves a half-written data set behind.
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

from tff_movierec.data import releases

ML_1M_URL = releases.RELEASES["ml-1m"].url
ML_1M_MD5 = releases.RELEASES["ml-1m"].md5
CACHE_ENV_VAR = "TFF_MOVIEREC_CACHE"
DOWNLOAD_TIMEOUT_SECONDS = 60


class DataError(ValueError):
  """Bad or missing input data; the message names the file (and line)."""


def default_cache_dir() -> str:
  return os.environ.get(
      CACHE_ENV_VAR, os.path.join(os.path.expanduser("~"), ".cache", "tff_movierec")
  )


def missing_movielens_files(directory: str, dataset: str = releases.DEFAULT) -> list:
  """Names of the files of release `dataset` absent from `directory` (empty if
  complete)."""
  release = releases.get(dataset)
  missing = [f for f in release.required_files
             if not os.path.isfile(os.path.join(directory, f))]
  if not any(os.path.isfile(os.path.join(directory, f)) for f in release.ratings_files):
    missing.append(" or ".join(release.ratings_files))
  return missing


def has_movielens_files(directory: str, dataset: str = releases.DEFAULT) -> bool:
  return not missing_movielens_files(directory, dataset)


def md5_of(path: str) -> str:
  digest = hashlib.md5()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def extract_verified_archive(
    zip_path: str, cache_dir: str, expected_md5: Optional[str] = None,
    dataset: str = releases.DEFAULT,
) -> str:
  """Verifies `zip_path` and unpacks the release's folder into `cache_dir`.

  Args:
    zip_path: the downloaded archive of release `dataset`.
    cache_dir: created if needed.
    expected_md5: default: the release's published MD5.
    dataset: a key of `releases.RELEASES`.

  Returns the path of `cache_dir/<folder>` (e.g. `ml-10M100K`). Raises
  DataError (and writes nothing) if the checksum differs or the archive is
  corrupt or lacks the release's files.
  """
  release = releases.get(dataset)
  expected_md5 = expected_md5 or release.md5
  actual = md5_of(zip_path)
  if actual != expected_md5:
    raise DataError(
        f"{zip_path}: MD5 {actual} does not match the published "
        f"{expected_md5} of {release.archive}; the file is corrupt or not "
        f"{release.title}."
    )
  os.makedirs(cache_dir, exist_ok=True)
  final_dir = os.path.join(cache_dir, release.folder)
  staging = tempfile.mkdtemp(prefix=f".{release.name}-", dir=cache_dir)
  try:
    try:
      with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(staging)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
      raise DataError(f"{zip_path}: not a valid zip archive ({e}).") from e
    unpacked = os.path.join(staging, release.folder)
    if not has_movielens_files(unpacked, dataset):
      raise DataError(
          f"{zip_path}: archive has no {release.folder}/ folder with "
          f"{release.describe_files()}."
      )
    if os.path.isdir(final_dir):
      shutil.rmtree(final_dir)
    os.replace(unpacked, final_dir)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return final_dir


def download_movielens(cache_dir: str, url: Optional[str] = None,
                       dataset: str = releases.DEFAULT) -> str:
  """Downloads the zip of release `dataset` (from `url`, default the
  release's) into `cache_dir`, verifies and unpacks it.

  Returns the path of `cache_dir/<folder>`. On any failure raises DataError
  and leaves nothing behind (not even `cache_dir`, if this call created it).
  """
  release = releases.get(dataset)
  url = url or release.url
  created_cache_dir = not os.path.isdir(cache_dir)
  os.makedirs(cache_dir, exist_ok=True)
  fd, tmp_zip = tempfile.mkstemp(prefix=f".{release.name}-", suffix=".zip", dir=cache_dir)
  try:
    try:
      with os.fdopen(fd, "wb") as out, urllib.request.urlopen(
          url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
        shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError) as e:
      raise DataError(
          f"{release.title} is not in {cache_dir} and downloading {url} failed "
          f"({e}). Download {release.archive} by hand and unpack it, then pass "
          f"--data_dir=/path/to/{release.folder} (the folder holding "
          f"{release.describe_files()})."
      ) from e
    return extract_verified_archive(tmp_zip, cache_dir, dataset=dataset)
  finally:
    os.remove(tmp_zip)
    if created_cache_dir and not os.listdir(cache_dir):
      os.rmdir(cache_dir)


def _looks_like(directory: str, dataset: str) -> str:
  """' The folder holds the files of ml-1m: pass --dataset=ml-1m.' when the
  files in `directory` are another release's; else ''."""
  others = [name for name in releases.guess(os.listdir(directory)) if name != dataset]
  if not others:
    return ""
  return (f" The folder holds the files of {' or '.join(others)}: pass "
          f"--dataset={others[0]}" + (f" (or --dataset={others[1]})" if len(others) > 1 else "")
          + ".")


def resolve_data_dir(data_dir: Optional[str], dataset: str = releases.DEFAULT) -> str:
  """Returns a directory holding the files of release `dataset`.

  Args:
    data_dir: a folder with the release's files (see `releases`); or None to
      use (and, if needed, fill) the cache.
    dataset: a key of `releases.RELEASES` (--dataset).
  """
  release = releases.get(dataset)
  if data_dir:
    if not os.path.isdir(data_dir):
      raise DataError(f"--data_dir={data_dir}: no such directory.")
    missing = missing_movielens_files(data_dir, dataset)
    if missing:
      raise DataError(
          f"--data_dir={data_dir}: missing {', '.join(missing)}; expected the "
          f"{release.title} files {release.describe_files()} in this folder "
          f"(--dataset={dataset}).{_looks_like(data_dir, dataset)}"
      )
    users_file = os.path.join(data_dir, releases.ML_1M_USERS_FILE)
    if not release.has_demographics and os.path.isfile(users_file):
      raise DataError(
          f"--data_dir={data_dir}: holds {releases.ML_1M_USERS_FILE}, which "
          f"{release.title} does not have (--dataset={dataset})."
          f"{_looks_like(data_dir, dataset)}"
      )
    return data_dir
  cached = os.path.join(default_cache_dir(), release.folder)
  if has_movielens_files(cached, dataset):
    return cached
  return download_movielens(default_cache_dir(), dataset=dataset)
