"""An emulation of RecBole's `Pop` model, to reproduce its published numbers.

RecBole's Pop (recbole/model/general_recommender/pop.py) updates its counts
with `item_cnt[item] = item_cnt[item] + 1` on each training batch. With
repeated indices in a batch, that tensor assignment adds 1 once, so the
score of a movie is the number of training batches it appears in, not its
number of interactions; and the pointwise batches also hold one uniformly
sampled negative per positive, which are counted too. Pop trains one epoch
(RecBole's TraditionalTrainer). Popular movies saturate at the number of
batches and tie, which lowers Pop's top-K accuracy below true popularity.

This model replays that: one shuffled epoch of `positives_per_batch`
training interactions plus as many negatives drawn uniformly from the
movies with training interactions (RecBole draws from the movies the user
has not interacted with; the difference is negligible for counting).
The default 2048 positives per batch is RecBole's 4096-row batches with one
negative per positive. It ranks only; ties are broken by movie index.
"""

import numpy as np

from tff_movierec.baselines import base


class RecBolePop(base.RatingModel):
  """Scores = number of training batches containing the movie (see above)."""

  name = "popularity_recbole_emulation"
  predicts_ratings = False

  def __init__(self, positives_per_batch: int = 2048, seed: int = 0):
    if positives_per_batch < 1:
      raise ValueError(f"positives_per_batch must be >= 1, got {positives_per_batch}.")
    self.positives_per_batch, self.seed = positives_per_batch, seed

  def fit(self, train, num_users, num_movies):
    base.check_indices(train, num_users, num_movies)
    _, movies, _ = base.arrays(train)
    rng = np.random.default_rng(self.seed)
    batch = np.arange(len(movies)) // self.positives_per_batch
    negatives = rng.choice(np.unique(movies), size=len(movies))
    keys = np.r_[batch * num_movies + movies[rng.permutation(len(movies))],
                 batch * num_movies + negatives]
    self.counts_ = np.bincount(np.unique(keys) % num_movies,
                               minlength=num_movies).astype(np.float64)
    return self

  def predict(self, users, movies):
    raise NotImplementedError("RecBolePop ranks movies and does not predict ratings.")

  def score_all(self, users):
    return np.broadcast_to(self.counts_, (len(users), len(self.counts_))).copy()
