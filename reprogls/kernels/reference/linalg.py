"""Executable spec of the linear-algebra kernels: matvecs, SUR operators, Woodbury.

Every reduction below is a CRO-1 reduction (:func:`~.cro.reduce_rows`) of explicitly
formed terms; each term formula says which products/quotients are rounded first, and
that is part of the bits. ``mode`` is ``"compensated"`` or ``"plain"`` and applies to
every reduction inside a kernel.

SUR layout
----------
A packed C-contiguous design ``X`` (N, P) and ``offsets`` (K+1 non-decreasing ints,
``offsets[0] = 0``, ``offsets[K] = P``): equation ``j`` owns the columns
``offsets[j]:offsets[j+1]`` (``p_j = offsets[j+1] - offsets[j]`` may be 0).

Woodbury
--------
``Sigma = diag(d) + F F^T`` with ``F`` (K, k), ``d > 0``. With ``G = D^-1 F`` and the
capacitance ``C = I + F^T D^-1 F = L L^T``:

.. math:: \\Sigma^{-1} = D^{-1} - G\\,C^{-1} G^T, \\qquad
          \\log|\\Sigma| = \\sum_j \\log d_j + 2 \\sum_q \\log L_{qq}.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cro import check_mode, reduce_rows
from .elementary import log

__all__ = [
    "NotPositiveDefiniteError",
    "WoodburyFactor",
    "capacitance",
    "cholesky",
    "cholesky_inverse",
    "cholesky_solve",
    "equation_of_column",
    "gemv",
    "gemv_t",
    "sur_matvec",
    "sur_normal_matvec",
    "sur_rmatvec",
    "woodbury_factor",
    "woodbury_logdet",
    "woodbury_solve",
]


class NotPositiveDefiniteError(np.linalg.LinAlgError):
    """A fixed-order Cholesky met a pivot that is not positive (or is NaN)."""


def _products(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return A * B


def gemv(A: np.ndarray, x: np.ndarray, mode: str = "compensated") -> np.ndarray:
    """``y = A x``: ``y[i]`` is the CRO-1 reduction over ``j`` of ``fl(A[i, j] * x[j])``."""
    return reduce_rows(_products(A, x[None, :]), check_mode(mode))


def gemv_t(A: np.ndarray, y: np.ndarray, mode: str = "compensated") -> np.ndarray:
    """``g = A^T y``: ``g[j]`` is the CRO-1 reduction over rows ``i`` of ``fl(A[i, j] * y[i])``."""
    return reduce_rows(_products(A, y[:, None]).T, check_mode(mode))


def equation_of_column(offsets: np.ndarray) -> np.ndarray:
    """``eq[m] = j`` for every column ``m`` of equation ``j``.

    Equation ``j`` owns the columns ``offsets[j] <= m < offsets[j+1]``.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    return np.repeat(np.arange(offsets.shape[0] - 1), np.diff(offsets))


def sur_matvec(X: np.ndarray, offsets: np.ndarray, beta: np.ndarray,
               mode: str = "compensated") -> np.ndarray:
    """``U[i, j] = x_ij^T beta_j``: CRO-1 over ``m`` in equation ``j`` of ``fl(X[i, m] * beta[m])``.

    Returns ``U`` of shape (N, K); an equation with no regressors gives ``+0.0``.
    """
    compensated = check_mode(mode)
    N, K = X.shape[0], len(offsets) - 1
    U = np.empty((N, K))
    terms = _products(X, beta[None, :])
    for j in range(K):
        U[:, j] = reduce_rows(terms[:, offsets[j]:offsets[j + 1]], compensated)
    return U


def sur_rmatvec(X: np.ndarray, offsets: np.ndarray, W: np.ndarray,
                mode: str = "compensated") -> np.ndarray:
    """``g[m] = X_j^T W[:, j]``: CRO-1 over rows ``i`` of ``fl(X[i, m] * W[i, eq(m)])``.

    Returns ``g`` of shape (P,), ``eq(m)`` being the equation that owns column ``m``.
    """
    return reduce_rows(_products(X, W[:, equation_of_column(offsets)]).T, check_mode(mode))


