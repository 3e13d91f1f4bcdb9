"""Time L1-penalised fits (``gls.fit(..., l1=...)``) against the unpenalised fit, in one
process, on alsgls-style data (:func:`reprogls.gls.simulate_sur`).

Usage::

    python profiling/penalised_fits.py [--size S|M] [--l1 10 100 1000]

Per ``l1``: the fit time (one fit after a warm-up fit, 0.5 s pause before each, as the
other scripts), the sweeps, how many coefficients the penalty set to exactly zero,
the penalised beta-steps' FISTA iterations (from the solver's own count) and the
fingerprint; then the unpenalised fit (``cov_type="none"``, as the penalised fits
default to) in the same run.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from reprogls import gls

SIZES = {"S": (2000, 50, 5, 3), "M": (20000, 200, 10, 5)}


def count_fista_iterations():
    """Wrap the fit's penalised solver so that each beta-step's iterations are recorded."""
    import importlib

    fit_module = importlib.import_module("reprogls.gls.fit")
    solve = fit_module.solve_penalised
    record: list[int] = []

    def counted(*args, **kwargs):
        solved = solve(*args, **kwargs)
        record.append(solved.iters)
        return solved

    fit_module.solve_penalised = counted
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="S")
    parser.add_argument("--l1", type=float, nargs="+", default=[10.0, 100.0, 1000.0])
    args = parser.parse_args()
    N, K, p, k = SIZES[args.size]
    Xs, Y = gls.simulate_sur(N, K, p, k, seed=0)[:2]
    record = count_fista_iterations()
    gls.fit(Xs, Y, rank=k, cov_type="none")
    gls.fit(Xs, Y, rank=k, l1=1.0)  # compiles what the penalised path adds
    print(f"size {args.size}: N={N} K={K} p={p} k={k}")
    for l1 in args.l1:
        record.clear()
        time.sleep(0.5)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            res = gls.fit(Xs, Y, rank=k, l1=l1)
            seconds = time.perf_counter() - t0
        zeros = int(np.count_nonzero(res.params == 0))
        print(f"l1={l1:g}: {seconds:.3f} s, {res.n_iter} sweeps, {zeros}/{res.params.size} "
              f"zeros, FISTA iterations {record}, fingerprint {res.fingerprint[:16]}"
              + "".join(f"\n  warning: {w.message}" for w in caught))
    time.sleep(0.5)
    t0 = time.perf_counter()
    res = gls.fit(Xs, Y, rank=k, cov_type="none")
    print(f"unpenalised: {time.perf_counter() - t0:.3f} s, {res.n_iter} sweeps")


if __name__ == "__main__":
    main()
