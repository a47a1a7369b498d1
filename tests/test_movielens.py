"""Tests of the MovieLens loader on generated files (never the real data)."""

import os

import numpy as np
import pytest

from tff_movierec.data import movielens
from tff_movierec.data.movielens import DataError, load_movielens
from tff_movierec.data.synthetic import write_synthetic_movielens

USERS = "1::F::1::10::48067\n5::M::56::16::70072\n9::M::25::0::55117\n"
MOVIES = (
    "1::Toy Story (1995)::Animation|Children's|Comedy\n"
    "20::Misérables, Les (1995)::Drama|Musical\n"
    "7::Untitled::Documentary\n"
)
RATINGS_DAT = (
    "5::20::4::978300760\n"
    "1::1::5::978300761\n"
    "9::7::1::978300762\n"
    "1::20::3::978300763\n"
)


def write_files(directory, users=USERS, movies=MOVIES, ratings=RATINGS_DAT,
                ratings_name="ratings.dat"):
  """Writes a hand-made tiny MovieLens folder; returns its path."""
  directory = str(directory)
  contents = {"users.dat": users, "movies.dat": movies, ratings_name: ratings}
  for name, text in contents.items():
    with open(os.path.join(directory, name), "w", encoding="latin-1",
              newline="") as f:
      f.write(text)
  return directory


def assert_data_error(directory, file_name, line, *fragments):
  """Loading `directory` fails with a message naming file, line, fragments."""
  with pytest.raises(DataError) as error:
    load_movielens(directory)
  message = str(error.value)
  location = os.path.join(directory, file_name)
  location += f":{line}:" if line else ":"
  assert location in message, message
  for fragment in fragments:
    assert fragment in message, message


def test_hand_written_files_map_ids_to_contiguous_indices(tmp_path):
  data = load_movielens(write_files(tmp_path))
  assert data.users["user_id"].tolist() == [1, 5, 9]
  assert data.movies["movie_id"].tolist() == [1, 7, 20]
  # Ratings keep file order; ids become positions in the sorted tables.
  assert data.ratings["user"].tolist() == [1, 0, 2, 0]
  assert data.ratings["movie"].tolist() == [2, 0, 1, 2]
  assert data.ratings["rating"].tolist() == [4.0, 5.0, 1.0, 3.0]
  assert data.ratings["timestamp"].tolist() == [978300760 + i for i in range(4)]
  assert data.ratings["user"].dtype == np.int32
  assert data.ratings["rating"].dtype == np.float32
  assert data.num_users == 3 and data.num_movies == 3


def test_user_and_movie_attributes_are_encoded(tmp_path):
  data = load_movielens(write_files(tmp_path))
  assert data.users["gender"].tolist() == [0, 1, 1]
  assert data.users["age"].tolist() == [0, 6, 2]  # buckets 1, 56, 25
  assert data.users["occupation"].tolist() == [10, 16, 0]
  assert data.users["zip_code"].tolist() == ["48067", "70072", "55117"]
  assert data.movies["year"].tolist() == [1995, -1, 1995]
  assert data.movies["genres"].tolist() == [
      "Animation|Children's|Comedy", "Documentary", "Drama|Musical"]


def test_movies_are_read_as_latin1(tmp_path):
  data = load_movielens(write_files(tmp_path))
  assert data.movies["title"].iloc[2] == "Misérables, Les (1995)"
  raw = (tmp_path / "movies.dat").read_bytes()
  assert "é".encode("latin-1") in raw and "é".encode("utf-8") not in raw


def test_windows_line_ends_are_accepted(tmp_path):
  directory = write_files(tmp_path, ratings=RATINGS_DAT.replace("\n", "\r\n"))
  assert load_movielens(directory).ratings["timestamp"].iloc[-1] == 978300763


def test_synthetic_dat_has_timestamps(tmp_path):
  directory = write_synthetic_movielens(
      str(tmp_path), num_users=12, num_movies=20, ratings_per_user=5)
  data = load_movielens(directory)
  assert len(data.ratings) == 12 * 5
  assert data.num_users == 12 and data.num_movies == 20
  assert data.ratings_path.endswith("ratings.dat")
  assert data.has_timestamps and data.missing_features() == ()
  data.require_timestamps("a temporal split")  # must not raise
  assert data.ratings["user"].max() == 11 and data.ratings["movie"].max() <= 19


