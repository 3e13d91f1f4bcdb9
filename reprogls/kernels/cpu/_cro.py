"""CRO-1 building blocks for the Numba kernels.

The scalar helpers are the reference module's own functions compiled by Numba, so the
spec and the CPU kernels share one definition of TwoSum, the merge and the final step.
One chunk's lane loop and lane tree are a single vector intrinsic
(:func:`.simd.chunk_partial`, through :func:`chunk_root`); :func:`dot_segment` chains
the chunks of a contiguous segment for the dense kernels (Cholesky, solves), and
:func:`streamed_dot_segment` for rows read once from memory (``gemv``, ``A B``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import literally

from ..reference import cro as _ref
from .jit import njit
from .simd import chunk_partial, chunk_partials2

LANES = _ref.LANES
CHUNK = _ref.CHUNK
#: Largest finite float64 (``finalize``: a sum above it in magnitude is not finite).
DBL_MAX = float(np.finfo(np.float64).max)

two_sum = njit(inline="always", cache=True)(_ref._two_sum)
finalize = njit(cache=True)(_ref.finalize)
nrm2_scaling = njit(cache=True)(_ref.nrm2_scaling)


@njit(inline="always", cache=True)
def merge(sa, ca, sb, cb, compensated):
    """CRO-1 merge of two partials; the scalar twin of ``reference._merge``."""
    if not compensated:
        return sa + sb, ca
    t, e = two_sum(sa, sb)
    return t, (ca + cb) + e


@njit(inline="always", cache=True)
def lane_step(S, E, m, term, compensated):
    """One CRO-1 lane step on slot ``m``: ``S[m] += term`` (plain) or
    ``(S[m], err) = TwoSum(S[m], term); E[m] += err`` (compensated)."""
    if compensated:
        t, err = two_sum(S[m], term)
        S[m] = t
        E[m] += err
    else:
        S[m] += term


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


@njit(inline="always", cache=True)
def chunk_root(x, y, start, n, compensated, stream):
    """CRO-1 steps 2 and 3 for the terms ``x[start + i] * y[start + i]`` (``y`` None:
    ``x[start + i]``), ``i < n``, of one chunk: the lane-tree root ``(s, comp)``, with the
    lanes in vector registers (:func:`.simd.chunk_partial`; the mode must be a literal
    there, hence the branch). ``stream`` (a constant at every call site): the terms are
    read once, from memory (long sums and dots, ``gemv``'s rows), so the loop prefetches
    ahead where the target gains from it (:data:`.simd.CHUNK_PREFETCH_AHEAD`); the same
    bits either way."""
    if compensated:
        return chunk_partial(x, y, start, n, True, stream)
    return chunk_partial(x, y, start, n, False, stream)


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


@njit(cache=True)
def scaled_squares_partial(xc, f1, f2, compensated):
    """The lane-tree root ``(s, comp)`` of one chunk's nrm2 terms (steps 2 and 3 of
    :func:`lanes_scaled_squares`, from fresh lanes)."""
    s, comp = new_lanes()
    lanes_scaled_squares(xc, f1, f2, s, comp, compensated)
    return lane_tree(s, comp, compensated)


@njit(cache=True)
def nrm2_segment(x, compensated):
    """``nrm2`` of a 1-D float64 vector on one thread, bitwise
    :func:`reference.cro_nrm2` (the chunk partials of the parallel kernel, in order):
    exact ``max |x_i|``, :func:`nrm2_scaling`, CRO-1 sum of squares,
    ``ldexp(sqrt(ssq), e)``; the canonical NaN for a NaN."""
    n = x.shape[0]
    if n == 0:
        return 0.0
    amax, has_nan = 0.0, False
    for i in range(n):
        a = abs(x[i])
        has_nan |= a != a
        amax = a if a > amax else amax
    if has_nan:
        return _ref.CANONICAL_NAN
    if math.isinf(amax):
        return math.inf
    if amax == 0.0:
        return 0.0
    e, f1, f2 = nrm2_scaling(amax)
    n_chunks = (n + CHUNK - 1) // CHUNK
    ps, pc = np.empty(n_chunks), np.empty(n_chunks)
    for c in range(n_chunks):
        ps[c], pc[c] = scaled_squares_partial(x[c * CHUNK:min(n, (c + 1) * CHUNK)], f1, f2,
                                              compensated)
    r = math.ldexp(math.sqrt(finalize(*chunk_tree(ps, pc, compensated), compensated)), e)
    return _ref.CANONICAL_NAN if r != r else r


#: :func:`finalize` inlined into its caller (the one-chunk path of :func:`dot_segment`).
finalize_inline = njit(inline="always", cache=True)(_ref.finalize)


@njit(inline="always", cache=True)
def dot_segment(x, y, compensated):
    """Finalized CRO-1 dot product of two equal-length C-contiguous segments.

    A segment of one chunk (the dense kernels' rows: Cholesky entries, solves) is one
    :func:`chunk_root` -- its lane-tree root is the chunk tree's root as it
    is -- finalized, all inlined into the caller: a call with its array arguments, the
    scratch round trip and the chunk-tree call cost ~25 ns, a third of a short
    compensated dot (order-250 Cholesky 2.0 -> 1.7 ms). Longer segments go through
    :func:`dot_chunks`, which allocates its chunk slots.

    No scratch arrays are passed in (until the sixteenth session the callers passed two):
    every Numba-managed array handed to this inlined function, and every slice of one,
    costs an ``NRT_incref``/``NRT_decref`` call pair with an atomic instruction each,
    per call. Callers in loops pass :func:`.views.unmanaged` rows instead. Measured on
    the 2-core Zen 4 box, one thread, dots of 3 / 31 / 83 terms: 32 / 32 / 46 ns plain
    and 40 / 39 / 60 ns compensated with the scratch, 17 / 16 / 30 and 23 / 21 / 44 ns
    without it; the order-250 Cholesky 1.55 / 2.04 -> 1.05 / 1.48 ms (plain /
    compensated). The bits do not change.
    """
    return _segment(x, y, compensated, False)


@njit(inline="always", cache=True)
def streamed_dot_segment(x, y, compensated):
    """:func:`dot_segment` for segments read once from memory (``gemv``'s and ``A B``'s
    rows of a large A): :func:`chunk_root` with prefetch. The same bits."""
    return _segment(x, y, compensated, True)


@njit(inline="always", cache=True)
def streamed_dot_pair(A, i, j, y, compensated):
    """:func:`streamed_dot_segment` of rows ``i`` and ``j`` of the 2-D C-contiguous ``A``
    with ``y``, for rows of at most one chunk (``A.shape[1] <= CHUNK``): both in one loop
    (:func:`.simd.chunk_partials2`), two streams from memory at once; each result has
    that row's bits."""
    return _pair(A, i, j, y, A.shape[1], compensated, True)


@njit(inline="always", cache=True)
def dot_pair_prefix(A, i, j, y, n, compensated):
    """:func:`dot_segment` of ``A[i, :n]`` and of ``A[j, :n]`` with ``y[:n]``, both in one
    loop (:func:`.simd.chunk_partials2`, operands in cache), for ``n <= CHUNK``: each
    result has that row's bits. Two independent dots in one instruction stream hide
    each other's latency and share the loads of ``y`` (the Cholesky's column entries:
    :func:`.linalg.cholesky_pair`)."""
    return _pair(A, i, j, y, n, compensated, False)


@njit(inline="always", cache=True)
def _pair(A, i, j, y, n, compensated, stream):
    """The two dots of :func:`streamed_dot_pair` / :func:`dot_pair_prefix` (``stream`` a
    constant at each call site)."""
    if n == 0:
        return 0.0, 0.0
    if compensated:
        s0, c0, s1, c1 = chunk_partials2(A, i, j, y, n, True, stream)
    else:
        s0, c0, s1, c1 = chunk_partials2(A, i, j, y, n, False, stream)
    return finalize_inline(s0, c0, compensated), finalize_inline(s1, c1, compensated)


@njit(inline="always", cache=True)
def _segment(x, y, compensated, stream):
    """:func:`dot_segment` (``stream`` a constant: :func:`chunk_root`'s)."""
    n = x.shape[0]
    if n == 0:
        return 0.0
    if n <= CHUNK:
        r, rc = chunk_root(x, y, 0, n, compensated, stream)
        return finalize_inline(r, rc, compensated)
    return dot_chunks(x, y, compensated, stream)


@njit(cache=True)
def dot_chunks(x, y, compensated, stream):
    """:func:`dot_segment` of any length: each chunk's lane-tree root from
    :func:`chunk_root` (``stream`` made a literal, so each variant compiles only its own
    loop), then the chunk tree and finalize."""
    literally(stream)
    n = x.shape[0]
    if n == 0:
        return 0.0
    n_chunks = (n + CHUNK - 1) // CHUNK
    ps, pc = np.empty(n_chunks), np.empty(n_chunks)
    for c in range(n_chunks):
        start = c * CHUNK
        ps[c], pc[c] = chunk_root(x, y, start, min(n, start + CHUNK) - start, compensated,
                                  stream)
    r, rc = chunk_tree(ps[:n_chunks], pc[:n_chunks], compensated)
    return finalize(r, rc, compensated)
