"""Where a GLS fit spends its time: per phase, then a cProfile view.

Usage::

    python profiling/profile_fit.py [--size S|M|L] [--cov plugin|none]
        [--sigma-step auto|moment|residuals] [--top 25]

(L is the scale target: N=5000, K=2000, p=5, k=10.)

Phases are timed by wrapping the estimator's building blocks (OLS start, beta-step,
Sigma-step, log-likelihood, standard errors); every CPU kernel is compiled (or loaded
from the cache) first, so no JIT time is timed. Each phase also reports the minor page
faults it took (``getrusage``, where available): on the 2-core test VMs a fault costs
~1.8 us, and at size S they were 2614 per fit (~4.6 ms of ~40) until the large
temporaries came from reused buffers (``reprogls/kernels/cpu/scratch.py``). The timed
fit is the second of the process (the first pays for the process's fresh memory).
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import io
import pstats
import time
from collections import defaultdict

from reprogls import gls, kernels

beta_step = importlib.import_module("reprogls.gls.beta")
fit_module = importlib.import_module("reprogls.gls.fit")

SIZES = {"S": (2000, 50, 5, 3), "M": (20000, 200, 10, 5), "L": (5000, 2000, 5, 10)}


def _minor_faults() -> int:
    """Minor page faults of this process so far (0 where ``resource`` is missing)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _timed(store, faults, name, fn):
    def wrapper(*args, **kwargs):
        t0, f0 = time.perf_counter(), _minor_faults()
        try:
            return fn(*args, **kwargs)
        finally:
            store[name] += time.perf_counter() - t0
            faults[name] += _minor_faults() - f0
    return wrapper


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=list(SIZES), default="S")
    parser.add_argument("--cov", choices=["plugin", "none"], default=None)
    parser.add_argument("--sigma-step", choices=["auto", "moment", "residuals"],
                        default="auto")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    N, K, p, k = SIZES[args.size]
    cov = args.cov or ("plugin" if args.size == "S" else "none")
    Xs, Y, *_ = gls.simulate_sur(N, K, p, k, seed=0)
    kernels.warmup(("cpu",))  # JIT outside the measurement (the CG path's kernels too)
    for step in ("moment", "residuals"):
        gls.fit(Xs[:3], Y[:, :3], rank=1, cov_type="none", sigma_step=step)

    phases: dict[str, float] = defaultdict(float)
    faults: dict[str, int] = defaultdict(int)
    patches = [(fit_module, "ols", "OLS start"), (fit_module, "block_grams", "Gram blocks"),
               (fit_module, "factor_analysis", "Sigma-step (factor analysis)"),
               (fit_module, "residual_moment", "Sigma-step (E^T E / N)"),
               (fit_module, "ResidualMoment", "Sigma-step (residual operator set-up)"),
               (beta_step, "solve_cg", "beta-step (CG)"),
               (beta_step, "rhs_and_residual", "beta-step (b and r0, one pass)"),
               (beta_step, "rhs", "beta-step (b)"),
               (fit_module, "prepare", "packing X (prepare)"),
               (fit_module, "residuals", "residuals E = Y - X beta"),
               (fit_module, "gram", "X^T X (gram solver, SEs)"),
               (fit_module, "loglik", "log-likelihood")]
    originals = []
    for module, attr, label in patches:
        originals.append((module, attr, getattr(module, attr)))
        setattr(module, attr, _timed(phases, faults, label, getattr(module, attr)))
    try:
        gls.fit(Xs, Y, rank=k, cov_type=cov, sigma_step=args.sigma_step)  # fresh memory
        phases.clear()
        faults.clear()
        t0, f0 = time.perf_counter(), _minor_faults()
        res = gls.fit(Xs, Y, rank=k, cov_type=cov, sigma_step=args.sigma_step)
        total, total_faults = time.perf_counter() - t0, _minor_faults() - f0
    finally:
        for module, attr, fn in originals:
            setattr(module, attr, fn)
    print(f"size {args.size}: N={N} K={K} p={p} k={k}, cov_type={cov}: {total:.3f} s, "
          f"{res.n_iter} sweeps, {total_faults} minor page faults")
    for label, seconds in sorted(phases.items(), key=lambda kv: -kv[1]):
        print(f"  {label:<40} {seconds:8.3f} s  {seconds / total:5.0%}  "
              f"{faults[label]:7d} faults")
    print(f"  {'other':<40} {total - sum(phases.values()):8.3f} s  "
          f"{total_faults - sum(faults.values()):14d} faults")

    profiler = cProfile.Profile()
    profiler.enable()
    gls.fit(Xs, Y, rank=k, cov_type=cov, sigma_step=args.sigma_step)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(args.top)
    print(out.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
