"""CRO-1 ``sum``, ``dot`` and ``nrm2`` on the CPU (Numba, parallel over chunks).

Each kernel's tasks are the CRO-1 chunks, run over the threads by :func:`.tasks.run_tasks`;
every chunk owns one output slot (its lane-tree partial), and the chunk tree runs after
the parallel loop, so the result does not depend on the number of threads. Inputs are
validated C-contiguous 1-D float64 NumPy arrays (the public kernels copy strided ones,
:func:`reprogls.kernels._validate.as_vector`); see
:mod:`reprogls.kernels.reference` for the exact order.
"""

from __future__ import annotations

import numpy as np

from ..reference import cro as _ref
from ._cro import (
    CHUNK,
    chunk_root,
    chunk_tree,
    dot_segment,
    finalize,
    scaled_squares_partial,
)
from .jit import njit
from .tasks import run_tasks


def _n_chunks(n: int) -> int:
    return -(-n // CHUNK)


@njit(nogil=True, cache=True)
def _sum_tasks(c0, c1, x, compensated, ps, pc):
    """Chunks ``c0 .. c1 - 1``: ``ps[c], pc[c]`` = the chunk's lane-tree partial."""
    n = x.shape[0]
    for c in range(c0, c1):
        start = c * CHUNK
        ps[c], pc[c] = chunk_root(x, None, start, min(n, start + CHUNK) - start,
                                  compensated, True)  # streamed: prefetch where it pays


@njit(nogil=True, cache=True)
def _dot_tasks(c0, c1, x, y, compensated, ps, pc):
    n = x.shape[0]
    for c in range(c0, c1):
        start = c * CHUNK
        ps[c], pc[c] = chunk_root(x, y, start, min(n, start + CHUNK) - start, compensated,
                                  True)


@njit(nogil=True, cache=True)
def _scaled_squares_tasks(c0, c1, x, f1, f2, compensated, ps, pc):
    n = x.shape[0]
    for c in range(c0, c1):
        start = c * CHUNK
        ps[c], pc[c] = scaled_squares_partial(x[start:min(n, start + CHUNK)], f1, f2,
                                              compensated)


@njit(nogil=True, cache=True)
def _absmax_tasks(c0, c1, x, chunk_max, chunk_nan):
    """Per chunk: ``max |x_i|`` (exact, any order) and whether a NaN occurs."""
    n = x.shape[0]
    for c in range(c0, c1):
        m = 0.0
        has_nan = False
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            a = abs(x[i])
            has_nan |= a != a
            m = a if a > m else m
        chunk_max[c] = m
        chunk_nan[c] = has_nan


@njit(cache=True)
def _finish(ps, pc, compensated):
    """The chunk tree over the chunk partials, finalized."""
    return finalize(*chunk_tree(ps, pc, compensated), compensated)


def _reduce(tasks, n: int, *args) -> float:
    """Chunk partials by ``tasks`` over the threads (:mod:`.tasks`), then the chunk tree;
    ``args[-1]`` is ``compensated``."""
    ps, pc = _partials(n)
    run_tasks(tasks, ps.shape[0], *args, ps, pc)
    return float(_finish(ps, pc, args[-1]))


def _partials(n: int) -> tuple[np.ndarray, np.ndarray]:
    m = _n_chunks(n)
    return np.empty(m), np.empty(m)


@njit(cache=True)
def _one_chunk(x, y, compensated):
    """The finalized CRO-1 sum (``y`` None) or dot of at most one chunk of terms: the
    chunk's lane-tree root is the chunk tree's root as it is (:func:`._cro.dot_segment`),
    so the bits of :func:`_reduce` in one compiled call. The Sigma-step makes ~100 such
    dots of K terms per S fit; through :func:`_reduce` (two scratch arrays, the task
    runner, two compiled calls) each took ~8 us."""
    return dot_segment(x, y, compensated)


def cro_sum(x: np.ndarray, compensated: bool) -> float:
    """CRO-1 sum; bitwise equal to :func:`reference.cro_sum`."""
    if x.shape[0] == 0:
        return 0.0
    if x.shape[0] <= CHUNK:
        return float(_one_chunk(x, None, compensated))
    return _reduce(_sum_tasks, x.shape[0], x, compensated)


def cro_dot(x: np.ndarray, y: np.ndarray, compensated: bool) -> float:
    """CRO-1 dot product; bitwise equal to :func:`reference.cro_dot`."""
    if x.shape[0] == 0:
        return 0.0
    if x.shape[0] <= CHUNK:
        return float(_one_chunk(x, y, compensated))
    return _reduce(_dot_tasks, x.shape[0], x, y, compensated)


def dot_chunk_partials(x: np.ndarray, y: np.ndarray, compensated: bool, ps: np.ndarray,
                       pc: np.ndarray) -> None:
    """The lane-tree partials ``ps[c], pc[c]`` of the CRO-1 chunks ``c`` of ``x . y``
    (``x[0]`` starts chunk 0; ``ps``/``pc`` hold one slot per chunk): with
    :func:`finish_partials`, a dot product over a long vector whose second factor is
    produced a few chunks at a time, with the bits of :func:`cro_dot` on the whole."""
    run_tasks(_dot_tasks, ps.shape[0], x, y, compensated, ps, pc)


def finish_partials(ps: np.ndarray, pc: np.ndarray, compensated: bool) -> float:
    """The CRO-1 chunk tree over chunk partials, finalized (0.0 for no chunks)."""
    return float(_finish(ps, pc, compensated)) if ps.shape[0] else 0.0


def cro_nrm2(x: np.ndarray, compensated: bool) -> float:
    """Scaled Euclidean norm; bitwise equal to :func:`reference.cro_nrm2`."""
    n = x.shape[0]
    if n == 0:
        return 0.0
    chunk_max = np.empty(_n_chunks(n))
    chunk_nan = np.empty(_n_chunks(n), dtype=np.bool_)
    run_tasks(_absmax_tasks, chunk_max.shape[0], x, chunk_max, chunk_nan)
    # max is exact, so its order does not matter
    result, e, f1, f2 = _ref.nrm2_plan(float(chunk_max.max()), bool(chunk_nan.any()))
    if result is not None:
        return result
    ssq = _reduce(_scaled_squares_tasks, n, x, f1, f2, compensated)
    return _ref.nrm2_finish(ssq, e)
