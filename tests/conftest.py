"""Shared test set-up: quiet TensorFlow, and this project's TFF runtime.

`tff_runtime.install` starts the TFF worker as a child that dies with this
process and is stopped at exit (see tff_movierec/tff_runtime.py).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tff_movierec import tff_runtime  # noqa: E402


def pytest_sessionstart(session):
  del session
  tff_runtime.install()