@pytest.mark.parametrize("with_timestamps", [True, False])
def test_synthetic_csv_matches_dat(tmp_path, with_timestamps):
  kwargs = dict(num_users=12, num_movies=20, ratings_per_user=5, seed=3)
  dat = load_movielens(write_synthetic_movielens(str(tmp_path / "dat"), **kwargs))
  csv = load_movielens(write_synthetic_movielens(
      str(tmp_path / "csv"), ratings_format="csv",
      with_timestamps=with_timestamps, **kwargs))
  assert csv.ratings_path.endswith("ratings.csv")
  columns = ["user", "movie", "rating"] + (["timestamp"] if with_timestamps else [])
  assert csv.ratings.columns.tolist() == columns
  assert csv.ratings.equals(dat.ratings[columns])


def test_csv_without_timestamps_names_unavailable_features(tmp_path):
  directory = write_files(
      tmp_path, ratings="userId,movieId,rating\n1,1,4\n9,7,2\n",
      ratings_name="ratings.csv")
  data = load_movielens(directory)
  assert data.ratings["rating"].tolist() == [4.0, 2.0]
  assert not data.has_timestamps
  assert data.missing_features() == ("temporal split", "time-ordered sequences")
  with pytest.raises(DataError) as error:
    data.require_timestamps("a temporal split")
  message = str(error.value)
  assert data.ratings_path in message and "no timestamp column" in message
  assert "time-ordered sequences" in message


def test_explicit_ratings_path_overrides_folder(tmp_path):
  directory = write_files(tmp_path)
  other = tmp_path / "other.csv"
  other.write_text("userId,movieId,rating,timestamp\n9,1,2,5\n")
  data = load_movielens(directory, str(other))
  assert data.ratings_path == str(other)
  assert data.ratings[["user", "movie"]].values.tolist() == [[2, 0]]


def test_missing_ratings_file(tmp_path):
  directory = write_files(tmp_path)
  os.remove(os.path.join(directory, "ratings.dat"))
  with pytest.raises(DataError, match="--data_dir=.*ratings.dat or ratings.csv"):
    load_movielens(directory)


def test_missing_explicit_ratings_file(tmp_path):
  missing = str(tmp_path / "nope.csv")
  with pytest.raises(DataError, match=f"{missing}: file not found"):
    load_movielens(write_files(tmp_path), missing)


@pytest.mark.parametrize("ratings, line, fragment", [
    ("1::1::5::1\n1::20::3\n", 2, "found 3 fields"),
    ("1::1::5::1\n1::20::3::2::9\n", 2, "found 5 fields"),
    ("1::1::5::1::9\n1::20::3::2\n", 1, "found 5 fields"),
    ("1::1::5::1\n\n1::20::3::2\n", 2, "found a blank line"),
    ("1::1::5::1\n1::20::3::2\n\n", 3, "found a blank line"),
    ("1::1::5::1\n1::::3::2\n", 2, "field movie_id is empty"),
    ("1::1::5::1\n1::x::3::2\n", 2, "movie_id 'x' is not an integer"),
    ("1::1::5::1\n1.5::20::3::2\n", 2, "user_id '1.5' is not an integer"),
    ("1::1::5::1\n1::20::three::2\n", 2, "rating 'three' is not a number"),
    ("1::1::5::1\n1::20::4::noon\n", 2, "timestamp 'noon' is not an integer"),
    ("1::1::5::1\n1::20::6::2\n", 2, "rating 6 is outside 1-5"),
    ("1::1::5::1\n1::20::0::2\n", 2, "rating 0 is outside 1-5"),
    ("1::1::5::1\n5::20::4::2\n1::1::3::3\n", 3,
     "user 1 rated movie 1 more than once"),
    ("1::1::5::1\n1::2::4::2\n", 2, "movie id 2 is not in"),
    ("1::1::5::1\n2::1::4::2\n", 2, "user id 2 is not in"),
])
def test_bad_ratings_dat_names_file_and_line(tmp_path, ratings, line, fragment):
  assert_data_error(write_files(tmp_path, ratings=ratings), "ratings.dat",
                    line, fragment)


