"""Tests of `python -m tff_movierec.recommend` on an exported synthetic model."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tff_movierec import recommend
from tff_movierec.data.movielens import load_movielens
from tff_movierec.data.synthetic import write_synthetic_movielens
from tff_movierec.metrics import protocols
from tff_movierec.retrieval import export, training
from tff_movierec.retrieval.config import RetrievalTaskConfig, TowerConfig

USER_ID = 7
_LINE = re.compile(r"^\s*(\d+)\. (.+) \((\d{4})\) \| (\S+) \| score (-?\d+\.\d+)$")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """(data_dir, model_dir) of a model trained for a few steps on synthetic data."""
  data_dir = str(tmp_path_factory.mktemp("data"))
  write_synthetic_movielens(data_dir, num_users=40, num_movies=40, ratings_per_user=20)
  data = load_movielens(data_dir)
  protocol = protocols.build("recbole_ml1m", data.ratings, data.num_users, data.num_movies)
  model = training.train_centralized(
      "retrieval", data, protocol, TowerConfig(embedding_dim=8, history_length=5),
      RetrievalTaskConfig(normalize=True, temperature=0.1, logq_correction=True),
      training.TrainConfig(rounds=1, batch_size=32, eval_every=0))
  model_dir = str(tmp_path_factory.mktemp("model"))
  export.export_model(model, data, model_dir, min_history_rating=3.0)
  return data_dir, model_dir


def _run(*args):
  return subprocess.run(
      [sys.executable, "-m", "tff_movierec.recommend", *args], capture_output=True,
      text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


def test_recommends_unrated_movies_with_explanations(exported):
  data_dir, model_dir = exported
  result = _run("--user", str(USER_ID), "--k", "4", "--model_dir", model_dir,
                "--data_dir", data_dir)
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
