"""The larger MovieLens releases (--dataset=ml-10m|ml-20m|ml-25m): their exact
file formats on tiny hand-written files, their download and verification (a
local zip, never the network), and what tasks do without demographics."""

import dataclasses
import io
import os
import urllib.request
import zipfile

from absl import flags
from absl.testing import flagsaver
import numpy as np
import pytest

import run_experiment
from tasks import registry
from tff_movierec.data import download, features, movielens, releases
from tff_movierec.data.movielens import DataError, load_movielens
from tff_movierec.data.synthetic import write_synthetic_movielens

FLAGS = flags.FLAGS

# ML-10M: `::` separated, utf-8, no header, no users file; tags.dat is ignored.
MOVIES_10M = (
    "1::Toy Story (1995)::Adventure|Animation|Children|Comedy|Fantasy\n"
    "4973::Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)::Comedy|Romance\n"
    "3060::Fantasia 2000 (1999)::Animation|Children|Musical|IMAX\n"
    "8606::Pull My Daisy (1958)::(no genres listed)\n"
)
RATINGS_10M = (
    "7::1::5::838985046\n"
    "3::4973::3.5::838983525\n"
    "7::3060::0.5::838983392\n"
    "12::8606::4::838983421\n"
)
# ML-20M / ML-25M: csv with headers; titles with commas are quoted.
MOVIES_CSV = (
    "movieId,title,genres\n"
    "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
    '11,"American President, The (1995)",Comedy|Drama|Romance\n'
    '99,"Film ""Quoted"", A",IMAX\n'
    "131262,Innocence (2014),(no genres listed)\n"
)
RATINGS_CSV = (
    "userId,movieId,rating,timestamp\n"
    "2,11,3.5,1112486027\n"
    "1,1,5.0,1112484676\n"
    "2,131262,0.5,1112484819\n"
    "40,99,4.0,1112484727\n"
)


def write_release(directory, dataset, movies=None, ratings=None, extra=None):
  """Writes a tiny folder of release `dataset` in its exact format."""
  release = releases.RELEASES[dataset]
  later_csv = release.movies_file.endswith(".csv")
  contents = {
      release.movies_file: movies if movies is not None else (
          MOVIES_CSV if later_csv else MOVIES_10M),
      release.ratings_files[0]: ratings if ratings is not None else (
          RATINGS_CSV if later_csv else RATINGS_10M),
      **(extra or {}),
  }
  os.makedirs(directory, exist_ok=True)
  for name, text in contents.items():
    with open(os.path.join(directory, name), "w", encoding="utf-8", newline="") as f:
      f.write(text)
  return str(directory)


def error_of(directory, dataset, **kwargs):
  with pytest.raises(DataError) as error:
    load_movielens(str(directory), dataset=dataset, **kwargs)
  return str(error.value)


# Loading.

def test_ml10m_dat_with_half_stars_and_no_users_file(tmp_path):
  directory = write_release(tmp_path, "ml-10m",
                            extra={"tags.dat": "15::4973::excellent!::1215184630\n"})
  data = load_movielens(directory, dataset="ml-10m")
  assert data.release.name == "ml-10m" and data.rating_scale == (0.5, 5.0)
  assert not data.has_demographics
  assert data.users.columns.tolist() == ["user_id"]
  assert data.users["user_id"].tolist() == [3, 7, 12]  # distinct ids of the ratings, sorted
  assert data.movies["movie_id"].tolist() == [1, 3060, 4973, 8606]
  assert data.movies["title"].iloc[2].startswith("Amélie")
  assert data.movies["year"].tolist() == [1995, 1999, 2001, 1958]
  assert data.ratings["user"].tolist() == [1, 0, 1, 2]
  assert data.ratings["movie"].tolist() == [0, 2, 1, 3]
  assert data.ratings["rating"].tolist() == [5.0, 3.5, 0.5, 4.0]
  assert data.ratings["timestamp"].iloc[0] == 838985046
  assert features.user_features(data) == {}


def test_later_genres_have_imax_and_no_genres_rows(tmp_path):
  data = load_movielens(write_release(tmp_path, "ml-10m"), dataset="ml-10m")
  genres = features.genre_multi_hot(data)
  assert data.genre_names == releases.LATER_GENRES and genres.shape == (4, 19)
  names = list(data.genre_names)
  assert genres[1, names.index("IMAX")] == 1 and genres[1, names.index("Children")] == 1
  assert genres[3].sum() == 0  # (no genres listed)
  assert features.public_movie_features(data).shape == (4, 19 + 12)


