"""CRO-1 ``sum``, ``dot`` and ``nrm2`` on the CPU (Numba, parallel over chunks).

Each kernel runs ``prange`` over the CRO-1 chunks; every chunk owns one output slot
(its lane-tree partial), and the chunk tree runs after the parallel loop, so the result
does not depend on the number of threads. Inputs are validated 1-D float64 NumPy arrays
(contiguous or strided); see :mod:`reprogls.kernels.reference` for the exact order.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..reference import cro as _ref
from ._cro import (
    CHUNK,
    chunk_tree,
    finalize,
    lanes_partial,
    scaled_squares_partial,
)


def _n_chunks(n: int) -> int:
    return -(-n // CHUNK)


@njit(parallel=True, cache=True)
def _sum_kernel(x, compensated, ps, pc):
    n = x.shape[0]
    for c in prange(ps.shape[0]):
        start = c * CHUNK
        ps[c], pc[c] = lanes_partial(x, None, start, min(n, start + CHUNK) - start,
                                     compensated)
    return finalize(*chunk_tree(ps, pc, compensated), compensated)


@njit(parallel=True, cache=True)
def _dot_kernel(x, y, compensated, ps, pc):
    n = x.shape[0]
    for c in prange(ps.shape[0]):
        start = c * CHUNK
        ps[c], pc[c] = lanes_partial(x, y, start, min(n, start + CHUNK) - start, compensated)
    return finalize(*chunk_tree(ps, pc, compensated), compensated)


@njit(parallel=True, cache=True)
def _scaled_squares_kernel(x, f1, f2, compensated, ps, pc):
    n = x.shape[0]
    for c in prange(ps.shape[0]):
        start = c * CHUNK
        ps[c], pc[c] = scaled_squares_partial(x[start:min(n, start + CHUNK)], f1, f2,
                                              compensated)
    return finalize(*chunk_tree(ps, pc, compensated), compensated)


@njit(parallel=True, cache=True)
def _absmax_kernel(x, chunk_max, chunk_nan):
    """Per chunk: ``max |x_i|`` (exact, any order) and whether a NaN occurs."""
    n = x.shape[0]
    for c in prange(chunk_max.shape[0]):
        m = 0.0
        has_nan = False
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            a = abs(x[i])
            has_nan |= a != a
            m = a if a > m else m
        chunk_max[c] = m
        chunk_nan[c] = has_nan


def _partials(n: int) -> tuple[np.ndarray, np.ndarray]:
    m = _n_chunks(n)
    return np.empty(m), np.empty(m)


def cro_sum(x: np.ndarray, compensated: bool) -> float:
    """CRO-1 sum; bitwise equal to :func:`reference.cro_sum`."""
    if x.shape[0] == 0:
        return 0.0
    return float(_sum_kernel(x, compensated, *_partials(x.shape[0])))


def cro_dot(x: np.ndarray, y: np.ndarray, compensated: bool) -> float:
    """CRO-1 dot product; bitwise equal to :func:`reference.cro_dot`."""
    if x.shape[0] == 0:
        return 0.0
    return float(_dot_kernel(x, y, compensated, *_partials(x.shape[0])))


def cro_nrm2(x: np.ndarray, compensated: bool) -> float:
    """Scaled Euclidean norm; bitwise equal to :func:`reference.cro_nrm2`."""
    n = x.shape[0]
    if n == 0:
        return 0.0
    chunk_max = np.empty(_n_chunks(n))
    chunk_nan = np.empty(_n_chunks(n), dtype=np.bool_)
    _absmax_kernel(x, chunk_max, chunk_nan)
    # max is exact, so its order does not matter
    result, e, f1, f2 = _ref.nrm2_plan(float(chunk_max.max()), bool(chunk_nan.any()))
    if result is not None:
        return result
    ssq = _scaled_squares_kernel(x, f1, f2, compensated, *_partials(n))
    return _ref.nrm2_finish(float(ssq), e)
