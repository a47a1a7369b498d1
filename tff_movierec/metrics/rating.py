"""Rating-prediction metrics in numpy, the same for every model.

MAPE is in percent (like Keras's `MeanAbsolutePercentageError`); ratings are
in [1, 5] so there is no division by zero. R² = 1 - SSE/SST around the mean of
`y_true` (0 if `y_true` is constant).
"""

from typing import Dict

import numpy as np

RATING_METRICS = ("rmse", "mae", "mse", "r2", "mape")


def rating_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> Dict[str, float]:
  """Returns {rmse, mae, mse, r2, mape} for flat or [N, 1] arrays of equal size."""
  y_true = np.asarray(y_true, np.float64).reshape(-1)
  y_pred = np.asarray(y_pred, np.float64).reshape(-1)
  if y_true.shape != y_pred.shape:
    raise ValueError(f"y_true has {y_true.size} values but y_pred has {y_pred.size}.")
  if y_true.size == 0:
    raise ValueError("rating_metrics needs at least one rating.")
  if not np.all(np.isfinite(y_pred)):
    raise ValueError("y_pred contains NaN or infinite predictions.")
  error = y_pred - y_true
  mse = float(np.mean(error**2))
  sst = float(np.sum((y_true - y_true.mean())**2))
  return {
      "rmse": float(np.sqrt(mse)),
      "mae": float(np.mean(np.abs(error))),
      "mse": mse,
      "r2": 1.0 - float(np.sum(error**2)) / sst if sst > 0 else 0.0,
      "mape": 100.0 * float(np.mean(np.abs(error) / np.maximum(np.abs(y_true), 1e-7))),
  }