@pytest.mark.parametrize("dataset", ["ml-20m", "ml-25m"])
def test_csv_releases_with_quoted_titles(tmp_path, dataset):
  data = load_movielens(write_release(tmp_path, dataset), dataset=dataset)
  assert data.movies["movie_id"].tolist() == [1, 11, 99, 131262]
  assert data.movies["title"].tolist() == [
      "Toy Story (1995)", "American President, The (1995)", 'Film "Quoted", A',
      "Innocence (2014)"]
  assert data.movies["year"].tolist() == [1995, 1995, -1, 2014]
  assert data.users["user_id"].tolist() == [1, 2, 40]
  assert data.ratings["rating"].tolist() == [3.5, 5.0, 0.5, 4.0]
  assert data.ratings[["user", "movie"]].values.tolist() == [[1, 1], [0, 0], [1, 3], [2, 2]]
  assert data.ratings["user"].dtype == np.int32 and data.ratings["rating"].dtype == np.float32
  assert data.has_timestamps and data.rating_scale == (0.5, 5.0)


def test_ml1m_is_unchanged_and_has_demographics(tmp_path):
  data = load_movielens(write_synthetic_movielens(str(tmp_path), num_users=5, num_movies=6,
                                                  ratings_per_user=3))
  assert data.release.name == "ml-1m" and data.rating_scale == (1.0, 5.0)
  assert data.has_demographics and data.genre_names == movielens.GENRES
  assert features.genre_multi_hot(data).shape == (6, 18)


# Bad files: each error names the file and line.

@pytest.mark.parametrize("ratings, line, fragment", [
    ("7::1::5::1\n7::4973::3.25::2\n", 2, "rating 3.25 is not allowed: MovieLens-10M ratings "
     "are multiples of 0.5 from 0.5 to 5"),
    ("7::1::5::1\n7::4973::0::2\n", 2, "rating 0 is outside 0.5-5"),
    ("7::1::5::1\n7::4973::5.5::2\n", 2, "rating 5.5 is outside 0.5-5"),
    ("7::1::5::1\n7::4973::3.5\n", 2, "found 3 fields"),
    ("7::1::5::1\n\n7::4973::3.5::2\n", 2, "found a blank line"),
    ("7::1::5::1\n7::4973::four::2\n", 2, "rating 'four' is not a number"),
    ("7::1::5::1\n7::2::4::2\n", 2, "movie id 2 is not in"),
    ("7::1::5::1\n7::1::4::2\n", 2, "user 7 rated movie 1 more than once"),
])
def test_bad_ml10m_ratings_name_file_and_line(tmp_path, ratings, line, fragment):
  message = error_of(write_release(tmp_path, "ml-10m", ratings=ratings), "ml-10m")
  assert f"{tmp_path / 'ratings.dat'}:{line}:" in message and fragment in message, message


def test_half_star_is_refused_for_ml1m(tmp_path):
  directory = write_synthetic_movielens(str(tmp_path), num_users=4, num_movies=5,
                                        ratings_per_user=2, ratings_format="csv")
  with open(os.path.join(directory, "ratings.csv"), "a") as f:
    f.write("1,5,3.5,1000\n")
  message = error_of(directory, "ml-1m")
  assert f"{directory}/ratings.csv:10: rating 3.5 is not allowed" in message, message
  assert "whole stars" in message and "--dataset=ml-1m" in message
  assert "ml-10m, ml-20m, ml-25m have half stars" in message


@pytest.mark.parametrize("movies, line, fragment", [
    ("movieId,title,genres\n1,Toy Story (1995),Comedy\n11,American President, The (1995),"
     "Drama\n", 3, "found 4 fields"),
    ("movieId,title,genres\n1,Toy Story (1995),Comedy\n11,\"Open quote,Drama\n", 3,
     "malformed line"),
    ("movieId,title,genres\n1,Toy Story (1995),Children's\n", 2,
     "unknown genre(s) [\"Children's\"]"),
    ("movieId,title,genres\n1,Toy Story (1995),(no genres listed)|Drama\n", 2,
     "unknown genre(s) ['(no genres listed)']"),
    ("movieId,title,genres\n1,Toy Story (1995),Comedy\n1,Jumanji (1995),Comedy\n", 3,
     "duplicated movie_id 1"),
    ("movieId,title,genres\nx,Toy Story (1995),Comedy\n", 2, "movie_id 'x' is not an integer"),
    ("movieId,title,genres\n1,Toy Story (1995),\n", 2, "field genres is empty"),
    ("movieId,title\n1,Toy Story (1995)\n", 1, "expected header 'movieId,title,genres'"),
])
def test_bad_movies_csv_names_file_and_line(tmp_path, movies, line, fragment):
  message = error_of(write_release(tmp_path, "ml-20m", movies=movies,
                                   ratings="userId,movieId,rating,timestamp\n1,1,4,5\n"),
                     "ml-20m")
  assert f"{tmp_path / 'movies.csv'}:{line}:" in message and fragment in message, message


