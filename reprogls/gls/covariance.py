"""Covariance of the GLS coefficients: plug-in and cluster-robust (sandwich).

With the GLS normal matrix ``A = X^T (Sigma^-1 (x) I_N) X + ridge I`` at the estimated
Sigma:

* plug-in: :math:`\\widehat{V} = A^{-1}`;
* robust (clustered by observation across equations):
  :math:`\\widehat{V} = A^{-1} B A^{-1}` with :math:`B = \\sum_i s_i s_i^T` and the
  per-observation score :math:`s_i[m] = X[i, m] \\, (e_i \\Sigma^{-1})[eq(m)]`, where
  :math:`e_i` is row i of the residuals. It stays valid when Sigma is misspecified
  (e.g. the true covariance is not low-rank) or differs across observations.

Everything runs on the audited path: ``A^-1`` column by column from the fixed-order
Cholesky, ``B`` by the one-pass column-pair Gram kernel on the scores, the products by
CRO-1 dots. Cost: ``O(N P^2)`` for ``B`` and ``O(P^3)`` for the inverse and products, so
standard errors at P in the thousands take a while; ``cov_type="none"`` skips them.
"""

from __future__ import annotations

import numpy as np

from ..kernels import woodbury_solve
from ..kernels.linalg import WoodburyFactor
from . import beta as beta_step
from ._dense import gram, matmul, mirror_lower

__all__ = ["inverse_normal_matrix", "robust_covariance"]


def inverse_normal_matrix(XtX: np.ndarray, offsets: np.ndarray, factor: WoodburyFactor,
                          ridge: float) -> np.ndarray:
    """``A^-1`` (the plug-in covariance): column ``c`` solves ``L L^T x = e_c`` with the
    fixed-order Cholesky ``L`` of ``A``; the lower triangle is mirrored."""
    mode = factor.mode
    L = beta_step.cholesky(beta_step.normal_matrix(XtX, offsets, factor, ridge), mode)
    P = L.shape[0]
    inv = np.empty((P, P))
    e = np.zeros(P)
    for c in range(P):
        e[c] = 1.0
        inv[:, c] = beta_step.solve_dense(L, e, mode)
        e[c] = 0.0
    return mirror_lower(inv)


def score_gram(X: np.ndarray, offsets: np.ndarray, E: np.ndarray, factor: WoodburyFactor,
               device: str) -> np.ndarray:
    """``B = sum_i s_i s_i^T`` with ``s_i[m] = fl(X[i, m] * W[i, eq(m)])``,
    ``W = E Sigma^-1`` (``woodbury_solve``); one pass over the (N, P) scores."""
    W = woodbury_solve(factor, E, device)
    eq = np.repeat(np.arange(offsets.shape[0] - 1), np.diff(offsets))
    scores = np.multiply(X, W[:, eq])
    return gram(scores, factor.mode, device)


def robust_covariance(Ainv: np.ndarray, X: np.ndarray, offsets: np.ndarray, E: np.ndarray,
                      factor: WoodburyFactor, device: str) -> np.ndarray:
    """The sandwich ``A^-1 B A^-1`` (module docstring), symmetric bitwise."""
    B = score_gram(X, offsets, E, factor, device)
    return mirror_lower(matmul(Ainv, matmul(B, Ainv, factor.mode), factor.mode))
