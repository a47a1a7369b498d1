"""ADMM-SLIM (Steck, Dimakopoulou, Riabov, Jebara, WSDM 2020).

SLIM's objective over item-item weights B [M, M], with X the binary [U, M]
training interactions and G = XᵀX:

  min_B  ½‖X − XB‖²  +  ½ Σ_i Λ_i ‖B_i,:‖²  +  λ1 ‖B‖₁
  s.t.   diag(B) = 0,  and B ≥ 0 if `nonnegative`.

Λ_i = λ2·(G_ii / ḡ)^α + p/(1−p)·G_ii, with ḡ the mean of diag(G). With the
popularity exponent α = 0 the first term is the paper's L2 term λ2; α > 0
regularizes popular movies more (RecBole's ADMMSLIM weights its L2 term by
the item's popularity to the power α; dividing by ḡ keeps λ2 the penalty of
a movie of average popularity). `dropout` p > 0 adds the EDLAE penalty
(see `ease`).

`center` (the paper's variant for centred data) fits the weights to the
column-centred interactions X − 1mᵀ (m: each movie's share of users), whose
Gram matrix is G − U·mmᵀ; a user's scores are then (x − m)ᵀC + mᵀ.

ADMM splits B = C: B carries the loss, the L2 term and the zero diagonal,
C carries the L1 term, the zero diagonal and non-negativity; U is the
scaled dual variable. With P = (G + diag(Λ) + ρI)⁻¹, computed once:

  B̃ = P (G + ρ(C − U))  =  I − P diag(Λ + ρ) + ρ P (C − U)
  B  = B̃ − P diag(μ),   μ_j = B̃_jj / P_jj          (zero diagonal exactly)
  C  = S_{λ1/ρ}(B + U), clipped at 0 if `nonnegative`, diagonal set to 0
  U  = U + B − C

(S_t is soft thresholding). One M×M product per iteration. The weights
returned are C, which satisfies every constraint exactly and is sparse
when λ1 > 0. With λ1 = 0 and no sign constraint the fixed point is the
closed-form EASE / EDLAE solution (`ease.ease_weights`).

Like EASE, the model ranks movies and does not predict ratings; movies
without training interactions score 0, and so does every movie for a user
without any unless `center` is set (then the user gets mᵀ − mᵀC). `AdmmSlim` runs ADMM on the
movies that have training interactions only (3,123 of ML-1M's 3,706 under
`recbole_ml1m`): the others would get zero weights anyway.
"""

import dataclasses
from typing import Iterator, Optional

import numpy as np

from tff_movierec.baselines import base


@dataclasses.dataclass(frozen=True)
class AdmmState:
  """One ADMM iterate.

  Attributes:
    iteration: 1-based count of completed iterations.
    weights: [M, M] C, the constrained weights (zero diagonal).
    primal_residual: ‖B − C‖_F.
    dual_residual: ρ‖C − C_previous‖_F.
  """

  iteration: int
  weights: np.ndarray
  primal_residual: float
  dual_residual: float


def check_hyperparameters(l1: float, l2: float, rho: float, iterations: int,
                          dropout: float = 0.0, tolerance: float = 0.0,
                          popularity_exponent: float = 0.0) -> None:
  """Raises ValueError naming the first invalid hyperparameter."""
  checks = [
      ("l1", l1, np.isfinite(l1) and l1 >= 0, ">= 0"),
      ("l2", l2, np.isfinite(l2) and l2 >= 0, ">= 0"),
      ("rho", rho, np.isfinite(rho) and rho > 0, "> 0"),
      ("iterations", iterations,
       isinstance(iterations, (int, np.integer)) and iterations >= 1, "an integer >= 1"),
      ("dropout", dropout, 0.0 <= dropout < 1.0, "in [0, 1)"),
      ("tolerance", tolerance, np.isfinite(tolerance) and tolerance >= 0, ">= 0"),
      ("popularity_exponent", popularity_exponent,
       np.isfinite(popularity_exponent) and popularity_exponent >= 0, ">= 0"),
  ]
  for name, value, valid, expected in checks:
    if not valid:
      raise ValueError(f"ADMM-SLIM: {name} must be {expected}, got {value!r}.")


