"""How each block Krylov eigen-solve of a fit went: Rayleigh-Ritz steps, restarts,
vectors multiplied, and which Ritz value held the stopping rule back.

Usage::

    python profiling/krylov_solves.py [--n 5000 --k 2000 --p 5 --factors 5 --rank 25]

Fits ``gls.simulate_sur(n, k, p, factors, seed=0)`` at ``rank`` with ``cov_type="none"``
(once: the fit compiles what it has not compiled yet, so its time includes that) and
records every call of :func:`reprogls.gls.eigen.krylov_eigenpairs` the Sigma-step makes
(it takes the Krylov method where ``K > 32 k``, or ``K > 16 k`` from K = 100:
:func:`reprogls.gls.eigen.eigensolver_for`). Per solve: the start's columns, the
Rayleigh-Ritz steps, the thick restarts, the vectors multiplied by ``M``, whether it
converged, and at its last Rayleigh-Ritz step that did not meet the rule the index ``q``
of the Ritz value farthest above it, that value and the ratio of its change to the
rule's bound ``max(tol |theta_q|, RITZ_NOISE theta_1)`` (:func:`eigen._ritz_converged`).
Then the totals and how often each index was the one that held the rule back.

The records come from wrapping the module's functions (the product counts from
wrapping ``M`` in a function that calls the same :func:`reprogls.gls._dense.matmul`),
so the fit computes the same bits as without them; the script prints the fingerprint
to check that against a plain fit. It is what the fifty-first session's measurements
of the Krylov method rest on (docs/performance.md, the Sigma-step).
"""

from __future__ import annotations

import argparse
import collections
import time
from dataclasses import dataclass, field

import numpy as np

from reprogls import gls
from reprogls.gls import eigen


@dataclass
class Solve:
    """What one call of ``krylov_eigenpairs`` did."""

    start_columns: int
    vectors: int = 0
    steps: int = 0
    restarts: int = 0
    converged: bool = False
    last_size: int = 0
    holding: tuple[int, float, float] | None = None  # (q, theta_q, change / bound)
    sizes: list[int] = field(default_factory=list)


def record_solves() -> list[Solve]:
    """Wrap :mod:`reprogls.gls.eigen`'s Krylov method, its Rayleigh-Ritz matrix and its
    stopping rule so that each solve is recorded (the same arithmetic: each wrapper calls
    the function it wraps with the same arguments)."""
    solves: list[Solve] = []
    krylov, rayleigh, rule = (eigen.krylov_eigenpairs, eigen.rayleigh_extend,
                              eigen._ritz_converged)

    def counted_krylov(M, Q0, mode, *args, **kwargs):
        solve = Solve(start_columns=Q0.shape[1])
        solves.append(solve)

        def product(Q):
            solve.vectors += Q.shape[1]
            return M(Q) if callable(M) else eigen.matmul(M, Q, mode)

        lam, Q, converged = krylov(product, Q0, mode, *args, **kwargs)
        solve.converged = converged
        return lam, Q, converged

    def counted_rayleigh(BT, MBT, G, lo, hi, compensated):
        solve = solves[-1]
        if solve.sizes and hi <= solve.sizes[-1]:
            solve.restarts += 1
        solve.sizes.append(hi)
        solve.steps += 1
        return rayleigh(BT, MBT, G, lo, hi, compensated)

    def watched_rule(new_lam, lam, tol):
        met = rule(new_lam, lam, tol)
        if not met and np.all(np.isfinite(lam)):
            bound = np.maximum(tol * np.abs(new_lam), eigen.RITZ_NOISE * abs(new_lam[0]))
            ratio = np.abs(new_lam - lam) / bound
            q = int(np.argmax(ratio))
            solves[-1].holding = (q, float(new_lam[q]), float(ratio[q]))
        return met

    eigen.krylov_eigenpairs = counted_krylov
    eigen.rayleigh_extend = counted_rayleigh
    eigen._ritz_converged = watched_rule
    return solves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="observations N")
    parser.add_argument("--k", type=int, default=2000, help="equations K")
    parser.add_argument("--p", type=int, default=5, help="regressors per equation")
    parser.add_argument("--factors", type=int, default=5, help="factors in the data")
    parser.add_argument("--rank", type=int, default=25, help="factors fitted")
    args = parser.parse_args()
    Xs, Y = gls.simulate_sur(args.n, args.k, args.p, args.factors, seed=0)[:2]
    solver = eigen.eigensolver_for(args.k, args.rank)
    print(f"N={args.n} K={args.k} p={args.p} factors={args.factors} rank={args.rank}: "
          f"eigensolver_for gives {solver!r}")
    solves = record_solves()
    t0 = time.perf_counter()
    res = gls.fit(Xs, Y, rank=args.rank, cov_type="none")
    seconds = time.perf_counter() - t0
    print(f"fit {seconds:.2f} s (compiling included), {res.n_iter} sweeps, llf {res.llf!r}, "
          f"fingerprint {res.fingerprint[:16]}")
    print(" solve start  steps restarts vectors conv  held back by (q, theta_q, "
          "change/bound) at its last unmet step")
    holders: collections.Counter[int] = collections.Counter()
    for i, s in enumerate(solves):
        held = "-" if s.holding is None else (
            f"q={s.holding[0]:<3d} theta={s.holding[1]:<12.6g} {s.holding[2]:.3g}")
        if s.holding is not None:
            holders[s.holding[0]] += 1
        print(f"{i:6d} {s.start_columns:5d} {s.steps:6d} {s.restarts:8d} {s.vectors:7d} "
              f"{'yes' if s.converged else 'NO':>4s}  {held}")
    print(f"total: {len(solves)} solves, {sum(s.steps for s in solves)} Rayleigh-Ritz "
          f"steps, {sum(s.restarts for s in solves)} restarts, "
          f"{sum(s.vectors for s in solves)} vectors, "
          f"{sum(not s.converged for s in solves)} unconverged")
    print("held back by index: " + (", ".join(f"q={q}: {c}" for q, c in
                                               sorted(holders.items())) or "-"))


if __name__ == "__main__":
    main()
