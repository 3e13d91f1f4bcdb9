"""Products with several right-hand sides in one pass: ``A B`` and ``A^T B``.

Column ``q`` of each result has exactly the bits of one ``gemv``/``gemv_t`` call with
column ``q`` of ``B`` (same terms, same CRO-1 order), so callers that looped over the
columns get the same numbers from one pass over ``A`` instead of one pass per column:

* ``rows_times(A, BT)``: ``out[i, q]`` = CRO-1 dot of row ``i`` of A with ``BT[q]``
  (``BT`` is ``B^T``, C-contiguous, so each dot reads two contiguous segments); with
  one column (``gemv``) two rows at a time, as two streams from memory; with several
  and rows of one chunk, in blocks of :data:`IN_CACHE_ROWS` rows taken right-hand side
  by right-hand side, two rows sharing each load of ``BT[q]``;
  ``lower_rows_times`` forms only the lower triangle of a square product;
* ``rows_transposed_times(A, B)``: ``out[m, q]`` = CRO-1 reduction over rows ``i`` of
  ``fl(A[i, m] * B[i, q])``, streaming the rows of A in place: lane ``l`` of a chunk owns
  rows ``l, l + 32, ...``, so a lane's accumulators (one per column) take four rows at a
  time with the columns in vector registers (:func:`.simd.lane_axpy`); ``gemv_t`` is its
  one-column case.

The estimator's Sigma-step uses them to apply ``S = E^T E / N`` to a few vectors from the
N x K residuals without forming S (large K).
"""

from __future__ import annotations

import numpy as np

from ._cro import (
    CHUNK,
    LANES,
    dot_pair_prefix,
    lane_step,
    streamed_dot_pair,
    streamed_dot_segment,
)
from .jit import njit
from .linalg import ROW_BLOCK, chunk_tree_columns, n_chunks
from .pages import fresh
from .rowgroups import (
    BLOCK,
    balanced_tasks,
    copy_lane_block,
    lane_accumulators,
    lane_trees,
    lanes_per_task,
    tile_task,
)
from .simd import lane_axpy
from .tasks import run_tasks, schedule_bins, threads
from .views import unmanaged

__all__ = ["lower_rows_times", "rows_times", "rows_transposed_times"]

#: Columns of A times right-hand sides per task of ``rows_transposed_times``: its lane
#: accumulators are 2 x 8 x COLUMN_TILE doubles, 1 MiB. (2048, 256 KiB, kept them in a
#: Zen 3's L2; on the Zen 4 box wider tiles, reading longer runs of each row, were
#: faster. Eleventh session, compensated ``A^T B``, medians of four alternating rounds,
#: COLUMN_TILE 2048 / 8192 / 16384 / 32768 / 131072: 5000 x 2000, k = 10: 22.2 / 18.8 /
#: 18.3 / 17.3 / 17.9 ms; 2000 x 10000, k = 10: 72.9 / 44.0 / 48.1 / 61.5 / 74.2 ms;
#: 5000 x 2000, k = 20: 46.4 / 40.0 / 36.0 / 38.8 / 38.8 ms; 20000 x 1000, k = 3: 23.7 /
#: 20.3 / 20.0 / 19.8 / 19.3 ms. At N = 5000, K = 2000, k = 10, whose Sigma-step is
#: mostly these products, the fit's median went from 3.90 to 3.30 s with this and the
#: streamed kernels' wider tiles, alternating.)
COLUMN_TILE = 8192
#: Rows of A per block of ``A B`` taken right-hand side by right-hand side (rows of at
#: most one chunk, several right-hand sides): 16 rows of 2000 doubles are 256 KiB.
IN_CACHE_ROWS = 16


