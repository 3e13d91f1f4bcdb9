"""Why ``gemv`` reads X slower than a long ``dot``: the same row loop with and without
the second (cached) load stream, against BLAS ``A @ x``, alternating in one process.

Usage::

    python profiling/row_streams.py [--rows 25000 --cols 2000] [--rounds 10]
    NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python profiling/row_streams.py  # one core

Each round times, in turn (GB/s of A read, best and median over the rounds):

* ``gemv``: ``reprogls.kernels.gemv(A, x)`` (each row's dot is one
  :func:`reprogls.kernels.cpu.simd.chunk_partial`: the row and ``x`` loaded side by
  side, ``x`` from cache);
* ``row A*A``: the same row loop and the same compiled chunk code with ``y`` = the row
  itself, so the second load is folded into the first (one load stream per term, the
  load pattern of ``sum`` and ``dot``);
* ``sum``: ``reprogls.kernels.sum`` over A as one vector;
* ``BLAS A @ x``: OpenBLAS ``dgemv`` (several rows per pass, one ``x`` load per rows).

Eleventh session (2-core Zen 4 box, A of 400 MB, medians over 10 rounds, three runs
with 2 threads / one with 1): ``gemv`` 17.6-20.3 / 13.3 GB/s, ``row A*A`` 27.8-28.8 /
24.5, ``sum`` 26.7-28.6 / 27.3, BLAS 25.7-30.6 / 19.5. In L3 (4 MB) one thread reads 46
GB/s in ``gemv`` against 54 in ``sum``, so the gap is in the memory stream, not the
arithmetic. A prototype that shares each ``x`` load among 2 or 4 rows (same bits) was
no faster on one thread (13-21 against 13-18 GB/s) and inconclusive on two (medians
23-28 against 23); the software prefetch's distance (0-1024 elements), locality and
whether ``x`` is prefetched moved it by less than the box's noise.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit

from reprogls import kernels
from reprogls.kernels.cpu._cro import chunk_root
from reprogls.kernels.cpu.tasks import run_tasks


@njit(nogil=True, cache=True)
def _self_dot_rows(i0, i1, A, out):
    """``out[i]`` = CRO-1 plain dot of row ``i`` with itself, for ``i0 <= i < i1``."""
    for i in range(i0, i1):
        s, _ = chunk_root(A[i], A[i], 0, A.shape[1], False, True)
        out[i] = s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=25_000)
    parser.add_argument("--cols", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    A = rng.standard_normal((args.rows, args.cols))
    x = rng.standard_normal(args.cols)
    out = np.empty(args.rows)
    flat = A.ravel()
    cases = {
        "gemv": lambda: kernels.gemv(A, x, "plain"),
        "row A*A": lambda: run_tasks(_self_dot_rows, args.rows, A, out),
        "sum": lambda: kernels.sum(flat, "plain"),
        "BLAS A @ x": lambda: A @ x,
    }
    rates: dict[str, list[float]] = {name: [] for name in cases}
    for fn in cases.values():
        fn()  # compile, fault in
    for _ in range(args.rounds):
        for name, fn in cases.items():
            time.sleep(0.3)  # let OpenBLAS's threads stop spinning
            t0 = time.perf_counter()
            fn()
            rates[name].append(A.nbytes / (time.perf_counter() - t0) / 1e9)
    print(f"A {args.rows} x {args.cols} ({A.nbytes / 1e6:.0f} MB), "
          f"threads = {kernels.cpu_threads()}, {args.rounds} rounds; GB/s of A read")
    for name, values in rates.items():
        print(f"  {name:<12} best {max(values):5.1f}   median {float(np.median(values)):5.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
