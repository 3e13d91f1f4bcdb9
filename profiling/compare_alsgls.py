"""reprogls vs alsgls 2.2.0 on alsgls's own simulated SUR data, in one process.

Usage::

    pip install alsgls==2.2.0
    python profiling/compare_alsgls.py [--sizes S M] [--mode compensated|plain] [--no-se]

For each size: fit time of ``gls.fit(Xs, Y, rank=k)`` (plug-in SEs included for S; for M
without SEs, whose time -- ``X^T X`` plus the inverse normal matrix, the same calls the fit
makes -- is reported on its own line) and of ``alsgls.ALSGLS(rank=k).fit``, held-out NLL
per row (alsgls's ``nll_per_row`` on the test residuals, for both) and the max
coefficient error against the simulated truth. Two timings (every CPU kernel is compiled
before either):

* the first and the second fit of each library in the process, alternating, each after
  a 1 s pause: what one call costs on a machine that was idle (fresh memory, cores
  waking up; on the 2-core Zen 3 box an S fit takes ~50 ms after an idle second and
  ~33 ms back to back);
* ``--repeat R`` fits of each library back to back (after one pause), their median: the
  steady cost of a fit, as a benchmark loop measures it.
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from importlib.metadata import version

import numpy as np

from reprogls import gls, kernels
from reprogls.kernels.cpu.pages import page_policy

SIZES = {"S": dict(N=2000, K=50, p=5, k=3), "M": dict(N=20000, K=200, p=10, k=5)}
#: Seconds of idling before each timed fit: OpenBLAS threads spin for a while after a call
#: (alsgls's fit is BLAS) and would take the cores from the Numba threads of the next one.
PAUSE = 1.0


def true_coefficients(N: int, K: int, p: int, seed: int) -> np.ndarray:
    """Replay alsgls.simulate_sur's draws up to the coefficients."""
    rng = np.random.default_rng(seed)
    rng.standard_normal((N, p))
    for _ in range(K):
        rng.standard_normal((N, p))
    return np.concatenate([rng.standard_normal((p, 1)).ravel() for _ in range(K)])


def median_seconds(fit_once, repeat: int) -> float:
    """Median seconds of ``repeat`` calls back to back, after one pause."""
    time.sleep(PAUSE)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fit_once()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def plugin_se_seconds(Xs, res, k: int) -> float:
    """Seconds of the fit's plug-in covariance stage at the fitted Sigma."""
    from reprogls.gls._dense import gram
    from reprogls.gls.covariance import inverse_normal_matrix
    from reprogls.kernels import woodbury_factor

    X = np.ascontiguousarray(np.concatenate(Xs, axis=1))
    factor = woodbury_factor(res.F, res.d, res.mode)
    time.sleep(1.0)  # OpenBLAS threads left spinning by alsgls's fit (profiling/README.md)
    t0 = time.perf_counter()
    inverse_normal_matrix(gram(X, res.mode), res.offsets, factor, 0.0)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    import alsgls

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", default=["S", "M"], choices=list(SIZES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mode", choices=["compensated", "plain"], default="compensated",
                        help="reprogls's reduction mode (default: the fit's default)")
    parser.add_argument("--no-se", action="store_true",
                        help="skip the separate plug-in SE timing at M (~20 s)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="back-to-back fits of each library for the medians (M: at "
                             "most 2)")
    args = parser.parse_args(argv)
    print(f"alsgls {version('alsgls')}; reprogls {page_policy()}")
    # compile (or load from Numba's cache) every CPU kernel first: the CG path's kernels
    # are not reached by a small warm-up fit, and compilation is not fit time
    kernels.warmup(("cpu",))
    for name in args.sizes:
        N, K, p, k = (SIZES[name][key] for key in ("N", "K", "p", "k"))
        n_test = N // 4
        Xtr, Ytr, Xte, Yte = alsgls.simulate_sur(N, n_test, K, p, k, seed=args.seed)
        B = true_coefficients(N + n_test, K, p, args.seed)
        cov = "plugin" if name == "S" else "none"
        ours, theirs = [], []
        for _ in range(2):  # the first fit of a size pays for fresh memory (both libraries)
            time.sleep(PAUSE)
            t0 = time.perf_counter()
            res = gls.fit(Xtr, Ytr, rank=k, cov_type=cov, mode=args.mode)
            ours.append(time.perf_counter() - t0)
            time.sleep(PAUSE)
            t0 = time.perf_counter()
            peer = alsgls.ALSGLS(rank=k).fit(Xtr, Ytr)
            theirs.append(time.perf_counter() - t0)
        ours_pred = res.predict(Xte)
        peer_pred = peer.predict(Xte)
        nll_ours = alsgls.nll_per_row(Yte - ours_pred, res.F, res.d)
        nll_peer = alsgls.nll_per_row(Yte - peer_pred, peer.F_, peer.D_)
        peer_B = np.concatenate([np.asarray(b).ravel() for b in peer.B_list_])
        print(f"{name}: N={N} K={K} p={p} k={k}, test rows {n_test}, training X "
              f"{sum(x.nbytes for x in Xtr):,} B")
        for label, t_ours, t_peer in zip(("first fit", "second fit"), ours, theirs,
                                         strict=True):
            print(f"  {label:10s} reprogls {t_ours:8.3f} s (SEs: {cov}, {args.mode})   "
                  f"alsgls {t_peer:8.3f} s   ratio {t_ours / t_peer:.3f} "
                  f"({t_peer / t_ours:.1f}x faster)")
        print(f"  test NLL/row reprogls {nll_ours:.6f}   alsgls {nll_peer:.6f}")
        print(f"  max |beta - truth| reprogls {np.max(np.abs(res.params - B)):.5f}   alsgls "
              f"{np.max(np.abs(peer_B - B)):.5f}")
        repeat = max(1, min(args.repeat, 2 if name == "M" else args.repeat))
        steady = [median_seconds(partial(gls.fit, Xtr, Ytr, rank=k, cov_type=cov,
                                         mode=args.mode), repeat),
                  median_seconds(partial(alsgls.ALSGLS(rank=k).fit, Xtr, Ytr), repeat)]
        print(f"  {repeat} back to back, median: reprogls {steady[0]:.3f} s   alsgls "
              f"{steady[1]:.3f} s   ({steady[1] / steady[0]:.1f}x faster)")
        if cov == "none" and not args.no_se:
            print(f"  plug-in SEs reprogls {plugin_se_seconds(Xtr, res, k):8.2f} s "
                  "(X^T X + inverse normal matrix)")
        print(f"  reprogls sweeps {res.n_iter}, converged {res.converged}, fingerprint "
              f"{res.fingerprint[:16]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
