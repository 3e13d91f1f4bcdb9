"""CRO-1 ``sum``, ``dot`` and ``nrm2`` on NVIDIA GPUs (CuPy ``RawModule``, NVRTC).

One warp per chunk (grid-stride over chunks), the lane tree as warp shuffles, the chunk
tree in one block with ping-pong buffers (no atomics), the final step on the host with
the reference's own :func:`~reprogls.kernels.reference.finalize`. Inputs are validated,
C-contiguous 1-D float64 CuPy arrays on the current device.

The launch shape (``warps_per_block``) does not change the bits: chunk ``c`` is always
reduced by one warp in the same order, whichever warp that is.
"""

from __future__ import annotations

import cupy as cp
import numpy as np

from ..reference import cro as _ref
from ._launch import WARPS_PER_BLOCK, kernel, warp_grid

#: Threads of the single block that runs the chunk tree.
TREE_THREADS = 256
_KIND_SUM, _KIND_DOT, _KIND_SCALED_SQUARES = 0, 1, 2


def _kernel(name: str) -> cp.RawKernel:
    return kernel("reductions.cu", name)


_grid = warp_grid


def _reduce(x, y, kind: int, compensated: bool, f1: float, f2: float,
            warps_per_block: int) -> float:
    n = x.shape[0]
    n_chunks = -(-n // _ref.CHUNK)
    ps, pc, qs, qc = (cp.empty(n_chunks, dtype=cp.float64) for _ in range(4))
    grid, block = _grid(n_chunks, warps_per_block)
    _kernel("cro1_chunk_partials")(grid, block, (
        x, y, np.int64(n), np.int32(kind), np.int32(compensated),
        np.float64(f1), np.float64(f2), ps, pc))
    root = cp.empty(2, dtype=cp.float64)
    _kernel("cro1_chunk_tree")((1,), (TREE_THREADS,), (
        ps, pc, qs, qc, np.int64(n_chunks), np.int32(compensated), root))
    s, comp = root.get()
    return _ref.finalize(float(s), float(comp), compensated)


def cro_sum(x, compensated: bool, warps_per_block: int = WARPS_PER_BLOCK) -> float:
    """CRO-1 sum; bitwise equal to :func:`reference.cro_sum`."""
    if x.shape[0] == 0:
        return 0.0
    return _reduce(x, x, _KIND_SUM, compensated, 1.0, 1.0, warps_per_block)


def cro_dot(x, y, compensated: bool, warps_per_block: int = WARPS_PER_BLOCK) -> float:
    """CRO-1 dot product; bitwise equal to :func:`reference.cro_dot`."""
    if x.shape[0] == 0:
        return 0.0
    return _reduce(x, y, _KIND_DOT, compensated, 1.0, 1.0, warps_per_block)


def cro_nrm2(x, compensated: bool, warps_per_block: int = WARPS_PER_BLOCK) -> float:
    """Scaled Euclidean norm; bitwise equal to :func:`reference.cro_nrm2`."""
    n = x.shape[0]
    if n == 0:
        return 0.0
    n_chunks = -(-n // _ref.CHUNK)
    chunk_max = cp.empty(n_chunks, dtype=cp.float64)
    chunk_nan = cp.empty(n_chunks, dtype=cp.int32)
    grid, block = _grid(n_chunks, warps_per_block)
    _kernel("cro1_chunk_absmax")(grid, block, (x, np.int64(n), chunk_max, chunk_nan))
    # max is exact, so where it is taken does not matter: the host decides as the CPU does
    result, e, f1, f2 = _ref.nrm2_plan(float(chunk_max.get().max()),
                                       bool(chunk_nan.get().any()))
    if result is not None:
        return result
    ssq = _reduce(x, x, _KIND_SCALED_SQUARES, compensated, f1, f2, warps_per_block)
    return _ref.nrm2_finish(ssq, e)
