"""Packing the K per-equation designs into the SUR layout ``X`` (N, P), with the
finiteness check: in one parallel pass on the CPU (:func:`pack_designs`), or on the
inputs' GPU for CuPy inputs (:func:`pack_designs_on_device`, :func:`pack_columns_on_device`).

``X[i, o_j + a_j + c] = X_j[i, c]`` and ``X[i, o_j] = 1.0`` where equation ``j`` gets an
added constant (``a_j = 1``). The copy moves values without arithmetic, so it cannot
change a bit; the finiteness test (``v - v == 0`` fails exactly for NaN and +-inf) only
decides whether :func:`reprogls.gls.data.prepare` goes on to name the bad column.

Why compiled: NumPy's ``X[:, o:o + p] = X_j`` per equation makes K strided passes over
``X``; at N = 20000, K = 200, p = 10 (320 MB) that took 0.10 s on warm memory and
0.37 s when the 320 MB were freshly faulted in (the first fit after another library's),
plus 0.04 s for the per-equation ``np.isfinite`` checks. Here each task writes a slab of
whole rows, every equation's columns in turn, so ``X`` is written (and faulted in) once,
front to back, by every thread.

CuPy inputs are packed where they are: copying them to the host to pack them there, and
the fit copying the packed ``X`` back, moved ~0.7 GB across the bus at that size (and
cost a host packing pass) before the GPU did any work. On the device each equation is
one strided copy (a CuPy elementwise kernel, no arithmetic) and the finiteness test one
``isfinite(X).all(axis=0)``; only its ``P`` flags cross to the host.
"""

from __future__ import annotations

import numpy as np

from ..kernels.cpu import scratch
from ..kernels.cpu.jit import njit
from ..kernels.cpu.tasks import run_tasks
from ..kernels.cpu.views import borrowed_matrix, borrowed_vector

__all__ = ["pack_columns_on_device", "pack_designs", "pack_designs_on_device"]

#: Rows per task (a slab of X: 64 rows x P values).
SLAB_ROWS = 64


@njit(nogil=True, cache=True)
def _pack_tasks(t0, t1, sources, dest, constant, X, nonfinite):
    """Slabs ``t0 .. t1 - 1`` of ``SLAB_ROWS`` rows. ``sources[j]`` = (address, columns,
    row stride, column stride) of design ``j`` (bytes); ``nonfinite[t, j]`` is set when
    slab ``t`` of design ``j`` holds a NaN or an infinity."""
    N = X.shape[0]
    for t in range(t0, t1):
        r0, r1 = t * SLAB_ROWS, min(N, (t + 1) * SLAB_ROWS)
        for j in range(sources.shape[0]):
            Xj = borrowed_matrix(sources[j, 0], N, sources[j, 1], sources[j, 2],
                                 sources[j, 3])
            o = dest[j]
            if constant[j]:
                for i in range(r0, r1):
                    X[i, o - 1] = 1.0
            finite = True
            if sources[j, 3] == 8:  # contiguous rows: a loop LLVM vectorises
                p = sources[j, 1]
                for i in range(r0, r1):
                    row = borrowed_vector(sources[j, 0] + i * sources[j, 2], p)
                    dst = X[i, o:o + p]
                    for c in range(p):
                        v = row[c]
                        dst[c] = v
                        finite &= v - v == 0.0
            else:
                for i in range(r0, r1):
                    for c in range(Xj.shape[1]):
                        v = Xj[i, c]
                        X[i, o + c] = v
                        finite &= v - v == 0.0
            nonfinite[t, j] = not finite


def pack_designs(designs: list[np.ndarray], add_constant: list[bool],
                 offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(X, bad)``: the packed C-contiguous float64 ``X`` (N, P) and, per equation,
    whether its design holds a NaN or an infinity.

    ``designs``: float64 2-D arrays of N rows (any strides); equation ``j`` owns the
    columns ``offsets[j]:offsets[j + 1]``, the first of them ``1.0`` where
    ``add_constant[j]``. The designs are only read. ``X`` may be a reused buffer
    (:mod:`reprogls.kernels.cpu.scratch`: at most 64 MiB, so only small systems).
    """
    N, K = designs[0].shape[0], len(designs)
    X = scratch.empty((N, int(offsets[-1])))  # (every element is written below)
    sources = np.array([(d.ctypes.data, d.shape[1], d.strides[0], d.strides[1])
                        for d in designs], dtype=np.int64).reshape(K, 4)
    constant = np.array(add_constant, dtype=np.bool_)
    dest = offsets[:-1].astype(np.int64) + constant
    n_tasks = -(-N // SLAB_ROWS)
    nonfinite = np.zeros((max(n_tasks, 1), K), dtype=np.bool_)
    run_tasks(_pack_tasks, n_tasks, sources, dest, constant, X, nonfinite)
    return X, nonfinite.any(axis=0)


def pack_designs_on_device(designs: list, add_constant: list[bool],
                           offsets: np.ndarray) -> tuple[object, np.ndarray]:
    """:func:`pack_designs` for float64 CuPy designs (all on one GPU; any strides):
    ``(X, bad)`` with ``X`` a new C-contiguous float64 CuPy array (N, P) on that GPU (the
    same values: a copy) and ``bad`` a host bool array (K,) flagging the designs that
    hold a NaN or an infinity."""
    import cupy

    N, P = designs[0].shape[0], int(offsets[-1])
    with designs[0].device:
        X = cupy.empty((N, P))
        for Xj, constant, o0, o1 in zip(designs, add_constant, offsets[:-1].tolist(),
                                        offsets[1:].tolist(), strict=True):
            if constant:
                X[:, o0] = 1.0
            if o1 > o0 + constant:
                X[:, o0 + constant:o1] = Xj
        finite = (cupy.isfinite(X).all(axis=0).get() if X.size else
                  np.ones(P, dtype=bool))
    return X, _any_per_equation(~finite, offsets)


def pack_columns_on_device(columns) -> tuple[object, np.ndarray]:
    """``(Y, bad)``: the CuPy columns (a list of K vectors of length N, or one (N, K)
    array) as a new C-contiguous float64 CuPy array (N, K) on their GPU, and a host bool
    array (K,) flagging the columns that hold a NaN or an infinity."""
    import cupy

    one_array = not isinstance(columns, list)
    first = columns if one_array else columns[0]
    N, K = first.shape[0], columns.shape[1] if one_array else len(columns)
    with first.device:
        Y = cupy.empty((N, K))
        # (cast first: how CuPy's assignment converts another dtype is its own choice)
        if one_array:
            Y[...] = columns.astype(np.float64, copy=False)
        else:
            for j, y in enumerate(columns):
                Y[:, j] = y.astype(np.float64, copy=False)
        finite = cupy.isfinite(Y).all(axis=0).get() if Y.size else np.ones(K, dtype=bool)
    return Y, ~finite


def _any_per_equation(flags: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per equation ``j``, whether any of ``flags[offsets[j]:offsets[j + 1]]`` is set."""
    counts = np.concatenate([[0], np.cumsum(flags, dtype=np.int64)])
    return counts[offsets[1:]] > counts[offsets[:-1]]