def test_unknown_ids_name_the_lookup_file(tmp_path):
  directory = write_files(tmp_path, ratings="1::1::5::1\n1::2::4::2\n")
  assert_data_error(directory, "ratings.dat", 2,
                    os.path.join(directory, "movies.dat"))


@pytest.mark.parametrize("ratings, line, fragment", [
    ("", 1, "expected header 'userId,movieId,rating'"),
    ("user,movie,rating\n1,1,5\n", 1, "found 'user,movie,rating'"),
    ("userId,movieId,rating\n", None, "no data lines"),
    ("userId,movieId,rating\n1,1,5\n1,20,3,99\n", 3, "found 4 fields"),
    ("userId,movieId,rating,timestamp\n1,1,5,1\n1,20,3\n", 3,
     "found 3 fields"),
    ("userId,movieId,rating\n1,1,5\n1,20,5.5\n", 3, "rating 5.5 is outside"),
    ("userId,movieId,rating\n1,1,5\n1,1,4\n", 3, "more than once"),
])
def test_bad_ratings_csv_names_file_and_line(tmp_path, ratings, line, fragment):
  directory = write_files(tmp_path, ratings=ratings, ratings_name="ratings.csv")
  assert_data_error(directory, "ratings.csv", line, fragment)


def test_ratings_csv_not_utf8_names_line(tmp_path):
  directory = write_files(tmp_path, ratings_name="ratings.csv",
                          ratings="userId,movieId,rating\n1,1,5\n")
  with open(os.path.join(directory, "ratings.csv"), "ab") as f:
    f.write("1,20,3é\n".encode("latin-1"))
  assert_data_error(directory, "ratings.csv", 3, "not valid utf-8")


@pytest.mark.parametrize("users, line, fragment", [
    ("1::F::1::10::48067\n5::X::56::16::70072\n", 2, "gender 'X' is not one of"),
    ("1::F::1::10::48067\n5::M::30::16::70072\n", 2, "age 30 is not one of"),
    ("1::F::1::21::48067\n", 1, "occupation 21 is not one of"),
    ("1::F::1::10::48067\n1::M::18::2::70072\n", 2, "duplicated user_id 1"),
    ("1::F::1::10\n", 1, "found 4 fields"),
    ("1::F::1::10::\n", 1, "field zip_code is empty"),
    ("", None, "no data lines"),
])
def test_bad_users_names_file_and_line(tmp_path, users, line, fragment):
  assert_data_error(write_files(tmp_path, users=users), "users.dat", line,
                    fragment)


@pytest.mark.parametrize("movies, line, fragment", [
    ("1::Toy Story (1995)::Animation\n20::X (1990)::Drama|Cartoon\n", 2,
     "unknown genre(s) ['Cartoon']"),
    ("1::Toy Story (1995)::Animation\n20::X (1990)::\n", 2,
     "field genres is empty"),
    ("1::Toy Story (1995)::Animation\n1::X (1990)::Drama\n", 2,
     "duplicated movie_id 1"),
    ("one::Toy Story (1995)::Animation\n", 1, "movie_id 'one' is not"),
    ("1::Toy Story (1995)\n", 1, "found 2 fields"),
])
def test_bad_movies_names_file_and_line(tmp_path, movies, line, fragment):
  assert_data_error(write_files(tmp_path, movies=movies), "movies.dat", line,
                    fragment)


@pytest.mark.parametrize("missing", ["users.dat", "movies.dat"])
def test_missing_side_files_name_the_flag(tmp_path, missing):
  directory = write_files(tmp_path)
  os.remove(os.path.join(directory, missing))
  with pytest.raises(DataError, match=f"--data_dir={directory}: missing {missing}"):
    load_movielens(directory)


def test_missing_users_file_read_directly(tmp_path):
  path = str(tmp_path / "users.dat")
  with pytest.raises(DataError, match=f"{path}: file not found"):
    movielens.load_users(path)
