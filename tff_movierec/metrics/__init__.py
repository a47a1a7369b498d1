"""Evaluation metrics and protocols.

  rating        numpy MAE, MSE, RMSE, R², MAPE (one dict for every model).
  keras_metrics the same rating metrics as Keras metrics whose variables are
                additive, so TFF's sum-then-finalize aggregation is exact.
  ranking       full-ranking Recall@K, NDCG@K, HR@K.
  protocols     named ranking protocols (`holdout`, `recbole_ml1m`,
                `seed_variant`) built from a ratings frame.

`keras_metrics` imports TensorFlow; the other modules need only numpy/scipy.
"""
