"""Loads and validates a MovieLens release into contiguous-index tables.

Files read from one folder, per release (`releases.RELEASES`, --dataset):
  ml-1m   users.dat   `UserID::Gender::Age::Occupation::Zip-code`
          movies.dat  `MovieID::Title::Genres` (latin-1)
          ratings     `ratings.dat` (`UserID::MovieID::Rating::Timestamp`), or
                      `ratings.csv` with header `userId,movieId,rating[,timestamp]`
                      (timestamp optional); whole stars 1..5.
  ml-10m  movies.dat  `MovieID::Title::Genres` (utf-8)
          ratings.dat `UserID::MovieID::Rating::Timestamp`, half stars 0.5..5.
  ml-20m, ml-25m
          movies.csv  header `movieId,title,genres`, titles with commas quoted
          ratings.csv header `userId,movieId,rating,timestamp`, half stars 0.5..5.
Only ML-1M has users (demographics); for the others the users are the
distinct user ids of the ratings. Genres are `|`-separated names of the
release's vocabulary (`Release.genres`); from ML-10M on a movie may list
`(no genres listed)` instead.

Every problem is reported as a `DataError` naming the file and line. Users and
movies get contiguous indices ("ID sequencing"): index i of `users` / `movies`
is the i-th smallest original id, and `ratings.user` / `ratings.movie` hold
those indices.

Ratings files are parsed in chunks of lines by pandas' C parser straight into
numbers (time and memory linear in the number of ratings: ML-25M's 25M
ratings in about 15 s and 1-2 GB); only a chunk the C parser refuses is
split into strings and checked field by field, to name its first bad line.
"""

import csv
import dataclasses
import io
import itertools
import os
import re
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from tff_movierec.data import download, releases
from tff_movierec.data.download import DataError

# The genres of ML-1M (other releases: `MovieLens.genre_names`).
GENRES = releases.ML_1M_GENRES
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
# Columns of `MovieLens.users` besides user_id; only ML-1M has them.
DEMOGRAPHICS = ("gender", "age", "occupation", "zip_code")
_YEAR_PATTERN = re.compile(r"\((\d{4})\)\s*$")

# Features that need a real time order; unavailable without timestamps.
TEMPORAL_FEATURES = ("temporal split", "time-ordered sequences")
CSV_HEADERS = ("userId,movieId,rating", "userId,movieId,rating,timestamp")
MOVIES_CSV_HEADER = "movieId,title,genres"
# Lines per chunk of a ratings file.
_CHUNK_LINES = 1 << 20


@dataclasses.dataclass(frozen=True)
class MovieLens:
  """MovieLens with contiguous indices.

  Attributes:
    ratings: one row per rating; columns `user` (int32 index into `users`),
      `movie` (int32 index into `movies`), `rating` (float32 in
      `rating_scale`) and, when the source has them, `timestamp` (int64 Unix
      seconds).
    users: row i describes user index i: `user_id` (original id) and, with
      demographics (ML-1M only), `gender` (0 = F, 1 = M), `age` (bucket index
      0..6 of AGE_BUCKETS), `occupation` (0..20), `zip_code` (str).
    movies: row j describes movie index j: `movie_id`, `title`, `year`
      (int, -1 if absent), `genres` (str, `|`-separated).
    ratings_path: the file the ratings came from.
    release: the MovieLens release the files are in.
  """

  ratings: pd.DataFrame
  users: pd.DataFrame
  movies: pd.DataFrame
  ratings_path: str
  release: releases.Release = releases.RELEASES[releases.DEFAULT]

  @property
  def num_users(self) -> int:
    return len(self.users)

  @property
  def num_movies(self) -> int:
    return len(self.movies)

  @property
  def rating_scale(self) -> tuple:
    """(lowest, highest) rating of the release: (1, 5) or (0.5, 5)."""
    return self.release.rating_scale

  @property
  def genre_names(self) -> tuple:
    """The release's genre vocabulary (columns of `features.genre_multi_hot`)."""
    return self.release.genres

  @property
  def has_demographics(self) -> bool:
    return all(column in self.users.columns for column in DEMOGRAPHICS)

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


def _decode_lines(raw: bytes, path: str, encoding: str, first_line: int) -> list:
  """The lines of `raw` (line `first_line` of `path` on) without line ends."""
  try:
    text = raw.decode(encoding)
  except UnicodeDecodeError as e:
    line = raw.count(b"\n", 0, e.start) + first_line
    raise DataError(
        f"{path}:{line}: not valid {encoding} text ({e.reason} at byte "
        f"{e.start})."
    ) from e
  lines = text.split("\n")
  if lines[-1] == "":
    lines.pop()
  return [line[:-1] if line.endswith("\r") else line for line in lines]


