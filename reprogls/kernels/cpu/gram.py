"""Column-pair Gram entries in one pass over X: ``G(m, a)`` = CRO-1 over rows of
``fl(X[i, m] * X[i, a])``.

Each entry has exactly the bits of ``gemv_t(X, X[:, a])[m]`` (the same terms, lanes and
trees; IEEE multiplication is commutative). Two kernels, for two shapes of work:

* :func:`column_pair_grams` computes a *sparse* set of pairs given as a
  :class:`PairPlan` -- the per-equation Gram blocks ``X_j^T X_j`` of the OLS start
  (:func:`block_pair_plan`). Work is a list of tiles; a tile names a few columns and the
  pairs among them. A parallel task is one (CRO-1 chunk, tile): for every block of 32
  rows (one row per lane) it transposes the tile's columns once (8 x 8 vector shuffles
  when they are consecutive, as whole equations are), and every pair's 32 lane
  accumulators update a vector of lanes per instruction.
* :func:`lower_gram` computes the *whole* lower triangle (``X^T X`` of the gram solver
  and the standard errors, ``E^T E`` of the Sigma-step) in square column tiles, one lane
  at a time, with 4 x 8 blocks of lane sums held in vector registers over the lane's
  rows (:func:`.simd.gram_block`, a matrix-product micro-kernel that keeps the CRO-1
  order).

The chunk partials then go through the CRO-1 chunk tree, so no result depends on the
number of threads.
"""

from __future__ import annotations

import numpy as np

from . import scratch
from ._cro import CHUNK, LANES, two_sum
from .blocked import lane_tree_columns_t, runtime_int
from .jit import njit
from .linalg import chunk_tree_columns, n_chunks
from .segments import merge_segments
from .simd import gram_block, lane_steps8, transpose8x8
from .tasks import lpt_schedule, run_tasks, schedule_bins, threads
from .views import unmanaged

__all__ = ["TILE", "PairPlan", "block_pair_plan", "column_pair_grams", "lower_gram"]

#: Pairs per tile (accumulators: 2 x 32 x 8 bytes per pair = 512 KiB, in L2). Wider
#: tiles mean fewer, longer reads of each row: at N = 20000, K = 200, p = 10 the per-
#: equation blocks took 134 / 156 ms (plain / compensated) with 256 pairs per tile and
#: 75 / 91 ms with 1024 (2048: 99 / 120 ms, too few tasks and L2 overflows).
PAIRS_PER_TILE = 1024


class PairPlan:
    """Tiles of column pairs: CSR arrays ``col_ptr/cols`` and ``pair_ptr/pairs``.

    ``pairs`` is (n_pairs, 2) of tile-local column indices; ``targets`` (n_pairs, 2) holds
    the global ``(m, a)`` of every pair in the same order (where the result goes). Index
    arrays are int32 (a plan for K = 2000 columns holds two million pairs).
    """

    def __init__(self, tiles: list[tuple[np.ndarray, np.ndarray]]):
        """``tiles``: ``(cols, targets)`` per tile; ``cols`` sorted, every target column
        in ``cols``."""
        cols = [np.asarray(c, dtype=np.int32) for c, _ in tiles]
        targets = [np.asarray(t, dtype=np.int32).reshape(-1, 2) for _, t in tiles]
        self.cols = np.concatenate(cols) if cols else np.zeros(0, np.int32)
        self.col_ptr = np.concatenate([[0], np.cumsum([c.size for c in cols])]).astype(
            np.int32)
        self.targets = (np.concatenate(targets) if targets else
                        np.zeros((0, 2), np.int32))
        self.pair_ptr = np.concatenate([[0], np.cumsum([t.shape[0] for t in targets])]
                                       ).astype(np.int32)
        self.pairs = np.concatenate(
            [np.searchsorted(c, t) for c, t in zip(cols, targets, strict=True)]
        ).astype(np.int32).reshape(-1, 2) if tiles else np.zeros((0, 2), np.int32)

    @property
    def n_pairs(self) -> int:
        return int(self.pairs.shape[0])