@pytest.mark.parametrize("ratings, line, fragment", [
    ("userId,movieId,rating,timestamp\n1,1,4,5\n2,11,4.5\n", 3, "found 3 fields"),
    ("userId,movieId,rating,timestamp\n1,1,4,5\n2,11,4.5,6,7\n", 3, "found 5 fields"),
    ("userId,movieId,rating,timestamp\n1,1,4,5\n2,1.5,4.5,6\n", 3,
     "movie_id '1.5' is not an integer"),
    ("userId,movieId,rating,timestamp\n1,1,4,5\n2,11,4.75,6\n", 3, "4.75 is not allowed"),
    ("userId,movieId,timestamp\n1,1,5\n", 1, "expected header"),
    ("userId,movieId,rating,timestamp\n", None, "no data lines"),
])
def test_bad_ratings_csv_names_file_and_line(tmp_path, ratings, line, fragment):
  message = error_of(write_release(tmp_path, "ml-25m", ratings=ratings), "ml-25m")
  location = f"{tmp_path / 'ratings.csv'}:" + (f"{line}:" if line else "")
  assert location in message and fragment in message, message


def test_bad_line_is_found_across_chunks(tmp_path, monkeypatch):
  monkeypatch.setattr(movielens, "_CHUNK_LINES", 3)
  rows = [f"{u},1,4.5,{u}" for u in range(1, 9)]
  rows[6] = "7,1,4.5,noon"
  ratings = "userId,movieId,rating,timestamp\n" + "\n".join(rows) + "\n"
  message = error_of(write_release(tmp_path, "ml-20m", ratings=ratings), "ml-20m")
  assert f"{tmp_path / 'ratings.csv'}:8: timestamp 'noon' is not an integer" in message


def test_by_line_reading_accepts_what_the_fast_parser_refuses(tmp_path):
  # "5.0" is an integer id to the line-by-line checks (as for ML-1M before),
  # not to pandas' int64 parser: the result is the same data.
  ratings = RATINGS_CSV.replace("\n1,1,", "\n1.0,1,")
  data = load_movielens(write_release(tmp_path, "ml-20m", ratings=ratings), dataset="ml-20m")
  assert data.users["user_id"].tolist() == [1, 2, 40]
  assert data.ratings["timestamp"].dtype == np.int64


def test_ratings_not_utf8_names_line(tmp_path):
  directory = write_release(tmp_path, "ml-20m")
  with open(os.path.join(directory, "ratings.csv"), "ab") as f:
    f.write("3,1,4é,7\n".encode("latin-1"))
  assert f"{directory}/ratings.csv:6: not valid utf-8" in error_of(directory, "ml-20m")


# Which files a folder must hold, and contradictions with --dataset.

@pytest.mark.parametrize("dataset, missing", [
    ("ml-10m", "movies.dat"), ("ml-10m", "ratings.dat"), ("ml-20m", "movies.csv"),
    ("ml-25m", "ratings.csv")])
def test_missing_file_is_named(tmp_path, dataset, missing):
  directory = write_release(tmp_path, dataset)
  os.remove(os.path.join(directory, missing))
  message = error_of(directory, dataset)
  assert f"--data_dir={directory}: missing {missing}" in message
  assert f"--dataset={dataset}" in message


def test_ml1m_folder_with_another_dataset_names_the_right_flag(tmp_path):
  directory = write_synthetic_movielens(str(tmp_path), num_users=4, num_movies=5,
                                        ratings_per_user=2)
  message = error_of(directory, "ml-20m")
  assert f"--data_dir={directory}: missing movies.csv, ratings.csv" in message
  assert "MovieLens-20M" in message and "pass --dataset=ml-1m" in message
  message = error_of(directory, "ml-10m")  # movies.dat and ratings.dat are there
  assert "holds users.dat, which MovieLens-10M does not have" in message
  assert "pass --dataset=ml-1m" in message


