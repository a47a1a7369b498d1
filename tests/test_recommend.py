"""Tests of `python -m tff_movierec.recommend` on exported synthetic models:
retrieval alone, and retrieval re-ranked by the ranking model."""

import json
import os
import shutil
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tff_movierec import recommend
from tff_movierec.data.movielens import load_movielens
from tff_movierec.data.synthetic import write_synthetic_movielens
from tff_movierec.metrics import protocols
from tff_movierec.retrieval import experiment, export, ranking, training
from tff_movierec.retrieval.config import RetrievalTaskConfig, TowerConfig

USER_ID = 7
_LINE = re.compile(r"^\s*(\d+)\. (.+) \((\d{4})\) \| (\S+) \| score (-?\d+\.\d+)$")
_RERANKED = re.compile(r"^\s*(\d+)\. (.+) \((\d{4})\) \| (\S+) \| predicted rating "
                       r"(\d+\.\d+) \| retrieval #(\d+), score (-?\d+\.\d+)$")
TOWERS = TowerConfig(embedding_dim=8, history_length=5)


CONFIG = training.TrainConfig(rounds=1, batch_size=32, eval_every=0)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("data"))
  return write_synthetic_movielens(directory, num_users=40, num_movies=40, ratings_per_user=20)


@pytest.fixture(scope="module")
def rater(data_dir):
  """A ranking model trained for one epoch on the synthetic data."""
  data = load_movielens(data_dir)
  return training.train_centralized(
      "ranking", data, experiment.with_validation(protocols.build(
          "holdout", data.ratings, data.num_users, data.num_movies)),
      TOWERS, ranking.RankingTaskConfig(head_units=(4,)), CONFIG)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, data_dir, rater):
  """(data_dir, model_dir) of a retrieval model trained for a few steps on
  synthetic data, with `rater` exported into model_dir/ranking."""
  data = load_movielens(data_dir)
  protocol = protocols.build("recbole_ml1m", data.ratings, data.num_users, data.num_movies)
  model = training.train_centralized(
      "retrieval", data, protocol, TOWERS,
      RetrievalTaskConfig(normalize=True, temperature=0.1, logq_correction=True), CONFIG)
  model_dir = str(tmp_path_factory.mktemp("model"))
  export.export_model(model, data, model_dir, min_history_rating=3.0)
  export.export_ranking_model(rater, data, os.path.join(model_dir, export.RANKING_DIR),
                              min_history_rating=1.0)
  return data_dir, model_dir


