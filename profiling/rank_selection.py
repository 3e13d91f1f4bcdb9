"""``gls.select_rank`` against fitting each candidate rank on its own, in one process.

Usage::

    python profiling/rank_selection.py [--size S|A|M] [--ranks 1 2 3 ...] [--rounds 3]
        [--cov plugin|none] [--n N --k K --p P --factors F]

``select_rank`` does the work that no rank changes once for all its candidates
(:class:`reprogls.gls.fit.SharedFit`: validating and packing the data, the Gram blocks
or ``X^T X`` and their factors, the OLS start, the first sweep's ``S = E^T E / N``); the
way it worked before the fifty-second session, and what a user's own loop does, is one
:func:`reprogls.gls.fit` per rank with ``cov_type="none"`` and then the chosen rank's
covariance by :meth:`~reprogls.gls.GLSResult.with_covariance`. Both ways alternate, each
call after a 0.5 s pause; the script prints each round's times, the best of each and
their ratio, the share ``select_rank`` spent on the shared work
(``RankSelection.setup_seconds``), and checks that both ways give the same bits: every
candidate's log-likelihood and the chosen fit's fingerprint (a mismatch exits 1).

Sizes (alsgls-style data, :func:`reprogls.gls.simulate_sur` with ``shared=False``,
``seed=2``): S N = 2000, K = 50, p = 5, three factors, ranks 0-5; A the asv
``bench_fit.SelectRank`` case, N = 2000, K = 40, p = 4, three factors, ranks 1-8; M N =
20000, K = 200, p = 10, five factors, ranks 3-7 (use ``--cov none`` there: the plug-in
covariance at M takes seconds and is the same work either way).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np

from reprogls import gls

SIZES = {"S": ((2000, 50, 5, 3), range(0, 6)), "A": ((2000, 40, 4, 3), range(1, 9)),
         "M": ((20000, 200, 10, 5), range(3, 8))}


def one_by_one(Xs, Y, ranks, cov_type: str, criterion: str = "bic"):
    """Each rank by its own ``gls.fit`` (no covariance), the best by ``criterion`` (the
    smallest rank among ties, as ``select_rank``), then its covariance added."""
    fits = [gls.fit(Xs, Y, rank=k, cov_type="none") for k in ranks]
    scores = [getattr(r, criterion) for r in fits]
    best = min(range(len(ranks)), key=lambda i: (scores[i], ranks[i]))
    chosen = fits[best] if cov_type == "none" else fits[best].with_covariance(Xs, Y, cov_type)
    return [r.llf for r in fits], ranks[best], chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="S")
    parser.add_argument("--ranks", type=int, nargs="+")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cov", choices=["plugin", "none"], default="plugin")
    for name in ("n", "k", "p", "factors"):
        parser.add_argument(f"--{name}", type=int, help="overrides the size's value")
    args = parser.parse_args(argv)
    (N, K, p, factors), ranks = SIZES[args.size]
    N, K, p, factors = (getattr(args, name) or value for name, value in
                        zip(("n", "k", "p", "factors"), (N, K, p, factors), strict=True))
    ranks = sorted(set(args.ranks or ranks))
    warnings.simplefilter("ignore", gls.IdentificationWarning)
    Xs, Y, *_ = gls.simulate_sur(N, K, p, factors, seed=2, shared=False)
    print(f"N={N} K={K} p={p}, {factors} factors in the data; ranks {ranks}; "
          f"chosen rank's covariance: {args.cov}")
    gls.select_rank(Xs, Y, ranks=ranks, cov_type=args.cov)  # compiles what both ways use
    shared, alone, setup = [], [], []
    for round_ in range(args.rounds):
        time.sleep(0.5)
        t0 = time.perf_counter()
        sel = gls.select_rank(Xs, Y, ranks=ranks, cov_type=args.cov)
        shared.append(time.perf_counter() - t0)
        setup.append(sel.setup_seconds)
        time.sleep(0.5)
        t0 = time.perf_counter()
        llf, best_rank, chosen = one_by_one(Xs, Y, ranks, args.cov)
        alone.append(time.perf_counter() - t0)
        print(f"round {round_ + 1}: select_rank {shared[-1]:.3f} s (shared work "
              f"{setup[-1]:.3f} s), one fit per rank {alone[-1]:.3f} s")
        same = (best_rank == sel.best_rank and chosen.fingerprint == sel.result.fingerprint
                and np.array_equal(np.array(llf).view(np.uint64),
                                   np.array(sel.llf).view(np.uint64)))
        if not same:
            print("the two ways differ: select_rank's table or chosen fit is not the bits "
                  "of gls.fit", file=sys.stderr)
            return 1
    print(f"best: select_rank {min(shared):.3f} s, one fit per rank {min(alone):.3f} s, "
          f"{min(alone) / min(shared):.2f}x; best rank {sel.best_rank}, the same bits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
