"""Tests of the EDA summary, report files and headline (generated data only)."""

import json
import os

import pytest

import numpy as np

from tff_movierec import eda
from tff_movierec.data import features
from tff_movierec.data.movielens import GENRES
from tff_movierec.data.movielens import load_movielens
from tff_movierec.data.synthetic import write_synthetic_movielens

# 3 users, 4 movies (movie 40 unrated), 5 ratings without timestamps.
USERS = "1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::16::55117\n"
MOVIES = (
    "10::A (1990)::Drama\n20::B (1991)::Comedy|Drama\n"
    "30::C (1992)::Action\n40::D (1993)::Horror\n"
)
RATINGS = "userId,movieId,rating\n1,10,5\n1,20,4\n2,10,4\n3,30,1\n3,20,4\n"


@pytest.fixture
def tiny(tmp_path):
  for name, text in (("users.dat", USERS), ("movies.dat", MOVIES),
                     ("ratings.csv", RATINGS)):
    (tmp_path / name).write_text(text, encoding="latin-1")
  return load_movielens(str(tmp_path))


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
  return write_synthetic_movielens(str(tmp_path_factory.mktemp("ml")))


def test_summary_counts_of_hand_written_data(tiny):
  summary = eda.summarize(tiny)
  assert summary["users"] == 3 and summary["active_users"] == 3
  assert summary["movies"] == 4 and summary["rated_movies"] == 3
  assert summary["ratings"] == 5
  assert summary["sparsity_percent"] == pytest.approx(100 * (1 - 5 / 9))
  assert summary["mean_rating"] == pytest.approx(18 / 5)
  assert summary["rating_histogram"] == {"1": 1, "4": 3, "5": 1}


def test_genre_popularity_counts_each_genre_of_a_movie(tiny):
  genres = eda.summarize(tiny)["genres"]
  top = [(g["genre"], g["ratings"], g["movies"]) for g in genres[:4]]
  # Drama: movies 10 (2 ratings) and 20 (2 ratings); Comedy: movie 20.
  assert top == [("Drama", 4, 2), ("Comedy", 2, 1), ("Action", 1, 1),
                 ("Horror", 0, 1)]
  assert len(genres) == 18
  assert [g["ratings"] for g in genres] == sorted(
      (g["ratings"] for g in genres), reverse=True)


def test_activity_quantiles_and_long_tail(tiny):
  summary = eda.summarize(tiny)
  # Ratings per user: 2, 1, 2; per rated movie: 2, 2, 1.
  assert summary["ratings_per_user"] == {
      "min": 1, "25%": 1, "50%": 2, "75%": 2, "90%": 2, "99%": 2, "max": 2}
  assert summary["ratings_per_movie"]["min"] == 1
  assert summary["ratings_per_movie"]["max"] == 2
  assert summary["user_activity"] == [2, 2, 1]


def test_demographic_counts_use_readme_labels(tiny):
  demographics = eda.summarize(tiny)["demographics"]
  assert demographics["gender"] == {"F": 1, "M": 2}
  assert demographics["age"]["Under 18"] == 1
  assert demographics["age"]["25-34"] == 1 and demographics["age"]["56+"] == 1
  assert sum(demographics["age"].values()) == 3
  assert demographics["occupation"]["K-12 student"] == 1
  assert demographics["occupation"]["self-employed"] == 2
  assert len(demographics["occupation"]) == 21


def test_missing_timestamps_are_reported(tiny):
  summary = eda.summarize(tiny)
  assert not summary["has_timestamps"] and summary["time_range"] is None
  assert summary["missing_features"] == ["temporal split",
                                         "time-ordered sequences"]
  assert "unavailable: temporal split, time-ordered sequences" in eda.headline(
      summary)


def test_time_range_with_timestamps(synthetic_dir):
  summary = eda.summarize(load_movielens(synthetic_dir))
  assert summary["has_timestamps"] and summary["missing_features"] == []
  first, last = summary["time_range"]
  assert first.startswith("2000-") and first <= last
  assert f"timestamps: {first} to {last}" in eda.headline(summary)


def test_headline_uses_thousands_separators(synthetic_dir):
  summary = eda.summarize(load_movielens(synthetic_dir))
  text = eda.headline(summary)
  assert summary["ratings"] == 60 * 25
  assert "ratings: 1,500\n" in text
  assert "users: 60 (60 with ratings)" in text
  assert f"sparsity: {summary['sparsity_percent']:.2f}%" in text
  histogram = " / ".join(f"{n:,}" for n in summary["rating_histogram"].values())
  assert histogram in text


def test_write_report_files(tiny, tmp_path):
  summary = eda.summarize(tiny)
  output = tmp_path / "out"
  paths = eda.write_report(summary, str(output))
  names = [os.path.basename(p) for p in paths]
  assert names == ["summary.md", "eda_summary.json",
                   "rating_distribution.png", "genre_popularity.png",
                   "user_activity_long_tail.png", "demographics.png"]
  assert sorted(os.listdir(output)) == sorted(names)
  with open(output / "eda_summary.json") as f:
    assert json.load(f) == summary
  markdown = (output / "summary.md").read_text()
  assert "ratings: 5" in markdown and "| Drama | 4 | 2 |" in markdown
  assert "![demographics](demographics.png)" in markdown
  for name in names[2:]:
    content = (output / name).read_bytes()
    assert content.startswith(b"\x89PNG\r\n\x1a\n") and len(content) > 10_000


def test_run_eda_loads_summarizes_and_writes(synthetic_dir, tmp_path):
  summary = eda.run_eda(synthetic_dir, str(tmp_path))
  assert summary == eda.summarize(load_movielens(synthetic_dir))
  assert os.path.isfile(tmp_path / "user_activity_long_tail.png")
  with open(tmp_path / "eda_summary.json") as f:
    assert json.load(f)["ratings"] == 1500


def test_client_mix_counts_each_clients_ratings_and_genre_shares(tiny):
  user_to_client = np.arange(tiny.num_users) % 2
  counts, share = eda.client_mix(tiny, user_to_client)
  clients = user_to_client[tiny.ratings["user"].to_numpy()]
  assert counts.to_dict() == {"0": int((clients == 0).sum()), "1": int((clients == 1).sum())}
  np.testing.assert_allclose(share.sum(axis=1), 1.0)
  genres = features.genre_multi_hot(tiny)[tiny.ratings["movie"].to_numpy()][clients == 0]
  np.testing.assert_allclose(share.loc["0"].to_numpy(), genres.sum(0) / genres.sum())
  assert list(share.columns) == list(GENRES)
