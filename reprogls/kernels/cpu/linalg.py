"""Numba kernels for the linear-algebra layer: SUR matvecs, Woodbury, Cholesky.

Bitwise equal to :mod:`reprogls.kernels.reference.linalg`. The Woodbury solve and the
fused normal operator run on blocks of 32 rows (:mod:`.rowgroups`); ``sur_matvec`` and
``sur_rmatvec`` stream the rows of X in place (:mod:`.streamed`, :mod:`.row_trees`; the
block kernels remain for equations wider than 32 or narrower than ~3 columns);
``gemv`` is ``sur_matvec`` with one equation when rows are short (else the lane loops
along each row, :mod:`.multi`) and ``gemv_t`` is ``A^T B`` with one column
(:mod:`.multi`): the term formulas coincide. Work is split so that no reduction's order
depends on the number of threads: row-parallel kernels give every output element to one
thread; the reductions over rows give every (chunk, lane group) its own accumulators and
merge them afterwards in the CRO-1 lane and chunk trees.
"""

from __future__ import annotations

import numpy as np

from . import rowgroups
from ._cro import (
    CHUNK,
    LANES,
    dot_pair_prefix,
    dot_segment,
    finalize,
    merge,
)
from .jit import njit
from .pages import fresh
from .views import unmanaged

__all__ = [
    "backward_substitution",
    "block_cholesky_solves",
    "block_factor",
    "capacitance_kernel",
    "cholesky_kernel",
    "cholesky_solve_kernel",
    "chunk_tree_columns",
    "forward_substitution",
    "gemv",
    "gemv_t",
    "solved_rmatvecs",
    "sur_matvec",
    "sur_normal_matvec",
    "sur_rmatvec",
    "woodbury_factor",
    "woodbury_solve",
]

#: Rows per parallel task in the row-parallel kernels.
ROW_BLOCK = 64