def _require_file(path: str) -> None:
  if not os.path.isfile(path):
    raise DataError(f"{path}: file not found.")


def _read_lines(path: str, encoding: str) -> list:
  """Returns the lines of `path` without line ends (a final newline is optional)."""
  _require_file(path)
  with open(path, "rb") as f:
    return _decode_lines(f.read(), path, encoding, 1)


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
  _check_not_empty(frame, path, first_line)
  return frame


def _check_not_empty(frame: pd.DataFrame, path: str, lines) -> None:
  empty = (frame.apply(lambda column: column.str.strip()) == "").to_numpy()
  if empty.any():
    row, column = (int(i[0]) for i in np.nonzero(empty))
    raise DataError(
        f"{path}:{_line(lines, row)}: malformed line, field {frame.columns[column]} is "
        "empty."
    )


def _read_rows(
    path: str, names: Sequence[str], *, separator: str, encoding: str
) -> tuple:
  """Reads a header-less delimited file: (frame of strings, first_line=1)."""
  return _parse_rows(path, _read_lines(path, encoding), names, separator, 1), 1


def _line(lines, row: int) -> int:
  """The file line of `row`: `lines` is the line of row 0 (rows one per line)
  or an array of every row's first line (a quoted csv field may span lines)."""
  return int(lines[row]) if np.ndim(lines) else lines + row


def _to_numbers(frame, column, path, lines, dtype, integer=True):
  values = pd.to_numeric(frame[column].str.strip(), errors="coerce")
  bad = values.isna().to_numpy()
  if integer and not bad.all():
    bad |= ~np.isclose(values.fillna(0).to_numpy() % 1, 0)
  if bad.any():
    row = int(np.argmax(bad))
    raise DataError(
        f"{path}:{_line(lines, row)}: {column} {frame[column].iloc[row]!r} is "
        f"not a{'n integer' if integer else ' number'}."
    )
  return values.to_numpy().astype(dtype)


def _check_in(values, allowed, column, path, lines):
  bad = ~np.isin(values, allowed)
  if bad.any():
    row = int(np.argmax(bad))
    raise DataError(
        f"{path}:{_line(lines, row)}: {column} {values[row]!r} is not one of "
        f"{list(allowed)}."
    )


def _check_unique(ids, column, path, lines):
  duplicated = pd.Series(ids).duplicated().to_numpy()
  if duplicated.any():
    row = int(np.argmax(duplicated))
    raise DataError(f"{path}:{_line(lines, row)}: duplicated {column} {ids[row]}.")


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


def _read_movies_csv(path: str) -> tuple:
  """movies.csv (header `movieId,title,genres`, RFC 4180 quoting, utf-8) as
  (frame of strings, first line of each row)."""
  names = ("movie_id", "title", "genres")
  lines = _read_lines(path, "utf-8")
  header = lines[0].strip().lstrip("\ufeff") if lines else ""
  if header != MOVIES_CSV_HEADER:
    raise DataError(f"{path}:1: expected header {MOVIES_CSV_HEADER!r}, found {header!r}.")
  reader = csv.reader(lines[1:], strict=True)
  rows, starts, start = [], [], 2
  try:
    for row in reader:
      if len(row) != len(names):
        found = "a blank line" if not row else f"{len(row)} fields"
        raise DataError(
            f"{path}:{start}: malformed line, expected {len(names)} fields "
            f"({MOVIES_CSV_HEADER}) separated by ',' (titles with "
            f"commas in double quotes), found {found}."
        )
      rows.append(row)
      starts.append(start)
      start = reader.line_num + 2
  except csv.Error as e:
    raise DataError(f"{path}:{reader.line_num + 1}: malformed line ({e}).") from e
  if not rows:
    raise DataError(f"{path}: no data lines.")
  frame = pd.DataFrame(rows, columns=list(names))
  starts = np.asarray(starts)
  _check_not_empty(frame, path, starts)
  return frame, starts


def load_movies(path: str, release: releases.Release = releases.RELEASES[releases.DEFAULT]
                ) -> pd.DataFrame:
  """Parses the release's movies.dat or movies.csv; rows sorted by movie_id
  (row = movie index)."""
  if path.endswith(".csv"):
    frame, lines = _read_movies_csv(path)
  else:
    frame, first = _read_rows(path, ("movie_id", "title", "genres"), separator="::",
                              encoding=release.movies_encoding)
    lines = np.arange(len(frame)) + first
  # Row r of `frame` starts on line lines[r] (a quoted csv title may span lines).
  movie_ids = _to_numbers(frame, "movie_id", path, lines, np.int64)
  _check_unique(movie_ids, "movie_id", path, lines)
  _check_genres(frame["genres"], path, lines, release)
  years = frame["title"].str.extract(_YEAR_PATTERN)[0]
  movies = pd.DataFrame({
      "movie_id": movie_ids,
      "title": frame["title"].to_numpy(),
      "year": pd.to_numeric(years, errors="coerce").fillna(-1).astype(np.int32),
      "genres": frame["genres"].to_numpy(),
  })
  return movies.sort_values("movie_id", kind="stable").reset_index(drop=True)


