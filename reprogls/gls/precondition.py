"""Preconditioners of the CG beta-step: block-Jacobi, and block-Jacobi coupled across
equations through Sigma^-1.

The GLS normal matrix ``A = X^T (Sigma^-1 (x) I_N) X`` has the blocks
``A_jl = s_jl X_j^T X_l`` (``s_jl`` the entries of ``Sigma^-1``). With the block factors
``X_j^T X_j = L_j L_j^T`` and the whitened designs ``Q_j = X_j L_j^-T`` (orthonormal
columns) this is ``A_jl = s_jl L_j C_jl L_l^T`` with ``C_jl = Q_j^T Q_l`` (the identity
for ``j = l``): ``A = L B L^T``, ``L = blockdiag(L_j)``, ``B_jl = s_jl C_jl``.

* **Block-Jacobi** drops every ``C_jl``, ``j != l``: ``M_j = s_jj X_j^T X_j``.
* **Coupled** models ``C_jl ~= rho I`` (column ``c`` of one whitened design correlates
  with column ``c`` of every other one by ``rho``), so that

  .. math:: M = L (T \\otimes I_p) L^T,\\quad
            T = (1 - \\rho) \\operatorname{diag}(\\Sigma^{-1}) + \\rho \\Sigma^{-1}

  and ``M^-1 = L^-T (T^-1 (x) I_p) L^-1``. With unequal widths the whitened residual is
  laid out ``K x p_max``, zero past ``p_j`` (the embedding ``E``), and the operator is
  ``M^-1 = L^-T E^T (T^-1 (x) I_{p_max}) E L^-1``, symmetric positive definite like any
  ``E^T S E`` with ``S`` SPD and ``E`` injective. ``T`` is positive definite for
  ``0 <= rho <= 1`` (a convex combination of two such matrices). ``rho = 0`` is
  block-Jacobi; identical designs in every equation (Zellner's case) have ``rho = 1``
  and ``M = A``. With ``Sigma^-1 = D^-1 - G C^-1 G^T`` (the Woodbury factor,
  ``G = D^-1 F``, ``C = I + F^T G``), ``T = Lambda - rho G C^-1 G^T`` with
  ``Lambda = (1 - rho) diag(Sigma^-1) + rho D^-1``, and by Woodbury again

  .. math:: T^{-1} = \\Lambda^{-1} + H C_c^{-1} H^T,\\quad H = \\Lambda^{-1} G,\\quad
            C_c = C / \\rho - G^T H

  (``k x k``), so applying ``M^-1`` costs ``O(P p_max + K k p_max)``: nothing next to a
  pass over X.

``rho`` is estimated once per fit by :func:`design_coupling` from up to
``COUPLING_ROWS`` rows spread over the sample: the mean over pairs ``j != l`` of
``(Q_j^T Q_l)[c, c]``, from the equation sums ``z = sum_j L_j^-1 x_ij`` of the sampled
whitened rows (one product of the sampled rows with a ``P x p_max`` matrix, then
``z^T z``; :func:`coupling_matrix`). Where the equations' designs are unrelated (rho
below ``COUPLING_MIN``), or the scalar model does not fit the sampled p x p mean coupling
(columns coupled unequally, such as an intercept shared by every equation beside
unrelated regressors, or columns that correspond in another order), the CG keeps
block-Jacobi: with those designs the scalar model took 10-35% more CG steps than
block-Jacobi (K = 40, p = 4, a NumPy experiment), with the guards none. Measured at
N = 20000, K = 200, p = 10, k = 5 on alsgls's simulated data (shared regressors plus
noise: correlation 0.8 between the equations' designs): the estimate is ~0.8, and the
fit's CG takes 2, 2 and 2 steps in its three sweeps against 5, 5 and 3 with
block-Jacobi.

Every value is a CRO-1 dot (:func:`reprogls.kernels.cpu._cro.dot_segment`) or one IEEE
operation, in the order the docstrings give, so ``rho`` and every preconditioned vector
are the same on every machine and thread count.
"""

from __future__ import annotations

import numpy as np

from ..kernels.cpu._cro import dot_segment
from ..kernels.cpu.jit import njit
from ..kernels.cpu.linalg import (
    backward_substitution,
    block_factor,
    cholesky_kernel,
    cholesky_solve_kernel,
    forward_substitution,
)
from ..kernels.cpu.views import unmanaged
from ..kernels.devices import is_cupy_array

__all__ = ["COUPLING_MIN", "COUPLING_ROWS", "CoupledPreconditioner", "coupling_matrix",
           "design_coupling", "pack_block_factors"]

