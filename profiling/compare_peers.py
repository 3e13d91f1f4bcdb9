"""reprogls against linearmodels SUR, statsmodels GLS and scikit-learn FactorAnalysis, in
one process: time, and how far the answers agree.

Usage::

    pip install ".[peers]"
    python profiling/compare_peers.py [--only linearmodels statsmodels sklearn]
                                      [--repeat 3] [--small]

Each row times the same task done the way each library offers it, on data drawn as
:func:`reprogls.gls.simulate_sur` draws it (alsgls's design: shared base regressors,
``Sigma = F F^T + diag(d)``):

* ``linearmodels``: the full-covariance SUR maximum-likelihood estimate --
  ``SUR(...).fit(method="gls", iterate=True)`` (iterated FGLS, which converges to it)
  against ``gls.fit(Xs, Y, rank=K - 1)`` (a rank ``K - 1`` factor model spans every
  covariance) at small K; agreement: the coefficients' max relative difference and the
  Gaussian log-likelihood of each answer (computed here the same way for both, at each
  library's own Sigma). Then the default two-step FGLS that a linearmodels user runs
  (``SUR(...).fit()``) against the low-rank fit at the alsgls size S: different models
  (a full against a rank-k Sigma), so only the time and the coefficient error against
  the simulated truth. (At the alsgls size M, N = 20000, K = 200, p = 10, linearmodels'
  default fit was killed for memory on the 24 GiB test VM; reprogls fits M in ~1 s.)
* ``statsmodels``: GLS with a known Sigma -- ``sm.GLS(y, X, sigma=kron(I_N, Sigma))``
  on the stacked system (N K rows, a dense N K x N K ``sigma``, which is how statsmodels
  takes it: its construction whitens by the Cholesky factor of that matrix's inverse,
  ``O((N K)^3)``, so it runs only where the matrix takes at most 600 MB), and what a
  statsmodels user writes instead -- ``sm.OLS`` on the stack whitened by hand, row by
  row, with ``Sigma``'s Cholesky factor -- both with the plug-in covariance at scale 1,
  against ``gls.fit(Xs, Y, sigma=(F, d), cov_type="plugin")``; agreement: coefficients
  and standard errors.
* ``sklearn``: the factor-analysis Sigma-step on a fixed residual matrix ``E`` (centred,
  N x K; at the alsgls sizes, and at a rank far beyond the data's factors) --
  ``FactorAnalysis(n_components=k).fit(E)`` (its defaults: randomized SVD,
  ``tol=1e-2``) against :func:`reprogls.gls.sigma.factor_analysis` on ``E^T E / N``
  (the moment included in the time); agreement: the log-likelihood each reaches.

Times are the best of ``--repeat`` calls, each after a 0.5 s pause (OpenBLAS's spinning
workers of the previous call would take the cores from the next, ``profiling/README.md``);
every CPU kernel is compiled before the first (``kernels.warmup``), so no row includes
JIT time. The peers use NumPy's BLAS and LAPACK on every core; reprogls uses its own
deterministic kernels (no BLAS). ``--small`` runs tiny sizes without the warm-up (a
smoke test of the script: its times include compiling).
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable
from importlib.metadata import version

import numpy as np

from reprogls import gls, kernels
from reprogls.gls import IdentificationWarning
from reprogls.gls.sigma import factor_analysis, residual_moment

try:
    from ._timing import best_seconds
except ImportError:  # run as a script
    from _timing import best_seconds

#: Seconds of idling before each timed call.
PAUSE = 0.5

#: (N, K, p) of the full-covariance comparison with linearmodels, normal / ``--small``.
FULL_SUR = {False: [(2000, 5, 5), (2000, 10, 5), (5000, 20, 5)], True: [(200, 4, 2)]}
#: (N, K, p, k) of the default-FGLS comparison with linearmodels (alsgls's size S).
DEFAULT_SUR = {False: [(2000, 50, 5, 3), (5000, 100, 5, 3)], True: [(200, 6, 2, 2)]}
#: (N, K, p, k) of the known-Sigma GLS comparison with statsmodels.
KNOWN_SIGMA = {False: [(200, 10, 3, 2), (500, 10, 3, 2), (1000, 8, 3, 2), (2000, 50, 5, 3)],
               True: [(60, 4, 2, 1)]}
#: statsmodels GLS runs where its dense ``N K x N K`` sigma takes at most this.
MAX_GLS_SIGMA_BYTES = 600e6
#: (N, K, k, factors in the data) of the factor-analysis comparison with scikit-learn:
#: alsgls's S and M, and a rank far beyond the data's factors (reprogls then solves the
#: whole eigenproblem, ``eigen.uses_full_space``).
FACTOR = {False: [(2000, 50, 3, 3), (20000, 200, 5, 5), (5000, 50, 25, 3)],
          True: [(300, 8, 2, 2)]}


def timed(repeat: int, fn: Callable[..., object], *args, **kwargs) -> tuple[float, object]:
    """``(best seconds, the last result)`` of ``repeat`` calls ``fn(*args, **kwargs)``."""
    out = []
    seconds = best_seconds(lambda: out.append(fn(*args, **kwargs)), repeat, pause=PAUSE)
    return seconds, out[-1]


def gaussian_loglik(E: np.ndarray, Sigma: np.ndarray) -> float:
    """``sum_i log N(e_i; 0, Sigma)`` for the rows of the residual matrix ``E``."""
    N, K = E.shape
    L = np.linalg.cholesky(Sigma)
    Z = np.linalg.solve(L, E.T)
    logdet = 2.0 * np.sum(np.log(np.diag(L)))
    return float(-0.5 * (N * (K * np.log(2 * np.pi) + logdet) + np.sum(Z * Z)))


def sur_equations(Xs, Y):
    """linearmodels' input: ``{name: {"dependent": Series, "exog": DataFrame}}``."""
    import pandas as pd

    return {f"eq{j}": {"dependent": pd.Series(Y[:, j]),
                       "exog": pd.DataFrame(X, columns=[f"x{j}_{c}" for c in range(X.shape[1])])}
            for j, X in enumerate(Xs)}