def _check_genres(genres: pd.Series, path: str, lines: np.ndarray,
                  release: releases.Release) -> None:
  """Every row lists `|`-separated genres of the release (or, from ML-10M on,
  only `(no genres listed)`)."""
  known = set(release.genres)
  for row, listed in enumerate(genres):
    if release.lists_no_genres and listed == releases.NO_GENRES:
      continue
    unknown = set(listed.split("|")) - known
    if unknown:
      raise DataError(
          f"{path}:{lines[row]}: unknown genre(s) {sorted(unknown)}; expected "
          f"'|'-separated names from {list(release.genres)}"
          + (f" or {releases.NO_GENRES!r} alone" if release.lists_no_genres else "")
          + f" ({release.title}, --dataset={release.name})."
      )


def _read_numbers(path: str, names: Sequence[str], dtypes: Sequence, separator: str,
                  first_line: int) -> pd.DataFrame:
  """Lines first_line.. of a delimited file of numbers (utf-8), as columns
  `names` of `dtypes`; DataError at the first bad line.

  The file is read in chunks of `_CHUNK_LINES` lines, each parsed by pandas'
  C parser straight into numbers (memory: about twice the result); a chunk
  the C parser refuses is checked by `_parse_rows` and `_to_numbers`, which
  name its first bad line (or accept it, e.g. an id written `5.0`).
  """
  _require_file(path)
  parts = []
  with open(path, "rb") as f:
    lines = iter(f)
    for _ in itertools.islice(lines, first_line - 1):
      pass
    line = first_line
    while True:
      chunk = list(itertools.islice(lines, _CHUNK_LINES))
      if not chunk:
        break
      raw = b"".join(chunk)
      frame = _parse_numbers(raw, names, dtypes, separator)
      if frame is None:
        rows = _parse_rows(path, _decode_lines(raw, path, "utf-8", line), names, separator,
                           line)
        frame = pd.DataFrame({
            name: _to_numbers(rows, name, path, line, dtype,
                              integer=np.issubdtype(dtype, np.integer))
            for name, dtype in zip(names, dtypes)})
      parts.append(frame)
      line += len(chunk)
  if not parts:
    raise DataError(f"{path}: no data lines.")
  return pd.concat(parts, ignore_index=True)


def _parse_numbers(raw: bytes, names, dtypes, separator) -> Optional[pd.DataFrame]:
  """Lines `raw` parsed by pandas' C parser into columns `names` of `dtypes`;
  None if it refuses a line or a field is missing or empty.

  A separator of several characters (`::`) is replaced by a tab (the C parser
  splits on one character), so a tab inside a field shows up as one field too
  many.
  """
  sep = separator
  if len(separator) > 1:
    raw, sep = raw.replace(separator.encode(), b"\t"), "\t"
  try:
    frame = pd.read_csv(
        io.BytesIO(raw), sep=sep, header=None, names=list(names),
        dtype=dict(zip(names, dtypes)), engine="c", na_filter=False,
        skip_blank_lines=False, quoting=csv.QUOTE_NONE, encoding="utf-8")
  except ValueError:  # pandas' parser and dtype errors, UnicodeDecodeError
    return None
  return None if frame.isna().to_numpy().any() else frame


def load_ratings(path: str, release: releases.Release = releases.RELEASES[releases.DEFAULT]
                 ) -> tuple:
  """Parses ratings.dat or ratings.csv of `release`.

  Returns (frame, first_line) with columns user_id, movie_id (int64), rating
  (float32) and timestamp (int64) if present; row r is on line first_line + r.
  """
  if path.endswith(".csv"):
    _require_file(path)
    with open(path, "rb") as f:
      first_bytes = f.readline()
    header = _decode_lines(first_bytes, path, "utf-8", 1) if first_bytes else [""]
    header = header[0].strip().lstrip("\ufeff")
    if header not in CSV_HEADERS:
      raise DataError(
          f"{path}:1: expected header {CSV_HEADERS[0]!r} or "
          f"{CSV_HEADERS[1]!r}, found {header!r}."
      )
    first, separator = 2, ","
    names = ["user_id", "movie_id", "rating", "timestamp"][:len(header.split(","))]
  else:
    first, separator = 1, "::"
    names = ["user_id", "movie_id", "rating", "timestamp"]
  dtypes = {"user_id": np.int64, "movie_id": np.int64, "rating": np.float32,
            "timestamp": np.int64}
  result = _read_numbers(path, names, [dtypes[n] for n in names], separator, first)
  _check_ratings(result["rating"].to_numpy(), path, first, release)
  row = _first_repeated_pair(result)
  if row is not None:
    raise DataError(
        f"{path}:{row + first}: user {result.user_id.iloc[row]} rated movie "
        f"{result.movie_id.iloc[row]} more than once."
    )
  return result, first


