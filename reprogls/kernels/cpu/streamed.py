"""``sur_rmatvec`` streaming the rows of X in place, without the block gather.

``g[m]`` is the CRO-1 reduction over rows ``i`` of ``fl(X[i, m] * W[i, eq(m)])``: lane
``l`` of chunk ``c`` sums rows ``c*8192 + l + 32 t`` in order, then the lane tree and the
chunk tree (:func:`.rowgroups.lane_trees`, :func:`.linalg.chunk_tree_columns`). This is
``A^T B`` of :mod:`.multi` with one right-hand side whose value depends on the column's
equation, so it runs the same way: a task is (chunk, group of 8 lanes, column tile); it
reads its rows in place, four consecutive terms of a lane (rows ``i + 32 r``, ``r < 4``)
at a time, and steps the lane's accumulators -- contiguous over the tile's columns, in
vector registers eight columns at a time (:func:`.simd.weighted_lane_axpy`), and small
enough for L2.

The per-column weight ``W[i, eq(m)]`` is built in registers from a plan made once per
layout (:class:`WeightPlan`): the eight columns of a vector belong to at most ``span``
equations (2 or 4), so the weights are ``span`` broadcasts and ``span - 1`` selects.
Layouts with more than ``MAX_SPAN`` equations in a vector (equations narrower than about
3 columns) keep the block kernels of
:mod:`.rowgroups`.

Why: the block kernels transpose 32 rows into a (P, 32) block first; at P = 2000 that
block is 512 KiB, the whole L2 of the Zen 3 box, and the transpose alone ran at ~27 GB/s
against ~57 GB/s for BLAS ``ddot`` (2026-12-03). Streaming the rows as ``gemv_t`` does
needs no transpose. The terms and their order are the reference's, so the bits are those
of :mod:`reprogls.kernels.reference.linalg` (the oracle tests run both paths).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numba import literally

from ..reference.linalg import equation_of_column
from ._cro import CHUNK, LANES, lane_step
from .blocked import runtime_int
from .fused_rows import LANES_PER_GROUP, dots8_with_steps
from .jit import njit
from .linalg import n_chunks
from .row_trees import MAX_ROW_TERMS, row_dots
from .rowgroups import (
    BLOCK,
    GROUP,
    N_GROUPS,
    ROWS,
    balanced_tasks,
    block_call_arrays,
    block_scratch,
    copy_lane_block,
    finish_lanes,
    lane_accumulators,
    lanes_per_task,
    tile_task,
)
from .simd import FUSED_INTERLEAVED, weighted_lane_axpy
from .tasks import run_tasks, schedule_bins, threads
from .views import unmanaged
from .woodbury_rows import call_woodbury_block

__all__ = ["MAX_SPAN", "WeightPlan", "streamed_matvec", "streamed_normal_matvec",
           "streamed_rmatvec", "weight_plan"]

#: Most equations among the eight columns of one vector for the streamed kernel
#: (``span`` broadcasts and ``span - 1`` selects per vector and row).
MAX_SPAN = 4
#: Columns per task (half with two weight matrices): the lane accumulators of one task
#: are 2 x 8 x COLUMN_TILE doubles, 1 MiB. (2048, 256 KiB, kept them in a Zen 3's L2;
#: on the Zen 4 box wider tiles read longer runs of each row and were faster although
#: the accumulators then live in L2 and L3. Eleventh session, compensated, medians of
#: four alternating rounds, COLUMN_TILE 2048 / 4096 / 8192 / 16384: two weight matrices
#: at N = 20000, P = 2000 28.0 / 21.8 / 21.6 / -- ms; at N = 5000, P = 10000 49.4 /
#: 39.1 / 40.7 / 36.5 ms, one weight matrix 27.6 / 25.4 / 24.6 / 26.2 ms.)
COLUMN_TILE = 8192


@dataclass(frozen=True)
class WeightPlan:
    """Which equation's weight each column takes, by vectors of eight columns.

    Attributes
    ----------
    most : int
        Most distinct equations among the columns ``8 v .. 8 v + 7`` of any vector ``v``.
    span : int
        Equations listed per vector: ``most`` rounded up to 2 or 4 when at most
        :data:`MAX_SPAN` (so that only two variants of the lane-step intrinsic per mode
        are compiled), else ``most``.
    eqv : ndarray of int64 (n_vectors * span,)
        ``eqv[v * span + q]``: the ``q``-th equation of vector ``v`` (repeats the last
        one where the vector has fewer).
    pick : ndarray of int64 (8 * n_vectors,)
        ``pick[c]``: column ``c``'s equation is ``eqv[(c // 8) * span + pick[c]]``
        (0 past ``P``).
    eq_of_column : ndarray of int64 (P,)
        ``eq(c)`` itself, for the columns after the last whole vector of a tile.
    """

    most: int
    span: int
    eqv: np.ndarray
    pick: np.ndarray
    eq_of_column: np.ndarray


def weight_plan(offsets: np.ndarray) -> WeightPlan:
    """The :class:`WeightPlan` of a SUR layout (cached per layout)."""
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    return _cached_weight_plan(offsets.tobytes())


@functools.lru_cache(maxsize=16)
def _cached_weight_plan(key: bytes) -> WeightPlan:
    offsets = np.frombuffer(key, dtype=np.int64)
    eq_of_column = equation_of_column(offsets)
    P = eq_of_column.shape[0]
    n_vectors = -(-P // 8)
    padded = np.empty(8 * n_vectors, dtype=np.int64)
    padded[:P] = eq_of_column
    padded[P:] = eq_of_column[-1] if P else 0
    by_vector = padded.reshape(n_vectors, 8)
    # columns of one equation are consecutive, so a vector's distinct equations are
    # its runs: pick = index of the run
    new_run = np.concatenate([np.zeros((n_vectors, 1), dtype=np.int64),
                              (np.diff(by_vector, axis=1) != 0).astype(np.int64)], axis=1)
    pick = np.cumsum(new_run, axis=1)
    most = int(pick.max(initial=0)) + 1
    span = 2 if most <= 2 else 4 if most <= MAX_SPAN else most
    eqv = np.empty((n_vectors, span), dtype=np.int64)
    rows = np.arange(n_vectors)
    for q in range(span):
        # the first column of run q (or the vector's last run where there are fewer)
        first = np.argmax(pick >= np.minimum(q, pick[:, -1:]), axis=1)
        eqv[:, q] = by_vector[rows, first]
    return WeightPlan(most=most, span=span, eqv=eqv.ravel(), pick=pick.ravel(),
                      eq_of_column=eq_of_column)


@njit(cache=True)
def _vector_steps(S, E, X, i, m0, body, W, w0, w_step, w_stride, eqv, pick, span, steps,
                  compensated):
    """:func:`.simd.weighted_lane_axpy` over the columns ``m0 .. m0 + body - 1`` (both
    multiples of 8) for ``steps`` rows (a constant at every call site, made literal by
    ``numba.literally``: four, or one for a short last block's rows), with the literal
    ``span`` (2 or 4) and ``compensated``."""
    literally(steps)
    if compensated:
        if span == 2:
            weighted_lane_axpy(S, E, X, i, m0, body, W, w0, w_step, w_stride, eqv, pick, 2,
                               steps, True)
        else:
            weighted_lane_axpy(S, E, X, i, m0, body, W, w0, w_step, w_stride, eqv, pick, 4,
                               steps, True)
    elif span == 2:
        weighted_lane_axpy(S, E, X, i, m0, body, W, w0, w_step, w_stride, eqv, pick, 2,
                           steps, False)
    else:
        weighted_lane_axpy(S, E, X, i, m0, body, W, w0, w_step, w_stride, eqv, pick, 4,
                           steps, False)


@njit(cache=True)
def _lane_steps(S, E, X, i, m0, width, W, w0, w_step, w_stride, eqv, pick, eq_of_column,
                span, steps, compensated):
    """Lane steps of one lane for ``steps`` rows ``i, i + 32, ...`` (at most 4) of the
    columns ``m0 .. m0 + width``, row ``i + 32 r`` weighted by the flat
    ``W[w0 + r w_step + eq(c) w_stride]``: whole vectors of 8 columns by
    :func:`.simd.weighted_lane_axpy` (four rows in one pass, or a short last block's rows
    one pass each, in order), the other columns here, in the same order. (Until the
    fourteenth session a short block took this scalar loop for every column.)"""
    body = width - width % 8
    if body and steps == BLOCK:
        _vector_steps(S, E, X, i, m0, body, W, w0, w_step, w_stride, eqv, pick, span, BLOCK,
                      compensated)
    elif body:
        for r in range(steps):
            _vector_steps(S, E, X, i + LANES * r, m0, body, W, w0 + r * w_step, w_step,
                          w_stride, eqv, pick, span, 1, compensated)
    for m in range(body, width):
        j = eq_of_column[m0 + m]
        for r in range(steps):
            lane_step(S, E, m, X[i + LANES * r, m0 + m] * W[w0 + r * w_step + j * w_stride],
                      compensated)


@njit(nogil=True, cache=True)
def _streamed_lanes(t0, t1, X, W1, W2, n_out, plan_eqv, pick, eq_of_column, span, compensated,
                    tile, group, order, starts, LS, LC):
    """Lane accumulators ``LS[q, c, l, m]`` (compensations ``LC``) of ``X^T W_q`` over
    rows, ``q < n_out`` (1 or 2; ``W_2`` ignored for 1); thread ``t`` (``t0 <= t < t1``)
    runs the tasks ``order[starts[t]:starts[t + 1]]`` of (chunk, group of ``group``
    lanes, column tile) (:func:`.rowgroups.lanes_per_task`).
    With two weight matrices each group of four rows is stepped for ``W_1``, then at once
    for ``W_2`` while the rows are in cache: X is read from memory once."""
    N, P = X.shape
    K = W1.shape[1]
    n_tiles = (P + tile - 1) // tile
    Xv = unmanaged(X)
    W1v, W2v = unmanaged(W1.reshape(N * K)), unmanaged(W2.reshape(N * K))
    for t in range(t0, t1):
        for task in order[starts[t]:starts[t + 1]]:
            c, g, m0, width = tile_task(task, n_tiles, tile, P, LANES // group)
            S = np.full((n_out, group, width), -0.0)
            E = np.full((n_out, group, width), -0.0)
            stop = min(N, (c + 1) * CHUNK)
            for i0 in range(c * CHUNK + g * group, stop, BLOCK * LANES):
                for b in range(min(group, stop - i0)):
                    i = i0 + b
                    steps = min(BLOCK, (stop - 1 - i) // LANES + 1)
                    for q in range(n_out):
                        _lane_steps(unmanaged(S[q, b]), unmanaged(E[q, b]), Xv, i, m0, width,
                                    W1v if q == 0 else W2v, i * K, LANES * K, 1, plan_eqv,
                                    pick, eq_of_column, span, steps, compensated)
            for q in range(n_out):
                copy_lane_block(LS[q, c], LC[q, c], g * group, m0, S[q], E[q])


def streamed_rmatvec(X, offsets, W, compensated, W2=None):
    """``g[m]`` = CRO-1 over rows of ``fl(X[i, m] * W[i, eq(m)])`` (validated inputs,
    ``N, P > 0``), or None when a vector's equations exceed :data:`MAX_SPAN`. With
    ``W2`` (the shape of ``W``), ``[g, g2]`` from one pass over X."""
    plan = weight_plan(offsets)
    if plan.most > MAX_SPAN:
        return None
    N, P = X.shape
    n_out, n_ch = (1 if W2 is None else 2), n_chunks(N)
    tile = COLUMN_TILE // n_out
    LS, LC = lane_accumulators((n_out, n_ch, LANES, P))
    group = lanes_per_task(threads(), n_out * min(P, tile))
    order, starts = balanced_tasks(N, schedule_bins(), P, tile, group)
    run_tasks(_streamed_lanes, starts.shape[0] - 1, X, W, W if W2 is None else W2, n_out,
              plan.eqv, plan.pick, plan.eq_of_column, plan.span, compensated, tile, group,
              order, starts, LS, LC)
    gs = [finish_lanes(LS[q], LC[q], compensated) for q in range(n_out)]
    return gs[0] if W2 is None else gs


@njit(nogil=True, cache=True)
def _row_dots_tasks(i0, i1, X, offsets, beta, compensated, U):
    """Rows ``i0 .. i1 - 1`` of ``U = X v`` per equation (:func:`.row_trees.row_dots`).
    (:func:`.row_trees.row_dots8`, the fused operator's, writes eight rows of one
    equation as a vector; transposed into the rows of U it was slower here: 42.4 ms for
    N = 25000, K = 200, p = 10 on one thread with 8 x 8 vector transposes -- U's rows
    are not 64-byte aligned, so each vector store splits across two lines -- and 32.7 ms
    with scalar stores, against 29.6 ms for this.)"""
    if compensated:
        row_dots(X, offsets, beta, i0, i1, U, i0, True)
    else:
        row_dots(X, offsets, beta, i0, i1, U, i0, False)


def streamed_matvec(X, offsets, beta, compensated, out):
    """``out[i, j]`` = CRO-1 dot of ``X[i, o_j:o_{j+1}]`` with ``beta[o_j:o_{j+1}]``
    (validated inputs; ``out`` C-contiguous (N, K), any contents), reading the rows of X
    in place (:mod:`.row_trees`); False (nothing written) when an equation has more than
    :data:`.row_trees.MAX_ROW_TERMS` regressors. Rows are split among the threads; each
    entry is one thread's, so the bits do not depend on the thread count."""
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if np.diff(offsets).max(initial=0) > MAX_ROW_TERMS:
        return False
    run_tasks(_row_dots_tasks, X.shape[0], X, offsets, np.ascontiguousarray(beta),
              compensated, out)
    return True


@njit(cache=True)
def _dots_and_steps(X, offsets, v, first, n_rows, U, u0, SA, EA, W, prev, b0, eqv, pick,
                    span, compensated):
    """:func:`.fused_rows.dots8_with_steps` with the literal ``span`` (2 or 4) and
    ``compensated``."""
    if compensated:
        if span == 2:
            dots8_with_steps(X, offsets, v, first, n_rows, U, u0, SA, EA, W, prev, b0, eqv,
                             pick, 2, True)
        else:
            dots8_with_steps(X, offsets, v, first, n_rows, U, u0, SA, EA, W, prev, b0, eqv,
                             pick, 4, True)
    elif span == 2:
        dots8_with_steps(X, offsets, v, first, n_rows, U, u0, SA, EA, W, prev, b0, eqv, pick,
                         2, False)
    else:
        dots8_with_steps(X, offsets, v, first, n_rows, U, u0, SA, EA, W, prev, b0, eqv, pick,
                         4, False)


@njit(cache=True)
def _block_lane_steps(SA, EA, X, first, stop, W, eqv, pick, eq_of_column, span,
                      compensated):
    """Every lane step of the block of rows from ``first`` (before ``stop``): lane ``b``
    over rows ``first + b + 32 r`` and all columns, weighted by the block's ``W``."""
    P = X.shape[1]
    for b in range(min(GROUP, stop - first)):
        i = first + b
        steps = min(BLOCK, (stop - 1 - i) // LANES + 1)
        _lane_steps(unmanaged(SA[b]), unmanaged(EA[b]), X, i, 0, P, W, b, GROUP, ROWS,
                    eqv, pick, eq_of_column, span, steps, compensated)


@njit(cache=True)
def _interleaved_blocks(Xv, offsets, v, eqv, pick, eq_of_column, span, block_fn, GT, L, LT,
                        DE, compensated, begin, stop, SA, EA, U, W, S, E, T, Z, UQ, acc):
    """The blocks of rows ``begin, begin + 128, ... < stop`` with each block's lane steps
    during the next block's dots, lanes ``2 s, 2 s + 1`` with row group ``s``
    (:func:`.fused_rows.dots8_with_steps`), and the last block's after the loop."""
    P = Xv.shape[1]
    Wv = unmanaged(W)  # (W itself stays alive: the last block's steps read it)
    body = P - P % 8
    prev = -1  # the previous block's first row: its lanes are stepped during this block
    for i0 in range(begin, stop, BLOCK * LANES):
        for s in range(BLOCK):
            first = i0 + s * LANES
            nb = min(GROUP, stop - first)
            b0 = LANES_PER_GROUP * s
            if nb > 0:  # block rows 8 s + b of every equation: U[j * 32 + 8 s + b]
                _dots_and_steps(Xv, offsets, v, first, nb, U, s * GROUP, SA, EA, Wv, prev, b0,
                                eqv, pick, span, compensated)
                lo, hi = body, P  # the columns after the last whole vector
            else:
                lo, hi = 0, P
            if prev >= 0 and lo < hi:  # a previous block is never short: four steps
                for b in range(b0, b0 + LANES_PER_GROUP):
                    _lane_steps(unmanaged(SA[b, lo:]), unmanaged(EA[b, lo:]), Xv, prev + b,
                                lo, hi - lo, Wv, b, GROUP, ROWS, eqv, pick, eq_of_column,
                                span, BLOCK, compensated)
        call_woodbury_block(block_fn, U, GT, L, LT, DE, compensated, S, E, T, Z, UQ, acc, W)
        prev = i0
    if prev >= 0:  # the last block
        _block_lane_steps(SA, EA, Xv, prev, stop, W, eqv, pick, eq_of_column, span,
                          compensated)


@njit(cache=True)
def _normal_task(X, offsets, v, eqv, pick, eq_of_column, span, block_fn, GT, L, LT, DE,
                 compensated, task, LS, LC):
    """Chunk ``task // 4``, lane group ``task % 4`` of :func:`_normal_lanes`: per block of
    32 rows (rows ``i0 + 32 s + b`` are block rows ``8 s + b``), ``U = X v`` along the
    rows, eight rows of an equation per vector straight into the block's layout, then
    ``W = U Sigma^-1`` (:func:`.woodbury_rows.woodbury_block`, called through
    ``block_fn``); the lane steps of ``X^T W`` over the same rows, during the next
    block's dots (:func:`_interleaved_blocks`) or after the block's Woodbury block
    (:data:`.simd.FUSED_INTERLEAVED`). W itself goes to the lane steps, not its view
    ``Wv``: Numba frees W after its last use, and a view does not count
    (tests/test_scratch_lifetime.py faulted with ``Wv`` in the last block's steps)."""
    N, P = X.shape
    k, K = GT.shape
    c, lane0 = task // N_GROUPS, (task % N_GROUPS) * GROUP
    one = runtime_int(1)
    _, S, E, _, U, W, T, Z, UQ, acc, _ = block_scratch(runtime_int(0), K, k, one, one)
    SA, EA = np.full((GROUP, P), -0.0), np.full((GROUP, P), -0.0)
    Xv, Wv = unmanaged(X), unmanaged(W)
    stop = min(N, (c + 1) * CHUNK)
    if FUSED_INTERLEAVED:
        _interleaved_blocks(Xv, offsets, v, eqv, pick, eq_of_column, span, block_fn, GT, L,
                            LT, DE, compensated, c * CHUNK + lane0, stop, SA, EA, U, W, S,
                            E, T, Z, UQ, acc)
    else:  # each block's three phases in turn (16 vector registers: simd.FUSED_INTERLEAVED)
        for i0 in range(c * CHUNK + lane0, stop, BLOCK * LANES):
            for s in range(BLOCK):
                first = i0 + s * LANES
                nb = min(GROUP, stop - first)
                if nb > 0:  # the dots alone: no previous block to step
                    _dots_and_steps(Xv, offsets, v, first, nb, U, s * GROUP, SA, EA, Wv, -1,
                                    0, eqv, pick, span, compensated)
            call_woodbury_block(block_fn, U, GT, L, LT, DE, compensated, S, E, T, Z, UQ, acc,
                                W)
            _block_lane_steps(SA, EA, Xv, i0, stop, W, eqv, pick, eq_of_column, span,
                              compensated)
    copy_lane_block(LS[c], LC[c], lane0, 0, SA, EA)


@njit(nogil=True, cache=True)
def _normal_lanes(t0, t1, X, offsets, v, eqv, pick, eq_of_column, span, block_fn, GT, L,
                  LT, DE, compensated, order, starts, LS, LC):
    """Lane accumulators of ``X^T [(X v) Sigma^-1]`` for the tasks of threads
    ``t0 .. t1 - 1`` (:func:`.rowgroups.balanced_tasks`)."""
    for th in range(t0, t1):
        for idx in range(starts[th], starts[th + 1]):
            _normal_task(X, offsets, v, eqv, pick, eq_of_column, span, block_fn, GT, L, LT,
                         DE, compensated, order[idx], LS, LC)


def streamed_normal_matvec(X, offsets, v, G, d, L, compensated):
    """Fused ``X^T [(X v) Sigma^-1]`` (validated inputs, ``N, P > 0``) with the rows of X
    in place, each block of 32 rows read from memory once; None when an equation has
    more than 32 regressors or a vector's equations exceed :data:`MAX_SPAN`. Bitwise
    ``sur_rmatvec(X, woodbury_solve(sur_matvec(X, v)))``: the same three computations
    on the same rows."""
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    plan = weight_plan(offsets)
    if plan.most > MAX_SPAN or np.diff(offsets).max(initial=0) > MAX_ROW_TERMS:
        return None
    N, P = X.shape
    n_ch = n_chunks(N)
    LS, LC = lane_accumulators((n_ch, LANES, P))
    order, starts = balanced_tasks(N, schedule_bins())
    run_tasks(_normal_lanes, starts.shape[0] - 1, X, offsets, np.ascontiguousarray(v),
              plan.eqv, plan.pick, plan.eq_of_column, plan.span, *block_call_arrays(G, d, L),
              compensated, order, starts, LS, LC)
    return finish_lanes(LS, LC, compensated)
