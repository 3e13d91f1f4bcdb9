"""CRO-1 building blocks for the Numba kernels.

The scalar helpers are the reference module's own functions compiled by Numba, so the
spec and the CPU kernels share one definition of TwoSum, the merge and the final step.
The lane loops work on one chunk at a time; they are separate functions (called, not
written inline in the ``prange`` body) because LLVM vectorises them far better there:
with a zero-based contiguous slice the 32 lanes stay in AVX registers (measured 2x).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..reference import cro as _ref

LANES = _ref.LANES
CHUNK = _ref.CHUNK
#: Largest finite float64 (``finalize``: a sum above it in magnitude is not finite).
DBL_MAX = float(np.finfo(np.float64).max)

two_sum = njit(inline="always", cache=True)(_ref._two_sum)
finalize = njit(cache=True)(_ref.finalize)


@njit(inline="always", cache=True)
def merge(sa, ca, sb, cb, compensated):
    """CRO-1 merge of two partials; the scalar twin of ``reference._merge``."""
    if not compensated:
        return sa + sb, ca
    t, e = two_sum(sa, sb)
    return t, (ca + cb) + e


@njit(cache=True)
def new_lanes():
    """Fresh lane accumulators ``(s, comp)``, each 32 slots of the identity ``-0.0``."""
    return np.full(LANES, -0.0), np.full(LANES, -0.0)


@njit(cache=True)
def lane_tree(s, comp, compensated):
    """CRO-1 step 3: merge lane ``l + w`` into lane ``l`` for w = 16, 8, 4, 2, 1."""
    w = LANES // 2
    while w >= 1:
        for lane in range(w):
            s[lane], comp[lane] = merge(s[lane], comp[lane], s[lane + w], comp[lane + w],
                                        compensated)
        w //= 2
    return s[0], comp[0]


@njit(cache=True)
def chunk_tree(ps, pc, compensated):
    """CRO-1 step 4, in place: pairs ``(2i, 2i+1)`` level by level, odd last passes up.

    Returns the root ``(s, comp)``; ``ps``/``pc`` (the chunk partials) are overwritten.
    """
    m = ps.shape[0]
    while m > 1:
        pairs = m // 2
        for i in range(pairs):
            ps[i], pc[i] = merge(ps[2 * i], pc[2 * i], ps[2 * i + 1], pc[2 * i + 1],
                                 compensated)
        if m % 2:
            ps[pairs] = ps[m - 1]
            pc[pairs] = pc[m - 1]
        m = pairs + m % 2
    return ps[0], pc[0]


# Lane loops (CRO-1 step 2) over one chunk, one function per term and mode, each given a
# zero-based C-contiguous slice viewed as (rows, 32), with the mode test outside the
# loops (inside the loop body it halves the speed). The loop shapes are the fastest
# measured on AVX2 (2-core EPYC, n = 5e7, BLAS ddot ~35 GB/s in the same run):
# * compensated: a 32-lane loop per row; LLVM unrolls it and SLP-vectorises the TwoSum
#   chains into AVX registers (~35 GB/s for sum and dot);
# * plain: the same loop stays scalar (SLP cannot prove ``s`` and the row do not alias;
#   ~10-20 GB/s), so plain mode uses lane-wise array operations per row, which the loop
#   vectoriser handles with a runtime alias check (~33-35 GB/s). ``s += x[r] * y[r]``
#   allocates a temporary per row (~11 GB/s), hence the explicit ``products`` buffer.


@njit(inline="always", cache=True)
def _rows(xc):
    """The whole 32-term rows of a chunk as a (rows, LANES) view, and where the tail starts."""
    rows = xc.shape[0] // LANES
    return xc[: rows * LANES].reshape((rows, LANES)), rows * LANES


@njit(cache=True)
def _plain_sum(xc, s):
    x2, tail = _rows(xc)
    for r in range(x2.shape[0]):
        s += x2[r]  # lane-wise: s[lane] = s[lane] + x2[r, lane]
    for lane in range(xc.shape[0] - tail):
        s[lane] += xc[tail + lane]


@njit(cache=True)
def _compensated_sum(xc, s, comp):
    x2, tail = _rows(xc)
    for r in range(x2.shape[0]):
        xr = x2[r]
        for lane in range(LANES):
            s[lane], e = two_sum(s[lane], xr[lane])
            comp[lane] += e
    for lane in range(xc.shape[0] - tail):
        s[lane], e = two_sum(s[lane], xc[tail + lane])
        comp[lane] += e


@njit(cache=True)
def _plain_dot(xc, yc, s):
    x2, tail = _rows(xc)
    y2, _ = _rows(yc)
    products = np.empty(LANES)
    for r in range(x2.shape[0]):
        np.multiply(x2[r], y2[r], products)  # each product rounded once
        s += products
    for lane in range(xc.shape[0] - tail):
        s[lane] += xc[tail + lane] * yc[tail + lane]


@njit(cache=True)
def _compensated_dot(xc, yc, s, comp):
    x2, tail = _rows(xc)
    y2, _ = _rows(yc)
    for r in range(x2.shape[0]):
        xr, yr = x2[r], y2[r]
        for lane in range(LANES):
            s[lane], e = two_sum(s[lane], xr[lane] * yr[lane])
            comp[lane] += e
    for lane in range(xc.shape[0] - tail):
        s[lane], e = two_sum(s[lane], xc[tail + lane] * yc[tail + lane])
        comp[lane] += e


@njit(cache=True)
def lanes_sum(xc, s, comp, compensated):
    """Step 2 for the terms ``v[i] = xc[i]`` of one chunk."""
    if compensated:
        _compensated_sum(xc, s, comp)
    else:
        _plain_sum(xc, s)


@njit(cache=True)
def lanes_dot(xc, yc, s, comp, compensated):
    """Step 2 for the terms ``v[i] = xc[i] * yc[i]`` of one chunk."""
    if compensated:
        _compensated_dot(xc, yc, s, comp)
    else:
        _plain_dot(xc, yc, s)


@njit(cache=True)
def lanes_scaled_squares(xc, f1, f2, s, comp, compensated):
    """Step 2 for ``v[i] = a * a``, ``a = (xc[i] * f1) * f2``, of one chunk (nrm2).

    Not a performance target: written as one scalar loop per mode.
    """
    n = xc.shape[0]
    if compensated:
        for i in range(n):
            a = (xc[i] * f1) * f2
            s[i % LANES], e = two_sum(s[i % LANES], a * a)
            comp[i % LANES] += e
    else:
        for i in range(n):
            a = (xc[i] * f1) * f2
            s[i % LANES] += a * a


# --- Reductions of short sequences -------------------------------------------------
# A sequence of n <= 32 terms fills lanes 0..n-1 with one term each; the other lanes hold
# the identity (-0.0, -0.0). Merging an identity lane changes no result bit (s + -0.0 is
# s; the compensation only changes the sign of a zero, which finalize ignores, or turns
# NaN next to a non-finite s, where finalize returns s), so the tree skips those merges,
# and a lane with one finite term v holds (v, 0.0). The oracle tests check this against
# the reference, which performs every merge.


@njit(inline="always", cache=True)
def tree_live(s, comp, live, compensated):
    """CRO-1 lane tree when only lanes ``0..live-1`` hold data; returns the root."""
    w = LANES // 2
    while w >= 1:
        for lane in range(min(w, live - w)):
            s[lane], comp[lane] = merge(s[lane], comp[lane], s[lane + w], comp[lane + w],
                                        compensated)
        live = min(live, w)
        w //= 2
    return s[0], comp[0]


@njit(cache=True)
def segment_scratch(n_terms):
    """Scratch ``(s, comp, ps, pc)`` of :func:`dot_segment` for up to ``n_terms`` terms."""
    slots = max(1, (n_terms + CHUNK - 1) // CHUNK)
    return np.empty(LANES), np.empty(LANES), np.empty(slots), np.empty(slots)


@njit(cache=True)
def dot_segment(x, y, compensated, s, comp, ps, pc):
    """Finalized CRO-1 dot product of two equal-length contiguous segments.

    ``s``/``comp`` are 32-slot scratch arrays and ``ps``/``pc`` hold one slot per chunk
    (``ceil(n / CHUNK)``); all four are overwritten. Short segments (n <= 32) take the
    one-term-per-lane path, longer ones the lane loops, chunk by chunk.
    """
    n = x.shape[0]
    if n == 0:
        return 0.0
    if n <= LANES:
        for lane in range(n):
            s[lane] = x[lane] * y[lane]
            comp[lane] = 0.0
        r, rc = tree_live(s, comp, n, compensated)
        return finalize(r, rc, compensated)
    n_chunks = (n + CHUNK - 1) // CHUNK
    for c in range(n_chunks):
        start = c * CHUNK
        stop = min(n, start + CHUNK)
        s[:] = -0.0
        comp[:] = -0.0
        lanes_dot(x[start:stop], y[start:stop], s, comp, compensated)
        ps[c], pc[c] = lane_tree(s, comp, compensated)
    r, rc = chunk_tree(ps[:n_chunks], pc[:n_chunks], compensated)
    return finalize(r, rc, compensated)