def _first_repeated_pair(ratings: pd.DataFrame) -> Optional[int]:
  """The first row whose (user_id, movie_id) occurs on an earlier row, or None.

  The pair is packed into one int64 key when the ids allow; files sorted by
  user, then movie (as MovieLens ships them) are checked in one pass.
  """
  users, movies = ratings["user_id"].to_numpy(), ratings["movie_id"].to_numpy()
  if len(users) and min(users.min(), movies.min()) >= 0 and (
      int(users.max()) + 1) * (int(movies.max()) + 1) < 2**62:
    key = users * (int(movies.max()) + 1) + movies
    if np.all(key[1:] > key[:-1]):
      return None
    repeated = pd.Series(key).duplicated().to_numpy()
  else:
    repeated = ratings.duplicated(["user_id", "movie_id"]).to_numpy()
  return int(np.argmax(repeated)) if repeated.any() else None


def _check_ratings(rating: np.ndarray, path: str, first: int,
                   release: releases.Release) -> None:
  """Ratings lie in the release's scale, in its steps (whole or half stars)."""
  low, high = release.rating_scale
  outside = ~((rating >= low) & (rating <= high))
  if outside.any():
    row = int(np.argmax(outside))
    raise DataError(f"{path}:{row + first}: rating {rating[row]:g} is outside "
                    f"{low:g}-{high:g}.")
  steps = rating / release.rating_step
  off_step = np.abs(steps - np.round(steps)) > 1e-6
  if off_step.any():
    row = int(np.argmax(off_step))
    allowed = ("whole stars" if release.rating_step == 1 else
               f"multiples of {release.rating_step:g}")
    half = [r.name for r in releases.RELEASES.values() if r.rating_step < 1]
    raise DataError(
        f"{path}:{row + first}: rating {rating[row]:g} is not allowed: {release.title} "
        f"ratings are {allowed} from {low:g} to {high:g} (--dataset={release.name}"
        + (f"; {', '.join(half)} have half stars" if release.rating_step == 1 else "")
        + ").")


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


def find_ratings_file(data_dir: str,
                      release: releases.Release = releases.RELEASES[releases.DEFAULT]) -> str:
  for name in release.ratings_files:
    candidate = os.path.join(data_dir, name)
    if os.path.isfile(candidate):
      return candidate
  raise DataError(f"{data_dir}: no {' or '.join(release.ratings_files)}.")


def load_movielens(
    data_dir: Optional[str] = None, ratings_path: Optional[str] = None,
    dataset: str = releases.DEFAULT,
) -> MovieLens:
  """Loads a MovieLens release.

  Args:
    data_dir: folder with the release's files (see the module docstring);
      None uses the cache (downloading and verifying the release's zip if
      needed).
    ratings_path: optional ratings file to use instead of the folder's own
      (e.g. `ml-1m-latest20/ratings.csv`, which has exact timestamps).
    dataset: the release, a key of `releases.RELEASES` (--dataset).

  Returns:
    A validated `MovieLens`, ratings in their file order.
  """
  release = releases.get(dataset)
  data_dir = download.resolve_data_dir(data_dir, dataset)
  movies_path = os.path.join(data_dir, release.movies_file)
  movies = load_movies(movies_path, release)
  ratings_path = ratings_path or find_ratings_file(data_dir, release)
  raw, first = load_ratings(ratings_path, release)
  user_ids = raw["user_id"].to_numpy()
  if release.has_demographics:
    users_path = os.path.join(data_dir, release.users_file)
    users = load_users(users_path)
  else:
    users_path = ratings_path
    users = pd.DataFrame({"user_id": np.sort(pd.unique(user_ids))})
  ratings = pd.DataFrame({
      "user": _to_index(user_ids, users["user_id"].to_numpy(), "user id",
                        ratings_path, first, users_path),
      "movie": _to_index(
          raw["movie_id"].to_numpy(), movies["movie_id"].to_numpy(),
          "movie id", ratings_path, first, movies_path,
      ),
      "rating": raw["rating"].to_numpy(np.float32),
  })
  if "timestamp" in raw.columns:
    ratings["timestamp"] = raw["timestamp"].to_numpy()
  return MovieLens(ratings, users, movies, ratings_path, release)