@njit(nogil=True, cache=True)
def _rows_times_tasks(b0, b1, A, BT, compensated, out):
    """Blocks ``b0 .. b1 - 1`` of ``ROW_BLOCK`` rows of ``A B``.

    With one right-hand side (``gemv``) and rows of at most one chunk, the rows go in
    pairs half a block apart (:func:`._cro.streamed_dot_pair`: rows ``i`` and ``i + h``
    of a block of ``2 h`` or ``2 h + 1`` rows, the odd last row alone), so that two
    streams come from memory at once; each entry keeps its bits. Thirty-first session,
    2-core Zen 3, ``gemv`` 50000 x 1000, best of eleven, seven alternating pairs of
    processes, GB/s row by row / in pairs (BLAS ``A @ x`` in the same runs): one thread,
    plain 15.9-16.7 / 22.9-25.9 (22.0-24.5), compensated 18.2-20.1 / 20.3-21.1; two
    threads, plain 26.1-29.9 / 32.1-42.2 (32.3-42.5), compensated 28.0-33.7 / 31.2-35.2.
    Pairs of neighbouring rows gained nothing (17.4-17.8 against 17.4-17.5 GB/s row by
    row, one thread, plain: to the hardware prefetcher they are still one stream). With
    three right-hand sides each row is read once and used three times from cache, and
    pairs measured slower on two threads (20000 x 1000, plain 21.2-21.6 -> 19.7-20.4
    GB/s, compensated 14.0-15.3 -> 12.9-13.1: two rows' compensated lanes no longer fit
    the registers), so ``A B`` keeps one row at a time.
    """
    m, n = A.shape
    k = BT.shape[0]
    for blk in range(b0, b1):
        Av, BTv = unmanaged(A), unmanaged(BT)  # rows without atomic reference counts
        i0 = blk * ROW_BLOCK
        rows = min(m, i0 + ROW_BLOCK) - i0
        half = rows // 2 if n <= CHUNK and k == 1 else 0
        for i in range(i0, i0 + half):  # (half > 0 only with one right-hand side)
            out[i, 0], out[i + half, 0] = streamed_dot_pair(Av, i, i + half, BTv[0],
                                                            compensated)
        if half == 0 and n <= CHUNK and k > 1:
            for r0 in range(i0, i0 + rows, IN_CACHE_ROWS):
                _rows_block_times(Av, BTv, r0, min(i0 + rows, r0 + IN_CACHE_ROWS), k, False,
                                  compensated, out)
            continue
        for i in range(i0 + 2 * half, i0 + rows):
            for q in range(k):
                out[i, q] = streamed_dot_segment(Av[i], BTv[q], compensated)


@njit(inline="always", cache=True)
def _rows_block_times(Av, BTv, r0, r1, k, lower, compensated, out):
    """``out[i, q]`` for rows ``r0 <= i < r1`` and ``q < k`` (``lower``: only ``q <= i``),
    right-hand side by right-hand side: ``BT[q]`` stays in L1 while the block's rows
    (in L2) take their dots with it, two rows at a time sharing its loads
    (:func:`._cro.dot_pair_prefix`) where rows are one chunk, one at a time where longer.
    Each entry keeps its bits."""
    n = Av.shape[1]
    for q in range(k):
        i = max(r0, q) if lower else r0
        while n <= CHUNK and i + 1 < r1:
            out[i, q], out[i + 1, q] = dot_pair_prefix(Av, i, i + 1, BTv[q], n, compensated)
            i += 2
        for r in range(i, r1):
            out[r, q] = streamed_dot_segment(Av[r], BTv[q], compensated)


@njit(nogil=True, cache=True)
def _lower_rows_times_tasks(t0, t1, A, BT, compensated, out):
    """Tasks ``t0 .. t1 - 1`` of :func:`lower_rows_times`: task ``t`` is the block of
    ``ROW_BLOCK`` rows counted from the last (the costliest first, so that the threads
    of :func:`.tasks.run_tasks`' dynamic schedule end together)."""
    m = A.shape[0]
    n_blocks = (m + ROW_BLOCK - 1) // ROW_BLOCK
    for t in range(t0, t1):
        Av, BTv = unmanaged(A), unmanaged(BT)  # rows without atomic reference counts
        i0 = (n_blocks - 1 - t) * ROW_BLOCK
        for r0 in range(i0, min(m, i0 + ROW_BLOCK), IN_CACHE_ROWS):
            r1 = min(m, r0 + IN_CACHE_ROWS)
            _rows_block_times(Av, BTv, r0, r1, r1, True, compensated, out)


