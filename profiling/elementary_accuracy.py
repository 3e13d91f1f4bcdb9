"""Max error in ulps of the portable ``log``/``exp`` against mpmath (correctly rounded).

Usage::

    python profiling/elementary_accuracy.py [--n 1000000]

Inputs: ``log`` on ``m * 2**e`` with ``e`` uniform over the whole exponent range plus
``[0.5, 2)``; ``exp`` uniform over ``[-745, 709.78]`` and ``[-1, 1]``. Errors of results in
the subnormal range are counted in units of the subnormal spacing.
"""

from __future__ import annotations

import argparse
import math

import mpmath
import numpy as np

from reprogls import kernels


def max_ulp(xs: np.ndarray, got: np.ndarray, exact_fn) -> tuple[float, float]:
    worst, at = 0.0, float("nan")
    with mpmath.workprec(200):
        for x, g in zip(xs, got, strict=True):
            exact = exact_fn(mpmath.mpf(float(x)))
            nearest = float(exact)
            if nearest == 0.0 or math.isinf(nearest):
                err = 0.0 if g == nearest else math.inf
            else:
                err = float(abs(mpmath.mpf(float(g)) - exact) / math.ulp(nearest))
            if err > worst:
                worst, at = err, float(x)
    return worst, at


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="inputs per function")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    half = args.n // 2
    xs = np.concatenate([np.ldexp(rng.uniform(0.5, 1, half), rng.integers(-1074, 1024, half)),
                         rng.uniform(0.5, 2.0, args.n - half)])
    worst, at = max_ulp(xs, kernels.log(xs), mpmath.log)
    print(f"log: {args.n:,} inputs, max error {worst:.3f} ulp (at x = {at!r})")
    ys = np.concatenate([rng.uniform(-745.0, 709.78, half), rng.uniform(-1, 1, args.n - half)])
    worst, at = max_ulp(ys, kernels.exp(ys), mpmath.exp)
    print(f"exp: {args.n:,} inputs, max error {worst:.3f} ulp (at x = {at!r})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
