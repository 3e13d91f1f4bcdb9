"""Products with several right-hand sides in one pass: ``A B`` and ``A^T B``.

Column ``q`` of each result has exactly the bits of one ``gemv``/``gemv_t`` call with
column ``q`` of ``B`` (same terms, same CRO-1 order), so callers that looped over the
columns get the same numbers from one pass over ``A`` instead of one pass per column:

* ``rows_times(A, BT)``: ``out[i, q]`` = CRO-1 dot of row ``i`` of A with ``BT[q]``
  (``BT`` is ``B^T``, C-contiguous, so each dot reads two contiguous segments);
* ``rows_transposed_times(A, B)``: ``out[m, q]`` = CRO-1 reduction over rows ``i`` of
  ``fl(A[i, m] * B[i, q])``.

The estimator's Sigma-step uses them to apply ``S = E^T E / N`` to a few vectors from the
N x K residuals without forming S (large K).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import blocked
from ._cro import CHUNK, LANES, dot_segment, segment_scratch
from .linalg import ROW_BLOCK, chunk_tree_columns, n_chunks
from .views import unmanaged

__all__ = ["rows_times", "rows_transposed_times"]

#: Columns of A per task of ``rows_transposed_times`` (accumulators: k x 32 x 32 x 2).
COLUMN_TILE = 32


@njit(parallel=True, cache=True)
def _rows_times_kernel(A, BT, compensated, out):
    m, n = A.shape
    k = BT.shape[0]
    for blk in prange((m + ROW_BLOCK - 1) // ROW_BLOCK):
        ps, pc = segment_scratch(n)
        Av, BTv = unmanaged(A), unmanaged(BT)  # rows without atomic reference counts
        for i in range(blk * ROW_BLOCK, min(m, (blk + 1) * ROW_BLOCK)):
            for q in range(k):
                out[i, q] = dot_segment(Av[i], BTv[q], compensated, ps, pc)


def rows_times(A: np.ndarray, BT: np.ndarray, compensated: bool) -> np.ndarray:
    """``A B`` (m x k) with ``BT = B^T`` (k x n); entry ``[i, q]`` has the bits of
    ``gemv(A, B[:, q])[i]``. Inputs C-contiguous float64 (not validated here)."""
    out = np.empty((A.shape[0], BT.shape[0]))
    if out.size:
        _rows_times_kernel(A, BT, compensated, out)
    return out


@njit(parallel=True, cache=True)
def _transposed_partials(A, B, compensated, PS, PC):
    """Chunk partials ``PS[c, q, m]``: lane ``l`` of chunk ``c`` sums rows
    ``c*CHUNK + l + 32 t`` of ``A[i, m] * B[i, q]``. Tasks are (chunk, column tile)."""
    N, P = A.shape
    k = B.shape[1]
    n_tiles = (P + COLUMN_TILE - 1) // COLUMN_TILE
    zero = blocked.runtime_int(0)
    for task in prange(PS.shape[0] * n_tiles):
        c = task // n_tiles
        m0 = (task % n_tiles) * COLUMN_TILE
        m1 = min(P, m0 + COLUMN_TILE)
        width = m1 - m0
        ST = np.full((k * width, LANES), -0.0)
        ET = np.full((k * width, LANES), -0.0)
        AT = np.empty((width, LANES))
        BTb = np.empty((k, LANES))
        eq = np.zeros(width, dtype=np.int64)
        for i0 in range(c * CHUNK, min(N, (c + 1) * CHUNK), LANES):
            nb = min(LANES, N - i0)
            blocked.transpose_rows(A, i0, nb, m0, m1, AT)
            blocked.transpose_rows(B, i0, nb, zero, k, BTb)
            for q in range(k):
                blocked.accumulate_lanes(AT, BTb[q:q + 1], eq, zero, width, nb, compensated,
                                         ST[q * width:(q + 1) * width],
                                         ET[q * width:(q + 1) * width])
        for q in range(k):
            blocked.lane_tree_columns_t(ST[q * width:(q + 1) * width],
                                        ET[q * width:(q + 1) * width], width, compensated,
                                        PS[c, q, m0:m1], PC[c, q, m0:m1])


def rows_transposed_times(A: np.ndarray, B: np.ndarray, compensated: bool) -> np.ndarray:
    """``A^T B`` (P x k) for A (N x P) and B (N x k); entry ``[m, q]`` has the bits of
    ``gemv_t(A, B[:, q])[m]``. Inputs C-contiguous float64 (not validated here)."""
    N, P = A.shape
    k = B.shape[1]
    if N == 0 or P == 0 or k == 0:
        return np.zeros((P, k))
    PS = np.empty((n_chunks(N), k, P))
    PC = np.empty((n_chunks(N), k, P))
    _transposed_partials(A, B, compensated, PS, PC)
    flat = np.empty(k * P)
    chunk_tree_columns(PS.reshape(PS.shape[0], k * P), PC.reshape(PC.shape[0], k * P),
                        compensated, flat)
    return np.ascontiguousarray(flat.reshape(k, P).T)