def fit_sur(Xs, Y, **options):
    """``linearmodels.system.SUR`` on the equations ``(Y[:, j], Xs[j])``, fitted."""
    from linearmodels.system import SUR

    return SUR(sur_equations(Xs, Y)).fit(**options)


def fit_statsmodels_gls(y: np.ndarray, X: np.ndarray, sigma: np.ndarray):
    """``statsmodels`` GLS of ``y`` on ``X`` with the error covariance ``sigma``, fitted with
    the plug-in covariance at scale 1 (the model's construction whitens: it is timed)."""
    import statsmodels.api as sm

    return sm.GLS(y, X, sigma=sigma).fit(cov_type="fixed scale", cov_kwds={"scale": 1.0})


def stacked_system(Xs, Y) -> tuple[np.ndarray, np.ndarray]:
    """The SUR system as one regression of ``N K`` rows (row ``i``'s ``K`` equations
    consecutive): block-diagonal design ``(N K, P)`` and response ``(N K,)``."""
    N, K = Y.shape
    P = sum(x.shape[1] for x in Xs)
    X, col = np.zeros((N, K, P)), 0
    for j, Xj in enumerate(Xs):
        X[:, j, col:col + Xj.shape[1]] = Xj
        col += Xj.shape[1]
    return X.reshape(N * K, P), Y.reshape(-1)


