"""The Sigma-step: maximum-likelihood factor analysis of the residuals, on the audited path.

``Sigma = F F^T + diag(d)`` maximising the Gaussian likelihood for a residual second-moment
matrix ``S = E^T E / N``. The closed-form update of scikit-learn's ``FactorAnalysis``
(DESIGN.md section 6): with ``M = D^-1/2 S D^-1/2`` and its top-k eigenpairs
``(lambda_q, u_q)``,

.. math:: F = D^{1/2} U_k \\operatorname{diag}(\\sqrt{\\max(\\lambda_q - 1, 0)}), \\qquad
          d = \\max(\\operatorname{diag}(S - F F^T), \\epsilon)

iterated to convergence of the log-likelihood. The eigenpairs come from an own
deterministic solver: subspace iteration warm-started from the previous subspace,
modified Gram-Schmidt with CRO-1 dot products, and a Rayleigh-Ritz step solved by a
cyclic Jacobi method with a fixed sweep order (plain IEEE operations on a k x k matrix).
"""

from __future__ import annotations

import math

import numpy as np

from ..kernels.cpu import reductions as _cpu_red
from ..kernels.reference.elementary import log_scalar
from ._dense import gram, matmul

__all__ = ["factor_analysis", "jacobi_eigh", "residual_moment", "top_eigenpairs"]

#: Floor of the specific variances d (as scikit-learn's SMALL).
D_FLOOR = 1e-12
#: log(2 pi) by the portable log (same bits everywhere).
LOG_2PI = log_scalar(2.0 * math.pi)


def residual_moment(E: np.ndarray, mode: str, device: str = "cpu") -> np.ndarray:
    """``S = E^T E / N`` (K x K), symmetric bitwise.

    Entry ``[b, a]`` is the CRO-1 reduction over rows of ``fl(E[i, b] * E[i, a])`` (the
    bits of ``gemv_t(E, E[:, a])[b]``), then one division by N: :func:`._dense.gram`,
    one pass over E on the CPU.
    """
    return gram(E, mode, device) / E.shape[0]


