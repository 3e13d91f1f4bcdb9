"""Read bandwidth of the CRO-1 CPU reductions against BLAS ``ddot`` in the same process.

Usage::

    python profiling/reduction_bandwidth.py [--n 50000000] [--repeat 7]

Prints a table of GB/s (bytes of the inputs read once, divided by the best wall time over
``--repeat`` interleaved runs) and each kernel's ratio to BLAS ``np.dot(x, y)``.

Method notes: OpenBLAS's worker threads keep spinning for a while after a call and steal
the cores from the Numba threads that run next (measured: 35 -> 17 GB/s), so every timed
call is preceded by a short sleep that lets them park. The first call of each kernel
(JIT compilation or cache load) is not timed.
"""

from __future__ import annotations

import argparse

import numpy as np

from reprogls import kernels

try:
    from ._timing import best_seconds as _best_seconds
except ImportError:  # run as a script
    from _timing import best_seconds as _best_seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000_000, help="vector length")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per kernel")
    parser.add_argument("--pause", type=float, default=0.3, help="seconds before each run")
    args = parser.parse_args(argv)

    n = args.n
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n)
    y = rng.standard_normal(n)
    cases = {
        "blas np.dot(x, y)": (lambda: np.dot(x, y), 16 * n),
        "sum plain": (lambda: kernels.sum(x, mode="plain", device="cpu"), 8 * n),
        "sum compensated": (lambda: kernels.sum(x, device="cpu"), 8 * n),
        "dot plain": (lambda: kernels.dot(x, y, mode="plain", device="cpu"), 16 * n),
        "dot compensated": (lambda: kernels.dot(x, y, device="cpu"), 16 * n),
        "nrm2 compensated": (lambda: kernels.nrm2(x, device="cpu"), 16 * n),
    }
    for fn, _ in cases.values():
        fn()
    best = {name: np.inf for name in cases}
    for _ in range(args.repeat):  # interleave the cases so drifts hit all of them alike
        for name, (fn, _) in cases.items():
            best[name] = min(best[name], _best_seconds(fn, 1, args.pause))
    blas = cases["blas np.dot(x, y)"][1] / best["blas np.dot(x, y)"] / 1e9
    print(f"n = {n:,} float64, threads = {kernels.cpu_threads()}, best of {args.repeat}")
    print(f"{'kernel':<20} {'GB/s':>7} {'vs BLAS':>8}")
    for name, (_, nbytes) in cases.items():
        gbs = nbytes / best[name] / 1e9
        print(f"{name:<20} {gbs:7.1f} {gbs / blas:8.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