def test_csv_release_folder_with_ml1m_names_both_candidates(tmp_path):
  message = error_of(write_release(tmp_path, "ml-25m"), "ml-1m")
  assert "missing users.dat, movies.dat" in message
  assert "pass --dataset=ml-20m (or --dataset=ml-25m)" in message


def test_release_table():
  assert releases.RELEASES["ml-10m"].url == (
      "https://files.grouplens.org/datasets/movielens/ml-10m.zip")
  assert [(r.name, r.folder, r.md5) for r in releases.RELEASES.values()] == [
      ("ml-1m", "ml-1m", "c4d9eecfca2ab87c1945afe126590906"),
      ("ml-10m", "ml-10M100K", "ce571fd55effeba0271552578f2648bd"),
      ("ml-20m", "ml-20m", "cd245b17a1ae2cc31bb14903e1204af3"),
      ("ml-25m", "ml-25m", "6b51fb2759a8657d3bfcbfc42b592ada")]
  with pytest.raises(ValueError, match="unknown MovieLens release 'ml-100k'"):
    releases.get("ml-100k")


# Download and verification, from a locally built zip.

@pytest.fixture
def ml10m_zip(tmp_path):
  source = write_release(tmp_path / "source", "ml-10m")
  path = str(tmp_path / "ml-10m.zip")
  with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
    for name in ("movies.dat", "ratings.dat"):
      zf.write(os.path.join(source, name), f"ml-10M100K/{name}")
  return path


def _serve(monkeypatch, path):
  """urlopen returns the bytes of `path`, whatever the URL; records the URLs."""
  urls = []

  def fake_urlopen(url, timeout):
    del timeout
    urls.append(url)
    return io.BytesIO(open(path, "rb").read())

  monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
  return urls


def test_release_is_downloaded_verified_and_cached(ml10m_zip, tmp_path, monkeypatch):
  cache = tmp_path / "cache"
  monkeypatch.setenv(download.CACHE_ENV_VAR, str(cache))
  monkeypatch.setitem(releases.RELEASES, "ml-10m", dataclasses.replace(
      releases.RELEASES["ml-10m"], md5=download.md5_of(ml10m_zip)))
  urls = _serve(monkeypatch, ml10m_zip)
  data = load_movielens(None, dataset="ml-10m")
  assert urls == ["https://files.grouplens.org/datasets/movielens/ml-10m.zip"]
  assert data.num_users == 3 and data.ratings_path == str(cache / "ml-10M100K" / "ratings.dat")
  assert sorted(os.listdir(cache)) == ["ml-10M100K"]  # no staging or zip left
  load_movielens(None, dataset="ml-10m")  # from the cache: no second download
  assert len(urls) == 1


def test_download_with_the_wrong_md5_writes_nothing(ml10m_zip, tmp_path, monkeypatch):
  _serve(monkeypatch, ml10m_zip)
  cache = tmp_path / "cache"
  with pytest.raises(DataError) as error:
    download.download_movielens(str(cache), dataset="ml-10m")
  message = str(error.value)
  assert "does not match the published ce571fd55effeba0271552578f2648bd of ml-10m.zip" in message
  assert "not MovieLens-10M" in message
  assert not cache.exists()


def test_archive_without_the_release_folder(ml10m_zip, tmp_path):
  cache = tmp_path / "cache"
  with pytest.raises(DataError, match="archive has no ml-20m/ folder with movies.csv and "
                     "ratings.csv"):
    download.extract_verified_archive(ml10m_zip, str(cache), download.md5_of(ml10m_zip),
                                      dataset="ml-20m")
  assert os.listdir(cache) == []


def test_unreachable_download_names_the_release_folder(tmp_path):
  with pytest.raises(DataError) as error:
    download.download_movielens(str(tmp_path / "cache"), url="http://127.0.0.1:9/x.zip",
                                dataset="ml-25m")
  message = str(error.value)
  assert "MovieLens-25M is not in" in message and "ml-25m.zip by hand" in message
  assert "--data_dir=/path/to/ml-25m (the folder holding movies.csv and ratings.csv)" in message


# Tasks without demographics.

@pytest.fixture
def parsed_flags():
  if not FLAGS.is_parsed():
    FLAGS(["run_experiment"])


def _run(tmp_path, capsys, **values):
  """run_experiment.main with `values`; (exit code or None, stderr)."""
  capsys.readouterr()
  values.setdefault("root_output_dir", str(tmp_path / "out"))
  with flagsaver.flagsaver(**values):
    try:
      run_experiment.main(["run_experiment"])
      code = None
    except SystemExit as e:
      code = e.code
  return code, capsys.readouterr().err


