"""The MovieLens releases this package reads: where each comes from and its format.

  release  archive (folder it unpacks to)   files                      ratings
  ml-1m    ml-1m.zip (ml-1m/)               users.dat, movies.dat      1..5, whole stars
                                            (latin-1, `::`),
                                            ratings.dat | ratings.csv
  ml-10m   ml-10m.zip (ml-10M100K/)         movies.dat (utf-8, `::`),  0.5..5, half stars
                                            ratings.dat
  ml-20m   ml-20m.zip (ml-20m/)             movies.csv, ratings.csv    0.5..5, half stars
  ml-25m   ml-25m.zip (ml-25m/)             (utf-8, with headers)      0.5..5, half stars

Only ML-1M has a users file (demographics); from ML-10M on, the genre
`Children's` is spelled `Children`, `IMAX` is added, and a movie without
genres says `(no genres listed)`. The other files of the archives (tags,
links, genome) are not read.
"""

import dataclasses
from typing import Optional, Tuple

# The 18 genres of ML-1M, in the order of its README.
ML_1M_GENRES = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical",
    "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
# The genres of ML-10M, ML-20M and ML-25M.
LATER_GENRES = tuple("Children" if g == "Children's" else g for g in ML_1M_GENRES) + ("IMAX",)
# What a movie of ML-10M on without genres lists instead.
NO_GENRES = "(no genres listed)"
ML_1M_USERS_FILE = "users.dat"
DEFAULT = "ml-1m"
_BASE_URL = "https://files.grouplens.org/datasets/movielens/"


@dataclasses.dataclass(frozen=True)
class Release:
  """One MovieLens release.

  Attributes:
    name: the --dataset value, e.g. "ml-20m" (also the archive's stem).
    title: e.g. "MovieLens-20M", for messages.
    md5: the published MD5 of the archive.
    folder: the folder the archive unpacks to (and its name in the cache).
    users_file: the demographics file, or None.
    movies_file: movies.dat or movies.csv.
    ratings_files: accepted ratings files, in order of preference.
    movies_encoding: text encoding of the movies file.
    rating_scale: (lowest, highest) rating.
    rating_step: ratings are multiples of it (1 = whole stars).
    genres: the genre vocabulary (the columns of a genre multi-hot table).
  """

  name: str
  title: str
  md5: str
  folder: str
  users_file: Optional[str]
  movies_file: str
  ratings_files: Tuple[str, ...]
  movies_encoding: str
  rating_scale: Tuple[float, float]
  rating_step: float
  genres: Tuple[str, ...]

  @property
  def url(self) -> str:
    return f"{_BASE_URL}{self.name}.zip"

  @property
  def archive(self) -> str:
    return f"{self.name}.zip"

  @property
  def has_demographics(self) -> bool:
    return self.users_file is not None

  @property
  def lists_no_genres(self) -> bool:
    """Whether a movie without genres says NO_GENRES (ML-10M on)."""
    return self.genres == LATER_GENRES

  @property
  def required_files(self) -> Tuple[str, ...]:
    """The files besides the ratings that must be present."""
    return tuple(f for f in (self.users_file, self.movies_file) if f)

  def describe_files(self) -> str:
    """E.g. 'users.dat, movies.dat and ratings.dat (or ratings.csv)'."""
    ratings = self.ratings_files[0] + "".join(f" (or {f})" for f in self.ratings_files[1:])
    return f"{', '.join(self.required_files)} and {ratings}"


def _later(name: str, title: str, md5: str, folder: str, text_format: str) -> Release:
  return Release(name, title, md5, folder, None, f"movies.{text_format}",
                 (f"ratings.{text_format}",), "utf-8", (0.5, 5.0), 0.5, LATER_GENRES)


RELEASES = {
    "ml-1m": Release("ml-1m", "MovieLens-1M", "c4d9eecfca2ab87c1945afe126590906", "ml-1m",
                     ML_1M_USERS_FILE, "movies.dat", ("ratings.dat", "ratings.csv"), "latin-1",
                     (1.0, 5.0), 1.0, ML_1M_GENRES),
    "ml-10m": _later("ml-10m", "MovieLens-10M", "ce571fd55effeba0271552578f2648bd",
                     "ml-10M100K", "dat"),
    "ml-20m": _later("ml-20m", "MovieLens-20M", "cd245b17a1ae2cc31bb14903e1204af3", "ml-20m",
                     "csv"),
    "ml-25m": _later("ml-25m", "MovieLens-25M", "6b51fb2759a8657d3bfcbfc42b592ada", "ml-25m",
                     "csv"),
}
NAMES = tuple(RELEASES)


def get(name: str) -> Release:
  """The release called `name`; ValueError naming the known ones otherwise."""
  if name not in RELEASES:
    raise ValueError(f"unknown MovieLens release {name!r}; expected one of {NAMES}.")
  return RELEASES[name]


def guess(files) -> Tuple[str, ...]:
  """Names of the releases whose files are in `files` (a folder's listing):
  the files besides ratings, a ratings file, and a users file exactly when
  the release has one."""
  present = set(files)
  return tuple(r.name for r in RELEASES.values()
               if set(r.required_files) <= present and present & set(r.ratings_files)
               and r.has_demographics == (ML_1M_USERS_FILE in present))
