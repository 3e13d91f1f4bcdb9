"""The weighted lane steps of ``X^T W`` (the fused operator's third phase) alone, one
block of rows in cache, one thread: cycles per vector of eight columns and pass of
four rows, and what the weights' layout costs.

Usage::

    python profiling/lane_steps.py [--equations 200 --width 10] [--repeat 7]

One call steps the eight lanes of a lane group over the four rows each takes in a block
(rows ``b + 32 r`` of a 128-row X, ``r < 4``; :func:`reprogls.kernels.cpu.streamed._lane_steps`,
the code the fused operator runs), over all ``P`` columns; the rows (``4 P`` doubles a
lane) stay in L2. Two layouts of the block's weights ``W``: ``block``, the fused
operator's (``W[32 j + 8 r + b]`` for row group ``r`` and lane ``b`` of equation ``j``:
a lane's four weights of one equation lie in four cache lines), and ``lane-major``
(``W[32 j + 4 b + r]``: the four in one line; no kernel uses it, the values it steps are
not the operator's -- timing only). Cycles come from a dependent-addition loop timed
at the start (three cycles per addition assumed). The results are not used.

Forty-second session (2-core Zen 4 VM, 3.65 GHz by that loop; K = 200, p = 10, so
``span`` 2), cycles per vector pass of four rows: ``block`` plain 20.8-22.7,
compensated 30.8-32.8; ``lane-major`` plain 18.3-18.9, compensated 30.5-30.6. With
the same weight for every column (the weight loads and selects removed, wrong values)
plain took 12.3: the X rows and accumulators through L2 bound it there. Compensated
mode does 28 additions a pass (seven per TwoSum step), on a Zen 4 one 512-bit
addition a cycle: it is bound by them, and ``REPROGLS_ADDS_ON_FMA=1`` (three of them
as exact FMAs) gave 28.4 against 31.9.
"""

from __future__ import annotations

import argparse

import numpy as np
from numba import njit

from reprogls.kernels.cpu.rowgroups import BLOCK, GROUP, ROWS
from reprogls.kernels.cpu.streamed import _lane_steps, weight_plan
from reprogls.kernels.cpu.views import unmanaged

try:
    from ._timing import best_seconds
except ImportError:  # run as a script
    from _timing import best_seconds

#: (lane stride, row-group stride) of the block's weights per layout
LAYOUTS = {"block": (1, GROUP), "lane-major": (BLOCK, 1)}


@njit(cache=True)
def _dependent_adds(n):
    """``n`` dependent additions (a clock estimate: one per addition latency)."""
    x = 0.0
    for _ in range(n):
        x = x + 1e-9
    return x


@njit(cache=True)
def _steps(SA, EA, X, W, lane_stride, step_stride, eqv, pick, eq_of_column, span,
           compensated, calls):
    """``calls`` times: every lane of the group stepped over its four rows and all
    columns."""
    P = X.shape[1]
    for _ in range(calls):
        for b in range(GROUP):
            _lane_steps(unmanaged(SA[b]), unmanaged(EA[b]), X, b, 0, P, W, b * lane_stride,
                        step_stride, ROWS, eqv, pick, eq_of_column, span, BLOCK, compensated)
    return SA[0, 0] + EA[0, 0]


def clock_ghz(n: int = 100_000_000) -> float:
    """The core's clock from a dependent-addition loop (three cycles per addition)."""
    _dependent_adds(10)
    return 3 * n / best_seconds(lambda: _dependent_adds(n), 3, pause=0.0) / 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--equations", type=int, default=200)
    parser.add_argument("--width", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    K, p = args.equations, args.width
    P = K * p
    rng = np.random.default_rng(0)
    X = rng.standard_normal((BLOCK * ROWS, P))
    W = rng.standard_normal(ROWS * K)
    plan = weight_plan(np.arange(0, P + 1, p))
    if plan.most > 4 or p > 32:
        raise SystemExit("this layout does not take the streamed lane steps")
    ghz = clock_ghz()
    calls = max(1, int(2e7 // (ROWS * P)))
    print(f"K = {K}, p = {p}, P = {P}, span {plan.span}, one thread, clock ~{ghz:.2f} GHz; "
          "cycles per vector of 8 columns and pass of 4 rows")
    for mode in ("plain", "compensated"):
        for layout, strides in LAYOUTS.items():
            SA, EA = np.zeros((GROUP, P)), np.zeros((GROUP, P))
            fixed = (SA, EA, X, W, *strides, plan.eqv, plan.pick, plan.eq_of_column,
                     plan.span, mode == "compensated")
            _steps(*fixed, 1)
            best = best_seconds(lambda f=fixed: _steps(*f, calls), args.repeat, pause=0.0)
            per_term = best / (calls * ROWS * P)  # seconds per column and row
            cycles = per_term * ghz * 1e9 * 8 * BLOCK
            print(f"  {mode:<12} {layout:<11} {per_term * 1e9:6.3f} ns per column-row  "
                  f"{cycles:5.1f} cycles per vector pass", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
