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

The iteration only needs ``diag(S)``, products ``M Q`` with K x k blocks and
``tr(Sigma^-1 S)``, so ``S`` can be given two ways (:class:`MomentMatrix`,
:class:`ResidualMoment`):

* the K x K matrix ``S = E^T E / N`` (``O(N K^2)`` once per sweep, then ``O(K^2 k)`` per
  product): moderate K;
* the N x K residuals themselves, ``M Q = D^-1/2 E^T (E D^-1/2 Q) / N`` (``O(N K k)`` per
  product, no K x K matrix): large K, where forming S costs more than the products and
  its K^2 doubles more than the residuals.

The two give different bits (different reductions); each is deterministic on its own.
"""

from __future__ import annotations

import math

import numpy as np

from ..kernels.cpu import reductions as _cpu_red
from ..kernels.reference.elementary import log_scalar
from ._dense import gram, matmul, matmul_t

__all__ = ["MomentMatrix", "ResidualMoment", "factor_analysis", "jacobi_eigh",
           "residual_moment", "top_eigenpairs"]

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


def top_eigenpairs(M, Q0: np.ndarray, mode: str, max_iter: int = 200,
                   tol: float = 1e-13) -> tuple[np.ndarray, np.ndarray]:
    """Top-k eigenpairs of a symmetric K x K ``M`` by subspace iteration from ``Q0``.

    ``M`` is the matrix or a function ``Q -> M Q``. Each iteration: ``Z = M Q`` (CRO-1
    dots), orthonormalise, Rayleigh-Ritz
    ``T = Q^T M Q`` (symmetrised), ``jacobi_eigh(T)``, rotate. Stops when every Ritz
    value changed by at most ``tol`` relative, or after ``max_iter`` iterations.
    """
    product = M if callable(M) else (lambda Q: matmul(M, Q, mode))
    Q = _orthonormalize(Q0, mode)
    lam = np.full(Q.shape[1], np.inf)
    k = Q.shape[1]
    for _ in range(max_iter):
        Q = _orthonormalize(product(Q), mode)
        MQ = product(Q)
        T = np.array([[_dot(Q[:, a], MQ[:, b], mode) for b in range(k)] for a in range(k)])
        T = (T + T.T) * 0.5
        new_lam, V = jacobi_eigh(T)
        Q = matmul(Q, V, mode)
        converged = np.all(np.abs(new_lam - lam) <= tol * np.abs(new_lam))
        lam = new_lam
        if converged:
            break
    return lam, Q


class MomentMatrix:
    """``S`` given as the K x K matrix (e.g. :func:`residual_moment`)."""

    def __init__(self, S: np.ndarray, mode: str):
        self.S, self.mode = np.asarray(S, dtype=np.float64), mode
        self.size = self.S.shape[0]

    def diagonal(self) -> np.ndarray:
        """``diag(S)``."""
        return np.ascontiguousarray(np.diag(self.S))

    def scaled_product(self, sqrt_d: np.ndarray):
        """``Q -> M Q`` with ``M = D^-1/2 S D^-1/2`` formed once (entry by entry:
        ``(S[a, b] / sqrt_d[a]) / sqrt_d[b]``), then one CRO-1 dot per entry of ``M Q``."""
        M = (self.S / sqrt_d[:, None]) / sqrt_d[None, :]
        return lambda Q: matmul(M, Q, self.mode)

    def trace_solve(self, factor) -> float:
        """``tr(Sigma^-1 S)``: CRO-1 sum of the diagonal of ``S Sigma^-1`` (row solves)."""
        from ..kernels import sum as cro_sum
        from ..kernels import woodbury_solve

        diag = np.diag(woodbury_solve(factor, self.S, "cpu"))
        return cro_sum(np.ascontiguousarray(diag), self.mode, "cpu")


class ResidualMoment:
    """``S = E^T E / N`` given by the N x K residuals ``E`` (never formed)."""

    def __init__(self, E: np.ndarray, mode: str):
        self.E, self.mode = np.ascontiguousarray(E, dtype=np.float64), mode
        self.nobs, self.size = self.E.shape
        self._diagonal = None

    def diagonal(self) -> np.ndarray:
        """``diag(S)[j]`` = CRO-1 sum over rows of ``E[i, j]^2``, divided by N (the bits of
        ``residual_moment(E)``'s diagonal)."""
        from ..kernels import sur_rmatvec

        if self._diagonal is None:
            one_per_column = np.arange(self.size + 1, dtype=np.int64)
            self._diagonal = sur_rmatvec(self.E, one_per_column, self.E, self.mode,
                                         "cpu") / self.nobs
        return self._diagonal

    def scaled_product(self, sqrt_d: np.ndarray):
        """``Q -> M Q = ((E^T (E (Q / sqrt_d))) / N) / sqrt_d``: two passes over E, each a
        CRO-1 ``gemv``/``gemv_t`` per column of Q, ``O(N K k)``."""
        def product(Q):
            Y = matmul(self.E, Q / sqrt_d[:, None], self.mode)
            return (matmul_t(self.E, Y, self.mode) / self.nobs) / sqrt_d[:, None]
        return product

    def trace_solve(self, factor) -> float:
        """``tr(Sigma^-1 S)`` by the Woodbury identity, from one more pass over E:

        .. math:: \\operatorname{tr}(\\Sigma^{-1} S) = \\sum_j S_{jj} / d_j
                  - \\operatorname{tr}(C^{-1} B), \\qquad B = (E G)^T (E G) / N,

        with ``G = D^-1 F`` and ``C = I + F^T G = L L^T`` from the factor; ``tr(C^-1 B)``
        solves ``C x = B[:, q]`` with the fixed-order Cholesky solve. CRO-1 sums."""
        from ..kernels import sum as cro_sum
        from ..kernels.cpu.linalg import cholesky_solve_kernel

        first = cro_sum(self.diagonal() / factor.d, self.mode, "cpu")
        EG = matmul(self.E, factor.G, self.mode)
        B = matmul_t(EG, EG, self.mode) / self.nobs
        k = B.shape[0]
        solved = np.empty(k)
        x = np.empty(k)
        for q in range(k):
            cholesky_solve_kernel(factor.L, np.ascontiguousarray(B[:, q]),
                                  self.mode == "compensated", x)
            solved[q] = x[q]
        return first - cro_sum(solved, self.mode, "cpu")


def gaussian_loglik(S, N: int, F: np.ndarray, d: np.ndarray, mode: str) -> float:
    """``-N/2 (K log 2pi + log|Sigma| + tr(Sigma^-1 S))`` with Woodbury identities
    (``S``: a :class:`MomentMatrix` or :class:`ResidualMoment`)."""
    from ..kernels import woodbury_factor, woodbury_logdet

    factor = woodbury_factor(F, d, mode)
    trace = S.trace_solve(factor)
    return -0.5 * N * ((S.size * LOG_2PI + woodbury_logdet(factor)) + trace)


def factor_analysis(S, N: int, rank: int, mode: str, F0=None, d0=None,
                    max_iter: int = 1000, tol: float = 1e-10
                    ) -> tuple[np.ndarray, np.ndarray, float, int]:
    """ML factor analysis of ``S`` by the closed-form iteration (module docstring).

    ``S``: the K x K moment matrix (array or :class:`MomentMatrix`) or a
    :class:`ResidualMoment`. Starts from ``(F0, d0)`` when given (warm start across
    sweeps of the fit), else from ``d = diag(S)`` and the leading unit vectors. Stops
    when the log-likelihood changes by at most ``tol`` relative. Returns
    ``(F, d, loglik, iterations)``.
    """
    if isinstance(S, np.ndarray):
        S = MomentMatrix(S, mode)
    K = S.size
    diag_S = S.diagonal()
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
        lam, Q = top_eigenpairs(S.scaled_product(sqrt_d), Q, mode)
        F = (sqrt_d[:, None] * Q) * np.sqrt(np.maximum(lam - 1.0, 0.0))[None, :]
        fsq = np.array([_dot(F[j], F[j], mode) for j in range(K)])
        d = np.maximum(diag_S - fsq, D_FLOOR)
        ll = gaussian_loglik(S, N, F, d, mode)
        if abs(ll - ll_prev) <= tol * abs(ll):
            break
        ll_prev = ll
    return F, d, ll, it