def whitened_ols(Xs, Y, Sigma: np.ndarray):
    """GLS as a statsmodels user writes it by hand for a SUR system: whiten each row's
    ``K`` equations by ``L^-1`` (``Sigma = L L^T``) and fit ``sm.OLS`` on the stack, with
    the plug-in covariance at scale 1 (the whitening is timed)."""
    import statsmodels.api as sm

    whiten = np.linalg.inv(np.linalg.cholesky(Sigma))
    X = stacked_system(Xs, Y)[0]
    N, K = Y.shape
    Xw = np.einsum("kj,njp->nkp", whiten, X.reshape(N, K, -1)).reshape(N * K, -1)
    yw = (Y @ whiten.T).reshape(-1)
    return sm.OLS(yw, Xw).fit(cov_type="fixed scale", cov_kwds={"scale": 1.0})


def fit_factor_analysis(E: np.ndarray, k: int, mode: str):
    """reprogls's Sigma-step on the residuals ``E``: a ``sigma.SigmaStep``, ``(F, d, loglik,
    evaluations, eigensolver)``."""
    return factor_analysis(residual_moment(E, mode), E.shape[0], k, mode)


def residuals(Xs, Y, params) -> np.ndarray:
    """``E[:, j] = y_j - X_j beta_j`` for stacked coefficients ``params``."""
    E, at = np.empty_like(Y), 0
    for j, X in enumerate(Xs):
        E[:, j] = Y[:, j] - X @ params[at:at + X.shape[1]]
        at += X.shape[1]
    return E


def ratio(ours: float, theirs: float) -> str:
    return f"{theirs / ours:6.1f}x" if ours <= theirs else f"{ours / theirs:6.2f}x slower"


def compare_linearmodels(small: bool, repeat: int) -> None:
    print(f"linearmodels {version('linearmodels')} SUR")
    print("  full-covariance ML: SUR.fit(method='gls', iterate=True) against "
          "gls.fit(rank=K-1)")
    for N, K, p in FULL_SUR[small]:
        Xs, Y, *_ = gls.simulate_sur(N, K, p, min(2, K - 1), seed=1, shared=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IdentificationWarning)  # F of rank K-1 is not unique
            t_ours, res = timed(repeat, gls.fit, Xs, Y, rank=K - 1, cov_type="none")
        t_peer, ref = timed(repeat, fit_sur, Xs, Y, method="gls", iterate=True)
        peer_params = ref.params.to_numpy()
        rel = np.max(np.abs(res.params - peer_params) / np.maximum(np.abs(peer_params), 1e-12))
        ll_ours = gaussian_loglik(residuals(Xs, Y, res.params), res.sigma())
        ll_peer = gaussian_loglik(residuals(Xs, Y, peer_params), np.asarray(ref.sigma))
        print(f"    N={N:5d} K={K:3d} p={p}: reprogls {t_ours:8.3f} s ({res.n_iter} sweeps)"
              f"   linearmodels {t_peer:8.3f} s ({ref.iterations} iterations)   "
              f"{ratio(t_ours, t_peer)}   max rel beta diff {rel:.1e}   loglik "
              f"reprogls - linearmodels {ll_ours - ll_peer:+.2e} (of {ll_peer:.6e})")
    print("  default fits: SUR.fit() (two-step FGLS, full Sigma) against "
          "gls.fit(rank=k) (ML, low-rank Sigma; different models)")
    for N, K, p, k in DEFAULT_SUR[small]:
        Xs, Y, B, *_ = gls.simulate_sur(N, K, p, k, seed=0)
        t_ours, res = timed(repeat, gls.fit, Xs, Y, rank=k)
        t_peer, ref = timed(repeat, fit_sur, Xs, Y)
        err_ours = np.max(np.abs(res.params - B.ravel()))
        err_peer = np.max(np.abs(ref.params.to_numpy() - B.ravel()))
        print(f"    N={N:5d} K={K:3d} p={p} k={k}: reprogls {t_ours:8.3f} s (plug-in SEs)"
              f"   linearmodels {t_peer:8.3f} s   {ratio(t_ours, t_peer)}   max |beta - "
              f"truth| reprogls {err_ours:.4f}   linearmodels {err_peer:.4f}")