def lower_rows_times(A: np.ndarray, BT: np.ndarray, compensated: bool) -> np.ndarray:
    """The lower triangle of the square ``A B`` (``BT = B^T``): entry ``[i, q]`` for
    ``q <= i`` has the bits of :func:`rows_times`' (half its dots); the strict upper
    triangle is left unset, for the caller to fill (e.g. by mirroring the lower, where
    ``A B`` is symmetric in exact arithmetic). Inputs C-contiguous float64 (not
    validated here)."""
    m = A.shape[0]
    out = fresh((m, m))
    if out.size:
        run_tasks(_lower_rows_times_tasks, -(-m // ROW_BLOCK), A, BT, compensated, out,
                  work=A.nbytes * m // 2)
    return out


def rows_times(A: np.ndarray, BT: np.ndarray, compensated: bool) -> np.ndarray:
    """``A B`` (m x k) with ``BT = B^T`` (k x n); entry ``[i, q]`` has the bits of
    ``gemv(A, B[:, q])[i]``. Inputs C-contiguous float64 (not validated here)."""
    out = fresh((A.shape[0], BT.shape[0]))
    if out.size:
        run_tasks(_rows_times_tasks, -(-A.shape[0] // ROW_BLOCK), A, BT, compensated, out,
                  work=A.nbytes * BT.shape[0])  # each value of A enters k products
    return out


@njit(cache=True)
def _lane_steps(S, E, A, i, m0, width, wts, steps, compensated):
    """Lane steps of one lane for ``steps`` rows ``i, i + 32, ...`` (at most 4) of the
    columns ``m0 .. m0 + width`` of A, weighted by ``wts[r]``: whole groups of 8 columns
    by :func:`.simd.lane_axpy` (accumulators in registers; four rows in one pass, or the
    rows of a short last block one pass each, in order), the other columns here, in
    the same order. (The short block's columns took the scalar loop until the
    fourteenth session: ~10x slower per term, most of the work when N is small -- a
    100 x 1000 ``gemv_t`` ran 245 us in this function on one core.)"""
    body = width - width % 8
    if steps == BLOCK:
        if compensated:
            lane_axpy(S, E, A, i, m0, body, wts, BLOCK, True)
        else:
            lane_axpy(S, E, A, i, m0, body, wts, BLOCK, False)
    else:
        for r in range(steps):
            if compensated:
                lane_axpy(S, E, A, i + LANES * r, m0, body, wts[r:], 1, True)
            else:
                lane_axpy(S, E, A, i + LANES * r, m0, body, wts[r:], 1, False)
    for m in range(body, width):
        for r in range(steps):
            lane_step(S, E, m, A[i + LANES * r, m0 + m] * wts[r], compensated)


@njit(nogil=True, cache=True)
def _transposed_lanes(t0, t1, A, B, compensated, tile, group, order, starts, LS, LC):
    """Lane accumulators ``LS[c, l, q * P + m]`` (compensations ``LC``) of ``A^T B``: lane
    ``l`` of chunk ``c`` sums rows ``c*CHUNK + l + 32 t`` of ``fl(A[i, m] * B[i, q])`` in
    order.

    A task is (chunk, group of ``group`` lanes -- 8, or all 32 --, column tile); thread
    ``t`` (``t0 <= t < t1``) runs
    the tasks ``order[starts[t]:starts[t + 1]]`` (:func:`.rowgroups.balanced_tasks`). It
    reads its rows in place, four
    row groups at a time (rows ``i + 32 r`` for ``r < 4`` are four consecutive terms of
    lane ``i mod 32``), and steps each lane's accumulators -- contiguous over the tile's
    columns, so the steps vectorise along the rows, and small enough to stay in L2 --
    once per four rows."""
    N, P = A.shape
    k = B.shape[1]
    n_tiles = (P + tile - 1) // tile
    for task in order[starts[t0]:starts[t1]]:
        c, g, m0, width = tile_task(task, n_tiles, tile, P, LANES // group)
        S = np.full((k, group, width), -0.0)
        E = np.full((k, group, width), -0.0)
        wts = np.empty(BLOCK)
        Av, Bv, Sv, Ev = unmanaged(A), unmanaged(B), unmanaged(S), unmanaged(E)
        stop = min(N, (c + 1) * CHUNK)
        for i0 in range(c * CHUNK + g * group, stop, BLOCK * LANES):
            for b in range(min(group, stop - i0)):
                i = i0 + b
                steps = min(BLOCK, (stop - 1 - i) // LANES + 1)
                for q in range(k):
                    for r in range(steps):
                        wts[r] = Bv[i + LANES * r, q]
                    _lane_steps(Sv[q, b], Ev[q, b], Av, i, m0, width, wts, steps,
                                compensated)
        # read back through S and E themselves, not their views: that keeps the arrays
        # alive to here (Numba frees an array after its last use; the unmanaged views do
        # not count, and a task's accumulators of 1 MiB come from mmap: freed, the views
        # pointed at unmapped memory)
        for q in range(k):
            copy_lane_block(LS[c], LC[c], g * group, q * P + m0, S[q], E[q])


def rows_transposed_times(A: np.ndarray, B: np.ndarray, compensated: bool) -> np.ndarray:
    """``A^T B`` (P x k) for A (N x P) and B (N x k); entry ``[m, q]`` has the bits of
    ``gemv_t(A, B[:, q])[m]``. Inputs C-contiguous float64 (not validated here)."""
    N, P = A.shape
    k = B.shape[1]
    if N == 0 or P == 0 or k == 0:
        return np.zeros((P, k))
    n_ch = n_chunks(N)
    LS, LC = lane_accumulators((n_ch, LANES, k * P))
    tile = max(8, COLUMN_TILE // k // 8 * 8)  # whole vectors: no scalar columns per tile
    group = lanes_per_task(threads(), k * min(P, tile))
    order, starts = balanced_tasks(N, schedule_bins(), P, tile, group)
    run_tasks(_transposed_lanes, starts.shape[0] - 1, A, B, compensated, tile, group,
              order, starts, LS, LC)
    PS = np.empty((n_ch, k * P))
    PC = np.empty((n_ch, k * P))
    lane_trees(LS, LC, compensated, PS, PC)
    flat = np.empty(k * P)
    chunk_tree_columns(PS, PC, compensated, flat)
    return np.ascontiguousarray(flat.reshape(k, P).T)