def cholesky(C: np.ndarray, mode: str = "compensated") -> np.ndarray:
    """Fixed-order Cholesky ``C = L L^T`` from the lower triangle of ``C`` (n, n).

    For ``i = 0..n-1`` and ``j = 0..i`` (row by row)::

        acc    = CRO-1 over l < j of fl(L[i, l] * L[j, l])
        L[i,i] = sqrt(C[i, i] - acc)                 (i == j)
        L[i,j] = (C[i, j] - acc) / L[j, j]           (j <  i)

    Raises :class:`NotPositiveDefiniteError` when a pivot ``C[i, i] - acc`` is not
    positive and finite (NaN, zero, negative or infinite); never returns NaN silently.
    """
    compensated = check_mode(mode)
    n = C.shape[0]
    L = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1):
            acc = reduce_rows(_products(L[i, :j], L[j, :j])[None, :], compensated)[0]
            if i == j:
                pivot = C[i, i] - acc
                if not 0.0 < pivot < np.inf:
                    raise NotPositiveDefiniteError(
                        f"matrix is not positive definite (or overflows): pivot {i} is "
                        f"{float(pivot)!r}")
                L[i, i] = np.sqrt(pivot)
            else:
                L[i, j] = (C[i, j] - acc) / L[j, j]
    return L


def cholesky_inverse(L: np.ndarray, mode: str = "compensated") -> np.ndarray:
    """``C^-1 = L^-T L^-1`` from the Cholesky factor ``L`` of ``C`` (n, n), in two fixed
    stages (the oracle of :mod:`reprogls.kernels.cpu.spd`).

    1. ``Z = (L^-1)^T``: row ``c`` solves ``L z = e_c`` forward from ``t = c``::

           Z[c, c] = 1 / L[c, c]
           Z[c, i] = -(CRO-1 over t = c..i-1 of fl(L[i, t] * Z[c, t])) / L[i, i]   (i > c)

       (the segment starts at ``t = c``: ``Z[c, t] = 0`` for ``t < c`` is not a term).
    2. ``C^-1[a, b] = CRO-1 over t = a..n-1 of fl(Z[a, t] * Z[b, t])`` for ``a >= b``,
       copied onto ``[b, a]`` (symmetric bitwise).
    """
    compensated = check_mode(mode)
    n = L.shape[0]
    Z = np.zeros((n, n))

    def dot(x, y):
        return reduce_rows(_products(x, y)[None, :], compensated)[0]

    with np.errstate(all="ignore"):
        for c in range(n):
            Z[c, c] = 1.0 / L[c, c]
            for i in range(c + 1, n):
                Z[c, i] = -dot(L[i, c:i], Z[c, c:i]) / L[i, i]
        inv = np.empty((n, n))
        for a in range(n):
            for b in range(a + 1):
                inv[a, b] = inv[b, a] = dot(Z[a, a:], Z[b, a:])
    return inv


def cholesky_solve(L: np.ndarray, T: np.ndarray, mode: str = "compensated") -> np.ndarray:
    """Solve ``L L^T u = t`` for every row ``t`` of ``T`` (n_rows, n), fixed order::

        z[i] = (t[i] - CRO-1 over l < i of fl(L[i, l] * z[l])) / L[i, i]      i = 0..n-1
        u[i] = (z[i] - CRO-1 over l > i of fl(L[l, i] * u[l])) / L[i, i]      i = n-1..0

    (the backward sum runs over ``l = i+1, ..., n-1`` in increasing order).
    """
    compensated = check_mode(mode)
    n = L.shape[0]
    Z = np.empty_like(T, dtype=np.float64)
    with np.errstate(all="ignore"):
        for i in range(n):
            acc = reduce_rows(_products(Z[:, :i], L[i, :i][None, :]), compensated)
            Z[:, i] = (T[:, i] - acc) / L[i, i]
        U = np.empty_like(Z)
        for i in range(n - 1, -1, -1):
            acc = reduce_rows(_products(U[:, i + 1:], L[i + 1:, i][None, :]), compensated)
            U[:, i] = (Z[:, i] - acc) / L[i, i]
    return U