@pytest.mark.parametrize("task, extra, fragment", [
    ("movielens_rating", {}, "or leave it out with --drop_features=demographics"),
    ("movielens_ease", {"partition": "demographic"}, "or another --partition"),
    ("eda", {"partition": "demographic"}, "or another --partition"),
])
def test_tasks_needing_demographics_fail_before_loading(tmp_path, capsys, parsed_flags, task,
                                                        extra, fragment):
  # The folder does not even exist: the error comes before any data loads.
  code, err = _run(tmp_path, capsys, task=task, dataset="ml-20m",
                   data_dir=str(tmp_path / "absent"), **extra)
  assert code == 2, err
  assert "--dataset=ml-20m: MovieLens-20M has no demographics" in err, err
  assert "Use --dataset=ml-1m" in err and fragment in err, err


def test_dataset_with_synthetic_data_is_contradictory(tmp_path, capsys, parsed_flags):
  code, err = _run(tmp_path, capsys, task="movielens_recon", dataset="ml-10m",
                   use_synthetic_data=True)
  assert code == 2 and "--dataset with --use_synthetic_data" in err


def test_dataset_contradicting_data_dir_fails_naming_flag_and_file(tmp_path, capsys,
                                                                   parsed_flags):
  directory = write_synthetic_movielens(str(tmp_path / "ml-1m"), num_users=4, num_movies=5,
                                        ratings_per_user=2)
  code, err = _run(tmp_path, capsys, task="movielens_recon", dataset="ml-25m",
                   data_dir=directory, embedding_dim=4)
  assert code == 2
  assert f"--data_dir={directory}: missing movies.csv, ratings.csv" in err
  assert "pass --dataset=ml-1m" in err


def _small_ml20m(directory):
  """12 users with 10 half-star ratings each of 15 movies, in ML-20M's format."""
  rng = np.random.default_rng(0)
  movies = "movieId,title,genres\n" + "".join(
      f'{m},"Movie {m}, The ({1990 + m})",{"IMAX" if m % 3 else "Drama|Children"}\n'
      for m in range(1, 16))
  rows = [f"{u * 10},{m},{rng.integers(1, 11) / 2:g},{u * 100 + m}"
          for u in range(1, 13) for m in rng.choice(np.arange(1, 16), 10, replace=False)]
  return write_release(directory, "ml-20m", movies=movies,
                       ratings="userId,movieId,rating,timestamp\n" + "\n".join(rows) + "\n")


def test_rating_task_trains_without_its_demographics_group(tmp_path, capsys, parsed_flags):
  code, err = _run(tmp_path, capsys, task="movielens_rating", dataset="ml-20m",
                   data_dir=_small_ml20m(tmp_path / "ml-20m"), drop_features=["demographics"],
                   num_clients=3, clients_per_round=3, embedding_dim=4, hidden_units=["8"],
                   client_batch_size=32, baseline_epochs=0, total_rounds=1, rounds_per_eval=1)
  assert code is None, err
  assert (tmp_path / "out" / "movielens_rating" / "metrics.csv").exists()


def test_movielens_recon_trains_on_a_release_without_users(tmp_path, capsys, parsed_flags):
  directory = _small_ml20m(tmp_path / "ml-20m")
  code, err = _run(tmp_path, capsys, task="movielens_recon", dataset="ml-20m",
                   data_dir=directory, embedding_dim=4, clients_per_round=0, total_rounds=1,
                   rounds_per_eval=1, public_movie_features=True)
  assert code is None, err
  out = tmp_path / "out" / "movielens_recon"
  assert (out / "metrics.csv").exists()
  with open(out / "hparams.csv") as f:
    assert "ml-20m" in f.read()
  assert registry.TASKS["movielens_recon"].all_reads.count("dataset") == 1


def test_retrieval_trains_without_demographics(tmp_path, capsys, parsed_flags):
  directory = _small_ml20m(tmp_path / "ml-20m")
  code, err = _run(tmp_path, capsys, task="movielens_retrieval", dataset="ml-20m",
                   data_dir=directory, num_clients=3, clients_per_round=3, embedding_dim=8,
                   client_batch_size=16, total_rounds=1, rounds_per_eval=1,
                   ranking_protocol="holdout")  # the data is too small for a 10-core
  assert code is None, err
  metrics = (tmp_path / "out" / "movielens_retrieval" / "metrics.csv").read_text()
  assert "eval/ndcg@10" in metrics
