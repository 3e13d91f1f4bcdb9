"""Row-block building blocks of the reductions over rows with a few right-hand sides
(:mod:`.multi`) and of the Gram kernels (:mod:`.gram`): SIMD across 32 rows at a time.

A block of 32 consecutive rows of a chunk is exactly one row per CRO-1 lane (chunks
start at multiples of 8192); the helpers transpose it (``XT[m, b] = X[i0 + b, m]``) so
that the accumulators ``ST[m, b]`` are lane ``b`` of column ``m`` and every update runs
with ``b`` innermost. (The SUR operators and Woodbury solves moved to the flat
block layout of :mod:`.rowgroups`.)

Loops over ``b`` run to a runtime ``nb`` (not the constant 32) on purpose: with a
constant trip count LLVM unrolls them and its SLP vectoriser, unable to prove that the
arrays do not alias, leaves scalar code; the loop vectoriser versions them instead.
"""

from __future__ import annotations

from numba import njit

from ._cro import LANES, merge, two_sum

#: Rows per block (one CRO-1 lane each when reducing over rows).
BLOCK = LANES


@njit(cache=True)
def runtime_int(value):
    """``value`` as a plain int64. Numba compiles a separate specialisation of a jitted
    callee for every *literal* constant argument (about a second of LLVM time each, on
    the first run of a fresh install); passing constants such as ``0`` through this
    keeps one specialisation per helper. (``return value`` would keep the literal type;
    the addition gives a plain int64.)"""
    return value + 0


@njit(cache=True)
def runtime_flag(value):
    """``value`` as a plain (non-literal) bool, for the same reason as :func:`runtime_int`."""
    return value != 0


@njit(cache=True)
def transpose_rows(X, i0, nb, c0, c1, XT):
    """``XT[m - c0, b] = X[i0 + b, m]`` for ``b < nb`` and ``c0 <= m < c1``."""
    if nb == BLOCK:  # 4 x 4 tiles: measured 1.7x faster than the plain double loop
        m_end = c0 + (c1 - c0) - (c1 - c0) % 4
        for b0 in range(0, BLOCK, 4):
            r0, r1, r2, r3 = X[i0 + b0], X[i0 + b0 + 1], X[i0 + b0 + 2], X[i0 + b0 + 3]
            for m in range(c0, m_end, 4):
                for q in range(4):
                    o = XT[m - c0 + q]
                    o[b0] = r0[m + q]
                    o[b0 + 1] = r1[m + q]
                    o[b0 + 2] = r2[m + q]
                    o[b0 + 3] = r3[m + q]
        start = m_end
    else:
        start = c0
    for b in range(nb):
        row = X[i0 + b]
        for m in range(start, c1):
            XT[m - c0, b] = row[m]


@njit(cache=True)
def accumulate_lanes(XT, WT, eq, c0, width, nb, compensated, ST, ET):
    """Lane ``b`` of column ``c0 + m`` accumulates ``XT[m, b] * WT[eq[c0 + m], b]``."""
    for m in range(width):
        x, w, st = XT[m], WT[eq[c0 + m]], ST[m]
        if compensated:
            et = ET[m]
            for b in range(nb):
                st[b], e = two_sum(st[b], x[b] * w[b])
                et[b] += e
        else:
            for b in range(nb):
                st[b] += x[b] * w[b]


@njit(cache=True)
def lane_tree_columns_t(ST, ET, width, compensated, ps, pc):
    """CRO-1 lane tree along axis 1 (the 32 lanes) of ``ST``/``ET``; roots into ps/pc."""
    for m in range(width):
        s, c = ST[m], ET[m]
        w = LANES // 2
        while w >= 1:
            for lane in range(w):
                s[lane], c[lane] = merge(s[lane], c[lane], s[lane + w], c[lane + w],
                                         compensated)
            w //= 2
        ps[m] = s[0]
        pc[m] = c[0]
