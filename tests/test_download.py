"""Tests of finding, verifying and caching MovieLens (loopback network only)."""

import os
import zipfile

import pytest

from tff_movierec.data import download
from tff_movierec.data.download import DataError
from tff_movierec.data.movielens import load_movielens
from tff_movierec.data.synthetic import write_synthetic_movielens

UNREACHABLE_URL = "http://127.0.0.1:9/ml-1m.zip"  # discard port: refused


@pytest.fixture
def archive(tmp_path):
  """A zip laid out like ml-1m.zip (an ml-1m/ folder) with synthetic files."""
  source = write_synthetic_movielens(
      str(tmp_path / "source"), num_users=8, num_movies=10, ratings_per_user=3)
  path = str(tmp_path / "ml-1m.zip")
  with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
    for name in ("users.dat", "movies.dat", "ratings.dat"):
      zf.write(os.path.join(source, name), f"ml-1m/{name}")
  return path


def test_verified_archive_is_unpacked_into_cache(archive, tmp_path):
  cache = str(tmp_path / "cache")
  final = download.extract_verified_archive(
      archive, cache, expected_md5=download.md5_of(archive))
  assert final == os.path.join(cache, "ml-1m")
  assert sorted(os.listdir(cache)) == ["ml-1m"]  # no staging left
  assert sorted(os.listdir(final)) == ["movies.dat", "ratings.dat", "users.dat"]
  assert len(load_movielens(final).ratings) == 8 * 3


def test_wrong_checksum_writes_nothing(archive, tmp_path):
  cache = str(tmp_path / "cache")
  with pytest.raises(DataError, match="MD5 .* does not match the published"):
    download.extract_verified_archive(archive, cache)  # the real ML-1M MD5
  assert not os.path.exists(cache)


def test_corrupt_archive_leaves_no_files(tmp_path):
  corrupt = tmp_path / "ml-1m.zip"
  corrupt.write_bytes(b"PK\x03\x04 this is not really a zip archive")
  cache = tmp_path / "cache"
  with pytest.raises(DataError, match=f"{corrupt}: not a valid zip archive"):
    download.extract_verified_archive(
        str(corrupt), str(cache), expected_md5=download.md5_of(str(corrupt)))
  assert os.listdir(cache) == []


def test_truncated_archive_leaves_no_files(archive, tmp_path):
  truncated = tmp_path / "truncated.zip"
  data = open(archive, "rb").read()
  truncated.write_bytes(data[: len(data) // 2])
  cache = tmp_path / "cache"
  with pytest.raises(DataError, match="not a valid zip archive"):
    download.extract_verified_archive(
        str(truncated), str(cache), expected_md5=download.md5_of(str(truncated)))
  assert os.listdir(cache) == []


def test_archive_without_movielens_folder_leaves_no_files(tmp_path):
  path = str(tmp_path / "other.zip")
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr("readme.txt", "not MovieLens")
  cache = tmp_path / "cache"
  with pytest.raises(DataError, match="archive has no ml-1m/ folder"):
    download.extract_verified_archive(path, str(cache), download.md5_of(path))
  assert os.listdir(cache) == []


def test_existing_cache_is_replaced_whole(archive, tmp_path):
  cache = tmp_path / "cache"
  (cache / "ml-1m").mkdir(parents=True)
  (cache / "ml-1m" / "stale.txt").write_text("old")
  download.extract_verified_archive(archive, str(cache), download.md5_of(archive))
  assert "stale.txt" not in os.listdir(cache / "ml-1m")


def test_unreachable_url_says_how_to_pass_data_dir(tmp_path):
  cache = tmp_path / "cache"
  with pytest.raises(DataError) as error:
    download.download_movielens(str(cache), url=UNREACHABLE_URL)
  message = str(error.value)
  assert UNREACHABLE_URL in message and "--data_dir=" in message
  assert not cache.exists()


def test_unreachable_url_keeps_existing_cache_dir_empty(tmp_path):
  with pytest.raises(DataError, match="--data_dir="):
    download.download_movielens(str(tmp_path), url=UNREACHABLE_URL)
  assert os.listdir(tmp_path) == []


def test_resolve_data_dir_names_the_flag(tmp_path):
  missing = str(tmp_path / "absent")
  with pytest.raises(DataError, match=f"--data_dir={missing}: no such directory"):
    download.resolve_data_dir(missing)
  (tmp_path / "users.dat").write_text("")
  with pytest.raises(DataError) as error:
    download.resolve_data_dir(str(tmp_path))
  message = str(error.value)
  assert f"--data_dir={tmp_path}" in message
  assert "movies.dat, ratings.dat or ratings.csv" in message


def test_resolve_data_dir_accepts_complete_folder(tmp_path):
  directory = write_synthetic_movielens(str(tmp_path), num_users=4,
                                        num_movies=5, ratings_per_user=2)
  assert download.resolve_data_dir(directory) == directory


def test_resolve_data_dir_uses_filled_cache(tmp_path, monkeypatch):
  monkeypatch.setenv(download.CACHE_ENV_VAR, str(tmp_path))
  cached = write_synthetic_movielens(str(tmp_path / "ml-1m"), num_users=4,
                                     num_movies=5, ratings_per_user=2)
  assert download.resolve_data_dir(None) == cached
