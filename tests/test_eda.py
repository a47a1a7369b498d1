"""Tests of the EDA summary, report files and headline (generated data only)."""

import json
import os

import pytest

import numpy as np
import pandas as pd

from tff_movierec import eda
from tff_movierec.data import features, releases
from tff_movierec.data.movielens import GENRES
from tff_movierec.data.movielens import load_movielens
from tff_movierec.data.synthetic import write_synthetic_movielens
# The releases' exact file formats and the command-line runner (a fixture too).
from test_releases import _run, _small_ml20m, parsed_flags, write_release  # noqa: F401

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


def test_plotted_clients_keep_few_and_spread_many():
  few = pd.Series([5, 1, 3], index=["0", "1", "2"])
  assert eda.plotted_clients(few, limit=3) is few
  many = pd.Series(np.arange(10) * 7 % 10, index=[str(k) for k in range(10)])
  shown = eda.plotted_clients(many, limit=4)
  # Ranks 0, 3, 6, 9 of ratings 9..0, most active first.
  assert list(shown.items()) == [("7", 9), ("8", 6), ("9", 3), ("0", 0)]


def test_report_says_when_it_draws_only_some_clients(tiny, tmp_path, monkeypatch):
  monkeypatch.setattr(eda, "MAX_PLOTTED_CLIENTS", 2)
  natural = eda.client_mix(tiny, np.arange(tiny.num_users))
  eda.write_report(eda.summarize(tiny), str(tmp_path), natural)
  assert ("client_partition.png shows 2 of the 3 clients, evenly spaced in rank by ratings"
          in (tmp_path / "summary.md").read_text())


# Releases without demographics (ML-10M on), in their exact formats (test_releases' helpers).

@pytest.mark.parametrize("dataset", ["ml-10m", "ml-20m"])
def test_report_of_a_release_without_demographics(tmp_path, dataset):
  data = load_movielens(write_release(tmp_path / dataset, dataset), dataset=dataset)
  summary = eda.summarize(data)
  assert not summary["has_demographics"] and summary["demographics"] == {}
  assert summary["dataset"] == dataset and summary["ratings"] == 4
  # ML-10M: 5, 3.5, 0.5, 4; ML-20M: 3.5, 5.0, 0.5, 4.0.
  assert summary["rating_histogram"] == {"0.5": 1, "3.5": 1, "4": 1, "5": 1}
  assert len(summary["genres"]) == 19
  imax = next(g for g in summary["genres"] if g["genre"] == "IMAX")
  assert imax["movies"] == 1
  assert eda.run_eda(str(tmp_path / dataset), str(tmp_path / "out"), dataset=dataset) == summary
  names = os.listdir(tmp_path / "out")
  assert "demographics.png" not in names and "rating_distribution.png" in names
  markdown = (tmp_path / "out" / "summary.md").read_text()
  title = releases.RELEASES[dataset].title
  assert f"demographics: none in {title} (no users file)" in markdown
  assert f"{title} (--dataset={dataset}) has no demographics" in markdown
  assert "Users by" not in markdown and "| 0.5 | 1 | 25.00% |" in markdown


def test_client_mix_uses_the_releases_genres(tmp_path):
  data = load_movielens(write_release(tmp_path / "ml-20m", "ml-20m"), dataset="ml-20m")
  counts, share = eda.client_mix(data, np.zeros(data.num_users, np.int32))
  assert counts.to_dict() == {"0": 4}
  assert list(share.columns) == list(releases.LATER_GENRES)
  # Genre-tagged ratings: Comedy|Drama|Romance, Adventure|...|Fantasy (5), IMAX;
  # movie 131262 lists no genres.
  assert share.loc["0", "IMAX"] == pytest.approx(1 / 9)


@pytest.mark.parametrize("partition, extra", [
    ("dirichlet", {"num_clients": 3}), ("iid", {"num_clients": 3}), ("natural", {})])
def test_eda_task_on_ml20m_format(tmp_path, capsys, parsed_flags, partition, extra):
  code, err = _run(tmp_path, capsys, task="eda", dataset="ml-20m", partition=partition,
                   data_dir=_small_ml20m(tmp_path / "ml-20m"), **extra)
  assert code is None, err
  out = tmp_path / "out" / "eda"
  markdown = (out / "summary.md").read_text()
  assert markdown.startswith("# MovieLens-20M EDA")
  assert "ratings: 120\n" in markdown and "## Activity quantiles" in markdown
  assert "MovieLens-20M (--dataset=ml-20m) has no demographics" in markdown
  assert "![client_partition](client_partition.png)" in markdown
  assert not (out / "demographics.png").exists()
  # 12 users: even the natural partition's clients are all drawn.
  assert "client_partition.png shows" not in markdown
  with open(out / "eda_summary.json") as f:
    histogram = json.load(f)["rating_histogram"]
  assert sum(histogram.values()) == 120 and any("." in stars for stars in histogram)


def test_eda_task_on_ml10m_format(tmp_path, capsys, parsed_flags):
  code, err = _run(tmp_path, capsys, task="eda", dataset="ml-10m", num_clients=2,
                   data_dir=write_release(tmp_path / "ml-10m", "ml-10m"))
  assert code is None, err
  markdown = (tmp_path / "out" / "eda" / "summary.md").read_text()
  assert "rating histogram (0.5 / 3.5 / 4 / 5 stars): 1 / 1 / 1 / 1" in markdown
  assert "MovieLens-10M (--dataset=ml-10m) has no demographics" in markdown


@pytest.mark.parametrize("dataset", ["ml-10m", "ml-20m"])
def test_demographic_partition_is_refused_without_demographics(tmp_path, capsys,
                                                               parsed_flags, dataset):
  code, err = _run(tmp_path, capsys, task="eda", dataset=dataset, partition="demographic",
                   data_dir=write_release(tmp_path / dataset, dataset))
  assert code == 2, err
  title = releases.RELEASES[dataset].title
  assert f"--dataset={dataset}: {title} has no demographics" in err, err
  assert "--partition='demographic' (by age) needs them" in err, err
  assert "Use --dataset=ml-1m, or another --partition." in err, err
  assert not (tmp_path / "out" / "eda").exists()