def _lower_pairs(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``(m, a)`` for ``a`` in cols (outer), ``m`` in rows (inner), ``m >= a``."""
    a, m = np.meshgrid(cols, rows, indexing="ij")
    keep = m >= a
    return np.column_stack([m[keep], a[keep]])


def block_pair_plan(offsets: np.ndarray) -> PairPlan:
    """Pairs ``(o_j + c, o_j + a)``, ``c >= a``, of every equation's Gram block; tiles
    are runs of whole equations with at most PAIRS_PER_TILE pairs (a wider equation is
    split into tiles of its own, by columns ``a``)."""
    tiles: list = []
    run_cols: list[np.ndarray] = []
    run_pairs: list[np.ndarray] = []
    n_run = 0

    def flush():
        nonlocal run_cols, run_pairs, n_run
        if run_pairs:
            tiles.append((np.concatenate(run_cols), np.concatenate(run_pairs)))
        run_cols, run_pairs, n_run = [], [], 0

    templates: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # width -> (cols, pairs) at 0
    for j in range(offsets.shape[0] - 1):
        o, p = int(offsets[j]), int(offsets[j + 1] - offsets[j])
        if p not in templates:
            base = np.arange(p)
            templates[p] = (base, _lower_pairs(base, base))
        cols, pairs = templates[p][0] + o, templates[p][1] + o
        if n_run + pairs.shape[0] > PAIRS_PER_TILE:
            flush()
        if pairs.shape[0] <= PAIRS_PER_TILE:
            run_cols.append(cols)
            run_pairs.append(pairs)
            n_run += pairs.shape[0]
            continue
        for start in range(0, pairs.shape[0], PAIRS_PER_TILE):
            part = pairs[start:start + PAIRS_PER_TILE]
            tiles.append((np.unique(part), part))
    flush()
    return PairPlan(tiles)


@njit(cache=True)
def _accumulate_pairs(XT, pairs, p0, p1, nb, compensated, ST, ET):
    """One CRO-1 lane step per lane ``b < nb`` of every pair ``(m, a)`` of the tile:
    ``ST[pair, b]`` takes ``fl(XT[m, b] * XT[a, b])``. A whole block (``nb = 32``) runs
    as four 8-lane vector steps (:func:`.simd.lane_steps8`: as a loop, LLVM could not
    prove the rows of ``ST``/``ET`` and ``XT`` apart and left it scalar, 2x slower)."""
    XTf = unmanaged(XT.reshape(XT.size))
    STf, ETf = unmanaged(ST.reshape(ST.size)), unmanaged(ET.reshape(ET.size))
    for pp in range(p0, p1):
        acc = (pp - p0) * LANES
        x, y = pairs[pp, 0] * LANES, pairs[pp, 1] * LANES
        if nb == LANES:
            for g in range(0, LANES, 8):
                if compensated:
                    lane_steps8(STf, ETf, acc + g, XTf[x:], XTf[y:], g, 1, True)
                else:
                    lane_steps8(STf, ETf, acc + g, XTf[x:], XTf[y:], g, 1, False)
            continue
        for b in range(nb):
            term = XTf[x + b] * XTf[y + b]
            if compensated:
                STf[acc + b], e = two_sum(STf[acc + b], term)
                ETf[acc + b] += e
            else:
                STf[acc + b] += term


#: Blocks of 32 rows gathered together by the pair kernel: each pair's eight-lane
#: accumulators are then loaded and stored once per STEPS lane steps, not per step.
STEPS = 4


@njit(cache=True)
def _gather_steps(X, i0, cols, q0, q1, whole, XT4):
    """``XT4[q - q0, (g * STEPS + s) * 8 + b] = X[i0 + 32 s + 8 g + b, cols[q]]``: the
    STEPS full blocks of 32 rows from ``i0``, lane group ``g``'s steps contiguous (8 x 8
    vector transposes for the first ``whole`` consecutive columns)."""
    for s in range(STEPS):
        for g in range(4):
            row0 = i0 + s * LANES + g * 8
            dst = (g * STEPS + s) * 8
            for m in range(0, whole, 8):
                transpose8x8(X, row0, cols[q0] + m, XT4, m, dst)
            for b in range(8):
                row = X[row0 + b]
                for q in range(q0 + whole, q1):
                    XT4[q - q0, dst + b] = row[cols[q]]


@njit(cache=True)
def _accumulate_pairs_steps(XT4, pairs, p0, p1, compensated, ST, ET):
    """STEPS lane steps per lane of every pair of the tile, from :func:`_gather_steps`'s
    layout, in row order (``lane_steps8`` with ``STEPS`` steps per eight lanes)."""
    width = XT4.shape[1]
    XTf = unmanaged(XT4.reshape(XT4.size))
    STf, ETf = unmanaged(ST.reshape(ST.size)), unmanaged(ET.reshape(ET.size))
    for pp in range(p0, p1):
        acc = (pp - p0) * LANES
        x, y = pairs[pp, 0] * width, pairs[pp, 1] * width
        for g in range(4):
            o = g * STEPS * 8
            if compensated:
                lane_steps8(STf, ETf, acc + 8 * g, XTf[x:], XTf[y:], o, STEPS, True)
            else:
                lane_steps8(STf, ETf, acc + 8 * g, XTf[x:], XTf[y:], o, STEPS, False)


@njit(nogil=True, cache=True)
def _pair_partials(t0, t1, X, cols, col_ptr, pairs, pair_ptr, compensated, PS, PC):
    """Chunk partials ``PS[c, pair]``/``PC[c, pair]`` (module docstring) of the tasks
    (chunk, tile) ``t0 .. t1 - 1``."""
    N = X.shape[0]
    n_tiles = col_ptr.shape[0] - 1
    for task in range(t0, t1):
        c = task // n_tiles
        tile = task % n_tiles
        q0, q1 = col_ptr[tile], col_ptr[tile + 1]
        p0, p1 = pair_ptr[tile], pair_ptr[tile + 1]
        XT = np.empty((q1 - q0, LANES))
        XT4 = np.empty((q1 - q0, LANES * STEPS))
        ST = np.full((p1 - p0, LANES), -0.0)
        ET = np.full((p1 - p0, LANES), -0.0)
        width = q1 - q0
        run = cols[q1 - 1] - cols[q0] == width - 1  # consecutive columns (whole equations)
        whole = width - width % 8 if run else 0
        stop = min(N, (c + 1) * CHUNK)
        first = c * CHUNK
        while first + STEPS * LANES <= stop:  # STEPS full blocks at a time
            _gather_steps(X, first, cols, q0, q1, whole, XT4)
            _accumulate_pairs_steps(XT4, pairs, p0, p1, compensated, ST, ET)
            first += STEPS * LANES
        for i0 in range(first, stop, LANES):  # the rest, block by block (same order)
            nb = min(LANES, N - i0)
            start = 0
            if nb == LANES:  # 8 x 8 tiles moved by vector shuffles
                for b0 in range(0, LANES, 8):
                    for m in range(0, whole, 8):
                        transpose8x8(X, i0 + b0, cols[q0] + m, XT, m, b0)
                start = whole
            for b in range(nb):
                row = X[i0 + b]
                for q in range(q0 + start, q1):
                    XT[q - q0, b] = row[cols[q]]
            _accumulate_pairs(XT, pairs, p0, p1, nb, compensated, ST, ET)
        lane_tree_columns_t(ST, ET, p1 - p0, compensated, PS[c, p0:p1], PC[c, p0:p1])


def column_pair_grams(X: np.ndarray, plan: PairPlan, compensated: bool) -> np.ndarray:
    """Finalized CRO-1 ``G(m, a)`` for every pair of ``plan`` (in ``plan.targets`` order).

    ``X`` must be C-contiguous float64 (N, P).
    """
    out = np.zeros(plan.n_pairs)
    if X.shape[0] == 0 or plan.n_pairs == 0:
        return out
    PS = np.empty((n_chunks(X.shape[0]), plan.n_pairs))
    PC = np.empty_like(PS)
    run_tasks(_pair_partials, PS.shape[0] * (plan.col_ptr.shape[0] - 1), X, plan.cols,
              plan.col_ptr, plan.pairs, plan.pair_ptr, compensated, PS, PC,
              work=8 * X.shape[0] * plan.n_pairs)  # a term per pair and row
    chunk_tree_columns(PS, PC, compensated, out)
    return out


# --- Dense lower Gram: strips of 32 columns, lane by lane, register-blocked -------------
#: Columns per strip (and per side of a tile) of :func:`lower_gram`.
TILE = 32
#: Rows of one CRO-1 lane in a whole chunk.
LANE_ROWS = CHUNK // LANES
#: Rows of a lane that :func:`_tile_lanes` runs through all 32 of its register blocks
#: before the next rows (each block's sums are stored and reloaded in between; every
#: sum still takes its terms in row order). 32 rows of the two strips are 16 KB and stay
#: in L1; the lane's whole 256 rows (128 KB) were streamed from L2 once per register
#: block and row of it. Zen 3, 2 threads, old (256) / new (32), ms: E^T E at N = 20000,
#: K = 200, compensated 75-96 / 70-77, plain 25-34 / 21-24; X^T X with 600 columns
#: compensated 605-617 / 487-500, plain 224-235 / 146-154 (16 rows: the same).
SUB_ROWS = 32


@njit(nogil=True, cache=True)
def _strips(t0, t1, X, c0, n_strips, lane_rows, XS):
    """Chunks ``c0 + t0 .. c0 + t1 - 1`` of X in lane-major column strips:
    ``XS[((cc * n_strips + s) * 32 + lane) * lane_rows + j, q] = X[i, s * 32 + q]`` for
    row ``i = (c0 + cc) * 8192 + lane + 32 j`` (zero past the last column). Reads X row
    by row; every (strip, lane) block of the result is contiguous."""
    N, P = X.shape
    for cc in range(t0, t1):
        row0 = (c0 + cc) * CHUNK
        for i in range(row0, min(N, row0 + CHUNK)):
            lane, j = (i - row0) % LANES, (i - row0) // LANES
            src = X[i]
            for s in range(n_strips):
                dst = XS[((cc * n_strips + s) * LANES + lane) * lane_rows + j]
                width = min(TILE, P - s * TILE)
                for q in range(width):
                    dst[q] = src[s * TILE + q]
                for q in range(width, TILE):
                    dst[q] = 0.0


@njit(cache=True)
def _tile_lanes(XS, base_m, base_a, rows, lane_rows, compensated, LS, LE, width_m, width_a,
                diagonal):
    """The 32 lane sums of every wanted entry of one tile: lane ``l`` of
    ``LS[l].reshape(32, 32)`` accumulates ``fl(M[j, r] * A[j, q])`` over its rows ``j`` in
    order, where ``M``/``A`` are the lane's blocks of the two strips (4 x 8 register
    blocks, :func:`.simd.gram_block`).

    A register block is skipped (its lane sums stay -0.0) when none of its entries is
    wanted: all its rows ``r >= width_m`` or all its columns ``q >= width_a`` (the strips'
    zero padding past column P), or, on a ``diagonal`` tile, all its entries above the
    diagonal (``r0 + 3 < q0``; the upper triangle is not returned). At K = 200 that is 27%
    of the blocks of ``E^T E``, at K = 50 nearly half."""
    one = runtime_int(1)
    for lane in range(LANES):
        n_rows = (rows - lane + LANES - 1) // LANES if lane < rows else 0
        acc = LS[lane].reshape((TILE, TILE))
        err = LE[lane].reshape((TILE, TILE))
        for j0 in range(0, n_rows, SUB_ROWS):  # the lane's rows in order, a run at a time
            a_row = (base_m * LANES + lane) * lane_rows + j0
            b_row = (base_a * LANES + lane) * lane_rows + j0
            m = min(SUB_ROWS, n_rows - j0)
            for r0 in range(0, width_m, 4):
                for q0 in range(0, width_a, 8):
                    if diagonal and r0 + 3 < q0:
                        continue
                    if compensated:
                        gram_block(XS, a_row, b_row, one, m, r0, q0, acc, err, r0, q0, True)
                    else:
                        gram_block(XS, a_row, b_row, one, m, r0, q0, acc, err, r0, q0, False)


def _register_blocks(tile_m: np.ndarray, tile_a: np.ndarray, P: int) -> np.ndarray:
    """Register blocks :func:`_tile_lanes` runs for each tile (its cost for the thread
    schedule: an integer count, no arithmetic on the data)."""
    width_m = np.minimum(TILE, P - tile_m * TILE)
    width_a = np.minimum(TILE, P - tile_a * TILE)
    r0 = np.arange(0, TILE, 4)[None, :, None]
    q0 = np.arange(0, TILE, 8)[None, None, :]
    run = ((r0 < width_m[:, None, None]) & (q0 < width_a[:, None, None])
           & ~((tile_m == tile_a)[:, None, None] & (r0 + 3 < q0)))
    return run.sum(axis=(1, 2))


@njit(nogil=True, cache=True)
def _tile_partials(t0, t1, XS, N, P, c0, n_strips, lane_rows, tile_m, tile_a, compensated,
                   order, starts, PS, PC):
    """Chunk partials ``PS[c, tile * 1024 + r * 32 + q]`` of ``G(m0 + r, a0 + q)`` for the
    chunks from ``c0`` on held in ``XS`` (:func:`_strips`): one task per (chunk, tile),
    ``task = (c - c0) * n_tiles + tile``; thread ``t`` (``t0 <= t < t1``) runs the tasks
    ``order[starts[t]:starts[t + 1]]``. The lane tree as flat merges of the 32 lanes'
    1024 sums."""
    n_tiles = tile_m.shape[0]
    size = TILE * TILE
    for idx in range(starts[t0], starts[t1]):
        task = order[idx]
        cc, tile = task // n_tiles, task % n_tiles
        c = c0 + cc
        rows = min(N, (c + 1) * CHUNK) - c * CHUNK
        LS = np.full((LANES, size), -0.0)
        LE = np.full((LANES, size), -0.0)
        sm, sa = tile_m[tile], tile_a[tile]
        _tile_lanes(XS, cc * n_strips + sm, cc * n_strips + sa, rows, lane_rows, compensated,
                    LS, LE, min(TILE, P - sm * TILE), min(TILE, P - sa * TILE), sm == sa)
        S, E = LS.reshape(LANES * size), LE.reshape(LANES * size)
        w = LANES // 2
        while w >= 1:
            merge_segments(S, E, runtime_int(0), w * size, w * size, compensated)
            w //= 2
        base = tile * size
        for x in range(size):
            PS[c, base + x] = S[x]
            PC[c, base + x] = E[x]


def lower_gram(X: np.ndarray, compensated: bool) -> np.ndarray:
    """``G`` (P, P) whose lower triangle ``G[m, a]``, ``m >= a``, is the finalized CRO-1
    reduction over rows of ``fl(X[i, m] * X[i, a])`` -- the same bits as
    :func:`column_pair_grams` and as ``gemv_t(X, X[:, a])[m]``. The strict upper
    triangle is unspecified.

    A chunk at a time (a few when there are few tiles), X is copied into lane-major
    strips of 32 columns (:func:`_strips`, one pass); then each parallel task is one
    (chunk, 32 x 32 tile of the triangle): lane by lane, the lane's 256 rows of the two
    strips (contiguous in the copy) update the tile's lane sums in 4 x 8 register blocks,
    then the lane tree. ``X`` must be C-contiguous float64. Extra memory: the strips of
    the chunks in flight (``min(N, 8192) x P`` values, padded to whole strips, times the
    chunks per batch).
    """
    N, P = X.shape
    if N == 0 or P == 0:
        return np.zeros((P, P))
    nb = -(-P // TILE)
    tm, ta = np.tril_indices(nb)
    tile_m, tile_a = tm.astype(np.int64), ta.astype(np.int64)
    n_ch = n_chunks(N)
    PS = np.empty((n_ch, tile_m.size * TILE * TILE))
    PC = np.empty_like(PS)
    n_threads = threads()
    # one chunk at a time has enough tiles for every thread (and holds one chunk's strips)
    batch = 1 if tile_m.size >= 4 * n_threads else min(n_ch, n_threads)
    lane_rows = min(LANE_ROWS, -(-N // LANES))  # rows of a lane in the longest chunk
    # a reused buffer when small enough (scratch: no page faults); every value the tiles
    # read is written by _strips first
    XS = scratch.empty((batch * nb * LANES * lane_rows, TILE))
    blocks = _register_blocks(tile_m, tile_a, P)
    for c0 in range(0, n_ch, batch):
        c1 = min(n_ch, c0 + batch)
        run_tasks(_strips, c1 - c0, X, c0, nb, lane_rows, XS)
        rows = np.minimum(N - np.arange(c0, c1) * CHUNK, CHUNK)
        bins = min(schedule_bins(), (c1 - c0) * tile_m.size)
        order, starts = lpt_schedule((rows[:, None] * blocks[None, :]).ravel(), bins)
        run_tasks(_tile_partials, bins, XS, N, P, c0, nb, lane_rows, tile_m,
                  tile_a, compensated, order, starts, PS, PC,
                  work=4 * int(rows.sum()) * P * P)  # a term per row and pair, m >= a
    flat = np.empty(PS.shape[1])
    chunk_tree_columns(PS, PC, compensated, flat)
    padded = np.zeros((nb, TILE, nb, TILE))
    padded[tile_m, :, tile_a, :] = flat.reshape(tile_m.size, TILE, TILE)
    return np.ascontiguousarray(padded.reshape(nb * TILE, nb * TILE)[:P, :P])
