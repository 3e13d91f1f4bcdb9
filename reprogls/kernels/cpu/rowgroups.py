"""SUR kernels on blocks of 32 rows with flat, vectorisable loops.

Since 2026-12-03 (ninth session) these run the Woodbury solve (also inside the fused
operator of :mod:`.streamed`) and the SUR operators of the layouts the row kernels of
:mod:`.streamed` / :mod:`.row_trees` decline: an equation wider than 32 columns
(``sur_matvec``, the fused operator) or more than four equations among eight
consecutive columns (``sur_rmatvec``, ``X^T vec(R Sigma^-1)``, the fused operator).

A *block* is 32 rows of X: four *row groups* ``s = 0..3`` of 8 rows ``b = 0..7``
(which rows depends on the kernel, below). Its entries are gathered once into
``XT[(r * 4 + s) * 8 + b] = X[row(s, b), perm[r]]`` (8 x 8 tiles,
:func:`.simd.transpose8x8_scatter`), where ``perm`` orders the columns by equation
width class, tile of equations, term and equation (:class:`SurPlan`): for a tile of ``n``
equations of width ``p``, term ``t`` of all its equations and all 32 rows is one
contiguous run of ``32 n`` values. Every CRO-1 reduction of the SUR kernels then runs
over such runs with :mod:`.segments`:

* ``U = X v`` per equation: a :func:`.segments.dot_tree` over the ``p`` terms of each
  tile, the products ``fl(X[i, m] * v[m])`` formed where they are read;
* the Woodbury solve ``W = U Sigma^-1`` of the 32 rows
  (:func:`.woodbury_rows.woodbury_block`; the fused operator and the single-pass
  ``X^T vec(R Sigma^-1)`` call it through its compiled entry point), in the
  reference order;
* ``X^T W`` (over rows): chunk ``c``'s rows ``c*8192 + 32 j + 8 g + b`` are CRO-1 lane
  ``8 g + b`` (:data:`GROUP` lanes per lane group ``g``). The task (chunk, lane group)
  takes its row groups ``j`` four at a time (``s = j mod 4``) and accumulates them in
  order into ``ST[r * 8 + b]``; the lane tree and the chunk tree run afterwards.

The short dots of the first two stages keep their lane trees in vector registers
(:mod:`.register_trees`, through :func:`.segments.dot_tree`), and the per-block functions
slice their arrays through :func:`.views.unmanaged` views, which spares the thousands of
atomic reference-count updates per block that Numba's slices cost (22% of the fused
operator's time before).

The results are bitwise those of :mod:`reprogls.kernels.reference.linalg` (oracle tests);
only the memory layout and the loop order across independent reductions differ. No two
tasks share an accumulator, so the bits do not depend on the number of threads.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from . import scratch
from ._cro import CHUNK, LANES, two_sum
from .blocked import runtime_int
from .jit import njit
from .pages import fresh
from .reciprocal import reciprocals
from .segments import dot_tree, merge_segments
from .simd import lane_steps8, prefetch_tile, transpose8x8, transpose8x8_scatter
from .tasks import lpt_schedule, run_tasks, schedule_bins
from .views import unmanaged
from .woodbury_rows import (
    BROADCAST32,
    ROWS,
    TILE_EQUATIONS,
    call_woodbury_block,
    woodbury_block,
    woodbury_block_address,
)

__all__ = ["ROWS", "SurPlan", "normal_matvec", "solved_rmatvecs", "sur_matvec", "sur_plan",
           "sur_rmatvec", "woodbury_solve"]

#: Rows per row group (= CRO-1 lanes per task of the reductions over rows).
GROUP = 8
#: Row groups per block; rows per block.
BLOCK = 4
#: Lane groups per chunk.
N_GROUPS = LANES // GROUP
#: Terms (``p n``) per tile of equations of one width: a tile's partial sums
#: (``32 n`` values per lane) stay in L1.
TILE_TERMS = 64


@dataclass(frozen=True)
class SurPlan:
    """Column order of the block kernels for one SUR layout (host-side, ``O(P)``).

    Attributes
    ----------
    perm : ndarray of int64 (P,)
        ``perm[r]`` is the column of X in gathered row ``r``.
    dest : ndarray of int64 (BLOCK, P)
        ``dest[s, m] = iperm[m] * 4 + s``: where column ``m`` of row group ``s`` goes,
        in units of 8 values.
    tiles : ndarray of int64 (n_tiles, 5)
        ``(p, n, base, e0, contiguous)``: width, number of equations, first gathered row
        and first index into ``eqs`` of each tile (widths > 0, increasing);
        ``contiguous`` is 1 when the tile's equations are consecutive.
    eqs : ndarray of int64 (K',)
        Equations with at least one regressor, tile by tile.
    """

    perm: np.ndarray
    dest: np.ndarray
    tiles: np.ndarray
    eqs: np.ndarray

    @property
    def widest_tile(self) -> int:
        """Most equations in one tile."""
        return int(self.tiles[:, 1].max(initial=1))

    @property
    def widest_equation(self) -> int:
        """Most regressors of one equation."""
        return int(self.tiles[:, 0].max(initial=1))


def sur_plan(offsets: np.ndarray) -> SurPlan:
    """The :class:`SurPlan` of a SUR layout (cached: a fit calls the kernels with the same
    layout many times)."""
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    return _cached_plan(offsets.tobytes())


@functools.lru_cache(maxsize=16)
def _cached_plan(key: bytes) -> SurPlan:
    offsets = np.frombuffer(key, dtype=np.int64)
    widths = np.diff(offsets)
    perm, tiles, eqs = [], [], []
    base = 0
    for p in np.unique(widths[widths > 0]).tolist():
        members = np.flatnonzero(widths == p)
        per_tile = max(1, TILE_TERMS // p)
        for first in range(0, members.shape[0], per_tile):
            tile = members[first:first + per_tile]
            contiguous = int(np.all(np.diff(tile) == 1))
            tiles.append((p, tile.shape[0], base, len(eqs), contiguous))
            eqs.extend(tile.tolist())
            # gathered row base + t n + jj holds column offsets[tile[jj]] + t
            perm.append((offsets[tile][None, :] + np.arange(p)[:, None]).ravel())
            base += p * tile.shape[0]
    perm = (np.concatenate(perm) if perm else np.zeros(0)).astype(np.int64)
    iperm = np.empty_like(perm)
    iperm[perm] = np.arange(perm.shape[0])
    dest = iperm[None, :] * BLOCK + np.arange(BLOCK)[:, None]
    return SurPlan(perm=perm, dest=np.ascontiguousarray(dest),
                   tiles=np.array(tiles, dtype=np.int64).reshape(-1, 5),
                   eqs=np.array(eqs, dtype=np.int64))


# --- moving rows in and out of the block layout -----------------------------------------


@njit(cache=True)
def gather_group(X, i0, nb, dest, XT, ahead):
    """``XT[dest[m] * 8 + b] = X[i0 + b, m]`` for ``b < nb`` (``b >= nb``: 0.0). Each
    8 x 8 tile also prefetches the same columns of rows ``i0 + ahead + b``, the next row
    group's, when they exist (a hint)."""
    N, P = X.shape
    start = 0
    if nb == GROUP:
        start = P - P % 8
        ahead_exists = i0 + ahead + GROUP <= N
        for m in range(0, start, 8):
            if ahead_exists:
                prefetch_tile(X, i0 + ahead, m)
            transpose8x8_scatter(X, i0, m, dest, XT)
    for m in range(start, P):
        o = dest[m] * GROUP
        for b in range(GROUP):
            XT[o + b] = X[i0 + b, m] if b < nb else 0.0


@njit(cache=True)
def rows_to_block(R, i0, n_rows, Ublk, stride):
    """``Ublk[j, 8 s + b] = R[i0 + stride s + b, j]`` for the block rows ``8 s + b <
    n_rows`` (the others 0.0): an (N, K) matrix into the (K, 32) block layout, ``stride``
    8 for 32 consecutive rows, 32 for one lane group of the reductions over rows. Whole
    groups of 8 rows and 8 columns by 8 x 8 vector transposes, the rest one value at a
    time."""
    K = R.shape[1]
    full = n_rows // GROUP
    body = K - K % 8
    for s in range(full):
        for j in range(0, body, 8):
            transpose8x8(R, i0 + s * stride, j, Ublk, j, s * GROUP)
    for y in range(ROWS):
        i = i0 + (y // GROUP) * stride + y % GROUP
        for j in range(body if y < full * GROUP else 0, K):
            Ublk[j, y] = R[i, j] if y < n_rows else 0.0


@njit(cache=True)
def block_to_rows(Ublk, i0, nb, R):
    """``R[i0 + y, j] = Ublk[j, y]`` for ``y < nb``: the inverse of :func:`rows_to_block`
    with ``stride`` 8."""
    K = R.shape[1]
    start = 0
    if nb == ROWS:
        start = K - K % 8
        for j in range(0, start, 8):
            for s in range(BLOCK):
                transpose8x8(Ublk, j, s * GROUP, R, i0 + s * GROUP, j)
    for j in range(start, K):
        for y in range(nb):
            R[i0 + y, j] = Ublk[j, y]


@njit(cache=True)
def _block_rows(i0, stop, stride):
    """Rows in the block that starts at ``i0`` (groups ``i0 + stride s``, 8 rows each,
    before ``stop``)."""
    n_rows = 0
    for s in range(BLOCK):
        nb = max(0, min(GROUP, stop - i0 - s * stride))
        if nb > 0:
            n_rows = s * GROUP + nb
    return n_rows


@njit(cache=True)
def _gather_block(X, i0, stop, stride, dest, XT):
    """Block rows ``8 s + b`` <- X rows ``i0 + stride s + b`` (those before ``stop``):
    ``stride`` 8 for 32 consecutive rows, 32 for one lane group of the reductions over
    rows. Returns the number of block rows filled."""
    for s in range(BLOCK):
        nb = max(0, min(GROUP, stop - i0 - s * stride))
        if nb > 0:
            gather_group(X, i0 + s * stride, nb, dest[s], XT, stride)
    return _block_rows(i0, stop, stride)


# --- the three stages on one block ------------------------------------------------------


@njit(cache=True)
def block_dots(XT, tiles, eqs, vT, compensated, S, E, out, U):
    """``U[j * 32 + y]`` = CRO-1 dot of block row ``y``'s columns of equation ``j`` with
    ``v`` (``vT = v[perm]``; ``U`` of equations without regressors is left untouched).
    Scratch: ``S``, ``E`` of ``16 * 32 max(n)``; ``out`` of ``32 max(n)``."""
    XT, vT, S, E, out, U = (unmanaged(XT), unmanaged(vT), unmanaged(S), unmanaged(E),
                            unmanaged(out), unmanaged(U))
    for c in range(tiles.shape[0]):
        p, n, base, e0 = tiles[c, 0], tiles[c, 1], tiles[c, 2], tiles[c, 3]
        L = n * ROWS
        # term t of the tile: XT[(base + t n) * 32 + x] * vT[base + t n + x // 32]
        dot_tree(XT[base * ROWS:], L, vT[base:], n, runtime_int(BROADCAST32), p, L,
                 compensated, S, E, out)
        if tiles[c, 4]:
            dst = U[eqs[e0] * ROWS:]
            for x in range(L):
                dst[x] = out[x]
        else:
            for jj in range(n):
                dst = U[eqs[e0 + jj] * ROWS:]
                for y in range(ROWS):
                    dst[y] = out[jj * ROWS + y]


@njit(cache=True)
def accumulate_block(XT, tiles, eqs, W, n_rows, compensated, WC, ST, ET):
    """The CRO-1 lane steps of one block of the reductions over rows: for the block rows
    ``y = 8 s + b < n_rows`` in the order ``s = 0, 1, 2, 3``, lane ``b`` of gathered row
    ``r`` accumulates ``fl(XT[(4 r + s) * 8 + b] * W[eq(r) * 32 + y])``. ``WC``: scratch
    of ``32 max(n)``."""
    XT, W, WC = unmanaged(XT), unmanaged(W), unmanaged(WC)
    ST, ET = unmanaged(ST), unmanaged(ET)
    for c in range(tiles.shape[0]):
        p, n, base, e0 = tiles[c, 0], tiles[c, 1], tiles[c, 2], tiles[c, 3]
        if tiles[c, 4]:
            wc = W[eqs[e0] * ROWS:(eqs[e0] + n) * ROWS]
        else:
            for jj in range(n):
                src = W[eqs[e0 + jj] * ROWS:]
                for y in range(ROWS):
                    WC[jj * ROWS + y] = src[y]
            wc = WC[:n * ROWS]
        for t in range(p):
            r0 = base + t * n
            xt = XT[r0 * ROWS:(r0 + n) * ROWS]
            st = ST[r0 * GROUP:(r0 + n) * GROUP]
            et = ET[r0 * GROUP:(r0 + n) * GROUP]
            if n_rows == ROWS:
                if compensated:
                    for jj in range(n):
                        lane_steps8(st, et, jj * GROUP, xt, wc, jj * ROWS, BLOCK, True)
                else:
                    for jj in range(n):
                        lane_steps8(st, et, jj * GROUP, xt, wc, jj * ROWS, BLOCK, False)
                continue
            for jj in range(n):  # a partial block at the end of a chunk
                for y in range(n_rows):
                    o = jj * ROWS + y
                    lane = jj * GROUP + y % GROUP
                    if compensated:
                        v, e = two_sum(st[lane], xt[o] * wc[o])
                        et[lane] = et[lane] + e
                        st[lane] = v
                    else:
                        st[lane] = st[lane] + xt[o] * wc[o]


#: Alignment of the scratch arrays, in float64 values (one 64-byte cache line): their
#: ``<8 x double>`` loads and stores then never straddle two lines.
ALIGN = 8


@njit(cache=True)
def aligned_empty(n):
    """An uninitialised float64 array of ``n`` values starting on a 64-byte boundary
    (a view into a slightly longer allocation)."""
    buf = np.empty(n + ALIGN)
    skip = ((-buf.ctypes.data) % (8 * ALIGN)) // 8
    return buf[skip:skip + n]


@njit(cache=True)
def aligned_full(n, value):
    """:func:`aligned_empty` filled with ``value``."""
    out = aligned_empty(n)
    out[:] = value
    return out


@njit(cache=True)
def block_scratch(P, K, k, widest, longest):
    """Scratch of one task: ``(XT, S, E, out, U, W, T, Z, UQ, acc, WC)``, for
    tiles of at most ``widest`` equations and equations of at most ``longest`` terms."""
    R = ROWS
    kk = max(k, 1)
    width = TILE_EQUATIONS * R
    chunks = max(1, (K + CHUNK - 1) // CHUNK, (longest + CHUNK - 1) // CHUNK)
    # dot_tree keeps at most 16 lane partials for <= 32 terms, dot_segments 32 per chunk
    se = max(16 * R * widest, LANES * R * chunks, (LANES if k > LANES else 16) * width)
    return (aligned_full(P * R, 0.0), aligned_empty(se), aligned_empty(se),
            aligned_empty(widest * R), aligned_full(K * R, 0.0), aligned_empty(K * R),
            aligned_empty(kk * R), aligned_empty(kk * R), aligned_empty(width * kk),
            aligned_empty(max(width, R)), aligned_empty(widest * R))


# --- the kernels ------------------------------------------------------------------------


#: Blocks of 32 rows per task of the row-parallel kernels (their scratch is allocated
#: once per task).
SLAB = 16


def _slabs(N: int) -> int:
    """Tasks of the row-parallel kernels: slabs of ``SLAB`` blocks of 32 rows."""
    n_blocks = (N + ROWS - 1) // ROWS
    return (n_blocks + SLAB - 1) // SLAB


@njit(nogil=True, cache=True)
def _dots_tasks(s0, s1, X, dest, tiles, eqs, widest, longest, vT, compensated, U):
    """``U[i, j]`` = CRO-1 dot of row ``i``'s columns of equation ``j`` with ``v``, for the
    slabs ``s0 .. s1 - 1`` of blocks of 32 consecutive rows (block row ``8 s + b`` is row
    ``i0 + 8 s + b``)."""
    N, P = X.shape
    K = U.shape[1]
    n_blocks = (N + ROWS - 1) // ROWS
    for slab in range(s0, s1):
        work = block_scratch(P, K, runtime_int(0), widest, longest)
        XT, S, E, out, Ub = work[0], work[1], work[2], work[3], work[4]
        for blk in range(slab * SLAB, min(n_blocks, (slab + 1) * SLAB)):
            i0 = blk * ROWS
            n_rows = _gather_block(X, i0, N, runtime_int(GROUP), dest, XT)
            block_dots(XT, tiles, eqs, vT, compensated, S, E, out, Ub)
            block_to_rows(Ub.reshape((K, ROWS)), i0, n_rows, U)


@njit(nogil=True, cache=True, error_model="numpy")
def _woodbury_tasks(s0, s1, R, GT, L, LT, DE, compensated, out):
    """``out = R Sigma^-1`` for the slabs ``s0 .. s1 - 1`` of blocks of 32 consecutive
    rows. The one kernel that calls :func:`.woodbury_rows.woodbury_block` directly
    (inlined): the demo's fit needs it, and the block's entry point would add ~2-4 s to
    the demo's warm-up (measured on a Zen 4 box, tenth session). NumPy's error model is
    the block's own: its inlined divisions take this function's flags, and Python's
    model puts a zero-divisor branch in each (``d > 0`` is validated up front)."""
    N, K = R.shape
    k = GT.shape[0]
    n_blocks = (N + ROWS - 1) // ROWS
    for slab in range(s0, s1):
        one = runtime_int(1)
        _, S, E, _, U, W, T, Z, UQ, acc, _ = block_scratch(runtime_int(0), K, k, one, one)
        for blk in range(slab * SLAB, min(n_blocks, (slab + 1) * SLAB)):
            i0 = blk * ROWS
            rows_to_block(R, i0, min(ROWS, N - i0), U.reshape((K, ROWS)), GROUP)
            woodbury_block(U, GT, L, LT, DE, compensated, S, E, T, Z, UQ, acc, W)
            block_to_rows(W.reshape((K, ROWS)), i0, min(ROWS, N - i0), out)


@functools.lru_cache(maxsize=64)
def balanced_tasks(N: int, threads: int, P: int = 1, tile: int = 1, group: int = GROUP
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Tasks (chunk, lane group, column tile) of the reductions over rows shared among
    ``threads`` by the longest-processing-time rule on their rows times columns:
    ``order[starts[t]:starts[t+1]]`` are thread ``t``'s tasks; task ``(c, g, q)`` is
    number ``(c * n_groups + g) * n_tiles + q`` with ``n_groups = 32 / group`` lane groups
    of ``group`` lanes (:func:`lanes_per_task`) and ``n_tiles = ceil(P / tile)`` (one tile
    by default). Only the schedule depends on the thread count; every task's arithmetic
    is the same. (Contiguous ranges of tasks left one thread with twice the other's rows
    at N = 25000: three full chunks and a short one.)

    Cached per arguments (a fit asks for the same schedule at every call; building it
    took ~25 µs): the arrays are shared, read them only."""
    from .linalg import n_chunks

    n_groups = LANES // group
    n_tiles = -(-P // tile)
    tasks = np.arange(n_chunks(N) * n_groups * n_tiles)
    c, g = tasks // (n_groups * n_tiles), (tasks // n_tiles) % n_groups
    widths = np.minimum(P - (tasks % n_tiles) * tile, tile)
    rows_in_chunk = np.minimum(N - c * CHUNK, CHUNK)
    full, rest = rows_in_chunk // LANES, rows_in_chunk % LANES
    return lpt_schedule((full * group + np.clip(rest - g * group, 0, group)) * widths,
                        threads)


#: Bytes of lane accumulators (sums and compensations) one task of the reductions over
#: rows may keep when it takes a whole chunk's 32 lanes: half the 1 MiB L2 per core of
#: the Zen 4 box, so that the rows being read fit beside them (at 1 MiB -- P = 2000,
#: ``sur_rmatvec`` at M's width -- one thread measured no faster: 24.1-26.7 against
#: 23.4-25.4 ms plain, three alternating rounds).
WHOLE_CHUNK_BYTES = 1 << 19


def lanes_per_task(threads: int, columns: int) -> int:
    """Lanes per task of the reductions over rows (``gemv_t``, ``A^T B``,
    ``sur_rmatvec``) whose tasks keep ``columns`` accumulators per lane: all 32 -- a task
    then reads its chunk's rows in order -- on one thread when the 32 lanes' sums and
    compensations fit in :data:`WHOLE_CHUNK_BYTES`, else :data:`GROUP` (8 lanes: runs of
    8 rows out of every 32, four times as many tasks to share among threads). Same terms
    in the same order either way, so the same bits.

    Fifteenth session, 2-core Zen 4 (1 MiB L2), ``gemv_t`` 50000 x 1000 on one thread,
    previous and new code in four alternating rounds of one process each: 16.8-18.3 /
    19.9-20.4 ms against 19.0-21.7 / 23.5-26.7 ms (plain / compensated; BLAS ``A.T @ y``
    18.9-19.8 ms). Two threads with 32-lane tasks and column tiles to balance them took
    18.4-25.4 ms against 11.0-14.9 (each task read half rows), so only one thread."""
    if threads == 1 and LANES * columns * 16 <= WHOLE_CHUNK_BYTES:
        return LANES
    return GROUP


@njit(inline="always", cache=True)
def tile_task(task, n_tiles, tile, P, n_groups):
    """``(c, g, m0, width)`` of task number ``(c * n_groups + g) * n_tiles + q`` of
    :func:`balanced_tasks`: chunk, lane group, first column and width of tile ``q``."""
    per_chunk = n_groups * n_tiles
    m0 = (task % n_tiles) * tile
    return task // per_chunk, (task % per_chunk) // n_tiles, m0, min(P, m0 + tile) - m0


@njit(cache=True)
def _store_lanes(ST, ET, plan_perm, c, lane0, LS, LC):
    """A task's 8 lanes into the chunk's lane buffers, in the original column order."""
    for r in range(plan_perm.shape[0]):
        m = plan_perm[r]
        for b in range(GROUP):
            LS[c, lane0 + b, m] = ST[r * GROUP + b]
            LC[c, lane0 + b, m] = ET[r * GROUP + b]


@njit(cache=True)
def _rmatvec_task(X, plan_perm, dest, tiles, eqs, widest, Win, compensated, task, LS, LC):
    """Chunk ``task // 4``, lane group ``task % 4`` of :func:`_rmatvec_lanes`."""
    N, P = X.shape
    K = Win.shape[1]
    c, lane0 = task // N_GROUPS, (task % N_GROUPS) * GROUP
    XT, W = aligned_full(P * ROWS, 0.0), aligned_full(K * ROWS, 0.0)
    WC = aligned_empty(widest * ROWS)
    ST, ET = aligned_full(P * GROUP, -0.0), aligned_full(P * GROUP, -0.0)
    stop = min(N, (c + 1) * CHUNK)
    for i0 in range(c * CHUNK + lane0, stop, BLOCK * LANES):
        n_rows = _gather_block(X, i0, stop, runtime_int(LANES), dest, XT)
        rows_to_block(Win, i0, n_rows, W.reshape((K, ROWS)), LANES)
        accumulate_block(XT, tiles, eqs, W, n_rows, compensated, WC, ST, ET)
    _store_lanes(ST, ET, plan_perm, c, lane0, LS, LC)


@njit(nogil=True, cache=True)
def _rmatvec_lanes(t0, t1, X, plan_perm, dest, tiles, eqs, widest, Win, compensated, order,
                   starts, LS, LC):
    """Lane accumulators ``LS[c, lane, m]`` (and ``LC``) of ``X^T W`` over rows; thread
    ``t`` (``t0 <= t < t1``) runs the tasks ``order[starts[t]:starts[t + 1]]``
    (:func:`balanced_tasks`)."""
    for th in range(t0, t1):
        for idx in range(starts[th], starts[th + 1]):
            _rmatvec_task(X, plan_perm, dest, tiles, eqs, widest, Win, compensated,
                          order[idx], LS, LC)


@njit(cache=True)
def _normal_task(X, plan_perm, dest, tiles, eqs, widest, longest, vT, block_fn, GT, L,
                 LT, DE, compensated, task, LS, LC):
    """Chunk ``task // 4``, lane group ``task % 4`` of :func:`_normal_lanes`."""
    N, P = X.shape
    k, K = GT.shape
    c, lane0 = task // N_GROUPS, (task % N_GROUPS) * GROUP
    XT, S, E, out, U, W, T, Z, UQ, acc, WC = block_scratch(P, K, k, widest, longest)
    ST, ET = aligned_full(P * GROUP, -0.0), aligned_full(P * GROUP, -0.0)
    stop = min(N, (c + 1) * CHUNK)
    for i0 in range(c * CHUNK + lane0, stop, BLOCK * LANES):
        n_rows = _gather_block(X, i0, stop, runtime_int(LANES), dest, XT)
        block_dots(XT, tiles, eqs, vT, compensated, S, E, out, U)
        call_woodbury_block(block_fn, U, GT, L, LT, DE, compensated, S, E, T, Z, UQ, acc, W)
        accumulate_block(XT, tiles, eqs, W, n_rows, compensated, WC, ST, ET)
    _store_lanes(ST, ET, plan_perm, c, lane0, LS, LC)


@njit(nogil=True, cache=True)
def _normal_lanes(t0, t1, X, plan_perm, dest, tiles, eqs, widest, longest, vT, block_fn,
                  GT, L, LT, DE, compensated, order, starts, LS, LC):
    """Lane accumulators of ``X^T [(X v) Sigma^-1]`` (threads ``t0 .. t1 - 1`` of
    :func:`balanced_tasks`): ``W`` is computed block by block from the gathered rows, so
    every row of X is read once."""
    for th in range(t0, t1):
        for idx in range(starts[th], starts[th + 1]):
            _normal_task(X, plan_perm, dest, tiles, eqs, widest, longest, vT, block_fn, GT,
                         L, LT, DE, compensated, order[idx], LS, LC)


@njit(cache=True)
def _solved_rmatvec_task(X, plan_perm, dest, tiles, eqs, widest, R1, R2, n_out, block_fn,
                         GT, L, LT, DE, compensated, task, LS, LC):
    """Chunk ``task // 4``, lane group ``task % 4`` of :func:`_solved_rmatvec_lanes`."""
    N, P = X.shape
    k, K = GT.shape
    c, lane0 = task // N_GROUPS, (task % N_GROUPS) * GROUP
    XT, S, E, _, U, W, T, Z, UQ, acc, WC = block_scratch(P, K, k, widest, runtime_int(1))
    ST = aligned_full(n_out * P * GROUP, -0.0)
    ET = aligned_full(n_out * P * GROUP, -0.0)
    size = P * GROUP
    stop = min(N, (c + 1) * CHUNK)
    for i0 in range(c * CHUNK + lane0, stop, BLOCK * LANES):
        n_rows = _gather_block(X, i0, stop, runtime_int(LANES), dest, XT)
        for q in range(n_out):
            rows_to_block(R1 if q == 0 else R2, i0, n_rows, U.reshape((K, ROWS)), LANES)
            call_woodbury_block(block_fn, U, GT, L, LT, DE, compensated, S, E, T, Z, UQ, acc, W)
            accumulate_block(XT, tiles, eqs, W, n_rows, compensated, WC,
                             ST[q * size:(q + 1) * size], ET[q * size:(q + 1) * size])
    for q in range(n_out):
        _store_lanes(ST[q * size:(q + 1) * size], ET[q * size:(q + 1) * size], plan_perm,
                     c, lane0, LS[q], LC[q])


@njit(nogil=True, cache=True)
def _solved_rmatvec_lanes(t0, t1, X, plan_perm, dest, tiles, eqs, widest, R1, R2, n_out,
                          block_fn, GT, L, LT, DE, compensated, order, starts, LS, LC):
    """Lane accumulators ``LS[q, c, lane, m]`` of ``X^T vec(R_q Sigma^-1)``, ``q < n_out``
    (threads ``t0 .. t1 - 1`` of :func:`balanced_tasks`): each gathered block of X
    serves every right-hand side."""
    for th in range(t0, t1):
        for idx in range(starts[th], starts[th + 1]):
            _solved_rmatvec_task(X, plan_perm, dest, tiles, eqs, widest, R1, R2, n_out,
                                 block_fn, GT, L, LT, DE, compensated, order[idx], LS, LC)


@njit(nogil=True, cache=True)
def _lane_tree_tasks(c0, c1, LS, LC, compensated, PS, PC):
    """CRO-1 lane tree of chunks ``c0 .. c1 - 1``: ``PS[c] = tree over the 32 lanes
    LS[c, lane]``."""
    P = LS.shape[2]
    for c in range(c0, c1):
        S = LS[c].reshape(LANES * P)
        E = LC[c].reshape(LANES * P)
        w = LANES // 2
        while w >= 1:
            merge_segments(S, E, runtime_int(0), w * P, w * P, compensated)
            w //= 2
        for m in range(P):
            PS[c, m] = S[m]
            PC[c, m] = E[m]


def lane_trees(LS, LC, compensated, PS, PC):
    """CRO-1 lane tree of every chunk ``c``: ``PS[c] = tree over the 32 lanes LS[c, lane]``
    (compensations ``PC``), chunks over the threads."""
    run_tasks(_lane_tree_tasks, LS.shape[0], LS, LC, compensated, PS, PC)


#: Lane accumulators of at least this many bytes come from the scratch pool; smaller
#: ones from NumPy, whose C heap reuses them without new pages (the pool's bookkeeping
#: cost ~5 us a request, a tenth of a small call).
POOLED_LANE_BYTES = 1 << 18


def lane_accumulators(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Uninitialised sums and compensations ``(LS, LC)`` of ``shape`` for the lane steps
    of a reduction over rows (every slot is written before it is read): reused
    :mod:`.scratch` buffers when large (no page faults per call), else ``numpy.empty``."""
    if 8 * math.prod(shape) < POOLED_LANE_BYTES:
        return np.empty(shape), np.empty(shape)
    return scratch.empty(shape), scratch.empty(shape)


@njit(inline="always")
def copy_lane_block(LS, LC, row0, col0, S, E):
    """``LS[row0 + b, col0 + m] = S[b, m]`` and ``LC`` likewise from ``E``: a task's lane
    accumulators into the call's, as loops (:func:`_store_lanes` is the block kernels'
    version, whose columns come permuted). A slice assignment of an array
    (``LS[r0:r1, c0:c1] = S``) makes Numba compile its shape-mismatch error message,
    string formatting included, once per process -- 3.8 s of the demo's warm-up worker
    that compiles ``sur_rmatvec`` (thirty-third session, the 2-core Zen 3 box;
    ``tests/test_codegen_cpu.py`` checks that no kernel carries it)."""
    for b in range(S.shape[0]):
        for m in range(S.shape[1]):
            LS[row0 + b, col0 + m] = S[b, m]
            LC[row0 + b, col0 + m] = E[b, m]


def _over_rows(X, kernel, *args):
    """``g[m]``: the CRO-1 reduction over rows of ``fl(X[i, m] * W[i, eq(m)])``, from the
    lane accumulators that ``kernel(t0, t1, X, *args, compensated, order, starts, LS,
    LC)`` fills for the threads ``t0 .. t1 - 1`` (``args[-1]`` is ``compensated``)."""
    from .linalg import n_chunks

    N, P = X.shape
    if N == 0 or P == 0:
        return np.zeros(P)
    n_ch = n_chunks(N)
    LS, LC = lane_accumulators((n_ch, LANES, P))
    order, starts = balanced_tasks(N, schedule_bins())
    run_tasks(kernel, starts.shape[0] - 1, X, *args, order, starts, LS, LC)
    return finish_lanes(LS, LC, args[-1])


def finish_lanes(LS, LC, compensated):
    """``g[m]`` from the lane accumulators ``LS[c, lane, m]`` (compensations ``LC``):
    the CRO-1 lane tree of every chunk, then the chunk tree, finalized."""
    from .linalg import chunk_tree_columns

    n_ch, _, P = LS.shape
    PS = np.empty((n_ch, P))
    PC = np.empty((n_ch, P))
    lane_trees(LS, LC, compensated, PS, PC)
    g = np.zeros(P)
    chunk_tree_columns(PS, PC, compensated, g)
    return g


def solved_rmatvecs(X, offsets, Rs, G, d, L, compensated):
    """``[X^T vec(R Sigma^-1) for R in Rs]`` (one or two (N, K) matrices, validated inputs)
    in one pass over X: each bitwise ``sur_rmatvec(X, offsets, woodbury_solve(R))`` (the
    same Woodbury block function on the same rows, the same lane steps), without the
    N x K matrices ``R Sigma^-1``."""
    from .linalg import n_chunks

    if not 1 <= len(Rs) <= 2:
        raise ValueError(f"solved_rmatvecs takes one or two right-hand sides, got {len(Rs)}")
    N, P = X.shape
    n_out = len(Rs)
    if N == 0 or P == 0:
        return [np.zeros(P) for _ in Rs]
    plan = sur_plan(offsets)
    n_ch = n_chunks(N)
    LS, LC = lane_accumulators((n_out, n_ch, LANES, P))
    order, starts = balanced_tasks(N, schedule_bins())
    run_tasks(_solved_rmatvec_lanes, starts.shape[0] - 1, X, plan.perm, plan.dest,
              plan.tiles, plan.eqs, plan.widest_tile, Rs[0], Rs[-1], n_out,
              *block_call_arrays(G, d, L), compensated, order, starts, LS, LC)
    return [finish_lanes(LS[q], LC[q], compensated) for q in range(n_out)]


def factor_arrays(G, d, L):
    """``(G^T, L, L^T, DE)`` in the layouts of :func:`.woodbury_rows.woodbury_block`
    (``DE``: ``d``, then its reciprocals :func:`.reciprocal.reciprocals`)."""
    return (np.ascontiguousarray(G.T), np.ascontiguousarray(L), np.ascontiguousarray(L.T),
            np.concatenate([d, reciprocals(d)]))


def block_call_arrays(G, d, L):
    """``(block_fn, G^T, L, L^T, DE)``: the address of the compiled Woodbury block
    (:func:`.woodbury_rows.woodbury_block_address`) and :func:`factor_arrays`, for the
    kernels that call the block through :func:`.woodbury_rows.call_woodbury_block`."""
    return (woodbury_block_address(), *factor_arrays(G, d, L))


def sur_matvec(X, offsets, beta, compensated, out=None):
    """``U`` (N, K): ``U[i, j]`` = CRO-1 dot of ``X[i, o_j:o_j+1]`` with ``beta[o_j:o_j+1]``
    (validated inputs), into ``out`` (C-contiguous (N, K), any contents) when given:
    the blocks write every entry (zeros for equations without regressors, from the zeroed
    block scratch)."""
    shape = (X.shape[0], offsets.shape[0] - 1)
    if out is None:
        out = np.zeros(shape)
    elif not X.shape[1]:
        out[:] = 0.0
    if out.size and X.shape[1]:
        plan = sur_plan(offsets)
        run_tasks(_dots_tasks, _slabs(X.shape[0]), X, plan.dest, plan.tiles, plan.eqs,
                  plan.widest_tile, plan.widest_equation,
                  np.ascontiguousarray(beta[plan.perm]), compensated, out)
    return out


def woodbury_solve(R, G, d, L, compensated, out=None):
    """``R Sigma^-1`` row by row (validated inputs), into ``out`` (C-contiguous, the shape
    of ``R``, or ``R`` itself: each block of 32 rows is gathered before it is written)
    when given."""
    out = fresh(R.shape) if out is None else out
    if R.size:
        run_tasks(_woodbury_tasks, _slabs(R.shape[0]), R, *factor_arrays(G, d, L),
                  compensated, out)
    return out


def sur_rmatvec(X, offsets, W, compensated):
    """``g[m]`` = CRO-1 over rows of ``X[i, m] * W[i, eq(m)]`` (validated inputs)."""
    plan = sur_plan(offsets)
    return _over_rows(X, _rmatvec_lanes, plan.perm, plan.dest, plan.tiles, plan.eqs,
                      plan.widest_tile, W, compensated)


def normal_matvec(X, offsets, v, G, d, L, compensated):
    """Fused ``X^T [(X v) Sigma^-1]`` (validated inputs), reading X once."""
    plan = sur_plan(offsets)
    return _over_rows(X, _normal_lanes, plan.perm, plan.dest, plan.tiles, plan.eqs,
                      plan.widest_tile, plan.widest_equation,
                      np.ascontiguousarray(v[plan.perm]), *block_call_arrays(G, d, L),
                      compensated)
