"""Loads and validates MovieLens-1M into contiguous-index tables.

Files read from one folder:
  users.dat   `UserID::Gender::Age::Occupation::Zip-code`
  movies.dat  `MovieID::Title::Genres` (latin-1)
  ratings     `ratings.dat` (`UserID::MovieID::Rating::Timestamp`), or
              `ratings.csv` with header `userId,movieId,rating[,timestamp]`
              (the format of newer MovieLens releases; timestamp optional).

Every problem is reported as a `DataError` naming the file and line. Users and
movies get contiguous indices ("ID sequencing"): index i of `users` / `movies`
is the i-th smallest original id, and `ratings.user` / `ratings.movie` hold
those indices.
"""

import csv
import dataclasses
import io
import os
import re
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from tff_movierec.data import download
from tff_movierec.data.download import DataError

GENRES = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical",
    "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
# Lowest and highest rating of MovieLens-1M (whole stars).
RATING_SCALE = (1.0, 5.0)
AGE_BUCKETS = (1, 18, 25, 35, 45, 50, 56)
# Labels of AGE_BUCKETS and occupation codes 0..20, from the ML-1M README.
AGE_LABELS = ("Under 18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")
OCCUPATIONS = (
    "other or not specified", "academic/educator", "artist", "clerical/admin",
    "college/grad student", "customer service", "doctor/health care",
    "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer",
    "programmer", "retired", "sales/marketing", "scientist", "self-employed",
    "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)
NUM_OCCUPATIONS = len(OCCUPATIONS)
GENDERS = ("F", "M")
_YEAR_PATTERN = re.compile(r"\((\d{4})\)\s*$")

# Features that need a real time order; unavailable without timestamps.
TEMPORAL_FEATURES = ("temporal split", "time-ordered sequences")
CSV_HEADERS = ("userId,movieId,rating", "userId,movieId,rating,timestamp")


@dataclasses.dataclass(frozen=True)
class MovieLens:
  """MovieLens with contiguous indices.

  Attributes:
    ratings: one row per rating; columns `user` (int32 index into `users`),
      `movie` (int32 index into `movies`), `rating` (float32 in [1, 5]) and,
      when the source has them, `timestamp` (int64 Unix seconds).
    users: row i describes user index i: `user_id` (original id), `gender`
      (0 = F, 1 = M), `age` (bucket index 0..6 of AGE_BUCKETS), `occupation`
      (0..20), `zip_code` (str).
    movies: row j describes movie index j: `movie_id`, `title`, `year`
      (int, -1 if absent), `genres` (str, `|`-separated).
    ratings_path: the file the ratings came from.
  """

  ratings: pd.DataFrame
  users: pd.DataFrame
  movies: pd.DataFrame
  ratings_path: str

  @property
  def num_users(self) -> int:
    return len(self.users)

  @property
  def num_movies(self) -> int:
    return len(self.movies)

  @property
  def has_timestamps(self) -> bool:
    return "timestamp" in self.ratings.columns

  def require_timestamps(self, purpose: str) -> None:
    """Raises DataError explaining that `purpose` needs timestamps."""
    if not self.has_timestamps:
      raise DataError(
          f"{self.ratings_path} has no timestamp column, so {purpose} is "
          f"unavailable (so are: {', '.join(TEMPORAL_FEATURES)}). Use a "
          "ratings file with timestamps, e.g. ratings.dat of ml-1m.zip or "
          "ml-1m-latest20/ratings.csv."
      )

  def missing_features(self) -> tuple:
    """Names of features this data cannot support (empty if none)."""
    return () if self.has_timestamps else TEMPORAL_FEATURES


def _read_lines(path: str, encoding: str) -> list:
  """Returns the lines of `path` without line ends (a final newline is optional)."""
  if not os.path.isfile(path):
    raise DataError(f"{path}: file not found.")
  with open(path, "rb") as f:
    raw = f.read()
  try:
    text = raw.decode(encoding)
  except UnicodeDecodeError as e:
    line = raw.count(b"\n", 0, e.start) + 1
    raise DataError(
        f"{path}:{line}: not valid {encoding} text ({e.reason} at byte "
        f"{e.start})."
    ) from e
  lines = text.split("\n")
  if lines[-1] == "":
    lines.pop()
  return [line[:-1] if line.endswith("\r") else line for line in lines]


def _parse_rows(
    path: str, lines: Sequence[str], names: Sequence[str], separator: str,
    first_line: int,
) -> pd.DataFrame:
  """Splits `lines` (line i of the file is lines[i - first_line]) into strings.

  Every line must have exactly len(names) non-empty fields.
  """
  if not lines:
    raise DataError(f"{path}: no data lines.")
  # "::" is replaced by a tab so that pandas' fast C parser can split; a tab
  # inside a field then shows up as one field too many.
  sep = separator if len(separator) == 1 else "\t"
  text = pd.Series(lines, dtype=object)
  if sep != separator:
    text = text.str.replace(separator, sep, regex=False)
  num_fields = text.str.count(re.escape(sep)).to_numpy() + 1
  bad = num_fields != len(names)
  if bad.any():
    row = int(np.argmax(bad))
    found = "a blank line" if not lines[row].strip() else f"{num_fields[row]} fields"
    raise DataError(
        f"{path}:{row + first_line}: malformed line, expected {len(names)} "
        f"fields ({separator.join(names)}) separated by {separator!r}, found "
        f"{found}."
    )
  frame = pd.read_csv(
      io.StringIO("\n".join(text)), sep=sep, header=None, names=list(names),
      dtype=str, quoting=csv.QUOTE_NONE, keep_default_na=False, na_values=[],
      skip_blank_lines=False, engine="c",
  )
  empty = (frame.apply(lambda column: column.str.strip()) == "").to_numpy()
  if empty.any():
    row, column = (int(i[0]) for i in np.nonzero(empty))
    raise DataError(
        f"{path}:{row + first_line}: malformed line, field {names[column]} is "
        "empty."
    )
  return frame


def _read_rows(
    path: str, names: Sequence[str], *, separator: str, encoding: str
) -> tuple:
  """Reads a header-less delimited file: (frame of strings, first_line=1)."""
  return _parse_rows(path, _read_lines(path, encoding), names, separator, 1), 1


def _to_numbers(frame, column, path, first_line, dtype, integer=True):
  values = pd.to_numeric(frame[column].str.strip(), errors="coerce")
  bad = values.isna().to_numpy()
  if integer and not bad.all():
    bad |= ~np.isclose(values.fillna(0).to_numpy() % 1, 0)
  if bad.any():
    row = int(np.argmax(bad))
    raise DataError(
        f"{path}:{row + first_line}: {column} {frame[column].iloc[row]!r} is "
        f"not a{'n integer' if integer else ' number'}."
    )
  return values.to_numpy().astype(dtype)


def _check_in(values, allowed, column, path, first_line):
  bad = ~np.isin(values, allowed)
  if bad.any():
    row = int(np.argmax(bad))
    raise DataError(
        f"{path}:{row + first_line}: {column} {values[row]!r} is not one of "
        f"{list(allowed)}."
    )


def _check_unique(ids, column, path, first_line):
  duplicated = pd.Series(ids).duplicated().to_numpy()
  if duplicated.any():
    row = int(np.argmax(duplicated))
    raise DataError(f"{path}:{row + first_line}: duplicated {column} {ids[row]}.")


def load_users(path: str) -> pd.DataFrame:
  """Parses users.dat; rows sorted by user_id (row = user index)."""
  names = ("user_id", "gender", "age", "occupation", "zip_code")
  frame, first = _read_rows(path, names, separator="::", encoding="latin-1")
  user_ids = _to_numbers(frame, "user_id", path, first, np.int64)
  _check_unique(user_ids, "user_id", path, first)
  gender = frame["gender"].str.strip().to_numpy()
  _check_in(gender, GENDERS, "gender", path, first)
  age = _to_numbers(frame, "age", path, first, np.int64)
  _check_in(age, AGE_BUCKETS, "age", path, first)
  occupation = _to_numbers(frame, "occupation", path, first, np.int64)
  _check_in(occupation, np.arange(NUM_OCCUPATIONS), "occupation", path, first)
  users = pd.DataFrame({
      "user_id": user_ids,
      "gender": (gender == "M").astype(np.int32),
      "age": np.searchsorted(AGE_BUCKETS, age).astype(np.int32),
      "occupation": occupation.astype(np.int32),
      "zip_code": frame["zip_code"].to_numpy(),
  })
  return users.sort_values("user_id", kind="stable").reset_index(drop=True)


def load_movies(path: str) -> pd.DataFrame:
  """Parses movies.dat (latin-1); rows sorted by movie_id (row = movie index)."""
  frame, first = _read_rows(
      path, ("movie_id", "title", "genres"), separator="::", encoding="latin-1"
  )
  movie_ids = _to_numbers(frame, "movie_id", path, first, np.int64)
  _check_unique(movie_ids, "movie_id", path, first)
  known = set(GENRES)
  for row, genres in enumerate(frame["genres"]):
    unknown = set(genres.split("|")) - known
    if unknown:
      raise DataError(
          f"{path}:{row + first}: unknown genre(s) {sorted(unknown)}; expected "
          f"'|'-separated names from {list(GENRES)}."
      )
  years = frame["title"].str.extract(_YEAR_PATTERN)[0]
  movies = pd.DataFrame({
      "movie_id": movie_ids,
      "title": frame["title"].to_numpy(),
      "year": pd.to_numeric(years, errors="coerce").fillna(-1).astype(np.int32),
      "genres": frame["genres"].to_numpy(),
  })
  return movies.sort_values("movie_id", kind="stable").reset_index(drop=True)


def load_ratings(path: str) -> tuple:
  """Parses ratings.dat or ratings.csv.

  Returns (frame, first_line) with columns user_id, movie_id (int64), rating
  (float32) and timestamp (int64) if present; row r is on line first_line + r.
  """
  if path.endswith(".csv"):
    lines = _read_lines(path, "utf-8")
    header = lines[0].strip().lstrip("\ufeff") if lines else ""
    if header not in CSV_HEADERS:
      raise DataError(
          f"{path}:1: expected header {CSV_HEADERS[0]!r} or "
          f"{CSV_HEADERS[1]!r}, found {header!r}."
      )
    first = 2
    frame = _parse_rows(path, lines[1:], header.split(","), ",", first)
    frame = frame.rename(columns={"userId": "user_id", "movieId": "movie_id"})
  else:
    frame, first = _read_rows(
        path, ("user_id", "movie_id", "rating", "timestamp"), separator="::",
        encoding="utf-8",
    )
  result = pd.DataFrame({
      "user_id": _to_numbers(frame, "user_id", path, first, np.int64),
      "movie_id": _to_numbers(frame, "movie_id", path, first, np.int64),
      "rating": _to_numbers(
          frame, "rating", path, first, np.float32, integer=False
      ),
  })
  if "timestamp" in frame.columns:
    result["timestamp"] = _to_numbers(frame, "timestamp", path, first, np.int64)
  out_of_range = ~result["rating"].between(*RATING_SCALE).to_numpy()
  if out_of_range.any():
    row = int(np.argmax(out_of_range))
    raise DataError(
        f"{path}:{row + first}: rating {frame['rating'].iloc[row]} is outside "
        f"{RATING_SCALE[0]:g}-{RATING_SCALE[1]:g}."
    )
  pairs = result.duplicated(["user_id", "movie_id"]).to_numpy()
  if pairs.any():
    row = int(np.argmax(pairs))
    raise DataError(
        f"{path}:{row + first}: user {result.user_id.iloc[row]} rated movie "
        f"{result.movie_id.iloc[row]} more than once."
    )
  return result, first


def _to_index(ids, vocabulary, what, path, first, lookup_file):
  """Maps original ids to contiguous indices; unknown ids are an error."""
  index = np.searchsorted(vocabulary, ids)
  index = np.minimum(index, len(vocabulary) - 1)
  unknown = vocabulary[index] != ids
  if unknown.any():
    row = int(np.argmax(unknown))
    raise DataError(
        f"{path}:{row + first}: {what} {ids[row]} is not in {lookup_file}."
    )
  return index.astype(np.int32)


def find_ratings_file(data_dir: str) -> str:
  for name in download.RATINGS_FILES:
    candidate = os.path.join(data_dir, name)
    if os.path.isfile(candidate):
      return candidate
  raise DataError(f"{data_dir}: no ratings.dat or ratings.csv.")


def load_movielens(
    data_dir: Optional[str] = None, ratings_path: Optional[str] = None
) -> MovieLens:
  """Loads MovieLens-1M.

  Args:
    data_dir: folder with users.dat, movies.dat and ratings.dat/ratings.csv;
      None uses the cache (downloading and verifying ml-1m.zip if needed).
    ratings_path: optional ratings file to use instead of the folder's own
      (e.g. `ml-1m-latest20/ratings.csv`, which has exact timestamps).

  Returns:
    A validated `MovieLens`, ratings in their file order.
  """
  data_dir = download.resolve_data_dir(data_dir)
  users_path = os.path.join(data_dir, "users.dat")
  movies_path = os.path.join(data_dir, "movies.dat")
  users = load_users(users_path)
  movies = load_movies(movies_path)
  ratings_path = ratings_path or find_ratings_file(data_dir)
  raw, first = load_ratings(ratings_path)
  ratings = pd.DataFrame({
      "user": _to_index(
          raw["user_id"].to_numpy(), users["user_id"].to_numpy(), "user id",
          ratings_path, first, users_path,
      ),
      "movie": _to_index(
          raw["movie_id"].to_numpy(), movies["movie_id"].to_numpy(),
          "movie id", ratings_path, first, movies_path,
      ),
      "rating": raw["rating"].to_numpy(np.float32),
  })
  if "timestamp" in raw.columns:
    ratings["timestamp"] = raw["timestamp"].to_numpy()
  return MovieLens(ratings, users, movies, ratings_path)
