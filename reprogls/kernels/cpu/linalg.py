"""Numba kernels for the linear-algebra layer: SUR matvecs, Woodbury, Cholesky.

Bitwise equal to :mod:`reprogls.kernels.reference.linalg`. ``gemv`` is ``sur_matvec``
with one equation and ``gemv_t`` is ``sur_rmatvec`` with one equation: the term formulas
coincide, so one kernel serves both. Work is split so that no reduction's order depends
on the number of threads: row-parallel kernels give every output element to one thread;
the reductions over rows give every (chunk, column block) one slot and merge the chunk
partials afterwards in the CRO-1 chunk tree.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import blocked
from ._cro import (
    CHUNK,
    LANES,
    dot_segment,
    finalize,
    merge,
    segment_scratch,
)

__all__ = [
    "capacitance_kernel",
    "cholesky_kernel",
    "cholesky_solve_kernel",
    "chunk_tree_columns",
    "gemv",
    "gemv_t",
    "sur_matvec",
    "sur_normal_matvec",
    "sur_rmatvec",
    "woodbury_factor",
    "woodbury_solve",
]

#: Rows per parallel task in the row-parallel kernels.
ROW_BLOCK = 64
#: Columns per parallel task in the reductions over rows (32 lanes x 256 columns x 2).
COL_BLOCK = 256
#: Columns transposed at a time by the blocked SUR dots (equations wider than
#: WIDE_EQUATION use the per-row lane loops instead).
GROUP_COLUMNS = 512
WIDE_EQUATION = 4096


def equation_groups(offsets: np.ndarray) -> np.ndarray:
    """Consecutive equations packed into groups of at most GROUP_COLUMNS columns.

    Returns an (n_groups, 2) int64 array of ``[j_start, j_end)``; an equation wider than
    the limit forms a group of its own.
    """
    groups, start, K = [], 0, offsets.shape[0] - 1
    for j in range(K):
        if j > start and offsets[j + 1] - offsets[start] > GROUP_COLUMNS:
            groups.append((start, j))
            start = j
    if K:
        groups.append((start, K))
    return np.array(groups, dtype=np.int64).reshape(-1, 2)


def n_chunks(n: int) -> int:
    """Number of CRO-1 chunks of ``n`` terms (at least 1 scratch slot)."""
    return max(1, -(-n // CHUNK))


@njit(parallel=True, cache=True)
def sur_matvec_kernel(X, offsets, beta, groups, compensated, U):
    """``U[i, j]`` = CRO-1 dot of ``X[i, o_j:o_j+1]`` and ``beta[o_j:o_j+1]``.

    Blocks of 32 rows; per group of equations the columns are transposed once and every
    dot runs across the 32 rows at a time. Equations wider than WIDE_EQUATION run row by
    row with the lane loops instead.
    """
    N = X.shape[0]
    widest = 0
    for g in range(groups.shape[0]):
        widest = max(widest, offsets[groups[g, 1]] - offsets[groups[g, 0]])
    for blk in prange((N + blocked.BLOCK - 1) // blocked.BLOCK):
        i0 = blk * blocked.BLOCK
        nb = min(blocked.BLOCK, N - i0)
        XT = np.empty((min(widest, WIDE_EQUATION), blocked.BLOCK))
        work = blocked.scratch(WIDE_EQUATION)
        out = np.empty(blocked.BLOCK)
        s, comp, ps, pc = segment_scratch(widest)
        for g in range(groups.shape[0]):
            j0, j1 = groups[g, 0], groups[g, 1]
            c0, c1 = offsets[j0], offsets[j1]
            if c1 - c0 > WIDE_EQUATION:  # one very wide equation: per-row lane loops
                for i in range(i0, i0 + nb):
                    U[i, j0] = dot_segment(X[i, c0:c1], beta[c0:c1], compensated, s, comp,
                                           ps, pc)
                continue
            blocked.transpose_rows(X, i0, nb, c0, c1, XT)
            for j in range(j0, j1):
                o0 = offsets[j]
                blocked.dot_rows(XT, o0 - c0, offsets[j + 1] - o0, beta[o0:], nb,
                                 compensated, work[0], work[1], work[2], work[3], out)
                for b in range(nb):
                    U[i0 + b, j] = out[b]


@njit(cache=True)
def chunk_tree_columns(PS, PC, compensated, out):
    """CRO-1 chunk tree down axis 0 of the partials (n_chunks, P), then finalize."""
    m = PS.shape[0]
    while m > 1:
        pairs = m // 2
        for i in range(pairs):
            for col in range(PS.shape[1]):
                PS[i, col], PC[i, col] = merge(PS[2 * i, col], PC[2 * i, col],
                                               PS[2 * i + 1, col], PC[2 * i + 1, col],
                                               compensated)
        if m % 2:
            for col in range(PS.shape[1]):  # (a loop: see blocked.copy_rows)
                PS[pairs, col] = PS[m - 1, col]
                PC[pairs, col] = PC[m - 1, col]
        m = pairs + m % 2
    for col in range(PS.shape[1]):
        out[col] = finalize(PS[0, col], PC[0, col], compensated)


@njit(parallel=True, cache=True)
def _sur_rmatvec_partials(X, eq, W, compensated, PS, PC):
    """Chunk partials of ``g[m]``: lane ``l`` of chunk ``c`` sums rows ``c*CHUNK + l + 32 t``.

    Tasks are (chunk, column block); inside, blocks of 32 rows are one row per lane, so
    the lane accumulators ``ST[m, lane]`` update 4 lanes per AVX instruction.
    """
    N, P = X.shape
    K = W.shape[1]
    n_cb = (P + COL_BLOCK - 1) // COL_BLOCK
    for task in prange(PS.shape[0] * n_cb):
        c = task // n_cb
        m0 = (task % n_cb) * COL_BLOCK
        m1 = min(P, m0 + COL_BLOCK)
        width = m1 - m0
        ST = np.full((width, LANES), -0.0)
        ET = np.full((width, LANES), -0.0)
        XT = np.empty((width, LANES))
        WT = np.empty((K, LANES))
        j0, j1 = eq[m0], eq[m1 - 1] + 1
        eq_block = eq[m0:m1] - j0
        for i0 in range(c * CHUNK, min(N, (c + 1) * CHUNK), LANES):
            nb = min(LANES, N - i0)
            blocked.transpose_rows(X, i0, nb, m0, m1, XT)
            blocked.transpose_rows(W, i0, nb, j0, j1, WT)
            blocked.accumulate_lanes(XT, WT, eq_block, blocked.runtime_int(0), width, nb,
                                     compensated, ST, ET)
        blocked.lane_tree_columns_t(ST, ET, width, compensated, PS[c, m0:m1], PC[c, m0:m1])


def sur_rmatvec(X, offsets, W, compensated):
    """``g[m]`` = CRO-1 over rows of ``X[i, m] * W[i, eq(m)]`` (validated inputs)."""
    N, P = X.shape
    eq = np.repeat(np.arange(offsets.shape[0] - 1), np.diff(offsets))
    g = np.zeros(P)
    if N == 0 or P == 0:
        return g
    PS = np.empty((n_chunks(N), P))
    PC = np.empty((n_chunks(N), P))
    _sur_rmatvec_partials(X, eq, W, compensated, PS, PC)
    chunk_tree_columns(PS, PC, compensated, g)
    return g


def sur_matvec(X, offsets, beta, compensated):
    """``U`` (N, K) of the per-equation dot products (validated inputs)."""
    U = np.empty((X.shape[0], offsets.shape[0] - 1))
    if U.size:
        sur_matvec_kernel(X, offsets, beta, equation_groups(offsets), compensated, U)
    return U


def gemv(A, x, compensated):
    """``A x`` with one CRO-1 dot per row (validated inputs)."""
    m, n = A.shape
    if m < 8 and n > 4 * CHUNK:  # few long rows: parallelise inside each row instead
        from .reductions import cro_dot

        return np.array([cro_dot(A[i], x, compensated) for i in range(m)])
    if n > LANES:  # rows long enough for the lane loops to vectorise along the row
        from .multi import rows_times  # (multi builds on this module)

        return rows_times(A, x[None, :], compensated)[:, 0]
    return sur_matvec(A, np.array([0, n], dtype=np.int64), x, compensated)[:, 0]


def gemv_t(A, y, compensated):
    """``A^T y`` with one CRO-1 reduction over rows per column (validated inputs)."""
    return sur_rmatvec(A, np.array([0, A.shape[1]], dtype=np.int64), y[:, None], compensated)


# --- Cholesky and Woodbury -----------------------------------------------------------


@njit(cache=True)
def cholesky_entry(C, L, i, j, compensated, s, comp, ps, pc):
    """``L[i, j]`` (``j <= i``) of the fixed-order Cholesky from the finished ``L[i, :j]``
    and ``L[j, :j]`` (see the reference); False when the pivot (``i == j``) is not
    positive and finite. ``s, comp, ps, pc``: :func:`segment_scratch` of ``n``."""
    acc = dot_segment(L[i, :j], L[j, :j], compensated, s, comp, ps, pc)
    if i == j:
        pivot = C[i, i] - acc
        if not 0.0 < pivot < np.inf:
            return False
        L[i, i] = np.sqrt(pivot)
    else:
        L[i, j] = (C[i, j] - acc) / L[j, j]
    return True


@njit(cache=True)
def cholesky_kernel(C, compensated, L):
    """Fixed-order Cholesky (see the reference); returns the failing pivot index or -1."""
    n = C.shape[0]
    s, comp, ps, pc = segment_scratch(n)
    L[:, :] = 0.0
    for i in range(n):
        for j in range(i + 1):
            if not cholesky_entry(C, L, i, j, compensated, s, comp, ps, pc):
                return i
    return -1


@njit(cache=True)
def capacitance_kernel(FT, GT, compensated, C):
    """``C[r, s] = [r == s] + CRO-1 dot(F[:, r], G[:, s])`` for ``r >= s`` (F^T, G^T given)."""
    k, K = FT.shape
    s, comp, ps, pc = segment_scratch(K)
    C[:, :] = 0.0
    for r in range(k):
        for c in range(r + 1):
            C[r, c] = dot_segment(FT[r], GT[c], compensated, s, comp, ps, pc)
        C[r, r] = C[r, r] + 1.0


@njit(parallel=True, cache=True)
def woodbury_solve_kernel(R, G, d, L, compensated, out):
    """``out = R Sigma^-1`` in blocks of 32 rows (see :func:`blocked.woodbury_block`)."""
    N, K = R.shape
    k = G.shape[1]
    plan = blocked.woodbury_plan(G, d, L)
    for blk in prange((N + blocked.BLOCK - 1) // blocked.BLOCK):
        i0 = blk * blocked.BLOCK
        nb = min(blocked.BLOCK, N - i0)
        work = blocked.scratch(max(K, k))
        wscratch = blocked.woodbury_scratch(k)
        RT = np.empty((K, blocked.BLOCK))
        OT = np.empty((K, blocked.BLOCK))
        blocked.transpose_rows(R, i0, nb, blocked.runtime_int(0), K, RT)
        blocked.woodbury_block(RT, plan, nb, compensated, work, wscratch, OT)
        blocked.untranspose_rows(OT, i0, nb, out)


def woodbury_solve(R, G, d, L, compensated):
    """``R Sigma^-1`` row by row (validated inputs)."""
    out = np.empty_like(R)
    if R.size:
        woodbury_solve_kernel(R, G, d, L, compensated, out)
    return out


def woodbury_factor(F, d, compensated):
    """``(G, L)``: ``G = F / d`` and the Cholesky factor of ``I + F^T G``.

    Returns ``(G, L, failed_pivot)``; ``failed_pivot`` is -1 on success.
    """
    with np.errstate(over="ignore"):  # an overflow shows up as a non-finite pivot
        G = F / d[:, None]
    C = np.empty((F.shape[1], F.shape[1]))
    capacitance_kernel(np.ascontiguousarray(F.T), np.ascontiguousarray(G.T), compensated, C)
    L = np.empty_like(C)
    failed = cholesky_kernel(C, compensated, L)
    return G, L, failed, C


# --- Fused normal operator -----------------------------------------------------------


@njit(parallel=True, cache=True)
def _normal_partials(X, offsets, eq, v, G, d, L, compensated, PS, PC):
    """Chunk partials of ``X^T [(X v) Sigma^-1]``, reading each row of X once.

    One task per chunk. For every block of 32 rows (one row per CRO-1 lane) the block is
    transposed once; then ``U`` (the K per-equation dots), ``W = U Sigma^-1`` and the lane
    accumulation of ``X[i, m] * W[i, eq(m)]`` all run on the transposed block, exactly as
    ``sur_rmatvec(X, woodbury_solve(sur_matvec(X, v)))``.
    """
    N, P = X.shape
    K = offsets.shape[0] - 1
    k = G.shape[1]
    plan = blocked.woodbury_plan(G, d, L)
    zero = blocked.runtime_int(0)
    widest = 0
    for j in range(K):
        widest = max(widest, offsets[j + 1] - offsets[j])
    for c in prange(PS.shape[0]):
        work = blocked.scratch(max(widest, K, k))
        wscratch = blocked.woodbury_scratch(k)
        XT = np.empty((P, LANES))
        UT = np.empty((K, LANES))
        WT = np.empty((K, LANES))
        ST = np.full((P, LANES), -0.0)
        ET = np.full((P, LANES), -0.0)
        for i0 in range(c * CHUNK, min(N, (c + 1) * CHUNK), LANES):
            nb = min(LANES, N - i0)
            blocked.transpose_rows(X, i0, nb, zero, P, XT)
            blocked.sur_dots_block(XT, offsets, v, nb, compensated, work, UT)
            blocked.woodbury_block(UT, plan, nb, compensated, work, wscratch, WT)
            blocked.accumulate_lanes(XT, WT, eq, zero, P, nb, compensated, ST, ET)
        blocked.lane_tree_columns_t(ST, ET, P, compensated, PS[c], PC[c])


def sur_normal_matvec(X, offsets, v, G, d, L, compensated):
    """Fused ``X^T [(X v) Sigma^-1]`` (validated inputs)."""
    N, P = X.shape
    g = np.zeros(P)
    if N == 0 or P == 0:
        return g
    eq = np.repeat(np.arange(offsets.shape[0] - 1), np.diff(offsets))
    PS = np.empty((n_chunks(N), P))
    PC = np.empty((n_chunks(N), P))
    _normal_partials(X, offsets, eq, v, G, d, L, compensated, PS, PC)
    chunk_tree_columns(PS, PC, compensated, g)
    return g


@njit(cache=True)
def cholesky_solve_kernel(L, t, compensated, out):
    """Solve ``L L^T u = t`` for one vector in the fixed order of ``reference.cholesky_solve``."""
    n = L.shape[0]
    LT = np.ascontiguousarray(L.T)
    s, comp, ps, pc = segment_scratch(n)
    z = np.empty(n)
    for i in range(n):
        z[i] = (t[i] - dot_segment(L[i, :i], z[:i], compensated, s, comp, ps, pc)) / L[i, i]
    for i in range(n - 1, -1, -1):
        out[i] = (z[i] - dot_segment(LT[i, i + 1:], out[i + 1:], compensated, s, comp, ps,
                                     pc)) / L[i, i]