def _run(*args):
  return subprocess.run(
      [sys.executable, "-m", "tff_movierec.recommend", *args], capture_output=True,
      text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


def test_recommends_unrated_movies_with_explanations(exported):
  data_dir, model_dir = exported
  result = _run("--user", str(USER_ID), "--k", "4", "--model_dir", model_dir,
                "--data_dir", data_dir, "--retrieval_only")
  assert result.returncode == 0, result.stderr
  data = load_movielens(data_dir)
  user = int(np.flatnonzero(data.users["user_id"] == USER_ID)[0])
  rated_titles = set(data.movies["title"].iloc[data.ratings.loc[data.ratings["user"] == user,
                                                                 "movie"]])
  lines = result.stdout.splitlines()
  assert lines[0].startswith(f"User {USER_ID} ")
  assert lines[1].startswith("Top-rated genres: ")
  ranked = [_LINE.match(line) for line in lines if _LINE.match(line)]
  assert [int(m.group(1)) for m in ranked] == [1, 2, 3, 4]
  titles = {f"{m.group(2)} ({m.group(3)})" for m in ranked}
  assert len(titles) == 4 and titles <= set(data.movies["title"])
  assert not titles & rated_titles
  scores = [float(m.group(5)) for m in ranked]
  assert scores == sorted(scores, reverse=True)
  why = [line for line in lines if line.strip().startswith("why: ")]
  assert len(why) == 4 and all("closest to " in line for line in why)


def test_unknown_user_is_a_clear_error(exported):
  data_dir, model_dir = exported
  result = _run("--user", "999999", "--model_dir", model_dir, "--data_dir", data_dir)
  assert result.returncode == 2
  assert "--user=999999" in result.stderr and "no such user" in result.stderr


def test_directory_without_a_model_is_a_clear_error(exported, tmp_path):
  data_dir, _ = exported
  result = _run("--user", str(USER_ID), "--model_dir", str(tmp_path), "--data_dir", data_dir)
  assert result.returncode == 2
  assert f"--model_dir={tmp_path} holds no exported model" in result.stderr
  assert "vocabulary.json" in result.stderr


def test_missing_model_dir_and_bad_k_fail_in_process(exported, capsys):
  data_dir, model_dir = exported
  assert recommend.main(["--user", "1", "--model_dir", "/nonexistent/model",
                         "--data_dir", data_dir]) == 2
  assert "--model_dir=/nonexistent/model: no such directory" in capsys.readouterr().err
  assert recommend.main(["--user", "1", "--k", "0", "--model_dir", model_dir,
                         "--data_dir", data_dir]) == 2
  assert "--k=0" in capsys.readouterr().err


def test_data_that_does_not_match_the_model_is_rejected(exported, tmp_path, capsys):
  _, model_dir = exported
  other = write_synthetic_movielens(str(tmp_path), num_users=30, num_movies=35,
                                    ratings_per_user=15)
  assert recommend.main(["--user", "1", "--model_dir", model_dir, "--data_dir", other]) == 2
  assert "do not match" in capsys.readouterr().err


def test_genre_profile_ranks_by_mean_rating_among_frequent_genres():
  genres = ["Drama", "Drama|War", "War", "War", "Comedy", "Drama"]
  ratings = np.array([5, 4, 2, 3, 5, 3])
  # Drama: 5, 4, 3 -> 4.0 (3); War: 4, 2, 3 -> 3.0 (3); Comedy rated once.
  assert recommend.genre_profile(genres, ratings) == [("Drama", 4.0, 3), ("War", 3.0, 3)]
  assert recommend.genre_profile(["Comedy"], np.array([4])) == [("Comedy", 4.0, 1)]


def _user_index(data):
  return int(np.flatnonzero(data.users["user_id"] == USER_ID)[0])


def test_reranks_the_retrieved_candidates_by_predicted_rating(exported, rater, capsys):
  data_dir, model_dir = exported
  data = load_movielens(data_dir)
  user = _user_index(data)
  assert recommend.main(["--user", str(USER_ID), "--k", "10", "--retrieval_only",
                         "--model_dir", model_dir, "--data_dir", data_dir]) == 0
  retrieved = [f"{m.group(2)} ({m.group(3)})" for m in map(
      _LINE.match, capsys.readouterr().out.splitlines()) if m]
  assert len(retrieved) == 10
  result = _run("--user", str(USER_ID), "--k", "3", "--candidates", "10",
                "--model_dir", model_dir, "--data_dir", data_dir)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert lines[2].startswith("Top-3 of 10 retrieved candidates, re-ranked by predicted rating")
  ranked = [m for m in map(_RERANKED.match, lines) if m]
  assert [int(m.group(1)) for m in ranked] == [1, 2, 3]
  titles = [f"{m.group(2)} ({m.group(3)})" for m in ranked]
  # Each shown movie is the candidate at its retrieval rank.
  assert titles == [retrieved[int(m.group(6)) - 1] for m in ranked]
  # The 3 best of the 10 candidates by the in-memory model's predicted rating.
  index = {title: i for i, title in enumerate(data.movies["title"])}
  candidates = pd.DataFrame({"user": user, "movie": [index[t] for t in retrieved]})
  expected = training.ranking_predictions(rater, data, data.ratings, candidates)
  best = np.argsort(-expected, kind="stable")[:3]
  assert titles == [retrieved[i] for i in best]
  np.testing.assert_allclose([float(m.group(5)) for m in ranked], expected[best], atol=5e-3)
  assert len([line for line in lines if line.strip().startswith("why: ")]) == 3


def _without_ranking(model_dir, tmp_path):
  copy = str(tmp_path / "retrieval_only_export")
  shutil.copytree(model_dir, copy, ignore=shutil.ignore_patterns(export.RANKING_DIR))
  return copy


def _ranking_copy(model_dir, tmp_path, edit):
  """A copy of the ranking export whose ranking.json is edited by `edit(dict)`."""
  copy = str(tmp_path / "ranking_copy")
  shutil.copytree(os.path.join(model_dir, export.RANKING_DIR), copy)
  path = os.path.join(copy, export.RANKING_FILE)
  with open(path, encoding="utf-8") as f:
    description = json.load(f)
  edit(description)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(description, f)
  return copy


def _fails(capsys, *args):
  """The stderr of recommend.main(args), which must exit with status 2."""
  assert recommend.main(["--user", str(USER_ID), *args]) == 2
  return capsys.readouterr().err


def test_missing_default_ranking_export_is_a_clear_error(exported, tmp_path, capsys):
  data_dir, model_dir = exported
  bare = _without_ranking(model_dir, tmp_path)
  error = _fails(capsys, "--model_dir", bare, "--data_dir", data_dir)
  assert f"{os.path.join(bare, 'ranking')} (the default" in error
  assert "no such directory" in error and "--retrieval_only" in error
  # Retrieval alone still works there.
  assert recommend.main(["--user", str(USER_ID), "--model_dir", bare, "--data_dir", data_dir,
                         "--retrieval_only"]) == 0


def test_bad_ranking_model_dirs_are_clear_errors(exported, tmp_path, capsys):
  data_dir, model_dir = exported
  common = ["--model_dir", model_dir, "--data_dir", data_dir]
  error = _fails(capsys, *common, "--ranking_model_dir", "/nonexistent/ranking")
  assert "--ranking_model_dir=/nonexistent/ranking: no such directory" in error
  # A retrieval export is not a ranking export.
  error = _fails(capsys, *common, "--ranking_model_dir", model_dir)
  assert (f"--ranking_model_dir={model_dir} holds no exported ranking model (missing: "
          "ranking.json, model)") in error


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(movie_ids=d["movie_ids"][:-1]),
     "movie ids do not match the 40 movies of the retrieval model"),
    (lambda d: d.update(format_version=99), "format_version 99"),
    (lambda d: d.update(kind="retrieval"), "does not describe a ranking model"),
])
def test_incompatible_ranking_exports_are_rejected(exported, tmp_path, capsys, edit, message):
  data_dir, model_dir = exported
  copy = _ranking_copy(model_dir, tmp_path, edit)
  error = _fails(capsys, "--model_dir", model_dir, "--data_dir", data_dir,
                 "--ranking_model_dir", copy)
  assert f"--ranking_model_dir={copy}" in error and message in error


def test_contradictory_stage_flags_are_rejected(exported, capsys):
  data_dir, model_dir = exported
  common = ["--model_dir", model_dir, "--data_dir", data_dir]
  error = _fails(capsys, *common, "--k", "5", "--candidates", "4")
  assert "--candidates=4: must be >= --k=5" in error
  error = _fails(capsys, *common, "--k", "101")
  assert "--candidates=100: must be >= --k=101" in error
  error = _fails(capsys, *common, "--retrieval_only", "--candidates", "20")
  assert "--candidates: re-ranking settings, but --retrieval_only" in error
  error = _fails(capsys, *common, "--retrieval_only", "--ranking_model_dir", model_dir)
  assert "--ranking_model_dir: re-ranking settings" in error