def l2_penalty(gram_diagonal: np.ndarray, l2: float, popularity_exponent: float = 0.0,
               dropout: float = 0.0) -> np.ndarray:
  """Λ [M] from diag(XᵀX) [M] (uncentred); see the module docstring."""
  popularity = np.clip(np.asarray(gram_diagonal, np.float64), 0.0, None)
  mean = popularity.mean() if popularity.size and popularity.mean() > 0 else 1.0
  return l2 * (popularity / mean) ** popularity_exponent + dropout / (1.0 - dropout) * popularity


def centered_gram(gram: np.ndarray, num_users: int) -> np.ndarray:
  """[M, M] Gram matrix of the column-centred binary interactions: G − U·mmᵀ,
  m = diag(G) / U (for binary X a movie's column sum is its G_ii)."""
  if num_users < 1:
    raise ValueError(f"ADMM-SLIM: centering needs num_users >= 1, got {num_users}.")
  counts = np.diag(gram).astype(np.float64)
  return np.asarray(gram, np.float64) - np.outer(counts, counts) / num_users


def admm_slim_iterates(gram: np.ndarray, l1: float, l2: float, rho: float,
                       iterations: int, nonnegative: bool = True, dropout: float = 0.0,
                       dtype=np.float64, penalty: Optional[np.ndarray] = None
                       ) -> Iterator[AdmmState]:
  """Yields the ADMM state after each of `iterations` iterations.

  Args:
    gram: [M, M] the Gram matrix fitted (XᵀX, or `centered_gram`; not changed).
    l1, l2, rho, dropout, nonnegative: see the module docstring.
    penalty: [M] Λ, if given (then `l2` and `dropout` are not used); by
      default `l2_penalty(diag(gram), l2, 0, dropout)`.
    iterations: number of iterations to run.
    dtype: float64 or float32 for the M×M work matrices.

  Yields:
    AdmmState; `weights` is a fresh array each time (safe to keep).
  """
  check_hyperparameters(l1, l2, rho, iterations, dropout)
  gram = np.asarray(gram, dtype=np.float64)
  if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
    raise ValueError(f"ADMM-SLIM: gram must be a square matrix, got shape {gram.shape}.")
  size = len(gram)
  diagonal = np.diag_indices(size)
  if penalty is None:
    penalty = l2_penalty(gram[diagonal], l2, 0.0, dropout)                  # Λ [M]
  penalty = np.asarray(penalty, np.float64)
  if penalty.shape != (size,) or not np.all(np.isfinite(penalty) & (penalty >= 0)):
    raise ValueError(f"ADMM-SLIM: penalty must be {size} finite values >= 0.")
  system = gram.copy()
  system[diagonal] += penalty + rho
  inverse = np.linalg.inv(system).astype(dtype)                              # P
  del system
  # P·G = I − P·diag(Λ + ρ): the constant part of B̃, no extra product needed.
  constant = -inverse * (penalty + rho).astype(dtype)[None, :]
  constant[diagonal] += 1.0
  inverse_diagonal = inverse[diagonal].copy()
  threshold = l1 / rho
  weights = np.zeros((size, size), dtype)                                    # C
  dual = np.zeros((size, size), dtype)                                       # U
  for iteration in range(1, iterations + 1):
    unconstrained = constant + rho * (inverse @ (weights - dual))            # B̃
    solution = unconstrained - inverse * (unconstrained[diagonal] / inverse_diagonal)[None, :]
    solution[diagonal] = 0.0                                                 # B (exact)
    previous = weights
    weights = solution + dual
    if threshold > 0:
      weights = np.sign(weights) * np.maximum(np.abs(weights) - threshold, 0.0)
    if nonnegative:
      np.maximum(weights, 0.0, out=weights)
    weights[diagonal] = 0.0
    difference = solution - weights
    dual += difference
    yield AdmmState(iteration, weights.copy(),
                    float(np.linalg.norm(difference)),
                    float(rho * np.linalg.norm(weights - previous)))