def jacobi_eigh(T: np.ndarray, sweeps: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of a small symmetric matrix by cyclic Jacobi rotations.

    Fixed order: sweeps over pairs ``(p, q)``, ``p < q``, row by row; a rotation is
    skipped when ``|T_pq|`` is already zero; stops after a sweep without rotations or
    after ``sweeps`` sweeps. Only ``+ - * /`` and ``sqrt``: the same bits everywhere.
    Returns ``(eigenvalues descending, eigenvectors as columns)``.
    """
    A = [[float(v) for v in row] for row in T]
    n = len(A)
    V = [[1.0 if i == j else 0.0 for j in range(n)] for i in range(n)]
    for _ in range(sweeps):
        rotated = False
        for p in range(n):
            for q in range(p + 1, n):
                apq = A[p][q]
                if apq == 0.0:
                    continue
                rotated = True
                theta = (A[q][q] - A[p][p]) / (2.0 * apq)
                t = (1.0 if theta >= 0.0 else -1.0) / (abs(theta) + math.sqrt(theta * theta
                                                                               + 1.0))
                c = 1.0 / math.sqrt(t * t + 1.0)
                s = t * c
                for k in range(n):  # columns p, q
                    akp, akq = A[k][p], A[k][q]
                    A[k][p] = c * akp - s * akq
                    A[k][q] = s * akp + c * akq
                for k in range(n):  # rows p, q
                    apk, aqk = A[p][k], A[q][k]
                    A[p][k] = c * apk - s * aqk
                    A[q][k] = s * apk + c * aqk
                A[p][q] = A[q][p] = 0.0
                for k in range(n):
                    vkp, vkq = V[k][p], V[k][q]
                    V[k][p] = c * vkp - s * vkq
                    V[k][q] = s * vkp + c * vkq
        if not rotated:
            break
    values = np.array([A[i][i] for i in range(n)])
    order = sorted(range(n), key=lambda i: (-values[i], i))
    return values[order], np.array(V)[:, order]


def _dot(x, y, mode):  # CRO-1 dot on contiguous host vectors (no validation overhead)
    return _cpu_red.cro_dot(np.ascontiguousarray(x), np.ascontiguousarray(y),
                            mode == "compensated")


def _orthonormalize(Z: np.ndarray, mode: str) -> np.ndarray:
    """Modified Gram-Schmidt on the columns of Z with CRO-1 dots and norms."""
    Q = np.array(Z, dtype=np.float64)
    for c in range(Q.shape[1]):
        v = Q[:, c].copy()
        for b in range(c):
            v = v - _dot(Q[:, b], v, mode) * Q[:, b]
        norm = _cpu_red.cro_nrm2(v, mode == "compensated")
        Q[:, c] = v / norm if norm > 0.0 else v
    return Q


def top_eigenpairs(M: np.ndarray, Q0: np.ndarray, mode: str, max_iter: int = 200,
                   tol: float = 1e-13) -> tuple[np.ndarray, np.ndarray]:
    """Top-k eigenpairs of the symmetric ``M`` (K x K) by subspace iteration from ``Q0``.

    Each iteration: ``Z = M Q`` (CRO-1 gemv per column), orthonormalise, Rayleigh-Ritz
    ``T = Q^T M Q`` (symmetrised), ``jacobi_eigh(T)``, rotate. Stops when every Ritz
    value changed by at most ``tol`` relative, or after ``max_iter`` iterations.
    """
    Q = _orthonormalize(Q0, mode)
    lam = np.full(Q.shape[1], np.inf)
    k = Q.shape[1]
    for _ in range(max_iter):
        Q = _orthonormalize(matmul(M, Q, mode), mode)
        MQ = matmul(M, Q, mode)
        T = np.array([[_dot(Q[:, a], MQ[:, b], mode) for b in range(k)] for a in range(k)])
        T = (T + T.T) * 0.5
        new_lam, V = jacobi_eigh(T)
        Q = matmul(Q, V, mode)
        converged = np.all(np.abs(new_lam - lam) <= tol * np.abs(new_lam))
        lam = new_lam
        if converged:
            break
    return lam, Q


def gaussian_loglik(S: np.ndarray, N: int, F: np.ndarray, d: np.ndarray, mode: str) -> float:
    """``-N/2 (K log 2pi + log|Sigma| + tr(Sigma^-1 S))`` with Woodbury identities."""
    from ..kernels import sum as cro_sum
    from ..kernels import woodbury_factor, woodbury_logdet, woodbury_solve

    factor = woodbury_factor(F, d, mode)
    trace = cro_sum(np.ascontiguousarray(np.diag(woodbury_solve(factor, S, "cpu"))), mode,
                    "cpu")
    K = S.shape[0]
    return -0.5 * N * ((K * LOG_2PI + woodbury_logdet(factor)) + trace)


def factor_analysis(S: np.ndarray, N: int, rank: int, mode: str, F0=None, d0=None,
                    max_iter: int = 1000, tol: float = 1e-10
                    ) -> tuple[np.ndarray, np.ndarray, float, int]:
    """ML factor analysis of ``S`` by the closed-form iteration (module docstring).

    Starts from ``(F0, d0)`` when given (warm start across sweeps of the fit), else from
    ``d = diag(S)`` and the leading unit vectors. Stops when the log-likelihood changes
    by at most ``tol`` relative. Returns ``(F, d, loglik, iterations)``.
    """
    K = S.shape[0]
    diag_S = np.ascontiguousarray(np.diag(S))
    d = np.array(d0, dtype=np.float64) if d0 is not None else diag_S.copy()
    d = np.maximum(d, D_FLOOR)
    if F0 is not None:
        Q = np.array(F0, dtype=np.float64) / np.sqrt(d)[:, None]
    else:
        Q = np.eye(K, rank)
    ll_prev = -np.inf
    ll = -np.inf
    F = np.zeros((K, rank))
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 (returned)
        sqrt_d = np.sqrt(d)
        M = (S / sqrt_d[:, None]) / sqrt_d[None, :]
        lam, Q = top_eigenpairs(M, Q, mode)
        F = (sqrt_d[:, None] * Q) * np.sqrt(np.maximum(lam - 1.0, 0.0))[None, :]
        fsq = np.array([_dot(F[j], F[j], mode) for j in range(K)])
        d = np.maximum(diag_S - fsq, D_FLOOR)
        ll = gaussian_loglik(S, N, F, d, mode)
        if abs(ll - ll_prev) <= tol * abs(ll):
            break
        ll_prev = ll
    return F, d, ll, it
