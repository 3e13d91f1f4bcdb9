"""Column-pair Gram entries in one pass over X: ``G(m, a)`` = CRO-1 over rows of
``fl(X[i, m] * X[i, a])``.

Each entry has exactly the bits of ``gemv_t(X, X[:, a])[m]`` (the same terms, lanes and
trees; IEEE multiplication is commutative), so the per-equation Gram blocks ``X_j^T X_j``
of the OLS start and the residual cross-moment ``E^T E`` of the Sigma-step are both
special cases, computed here without forming a column copy per entry.

Work is a list of *tiles*; a tile names a few columns (``tile_cols``) and the pairs among
them it computes (``tile_pairs``, local column indices). A parallel task is one (CRO-1
chunk, tile): for every block of 32 rows (one row per lane) it transposes the tile's
columns once, and every pair's 32 lane accumulators update 4 lanes per AVX instruction.
Tiles are sized so their accumulators stay in L2. The chunk partials then go through the
CRO-1 chunk tree, so no result depends on the number of threads.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit, prange

from ._cro import CHUNK, LANES, two_sum
from .blocked import lane_tree_columns_t
from .linalg import _chunk_tree_columns, n_chunks

__all__ = ["PairPlan", "block_pair_plan", "column_pair_grams", "lower_pair_plan"]

#: Pairs per tile (accumulators: 2 x 32 x 8 bytes per pair = 128 KiB at 256 pairs).
PAIRS_PER_TILE = 256
#: Columns per side of the square tiles of :func:`lower_pair_plan` (16 x 16 = 256 pairs).
SQUARE_TILE = 16


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


@functools.lru_cache(maxsize=2)
def lower_pair_plan(K: int) -> PairPlan:
    """Every pair ``(m, a)``, ``m >= a``, of K columns, in square tiles of SQUARE_TILE
    columns per side (the diagonal tiles hold their lower triangle). Cached per K (the
    Sigma-step asks for the same plan every sweep); treat the result as read-only."""
    tiles = []
    for a0 in range(0, K, SQUARE_TILE):
        a_cols = np.arange(a0, min(K, a0 + SQUARE_TILE))
        for m0 in range(a0, K, SQUARE_TILE):
            m_cols = np.arange(m0, min(K, m0 + SQUARE_TILE))
            cols = a_cols if m0 == a0 else np.concatenate([a_cols, m_cols])
            tiles.append((cols, _lower_pairs(m_cols, a_cols)))
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
    _chunk_tree_columns(PS, PC, compensated, out)
    return out