def n_chunks(n: int) -> int:
    """Number of CRO-1 chunks of ``n`` terms (at least 1 scratch slot)."""
    return max(1, -(-n // CHUNK))


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
            for col in range(PS.shape[1]):  # (a loop: a slice assignment compiles
                #                                 Numba's shape-error formatting, ~6 s)
                PS[pairs, col] = PS[m - 1, col]
                PC[pairs, col] = PC[m - 1, col]
        m = pairs + m % 2
    for col in range(PS.shape[1]):
        out[col] = finalize(PS[0, col], PC[0, col], compensated)


def sur_rmatvec(X, offsets, W, compensated):
    """``g[m]`` = CRO-1 over rows of ``X[i, m] * W[i, eq(m)]`` (validated inputs): the
    rows streamed in place (:mod:`.streamed`) unless equations are so narrow that eight
    columns span more than ``streamed.MAX_SPAN`` of them, then the block kernels."""
    if X.shape[0] and X.shape[1]:
        from .streamed import streamed_rmatvec

        g = streamed_rmatvec(X, offsets, W, compensated)
        if g is not None:
            return g
    return rowgroups.sur_rmatvec(X, offsets, W, compensated)


def sur_matvec(X, offsets, beta, compensated, out=None):
    """``U`` (N, K) of the per-equation dot products (validated inputs), into ``out``
    (C-contiguous (N, K), any contents) when given: along the rows of X in place
    (:mod:`.row_trees`) when no equation has more than 32 regressors, else the block
    kernels."""
    from .streamed import streamed_matvec

    shape = (X.shape[0], offsets.shape[0] - 1)
    if out is None:
        out = fresh(shape)
    if out.size and X.shape[1] and streamed_matvec(X, offsets, beta, compensated, out):
        return out
    return rowgroups.sur_matvec(X, offsets, beta, compensated, out)


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
    """``A^T y`` with one CRO-1 reduction over rows per column (validated inputs): the
    row-streaming ``A^T B`` of :mod:`.multi` with one column."""
    from .multi import rows_transposed_times  # (multi builds on this module)

    return rows_transposed_times(A, y[:, None], compensated)[:, 0]


# --- Cholesky and Woodbury -----------------------------------------------------------


@njit(cache=True)
def cholesky_entry(C, L, i, j, compensated):
    """``L[i, j]`` (``j <= i``) of the fixed-order Cholesky from the finished ``L[i, :j]``
    and ``L[j, :j]`` (see the reference); False when the pivot (``i == j``) is not
    positive and finite. Callers in loops pass :func:`.views.unmanaged` views of ``C``
    and ``L`` (slices then cost no reference counts)."""
    acc = dot_segment(L[i, :j], L[j, :j], compensated)
    if i == j:
        pivot = C[i, i] - acc
        if not 0.0 < pivot < np.inf:
            return False
        L[i, i] = np.sqrt(pivot)
    else:
        L[i, j] = (C[i, j] - acc) / L[j, j]
    return True


@njit(inline="always", cache=True)
def cholesky_pair(C, L, i, i2, j, compensated):
    """The below-diagonal entries ``L[i, j]`` and ``L[i2, j]`` (``j < i``, ``j < i2``,
    ``i != i2``): bitwise two :func:`cholesky_entry` calls, with the two dots in one loop
    (:func:`._cro.dot_pair_prefix`, which shares the loads of ``L[j, :j]``) where their
    ``j`` terms fit in one chunk (else one at a time). Unmanaged views, as for
    :func:`cholesky_entry`."""
    if j > CHUNK:
        cholesky_entry(C, L, i, j, compensated)
        cholesky_entry(C, L, i2, j, compensated)
        return
    a, a2 = dot_pair_prefix(L, i, i2, L[j], j, compensated)
    ljj = L[j, j]
    L[i, j] = (C[i, j] - a) / ljj
    L[i2, j] = (C[i2, j] - a2) / ljj


@njit(cache=True)
def cholesky_kernel(C, compensated, L):
    """Fixed-order Cholesky (see the reference); returns the failing pivot index or -1.

    Column by column: the pivot ``L[j, j]``, then the entries below it in pairs of rows
    (:func:`cholesky_pair`). Every entry is the reference's dot of the same finished
    operands, so the bits are those of the reference's row-by-row order, and the first
    failing pivot is the same (pivot ``i`` depends only on rows ``<= i``); after a
    failure the contents of ``L`` are unspecified. Why columns: along a row each entry
    waits for the one before it (a term of its dot), so the row order ran one dot's
    chain of lane and tree additions at a time; the entries of a column are
    independent. Thirty-fourth session, 2-core Zen 3, one thread, best of 30, plain /
    compensated: order 250 1.46 / 2.51 -> 0.59 / 1.58 ms, order 600 12.5 / 22.7 -> 7.7
    / 16.9 ms (column order one entry at a time: 1.44 / 2.41 and 12.0 / 22.9 ms).
    """
    n = C.shape[0]
    L[:, :] = 0.0
    Cv, Lv = unmanaged(C), unmanaged(L)  # (the caller holds C and L)
    for j in range(n):
        if not cholesky_entry(Cv, Lv, j, j, compensated):
            return j
        i = j + 1
        while i + 1 < n:
            cholesky_pair(Cv, Lv, i, i + 1, j, compensated)
            i += 2
        if i < n:
            cholesky_entry(Cv, Lv, i, j, compensated)
    return -1


@njit(cache=True)
def capacitance_kernel(FT, GT, compensated, C):
    """``C[r, s] = [r == s] + CRO-1 dot(F[:, r], G[:, s])`` for ``r >= s`` (F^T, G^T given)."""
    k = FT.shape[0]
    C[:, :] = 0.0
    FTv, GTv = unmanaged(FT), unmanaged(GT)
    for r in range(k):
        for c in range(r + 1):
            C[r, c] = dot_segment(FTv[r], GTv[c], compensated)
        C[r, r] = C[r, r] + 1.0


def woodbury_solve(R, G, d, L, compensated, out=None):
    """``R Sigma^-1`` row by row (validated inputs), into ``out`` (C-contiguous, the shape
    of ``R``, may be ``R`` itself) when given."""
    return rowgroups.woodbury_solve(R, G, d, L, compensated, out)


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


def sur_normal_matvec(X, offsets, v, G, d, L, compensated):
    """Fused ``X^T [(X v) Sigma^-1]`` (validated inputs), reading X once: with the rows
    in place (:func:`.streamed.streamed_normal_matvec`) where the layout allows, else
    the block kernels (:func:`.rowgroups.normal_matvec`)."""
    if X.shape[0] and X.shape[1]:
        from .streamed import streamed_normal_matvec

        g = streamed_normal_matvec(X, offsets, v, G, d, L, compensated)
        if g is not None:
            return g
    return rowgroups.normal_matvec(X, offsets, v, G, d, L, compensated)


def solved_rmatvecs(X, offsets, Rs, G, d, L, compensated, overwrite=()):
    """``[X^T vec(R Sigma^-1) for R in Rs]`` for one or two (N, K) matrices (validated
    inputs), each bitwise ``sur_rmatvec(X, offsets, woodbury_solve(R))``. ``overwrite[q]``
    True allows writing ``R_q Sigma^-1`` over ``R_q`` (a buffer the caller no longer
    needs: one fresh N x K array less).

    Where the row kernels take the layout, exactly that: ``woodbury_solve`` of each
    right-hand side, then one streamed pass over X for both
    (:func:`.streamed.streamed_rmatvec` with ``W2``). Else the block kernels' single pass
    over X (:func:`.rowgroups.solved_rmatvecs`), which forms no N x K matrix. (A streamed
    single pass -- per 32 rows the Woodbury block, then the weighted lane steps --
    measured 21.9 / 38.1 ms for one / two right-hand sides at M against 26.9 / 54.3 ms
    for one streamed pass per right-hand side on the Zen 3 box, and 40.3-43.3 against
    49.9-51.0 ms for two on the Zen 4 box in the tenth session. It is not used because
    of its compile time: even with the Woodbury block behind its entry point
    (:mod:`.woodbury_rows`) it compiles the weighted lane steps in one more top-level
    kernel, and the demo's ``sur_rmatvec`` warm-up task went from 2.8-3.6 to 10.7 s.)"""
    if not 1 <= len(Rs) <= 2:
        raise ValueError(f"solved_rmatvecs takes one or two right-hand sides, got {len(Rs)}")
    if X.shape[0] and X.shape[1]:
        from .streamed import MAX_SPAN, streamed_rmatvec, weight_plan

        if weight_plan(offsets).most <= MAX_SPAN:
            consumable = tuple(overwrite) + (False,) * len(Rs)
            solved = [rowgroups.woodbury_solve(R, G, d, L, compensated,
                                               out=R if consumable[q] else None)
                      for q, R in enumerate(Rs)]
            if len(Rs) == 1:
                return [streamed_rmatvec(X, offsets, solved[0], compensated)]
            return streamed_rmatvec(X, offsets, solved[0], compensated, solved[1])
    return rowgroups.solved_rmatvecs(X, offsets, Rs, G, d, L, compensated)


@njit(cache=True)
def forward_substitution(L, t, compensated, z):
    """``z = L^-1 t``: ``z[i] = (t[i] - CRO-1 over l < i of fl(L[i, l] z[l])) / L[i, i]``
    (the forward half of ``reference.cholesky_solve``)."""
    Lv, zv = unmanaged(L), unmanaged(z)
    for i in range(L.shape[0]):
        z[i] = (t[i] - dot_segment(Lv[i, :i], zv[:i], compensated)) / L[i, i]


@njit(cache=True)
def backward_substitution(L, z, compensated, u):
    """``u = L^-T z``: ``u[i] = (z[i] - CRO-1 over l > i of fl(L[l, i] u[l])) / L[i, i]``,
    ``i = n-1 .. 0`` (the backward half of ``reference.cholesky_solve``)."""
    n = L.shape[0]
    LT = np.ascontiguousarray(L.T)  # (a local: its rows stay managed, see views.py)
    uv = unmanaged(u)
    for i in range(n - 1, -1, -1):
        u[i] = (z[i] - dot_segment(LT[i, i + 1:], uv[i + 1:], compensated)) / L[i, i]


@njit(cache=True)
def cholesky_solve_kernel(L, t, compensated, out):
    """Solve ``L L^T u = t`` for one vector in the fixed order of ``reference.cholesky_solve``
    (:func:`forward_substitution`, then :func:`backward_substitution`)."""
    z = np.empty(L.shape[0])
    forward_substitution(L, t, compensated, z)
    backward_substitution(L, z, compensated, out)


@njit(cache=True)
def block_factor(factors, factor_ptr, offsets, j):
    """``(o_j, p_j, L_j)`` of block ``j`` of packed block factors: ``L_j`` is
    ``factors[factor_ptr[j]:factor_ptr[j + 1]]`` read as a C-ordered ``p_j x p_j`` matrix
    (``reprogls.gls.precondition.pack_block_factors``), ``o_j = offsets[j]``."""
    o0 = offsets[j]
    p = offsets[j + 1] - o0
    return o0, p, factors[factor_ptr[j]:factor_ptr[j + 1]].reshape((p, p))


@njit(cache=True)
def block_cholesky_solves(factors, factor_ptr, offsets, r, scale, compensated, out):
    """The block-Jacobi step ``out[o_j:o_{j+1}] = cholesky_solve(L_j, r[o_j:o_{j+1}]) /
    scale[j]`` for every block ``j`` with columns (``offsets`` as in the SUR layout),
    each solve :func:`cholesky_solve_kernel` and each quotient one IEEE division: the
    bits of the per-block calls from Python, in one call. ``L_j``: :func:`block_factor`."""
    for j in range(offsets.shape[0] - 1):
        o0, p, L = block_factor(factors, factor_ptr, offsets, j)
        if p == 0:
            continue
        u = np.empty(p)
        cholesky_solve_kernel(L, np.ascontiguousarray(r[o0:o0 + p]), compensated, u)
        for m in range(p):
            out[o0 + m] = u[m] / scale[j]