def compare_statsmodels(small: bool, repeat: int) -> None:
    print(f"statsmodels {version('statsmodels')} with a known Sigma: sm.GLS(y, X, "
          "sigma=kron(I_N, Sigma)), and sm.OLS on the stack whitened by hand, against "
          "gls.fit(sigma=(F, d))")
    for N, K, p, k in KNOWN_SIGMA[small]:
        Xs, Y, _, F, d = gls.simulate_sur(N, K, p, k, seed=2, shared=False)
        t_ours, res = timed(repeat, gls.fit, Xs, Y, sigma=(F, d), cov_type="plugin")
        print(f"  N={N:5d} K={K:3d} p={p}: reprogls {t_ours:8.4f} s")
        X, y = stacked_system(Xs, Y)
        peers = [("OLS, whitened by hand", whitened_ols, (Xs, Y, F @ F.T + np.diag(d)))]
        sigma_bytes = 8 * (N * K) ** 2
        if sigma_bytes <= MAX_GLS_SIGMA_BYTES:
            peers.insert(0, (f"GLS (sigma {sigma_bytes / 1e6:.0f} MB)", fit_statsmodels_gls,
                             (y, X, np.kron(np.eye(N), F @ F.T + np.diag(d)))))
        else:
            print(f"    GLS: skipped, its sigma would take {sigma_bytes / 1e9:.0f} GB")
        for label, fn, fn_args in peers:
            t_peer, ref = timed(repeat, fn, *fn_args)
            rel_b = np.max(np.abs(res.params / ref.params - 1.0))
            rel_se = np.max(np.abs(res.bse / ref.bse - 1.0))
            print(f"    {label:24s} {t_peer:8.3f} s   {ratio(t_ours, t_peer)}   max rel diff "
                  f"beta {rel_b:.1e}, bse {rel_se:.1e}")


def compare_sklearn(small: bool, repeat: int) -> None:
    from sklearn.decomposition import FactorAnalysis

    print(f"scikit-learn {version('scikit-learn')} FactorAnalysis(n_components=k).fit(E) "
          "against the Sigma-step factor_analysis(E^T E / N, N, k)")
    for N, K, k, factors in FACTOR[small]:
        rng = np.random.default_rng(3)
        F = rng.standard_normal((K, factors))
        d = 0.05 + 0.2 * rng.uniform(size=K)
        E = rng.standard_normal((N, factors)) @ F.T + rng.standard_normal((N, K)) * np.sqrt(d)
        E = np.ascontiguousarray(E - E.mean(axis=0))
        for mode in ("compensated", "plain"):
            t_ours, (_, _, ll, evaluations, _) = timed(repeat, fit_factor_analysis, E, k, mode)
            t_peer, fa = timed(repeat, FactorAnalysis(n_components=k).fit, E)
            ll_peer = fa.score(E) * N
            print(f"  N={N:6d} K={K:4d} k={k} ({factors} in the data) {mode:11s}: reprogls "
                  f"{t_ours:8.4f} s "
                  f"({evaluations} evaluations)   scikit-learn {t_peer:8.4f} s "
                  f"({fa.n_iter_} iterations)   {ratio(t_ours, t_peer)}   loglik reprogls - "
                  f"scikit-learn {ll - ll_peer:+.2e} (of {ll_peer:.6e})")


PEERS = {"linearmodels": compare_linearmodels, "statsmodels": compare_statsmodels,
         "sklearn": compare_sklearn}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=list(PEERS), choices=list(PEERS))
    parser.add_argument("--repeat", type=int, default=3,
                        help="timed calls of each library per row (best reported)")
    parser.add_argument("--small", action="store_true", help="tiny sizes (a smoke test)")
    args = parser.parse_args(argv)
    if not args.small:  # the smoke test compiles only what its fits reach
        kernels.warmup(("cpu",))
    for name in args.only:
        PEERS[name](args.small, max(1, args.repeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
