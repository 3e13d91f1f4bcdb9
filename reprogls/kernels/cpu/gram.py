"""Column-pair Gram entries in one pass over X: ``G(m, a)`` = CRO-1 over rows of
``fl(X[i, m] * X[i, a])``.

Each entry has exactly the bits of ``gemv_t(X, X[:, a])[m]`` (the same terms, lanes and
trees; IEEE multiplication is commutative). Two kernels, for two shapes of work:

* :func:`column_pair_grams` computes a *sparse* set of pairs given as a
  :class:`PairPlan` -- the per-equation Gram blocks ``X_j^T X_j`` of the OLS start
  (:func:`block_pair_plan`). Work is a list of tiles; a tile names a few columns and the
  pairs among them. A parallel task is one (CRO-1 chunk, tile): for every block of 32
  rows (one row per lane) it transposes the tile's columns once, and every pair's 32
  lane accumulators update 4 lanes per AVX instruction.
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
from numba import njit, prange

from ._cro import CHUNK, LANES, two_sum
from .blocked import lane_tree_columns_t, runtime_int
from .linalg import chunk_tree_columns, n_chunks
from .simd import gram_block

__all__ = ["TILE", "PairPlan", "block_pair_plan", "column_pair_grams", "lower_gram"]

#: Pairs per tile (accumulators: 2 x 32 x 8 bytes per pair = 128 KiB at 256 pairs).
PAIRS_PER_TILE = 256


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

    for j in range(offsets.shape[0] - 1):
        cols = np.arange(int(offsets[j]), int(offsets[j + 1]))
        pairs = _lower_pairs(cols, cols)
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
def _accumulate_pairs(XT, pairs, p0, p1, nb, ST, ET):
    for pp in range(p0, p1):
        x, y, st, et = XT[pairs[pp, 0]], XT[pairs[pp, 1]], ST[pp - p0], ET[pp - p0]
        for b in range(nb):
            st[b], e = two_sum(st[b], x[b] * y[b])
            et[b] += e


@njit(cache=True)
def _accumulate_pairs_plain(XT, pairs, p0, p1, nb, ST):
    for pp in range(p0, p1):
        x, y, st = XT[pairs[pp, 0]], XT[pairs[pp, 1]], ST[pp - p0]
        for b in range(nb):
            st[b] += x[b] * y[b]


@njit(parallel=True, cache=True)
def _pair_partials(X, cols, col_ptr, pairs, pair_ptr, compensated, PS, PC):
    """Chunk partials ``PS[c, pair]``/``PC[c, pair]`` (module docstring)."""
    N = X.shape[0]
    n_tiles = col_ptr.shape[0] - 1
    for task in prange(PS.shape[0] * n_tiles):
        c = task // n_tiles
        tile = task % n_tiles
        q0, q1 = col_ptr[tile], col_ptr[tile + 1]
        p0, p1 = pair_ptr[tile], pair_ptr[tile + 1]
        XT = np.empty((q1 - q0, LANES))
        ST = np.full((p1 - p0, LANES), -0.0)
        ET = np.full((p1 - p0, LANES), -0.0)
        for i0 in range(c * CHUNK, min(N, (c + 1) * CHUNK), LANES):
            nb = min(LANES, N - i0)
            for b in range(nb):
                row = X[i0 + b]
                for q in range(q0, q1):
                    XT[q - q0, b] = row[cols[q]]
            if compensated:
                _accumulate_pairs(XT, pairs, p0, p1, nb, ST, ET)
            else:
                _accumulate_pairs_plain(XT, pairs, p0, p1, nb, ST)
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
    _pair_partials(X, plan.cols, plan.col_ptr, plan.pairs, plan.pair_ptr, compensated, PS,
                   PC)
    chunk_tree_columns(PS, PC, compensated, out)
    return out


# --- Dense lower Gram: register-friendly tiles, one lane at a time --------------------
#: Columns per side of a tile of :func:`lower_gram` (the lane accumulators of one tile,
#: ``TILE^2`` per lane, stay in L1; its lane partials, ``TILE^2 x 32``, in L2).
TILE = 32


@njit(cache=True)
def _pack_lane(X, first_row, n_rows, col0, width, out, at):
    """``out[j, at + q] = X[first_row + 32 j, col0 + q]`` for ``q < width``, zero beyond
    (``q < TILE``): the edge tiles, whose columns end inside a tile."""
    for j in range(n_rows):
        row = X[first_row + LANES * j]
        for q in range(width):
            out[j, at + q] = row[col0 + q]
        for q in range(width, TILE):
            out[j, at + q] = 0.0


@njit(cache=True)
def _lane_products(A, a_row, b_row, step, n_rows, a_col, b_col, compensated, acc, err):
    """``acc[r, q]`` accumulates ``fl(A[a_row + j step, a_col + r] * A[b_row + j step,
    b_col + q])`` for ``j = 0..n_rows-1`` in order (one lane; TwoSum into ``err`` when
    compensated), in 4 x 8 register blocks (:func:`.simd.gram_block`)."""
    for r0 in range(0, TILE, 4):
        for q0 in range(0, TILE, 8):
            if compensated:
                gram_block(A, a_row, b_row, step, n_rows, a_col + r0, b_col + q0, acc, err,
                           r0, q0, True)
            else:
                gram_block(A, a_row, b_row, step, n_rows, a_col + r0, b_col + q0, acc, err,
                           r0, q0, False)


@njit(parallel=True, cache=True)
def _lower_gram_partials(X, tile_m, tile_a, compensated, PS, PC):
    """Chunk partials ``PS[c, tile * TILE^2 + r * TILE + q]`` of ``G(m0 + r, a0 + q)``."""
    N, P = X.shape
    n_tiles = tile_m.shape[0]
    for task in prange(PS.shape[0] * n_tiles):
        c = task // n_tiles
        tile = task % n_tiles
        m0 = tile_m[tile] * TILE
        a0 = tile_a[tile] * TILE
        wm = min(TILE, P - m0)
        wa = min(TILE, P - a0)
        row0 = c * CHUNK
        rows = min(N, row0 + CHUNK) - row0
        inside = m0 + TILE <= P and a0 + TILE <= P  # whole tiles read X in place
        PM = np.empty((CHUNK // LANES, 2 * TILE))  # else: one lane's rows, packed
        acc = np.empty((TILE, TILE))
        err = np.empty((TILE, TILE))
        ST = np.empty((TILE * TILE, LANES))
        ET = np.empty((TILE * TILE, LANES))
        for lane in range(LANES):
            n_rows = (rows - lane + LANES - 1) // LANES if lane < rows else 0
            acc[:, :] = -0.0
            err[:, :] = -0.0
            if inside:
                _lane_products(X, row0 + lane, row0 + lane, runtime_int(LANES), n_rows, m0,
                               a0, compensated, acc, err)
            else:
                zero, second = runtime_int(0), runtime_int(TILE)
                _pack_lane(X, row0 + lane, n_rows, m0, wm, PM, zero)
                _pack_lane(X, row0 + lane, n_rows, a0, wa, PM, second)
                _lane_products(PM, zero, zero, runtime_int(1), n_rows, zero, second,
                               compensated, acc, err)
            for r in range(TILE):
                for q in range(TILE):
                    ST[r * TILE + q, lane] = acc[r, q]
                    ET[r * TILE + q, lane] = err[r, q]
        base = tile * TILE * TILE
        lane_tree_columns_t(ST, ET, TILE * TILE, compensated, PS[c, base:base + TILE * TILE],
                            PC[c, base:base + TILE * TILE])


def lower_gram(X: np.ndarray, compensated: bool) -> np.ndarray:
    """``G`` (P, P) whose lower triangle ``G[m, a]``, ``m >= a``, is the finalized CRO-1
    reduction over rows of ``fl(X[i, m] * X[i, a])`` -- the same bits as
    :func:`column_pair_grams` and as ``gemv_t(X, X[:, a])[m]``. The strict upper
    triangle is unspecified.

    Each parallel task is one (CRO-1 chunk, ``TILE x TILE`` column tile): lane by lane it
    packs the lane's rows of the tile's columns and updates all ``TILE^2`` lane sums one
    row at a time, vectorised across the tile's columns; then the lane tree of every
    entry. ``X`` must be C-contiguous float64.
    """
    N, P = X.shape
    if N == 0 or P == 0:
        return np.zeros((P, P))
    nb = -(-P // TILE)
    tm, ta = np.tril_indices(nb)
    tile_m, tile_a = tm.astype(np.int64), ta.astype(np.int64)
    PS = np.empty((n_chunks(N), tile_m.size * TILE * TILE))
    PC = np.empty_like(PS)
    _lower_gram_partials(X, tile_m, tile_a, compensated, PS, PC)
    flat = np.empty(PS.shape[1])
    chunk_tree_columns(PS, PC, compensated, flat)
    padded = np.zeros((nb, TILE, nb, TILE))
    padded[tile_m, :, tile_a, :] = flat.reshape(tile_m.size, TILE, TILE)
    return np.ascontiguousarray(padded.reshape(nb * TILE, nb * TILE)[:P, :P])
