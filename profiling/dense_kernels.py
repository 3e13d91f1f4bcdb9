"""Throughput of the dense kernels behind the gram solver, the Sigma-step and the SEs.

Usage::

    python profiling/dense_kernels.py [--n 20000] [--p 2000] [--order 2000]

In one process, after a warm-up call of each:

* ``X^T X`` (lower triangle, ``N P^2 / 2`` multiply-adds): the tiled kernel
  ``lower_gram``, the sparse pair kernel ``column_pair_grams`` on the same pairs (what
  the fit used before), and BLAS ``X.T @ X``; in GMAC/s, both modes.
* The SPD inverse of order ``--order`` (``n^3 / 2`` multiply-adds): parallel Cholesky +
  ``L^-T L^-1`` against NumPy/LAPACK ``np.linalg.inv``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from reprogls.kernels.cpu import gram, spd


def _seconds(fn) -> float:
    time.sleep(0.5)  # let OpenBLAS threads stop spinning (profiling/README.md)
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def square_tile_plan(P: int, side: int = 16) -> gram.PairPlan:
    """All pairs ``m >= a`` in square tiles of ``side`` columns (the pair kernel's plan)."""
    tiles = []
    for a0 in range(0, P, side):
        a_cols = np.arange(a0, min(P, a0 + side))
        for m0 in range(a0, P, side):
            m_cols = np.arange(m0, min(P, m0 + side))
            cols = a_cols if m0 == a0 else np.concatenate([a_cols, m_cols])
            a, m = np.meshgrid(a_cols, m_cols, indexing="ij")
            keep = m >= a
            tiles.append((cols, np.column_stack([m[keep], a[keep]])))
    return gram.PairPlan(tiles)


def spd_inverse(C: np.ndarray, compensated: bool) -> np.ndarray:
    L, Z, inv = np.empty_like(C), np.empty_like(C), np.empty_like(C)
    spd.cholesky(C, compensated, L)
    spd.inverse_factor(L, compensated, Z)
    spd.gram_of_rows_from_diagonal(Z, compensated, inv)
    return inv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--p", type=int, default=2000)
    parser.add_argument("--order", type=int, default=2000)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.n, args.p))
    small = X[:300, :40].copy()
    plan = square_tile_plan(args.p)
    macs = args.n * args.p * args.p / 2 / 1e9
    print(f"X^T X: N={args.n} P={args.p} ({macs:.1f} GMAC for the lower triangle)")
    t_blas = _seconds(lambda: X.T @ X)
    print(f"  BLAS X.T @ X          {t_blas:8.2f} s  {macs / t_blas:7.2f} GMAC/s "
          "(NumPy hands X.T @ X to syrk: one triangle)")
    for compensated in (False, True):
        mode = "compensated" if compensated else "plain"
        gram.lower_gram(small, compensated)
        gram.column_pair_grams(small, square_tile_plan(40), compensated)
        t_new = _seconds(lambda c=compensated: gram.lower_gram(X, c))
        t_old = _seconds(lambda c=compensated: gram.column_pair_grams(X, plan, c))
        print(f"  lower_gram  {mode:12s}{t_new:8.2f} s  {macs / t_new:7.2f} GMAC/s   "
              f"pair kernel {t_old:8.2f} s  {macs / t_old:7.2f} GMAC/s   "
              f"x{t_old / t_new:.2f}")
    n = args.order
    B = rng.standard_normal((n + 10, n))
    C = B.T @ B / n + np.eye(n)
    print(f"SPD inverse: order {n} ({n ** 3 / 2 / 1e9:.1f} GMAC)")
    t_lapack = _seconds(lambda: np.linalg.inv(C))
    print(f"  np.linalg.inv         {t_lapack:8.2f} s")
    for compensated in (False, True):
        mode = "compensated" if compensated else "plain"
        spd_inverse(C[:40, :40].copy(), compensated)
        spd_inverse(C[:400, :400].copy(), compensated)  # the parallel drivers
        t = _seconds(lambda c=compensated: spd_inverse(C, c))
        print(f"  Cholesky + L^-T L^-1 {mode:12s}{t:8.2f} s  "
              f"{n ** 3 / 2 / 1e9 / t:7.2f} GMAC/s   x{t / t_lapack:.1f} LAPACK's time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
