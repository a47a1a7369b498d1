"""Shared test set-up: quiet TensorFlow, and no orphaned TFF workers."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tff_movierec import tff_runtime  # noqa: E402

tff_runtime.stop_workers_at_exit()