def admm_slim_weights(gram: np.ndarray, l1: float, l2: float, rho: float,
                      iterations: int, nonnegative: bool = True, dropout: float = 0.0,
                      tolerance: float = 0.0, dtype=np.float64,
                      penalty: Optional[np.ndarray] = None) -> AdmmState:
  """The last ADMM state: after `iterations`, or earlier once both residuals
  are <= `tolerance` · ‖C‖_F (never early if `tolerance` is 0)."""
  check_hyperparameters(l1, l2, rho, iterations, dropout, tolerance)
  state = None
  for state in admm_slim_iterates(gram, l1, l2, rho, iterations, nonnegative, dropout,
                                  dtype, penalty):
    scale = tolerance * np.linalg.norm(state.weights)
    if tolerance > 0 and max(state.primal_residual, state.dual_residual) <= scale:
      break
  return state


class AdmmSlim(base.RatingModel):
  """Sparse item-item linear model fitted by ADMM; see the module docstring."""

  name = "admm_slim"
  predicts_ratings = False

  def __init__(self, l1: float = 1.0, l2: float = 500.0, rho: float = 1000.0,
               iterations: int = 50, nonnegative: bool = True, dropout: float = 0.0,
               tolerance: float = 0.0, popularity_exponent: float = 0.0,
               center: bool = False):
    check_hyperparameters(l1, l2, rho, iterations, dropout, tolerance, popularity_exponent)
    self.l1 = l1
    self.l2 = l2
    self.rho = rho
    self.iterations = iterations
    self.nonnegative = nonnegative
    self.dropout = dropout
    self.tolerance = tolerance
    self.popularity_exponent = popularity_exponent
    self.center = center

  def fitted_gram(self, train, num_users, num_movies):
    """Sets the interactions up and returns (gram [M', M'] to fit, Λ [M']) over
    the M' movies with training interactions (also used by bench/slim_tuning)."""
    base.check_indices(train, num_users, num_movies)
    users, movies, _ = base.arrays(train)
    interactions = base.csr(users, movies, np.ones(len(users)), num_users, num_movies)
    interactions.data[:] = 1.0  # duplicate (user, movie) rows count once
    self.movies_ = np.flatnonzero(interactions.getnnz(axis=0))  # ADMM runs on these only
    self.interactions_ = interactions[:, self.movies_].tocsr()
    self.num_movies_ = num_movies
    gram = (self.interactions_.T @ self.interactions_).toarray()
    penalty = l2_penalty(np.diag(gram), self.l2, self.popularity_exponent, self.dropout)
    self.means_ = np.diag(gram) / num_users if self.center else None  # m [M']
    return (centered_gram(gram, num_users) if self.center else gram), penalty

  def fit(self, train, num_users, num_movies):
    gram, penalty = self.fitted_gram(train, num_users, num_movies)
    self.state_ = admm_slim_weights(
        gram, self.l1, self.l2, self.rho, self.iterations, self.nonnegative, self.dropout,
        self.tolerance, penalty=penalty)
    self.weights_ = self.state_.weights  # [len(movies_), len(movies_)]
    return self

  def predict(self, users, movies):
    raise NotImplementedError("ADMM-SLIM ranks movies and does not predict ratings.")

  def score_all(self, users):
    """float64 [B, M]; movies without training interactions score 0 (and, if
    not `center`, so does every movie for a user without any)."""
    users = np.asarray(users)
    scores = np.zeros((len(users), self.num_movies_))
    scores[:, self.movies_] = self.interactions_[users] @ self.weights_
    if self.center:  # (x − m)ᵀC + mᵀ
      scores[:, self.movies_] += self.means_ - self.means_ @ self.weights_
    return scores