@dataclass(frozen=True)
class WoodburyFactor:
    """Factorisation of ``Sigma = diag(d) + F F^T`` used by the Woodbury kernels.

    Attributes
    ----------
    F : ndarray (K, k)
    d : ndarray (K,)
    G : ndarray (K, k)
        ``G[j, q] = fl(F[j, q] / d[j])``.
    L : ndarray (k, k)
        Lower Cholesky factor of the capacitance ``C = I + F^T G``.
    mode : str
        Reduction mode every quantity was computed with.
    """

    F: np.ndarray
    d: np.ndarray
    G: np.ndarray
    L: np.ndarray
    mode: str

    @property
    def K(self) -> int:
        return self.F.shape[0]

    @property
    def rank(self) -> int:
        return self.F.shape[1]


def capacitance(F: np.ndarray, G: np.ndarray, mode: str) -> np.ndarray:
    """``C = I + F^T G``, lower triangle only (``r >= s``; the upper triangle is 0).

    ``C[r, s] = [r == s] + CRO-1 over j of fl(F[j, r] * G[j, s])``: the reduction first,
    then ``+ 1.0`` on the diagonal (one rounding).
    """
    compensated = check_mode(mode)
    k = F.shape[1]
    C = np.zeros((k, k))
    for r in range(k):
        C[r, : r + 1] = reduce_rows(_products(F[:, r][None, :], G[:, : r + 1].T), compensated)
        C[r, r] = C[r, r] + 1.0
    return C


def woodbury_factor(F: np.ndarray, d: np.ndarray, mode: str = "compensated") -> WoodburyFactor:
    """Factor ``Sigma = diag(d) + F F^T``: ``G = D^-1 F`` and ``chol(I + F^T G)``."""
    check_mode(mode)
    with np.errstate(all="ignore"):
        G = F / d[:, None]
    L = cholesky(capacitance(F, G, mode), mode)
    return WoodburyFactor(F=F, d=d, G=G, L=L, mode=mode)


def woodbury_solve(factor: WoodburyFactor, R: np.ndarray) -> np.ndarray:
    """``R Sigma^-1`` row by row (Sigma is symmetric), never forming a K x K matrix.

    For each row ``r`` of ``R`` (N, K)::

        t[q]   = CRO-1 over j of fl(r[j] * G[j, q])                 (t = G^T r)
        u      = cholesky_solve(L, t)                                (u = C^-1 t)
        out[j] = fl(r[j] / d[j]) - CRO-1 over q of fl(G[j, q] * u[q])
    """
    compensated = check_mode(factor.mode)
    G, d = factor.G, factor.d
    T = np.empty((R.shape[0], G.shape[1]))
    for q in range(G.shape[1]):
        T[:, q] = reduce_rows(_products(R, G[:, q][None, :]), compensated)
    U = cholesky_solve(factor.L, T, factor.mode)
    out = np.empty_like(R, dtype=np.float64)
    with np.errstate(all="ignore"):
        for j in range(R.shape[1]):
            out[:, j] = R[:, j] / d[j] - reduce_rows(_products(U, G[j][None, :]), compensated)
    return out


def woodbury_logdet(factor: WoodburyFactor) -> float:
    """``log|Sigma| = a + 2 b`` by the matrix determinant lemma, with
    ``a = CRO-1 sum of log(d_j)`` and ``b = CRO-1 sum of log(L_qq)`` (portable ``log``).
    """
    compensated = check_mode(factor.mode)
    a = reduce_rows(log(factor.d)[None, :], compensated)[0]
    b = reduce_rows(log(np.diag(factor.L))[None, :], compensated)[0]
    return float(a + 2.0 * b)


def sur_normal_matvec(X: np.ndarray, offsets: np.ndarray, factor: WoodburyFactor,
                      v: np.ndarray) -> np.ndarray:
    """The GLS normal operator ``X^T [(X v) Sigma^-1]`` as the composition of
    :func:`sur_matvec`, :func:`woodbury_solve` and :func:`sur_rmatvec` (mode of the factor).
    """
    U = sur_matvec(X, offsets, v, factor.mode)
    return sur_rmatvec(X, offsets, woodbury_solve(factor, U), factor.mode)