#: Rows sampled by :func:`design_coupling` (all rows when N is smaller, and fewer when
#: their copy would exceed ``COUPLING_SAMPLE_BYTES``): evenly spread,
#: ``i_s = (s N) // n`` for ``s = 0 .. n - 1``.
COUPLING_ROWS = 1024
COUPLING_SAMPLE_BYTES = 16 << 20

#: Estimated couplings below this keep the block-Jacobi preconditioner.
COUPLING_MIN = 0.1
#: The scalar model ``C_jl = rho I`` is used only where the sampled mean coupling matrix
#: looks like it: its per-column couplings may differ by at most ``COUPLING_MAX_SPREAD``
#: (an intercept shared by every equation beside unrelated regressors gives 1, 0, 0, ..:
#: there the scalar model took more CG steps than block-Jacobi) and the root mean square
#: of its off-diagonal entries may be at most ``COUPLING_MAX_OFF`` times ``rho`` (designs
#: whose columns correspond in another order).
COUPLING_MAX_SPREAD = 0.5
COUPLING_MAX_OFF = 0.5


def pack_block_factors(block_factors: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(factors, factor_ptr)``: the block Cholesky factors flattened into one array,
    ``L_j = factors[factor_ptr[j]:factor_ptr[j + 1]]`` read as a C-ordered
    ``p_j x p_j`` matrix (the layout of the compiled block solves)."""
    factors = (np.concatenate([np.ravel(L) for L in block_factors]) if block_factors
               else np.zeros(0))
    factor_ptr = np.concatenate([[0], np.cumsum([np.size(L) for L in block_factors])]
                                ).astype(np.int64)
    return np.ascontiguousarray(factors, dtype=np.float64), factor_ptr


@njit(cache=True)
def _whitening_rows(factors, factor_ptr, offsets, p_max, compensated):
    """``WT`` (p_max, P): ``WT[c, o_j + t] = (L_j^-1)[c, t]``, so that
    ``(WT x_i)[c] = sum_j (L_j^-1 x_ij)[c]``; column ``t`` of ``L_j^-1`` is
    :func:`forward_substitution` of the unit vector ``e_t``."""
    K = offsets.shape[0] - 1
    WT = np.zeros((p_max, offsets[K]))
    for j in range(K):
        o0, p, L = block_factor(factors, factor_ptr, offsets, j)
        if p == 0:
            continue
        unit = np.zeros(p)
        z = np.empty(p)
        for t in range(p):
            unit[t] = 1.0
            forward_substitution(L, unit, compensated, z)
            unit[t] = 0.0
            for c in range(p):
                WT[c, o0 + t] = z[c]
    return WT


def coupling_matrix(X: np.ndarray, offsets: np.ndarray, block_factors: list[np.ndarray],
                    mode: str) -> tuple[np.ndarray, np.ndarray]:
    """``(R, counts)``: the sampled sums ``R = Z^T Z * N / n`` (p_max x p_max) of the
    equation-summed whitened rows ``Z[s, c] = sum_j (L_j^-1 x_{i_s, j})[c]`` and
    ``counts[c]`` = the number of equations with more than ``c`` regressors.

    ``R[c, c']`` estimates ``sum_{j, l} (Q_j^T Q_l)[c, c']``, whose ``j = l`` part is
    ``counts[c]`` on the diagonal and 0 off it (``Q_j`` has orthonormal columns), so
    the mean coupling of two equations' columns ``c`` and ``c'`` is
    ``(R[c, c'] - [c = c'] counts[c]) / sqrt(counts[c] (counts[c] - 1) counts[c']
    (counts[c'] - 1))``. Bits: ``Z = X_s W`` by :func:`reprogls.kernels.cpu.multi.
    rows_times` (row ``s`` of ``Z`` is, per ``c``, one CRO-1 dot of the sampled row of X
    with ``WT[c]``, :func:`_whitening_rows`), ``Z^T Z`` by :func:`._dense.gram`, then
    one multiplication by ``N / n`` (rounded once, ``fl(N / n)``). ``X`` may be a CuPy
    array (a fit of CuPy inputs): the sampled rows are gathered on its GPU and only they
    are copied to the host.
    """
    from ..kernels.cpu.multi import rows_times
    from ._dense import gram

    N, P = X.shape
    widths = np.diff(offsets)
    p_max = int(widths.max(initial=0))
    counts = np.array([(widths > c).sum() for c in range(p_max)], dtype=np.int64)
    n = max(1, min(N, COUPLING_ROWS, COUPLING_SAMPLE_BYTES // max(8 * P, 1)))
    rows = (np.arange(n, dtype=np.int64) * N) // n
    factors, factor_ptr = pack_block_factors(block_factors)
    compensated = mode == "compensated"
    WT = _whitening_rows(factors, factor_ptr, np.asarray(offsets, dtype=np.int64), p_max,
                         compensated)
    Z = rows_times(_host_rows(X, rows), WT, compensated)
    return gram(Z, mode) * (N / n), counts


def _host_rows(X, rows: np.ndarray) -> np.ndarray:
    """``X[rows]`` as a C-contiguous host array: for a CuPy ``X`` gathered on its GPU, so
    that only the sampled rows cross."""
    if is_cupy_array(X):
        import cupy

        with X.device:
            return X[cupy.asarray(rows)].get()
    return np.ascontiguousarray(X[rows])


def design_coupling(X: np.ndarray, offsets: np.ndarray, block_factors: list[np.ndarray],
                    mode: str) -> float:
    """The coupling ``rho`` of the coupled preconditioner (module docstring): ``0.0``
    (block-Jacobi) below ``COUPLING_MIN``, when the scalar model does not fit (the
    ``COUPLING_MAX_SPREAD`` / ``COUPLING_MAX_OFF`` guards), with fewer than two
    equations or without rows; else in ``(0, 1]``.

    From :func:`coupling_matrix`'s ``(R, counts)``, over the columns ``c`` that at least
    two equations have:

    .. math:: \\rho = \\frac{\\sum_c (R_{cc} - n_c)}{\\sum_c n_c (n_c - 1)},\\quad
              \\rho_c = \\frac{R_{cc} - n_c}{n_c (n_c - 1)},\\quad
              \\bar C_{cc'} = \\frac{R_{cc'}}{\\sqrt{n_c (n_c - 1) n_{c'} (n_{c'} - 1)}}

    (the sums CRO-1 reductions, the rest one IEEE operation per entry: the value and
    the decision are the same on every machine; Python's ``sum`` of floats is
    compensated from Python 3.12 on, so it is not used). Guards:
    ``max rho_c - min rho_c <= COUPLING_MAX_SPREAD`` and the root mean square of
    ``C_cc'``, ``c != c'``, at most ``COUPLING_MAX_OFF * rho``.
    """
    N = X.shape[0]
    K = offsets.shape[0] - 1
    if K < 2 or N == 0 or np.diff(offsets).max(initial=0) == 0:
        return 0.0
    R, counts = coupling_matrix(X, offsets, block_factors, mode)
    valid = np.flatnonzero(counts >= 2)
    if valid.size == 0 or not np.isfinite(R).all():
        return 0.0
    from ..kernels.dispatch import sum as cro_sum

    pairs = (counts * (counts - 1)).astype(np.float64)[valid]
    Rv = R[np.ix_(valid, valid)]
    excess = np.diag(Rv) - counts[valid]
    rho = float(cro_sum(excess, mode, "cpu") / cro_sum(pairs, mode, "cpu"))
    if not rho >= COUPLING_MIN:
        return 0.0
    per_column = excess / pairs
    if float(per_column.max() - per_column.min()) > COUPLING_MAX_SPREAD:
        return 0.0
    if valid.size > 1:
        squares = Rv * Rv / np.multiply.outer(pairs, pairs)
        off = squares[~np.eye(valid.size, dtype=bool)]  # row by row
        if float(np.sqrt(cro_sum(off, mode, "cpu") / off.size)) > COUPLING_MAX_OFF * rho:
            return 0.0
    return min(rho, 1.0)


@njit(cache=True)
def _coupled_setup(F, G, d, sinv_diag, rho, compensated):
    """``(H, lam, Lc, failed)``: ``lam_j = fl(fl((1 - rho) s_jj) + fl(rho / d_j))``,
    ``H[j, q] = fl(G[j, q] / lam_j)``, and the Cholesky factor ``Lc`` of
    ``C_c[r, q] = fl(C[r, q] / rho) - CRO-1 over j of fl(G[j, r] H[j, q])`` (``r >= q``)
    with ``C[r, q] = [r == q] + CRO-1 over j of fl(F[j, r] G[j, q])`` (as
    ``woodbury_factor``); ``failed`` is the failing pivot or -1."""
    K, k = G.shape
    lam = np.empty(K)
    one_minus = 1.0 - rho
    for j in range(K):
        lam[j] = one_minus * sinv_diag[j] + rho / d[j]
    H = np.empty((K, k))
    for j in range(K):
        for q in range(k):
            H[j, q] = G[j, q] / lam[j]
    FT, GT, HT = (np.ascontiguousarray(F.T), np.ascontiguousarray(G.T),
                  np.ascontiguousarray(H.T))
    Cc = np.zeros((k, k))
    for r in range(k):
        for q in range(r + 1):
            c = dot_segment(FT[r], GT[q], compensated)
            if r == q:
                c = c + 1.0
            Cc[r, q] = c / rho - dot_segment(GT[r], HT[q], compensated)
    Lc = np.empty((k, k))
    failed = cholesky_kernel(Cc, compensated, Lc)
    return H, lam, Lc, failed


@njit(cache=True)
def _coupled_solve(factors, factor_ptr, offsets, p_max, H, lam, Lc, r, compensated, out):
    """``out = M^-1 r`` (module docstring) in three steps, each in the stated order:

    1. ``y_j = L_j^-1 r_j`` (forward substitution) into ``Y[c, j]`` (zero past ``p_j``);
    2. for every ``c``: ``t = H^T Y[c]`` (``t_q`` = CRO-1 over j of fl(H[j, q] Y[c, j])),
       ``u = C_c^-1 t`` (``cholesky_solve``), ``Z[c, j] = fl(Y[c, j] / lam_j) +
       CRO-1 over q of fl(H[j, q] u_q)``;
    3. ``out_j = L_j^-T Z[:p_j, j]`` (backward substitution).
    """
    K, k = H.shape
    Hv = unmanaged(H)  # (an argument: the caller holds it)
    Y = np.zeros((p_max, K))
    z = np.empty(p_max)
    for j in range(K):
        o0, p, L = block_factor(factors, factor_ptr, offsets, j)
        if p == 0:
            continue
        forward_substitution(L, np.ascontiguousarray(r[o0:o0 + p]), compensated, z)
        for c in range(p):
            Y[c, j] = z[c]
    HT = np.ascontiguousarray(H.T)
    t = np.empty(k)
    u = np.empty(k)
    Z = np.empty((p_max, K))
    for c in range(p_max):
        for q in range(k):
            t[q] = dot_segment(HT[q], Y[c], compensated)
        cholesky_solve_kernel(Lc, t, compensated, u)
        for j in range(K):
            Z[c, j] = Y[c, j] / lam[j] + dot_segment(Hv[j], u, compensated)
    for j in range(K):
        o0, p, L = block_factor(factors, factor_ptr, offsets, j)
        if p == 0:
            continue
        backward_substitution(L, np.ascontiguousarray(Z[:p, j]), compensated, z)
        for c in range(p):
            out[o0 + c] = z[c]


class CoupledPreconditioner:
    """``r -> M^-1 r`` of the coupled preconditioner at one Sigma (module docstring).

    Parameters
    ----------
    factors, factor_ptr : ndarray
        The block factors, :func:`pack_block_factors`.
    offsets : ndarray (K+1,)
    factor : WoodburyFactor
        Sigma's factor (its ``F``, ``G``, ``d`` and ``mode``).
    sinv_diag : ndarray (K,)
        ``diag(Sigma^-1)``.
    rho : float
        The coupling, ``0 < rho <= 1``.

    Raises
    ------
    ValueError
        ``rho`` outside ``(0, 1]``.
    """

    def __init__(self, factors, factor_ptr, offsets, factor, sinv_diag, rho: float):
        if not 0.0 < rho <= 1.0:
            raise ValueError(f"rho must be in (0, 1], got {rho}")
        self.compensated = factor.mode == "compensated"
        self.factors, self.factor_ptr = factors, factor_ptr
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.p_max = int(np.diff(self.offsets).max(initial=0))
        self.H, self.lam, self.Lc, failed = _coupled_setup(
            np.ascontiguousarray(factor.F), np.ascontiguousarray(factor.G),
            np.ascontiguousarray(factor.d), np.ascontiguousarray(sinv_diag, dtype=np.float64),
            float(rho), self.compensated)
        #: False when ``C_c`` was not numerically positive definite (then use block-Jacobi)
        self.ok = failed < 0

    def __call__(self, r: np.ndarray) -> np.ndarray:
        out = np.empty_like(r)
        _coupled_solve(self.factors, self.factor_ptr, self.offsets, self.p_max, self.H,
                       self.lam, self.Lc, np.ascontiguousarray(r, dtype=np.float64),
                       self.compensated, out)
        return out
