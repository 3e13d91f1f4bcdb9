"""What a multi-threaded BLAS call just before costs a kernel call or a fit: OpenBLAS's
idle workers.

Usage::

    python profiling/after_blas.py [--size S|M] [--repeat 7] [--rows 25000]
    OPENBLAS_THREAD_TIMEOUT=4 python profiling/after_blas.py

After each call OpenBLAS's worker threads (NumPy's ``@``, ``np.dot``, ``np.linalg``)
busy-wait for new work for a while before they sleep (``2**OPENBLAS_THREAD_TIMEOUT``
cycles, default 2**28). A reprogls call in that window shares each core with a spinning
worker, so its two Numba threads get about one core between them. This script times the
fused operator ``sur_normal_matvec`` (``--rows`` rows, K = 200, p = 10, k = 5: X of 400
MB at the default) and a fit of a simulated SUR system (``gls.fit(..., rank=k)``,
plug-in SEs off) in three settings, alternating, each ``--repeat`` times, and prints the
median seconds:

* ``idle``: after a 1 s pause;
* ``after BLAS``: right after a 2000 x 2000 matrix product by NumPy;
* ``after BLAS + 0.5 s``: the same product, then a 0.5 s pause.

Nothing here changes a value: the script prints how many distinct results (fingerprints
or SHA-256 digests) each call gave over all settings -- one.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time

import numpy as np

from reprogls import gls, kernels
from reprogls.gls.simulate import simulate_sur

try:
    from .compare_alsgls import SIZES
except ImportError:  # run as a script
    from compare_alsgls import SIZES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="S")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--rows", type=int, default=25_000)
    args = parser.parse_args(argv)
    size = SIZES[args.size]
    kernels.warmup(("cpu",))
    Xs, Y, *_ = simulate_sur(size["N"], size["K"], size["p"], size["k"], seed=0)
    A = np.random.default_rng(1).standard_normal((2000, 2000))

    def blas():
        A @ A

    settings = {"idle": lambda: time.sleep(1.0),
                "after BLAS": lambda: (time.sleep(1.0), blas()),
                "after BLAS + 0.5 s": lambda: (time.sleep(1.0), blas(), time.sleep(0.5))}
    rng = np.random.default_rng(2)
    K, p = 200, 10
    X = rng.standard_normal((args.rows, K * p))
    offsets = np.arange(0, K * p + 1, p)
    v = rng.standard_normal(K * p)
    factor = kernels.woodbury_factor(rng.standard_normal((K, 5)),
                                     0.05 + 0.2 * rng.uniform(size=K))
    calls = {"sur_normal_matvec": lambda: kernels.sur_normal_matvec(X, offsets, factor, v),
             f"fit {args.size}": lambda: gls.fit(Xs, Y, rank=size["k"], cov_type="none")}
    timeout = os.environ.get("OPENBLAS_THREAD_TIMEOUT", "unset")
    print(f"threads = {kernels.cpu_threads()}; OPENBLAS_THREAD_TIMEOUT={timeout}")
    for label, call in calls.items():
        call()  # compiles what the call needs
        times = {name: [] for name in settings}
        results = set()
        for _ in range(args.repeat):
            for name, before in settings.items():
                before()
                t0 = time.perf_counter()
                result = call()
                times[name].append(time.perf_counter() - t0)
                results.add(getattr(result, "fingerprint", None)
                            or hashlib.sha256(result).hexdigest())
        print(f"{label} ({len(results)} distinct result(s): "
              f"{', '.join(sorted(r[:16] for r in results))})")
        for name in settings:
            print(f"  {name:<20} median {np.median(times[name]):.4f} s "
                  f"(min {min(times[name]):.4f}, max {max(times[name]):.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
