"""Small building blocks shared by the reduction kernels: run-time integer and flag
arguments (one compiled specialisation per helper) and the CRO-1 lane tree of lane
accumulators laid out ``[column, lane]`` (the Gram kernels of :mod:`.gram`)."""

from __future__ import annotations

from ._cro import LANES, merge
from .jit import njit


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
