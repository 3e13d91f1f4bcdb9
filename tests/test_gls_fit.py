"""The estimator against statsmodels, linearmodels and scikit-learn; determinism."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from reprogls import gls
from reprogls.gls import IdentificationWarning
from reprogls.gls.sigma import ResidualMoment, factor_analysis, residual_moment
from reprogls.gls.simulate import simulate_sur
from tests.sur_stack import whitened_stack

ROOT = Path(__file__).resolve().parents[1]


def simulate(N=400, K=5, p=3, k=2, seed=0, shared=True):
    """alsgls-style data (see :func:`reprogls.gls.simulate.simulate_sur`)."""
    return simulate_sur(N, K, p, k, seed, shared)


def test_zellner_identical_regressors_give_ols():
    Xs, Y, *_ = simulate(K=4)
    X = Xs[0]
    res = gls.fit([X] * 4, Y, rank=1)
    ols = np.linalg.lstsq(X, Y, rcond=None)[0].T.ravel()
    np.testing.assert_allclose(res.params, ols, rtol=1e-10, atol=1e-12)


def test_fixed_sigma_matches_statsmodels_on_the_whitened_stack():
    sm = pytest.importorskip("statsmodels.api")
    Xs, Y, _, F, d = simulate(N=150, K=4, p=2, seed=3)
    res = gls.fit(Xs, Y, sigma=(F, d))
    ref = sm.OLS(*whitened_stack(Xs, Y, F, d)).fit(cov_type="fixed scale",
                                                   cov_kwds={"scale": 1.0})
    np.testing.assert_allclose(res.params, ref.params, rtol=1e-8)
    np.testing.assert_allclose(res.bse, ref.bse, rtol=1e-8)


def test_robust_covariance_matches_statsmodels_cluster_by_observation():
    """The sandwich equals statsmodels' cluster-robust covariance on the whitened stack
    with one cluster per observation (all K equations of row i), no small-sample factor.
    The data's errors are heteroskedastic, so robust and plug-in SEs differ."""
    sm = pytest.importorskip("statsmodels.api")
    Xs, Y, _, F, d = simulate(N=200, K=4, p=2, seed=8)
    Y = Y * (1.0 + np.abs(Xs[0][:, :1]))  # error variance grows with a regressor
    res = gls.fit(Xs, Y, sigma=(F, d), cov_type="robust")
    N, K = Y.shape
    ref = sm.OLS(*whitened_stack(Xs, Y, F, d)).fit(
        cov_type="cluster", cov_kwds={"groups": np.repeat(np.arange(N), K),
                                      "use_correction": False, "df_correction": False})
    np.testing.assert_allclose(res.params, ref.params, rtol=1e-8)
    np.testing.assert_allclose(res.cov_params(), ref.cov_params(), rtol=1e-8, atol=1e-14)
    plugin = gls.fit(Xs, Y, sigma=(F, d))
    assert np.max(np.abs(res.bse / plugin.bse - 1.0)) > 0.05
    cov = res.cov_params()
    assert np.array_equal(cov.view(np.uint64), cov.T.view(np.uint64))
    assert "robust" in res.summary()


def test_full_rank_matches_linearmodels_iterated_sur():
    lm = pytest.importorskip("linearmodels.system")
    pd = pytest.importorskip("pandas")
    Xs, Y, *_ = simulate(N=300, K=4, p=2, k=2, seed=5, shared=False)
    with pytest.warns(IdentificationWarning, match="Ledermann"):  # k = K - 1 = 3, K = 4
        res = gls.fit(Xs, Y, rank=3, tol=1e-12, max_iter=2000)
    eqs = {f"eq{j}": {"dependent": pd.Series(Y[:, j]),
                      "exog": pd.DataFrame(Xs[j], columns=[f"x{j}_{c}" for c in range(2)])}
           for j in range(4)}
    ref = lm.SUR(eqs).fit(method="gls", iterate=True, iter_limit=2000, tol=1e-12)
    np.testing.assert_allclose(res.params, ref.params.to_numpy(), rtol=1e-5)


def test_sigma_step_reaches_at_least_sklearn_likelihood():
    skl = pytest.importorskip("sklearn.decomposition")
    rng = np.random.default_rng(7)
    N, K, k = 1000, 12, 3
    F = rng.standard_normal((K, k))
    E = rng.standard_normal((N, k)) @ F.T + rng.standard_normal((N, K)) * 0.4
    E -= E.mean(axis=0)
    _, _, ll, _, _ = factor_analysis(residual_moment(E, "compensated"), N, k, "compensated")
    fa = skl.FactorAnalysis(n_components=k).fit(E)
    sk_ll = fa.score(E) * N
    assert ll >= sk_ll - 1e-8 * abs(sk_ll)


def heywood_residuals(N=600, K=6, k=2, seed=3):
    """Residuals with a factor structure in which equation 4 is almost exactly a
    combination of the factors: the ML uniqueness of equation 4 heads for zero."""
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((K, k))
    U = rng.standard_normal((N, k))
    E = U @ F.T + rng.standard_normal((N, K)) * 0.5
    E[:, 4] = U @ F[4] + 0.01 * rng.standard_normal(N)
    return E - E.mean(axis=0)


def test_sigma_step_in_a_heywood_case_beats_thousands_of_closed_form_steps():
    """The quasi-Newton Sigma-step reaches a higher likelihood in a few dozen evaluations
    than scikit-learn's closed-form iteration in 5000 steps (which crawls towards the
    boundary), and stops at a stationary point: the gradient in log d vanishes on the
    free coordinates."""
    import warnings

    skl = pytest.importorskip("sklearn.decomposition")
    from reprogls.gls.sigma import MomentMatrix, profile

    E = heywood_residuals()
    N, k = E.shape[0], 2
    S = residual_moment(E, "compensated")
    _, d, ll, evaluations, _ = factor_analysis(S, N, k, "compensated")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's ConvergenceWarning
        fa = skl.FactorAnalysis(n_components=k, tol=1e-12, max_iter=5000).fit(E)
    assert fa.n_iter_ == 5000 and evaluations < 100
    assert ll > fa.score(E) * N
    assert d[4] / S[4, 4] < 1e-6  # the Heywood uniqueness, far below sklearn's
    # K = 6 <= 16 k: the fit solved the whole eigenproblem in each evaluation (the
    # subspace iteration's profile at this d differs by ~1e-9 relative: its eigenvalues
    # carry errors of eps * lambda_max, lambda_max ~ 1e7 here)
    at = profile(MomentMatrix(S, "compensated"), N, "compensated", d, None, k)
    assert np.max(np.abs(at.grad)) < 1e-4  # stationary (the start: ~0.5)
    np.testing.assert_allclose(at.ll, ll, rtol=1e-12)


def test_sigma_step_takes_as_many_evaluations_at_any_units():
    """The factor analysis' stopping rule is relative to ``max(|ll|, 1e-3 N K)``: at
    the units where ``ll`` crosses 0 (and within 1e-4 N K of it) the rule relative to
    ``|ll|`` alone took up to 214 evaluations instead of 14."""
    Xs, Y, *_ = simulate(N=2000, K=20, p=4, k=2, seed=1)
    S = residual_moment(np.ascontiguousarray(gls.fit(Xs, Y, rank=2).resid), "compensated")
    N, K = 2000, 20
    _, d, ll, evaluations, _ = factor_analysis(S, N, 2, "compensated")
    zero = np.exp(ll / (N * K))  # the units at which ll is 0
    for unit in (zero, zero * (1 + 1e-6), zero * (1 + 1e-4)):
        _, d_u, ll_u, evaluations_u, _ = factor_analysis(S * unit**2, N, 2, "compensated")
        assert abs(ll_u) < 5e-4 * N * K and abs(evaluations_u - evaluations) <= 3
        np.testing.assert_allclose(d_u / unit**2, d, rtol=1e-3)


def test_sigma_step_keeps_the_uniqueness_bound():
    E = heywood_residuals()
    S = residual_moment(E, "compensated")
    _, d, ll, _, _ = factor_analysis(S, E.shape[0], 2, "compensated", min_uniqueness=0.005)
    ratio = d / np.diag(S)
    assert np.all(ratio >= 0.005 * (1 - 1e-14)) and abs(ratio[4] - 0.005) < 1e-15
    _, _, ll_free, _, _ = factor_analysis(S, E.shape[0], 2, "compensated")
    assert ll < ll_free  # the bound binds
    for bad in (-0.1, 1.0, np.nan):
        with pytest.raises(ValueError, match="min_uniqueness must be in"):
            gls.fit(*simulate(N=50, K=3, p=1, k=1)[:2], rank=1, min_uniqueness=bad)


def test_fit_is_equivariant_to_each_equations_units():
    """``y_j -> c_j y_j`` gives ``beta_j -> c_j beta_j``, ``d_j -> c_j^2 d_j`` and
    ``llf -> llf - N sum(log c_j)``, up to the fit's tolerances, for units from 2^-24 to
    2^30 (powers of two: the data are scaled exactly). The bounds of ``d`` used to hold
    an absolute floor of 1e-12, which moved beta by 17% and ``d`` by a factor 2700 here.
    The number of sweeps does not depend on the units either."""
    Xs, Y, *_ = simulate(N=500, K=6, p=3, k=2, seed=1)
    units = 2.0 ** np.array([-24, -20, 0, 3, 20, 30])
    base = gls.fit(Xs, Y, rank=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (no ExactFitWarning, no ConvergenceWarning)
        scaled = gls.fit(Xs, Y * units, rank=2)
    per_coefficient = np.repeat(units, np.diff(base.offsets))
    np.testing.assert_allclose(scaled.params / per_coefficient, base.params, rtol=1e-5)
    np.testing.assert_allclose(scaled.bse / per_coefficient, base.bse, rtol=1e-4)
    np.testing.assert_allclose(scaled.d / units**2, base.d, rtol=1e-3)
    np.testing.assert_allclose(scaled.llf, base.llf - 500 * np.sum(np.log(units)),
                               rtol=1e-9)
    # the units at which llf crosses 0: the stopping rule is relative to max(|nll|, N K)
    # (relative to |nll| alone, this fit took 19 sweeps instead of 3)
    Xs, Y, *_ = simulate(N=2000, K=20, p=4, k=2, seed=1)
    base = gls.fit(Xs, Y, rank=2)
    at_zero = gls.fit(Xs, Y * np.exp(base.llf / Y.size), rank=2)
    assert abs(at_zero.llf) < 1e-3 and at_zero.n_iter == base.n_iter == 3


def test_an_exactly_fitted_equation_warns_and_keeps_its_variance_at_the_floor():
    """``y_j`` among its own regressors: the likelihood is unbounded in ``d_j``. The fit
    holds ``d_j`` at ``1e-12 mean(y_j^2)``, converges in a few sweeps (it would
    otherwise chase the shrinking rounding residuals sweep after sweep) and says which
    equation with an ``ExactFitWarning``. A ``y_j`` of zeros is fitted exactly too."""
    Xs, Y, *_ = simulate(N=300, K=3, p=2, k=1, seed=0)
    Xs = list(Xs)
    Xs[1] = np.column_stack([Xs[1], 1e-3 * Y[:, 1]])  # y_1 = 1000 x_{1,2}
    with pytest.warns(gls.ExactFitWarning, match=r"1 equation\(s\) \('y1'\)"):
        res = gls.fit(Xs, Y, rank=1)
    assert res.converged and res.n_iter <= 10
    assert res.d[1] == pytest.approx(1e-12 * np.mean(Y[:, 1] ** 2), rel=1e-12)
    assert res.params[res.offsets[1] + 2] == pytest.approx(1e3, rel=1e-9)
    assert np.all(res.d[[0, 2]] > 0.01 * np.var(Y[:, [0, 2]], axis=0))
    with pytest.warns(gls.ExactFitWarning, match=r"2 equation\(s\) \('y0', 'y1'\)"):
        zero = gls.fit(Xs, np.column_stack([np.zeros(300), Y[:, 1:]]), rank=1)
    assert zero.d[0] == pytest.approx(1e-12 * np.max(np.mean(Y[:, 1:] ** 2, axis=0)), rel=1e-12)


def test_sigma_step_without_curvature_pairs_takes_the_closed_form_update():
    """The quasi-Newton direction with no pairs is scikit-learn's closed-form update
    ``d <- max(diag(S - F F^T), lower)``, written in ``log d``."""
    from reprogls.gls.sigma import MomentMatrix, _direction, _update_scale, profile

    E = heywood_residuals()
    N, K = E.shape
    S = MomentMatrix(residual_moment(E, "compensated"), "compensated")
    d = np.diag(S.S) * np.linspace(0.2, 0.9, K)
    lower = 1e-8 * np.diag(S.S)
    at = profile(S, N, "compensated", d, np.eye(K, 2))
    p = _direction(at.grad, _update_scale(at, lower), np.ones(K, dtype=bool), [],
                   "compensated")
    np.testing.assert_allclose(d * np.exp(p), np.maximum(at.update, lower), rtol=1e-13)


def test_profile_gradient_matches_finite_differences():
    from reprogls.gls.sigma import MomentMatrix, profile

    E = heywood_residuals()
    N, K = E.shape
    S = MomentMatrix(residual_moment(E, "compensated"), "compensated")
    d = np.diag(S.S) * np.linspace(0.3, 0.7, K)
    at = profile(S, N, "compensated", d, np.eye(K, 2))
    h = 1e-6
    for j in range(K):
        up, down = d.copy(), d.copy()
        up[j] *= np.exp(h)
        down[j] *= np.exp(-h)
        slope = (profile(S, N, "compensated", down, at.Q).ll
                 - profile(S, N, "compensated", up, at.Q).ll) / (2 * h * N)
        assert abs(slope - at.grad[j]) < 1e-7


@pytest.mark.parametrize("mode", ["compensated", "plain"])
def test_sigma_step_from_residuals_matches_the_moment_matrix(mode):
    """Working from E (large K) reaches the same optimum as forming S = E^T E / N; the
    diagonal of S is even bitwise the same (same CRO-1 terms)."""
    rng = np.random.default_rng(8)
    N, K, k = 2000, 30, 3
    F = rng.standard_normal((K, k))
    E = rng.standard_normal((N, k)) @ F.T + rng.standard_normal((N, K)) * 0.5
    S = residual_moment(E, mode)
    moment = ResidualMoment(E, mode)
    assert np.array_equal(moment.diagonal().view(np.uint64), np.diag(S).copy().view(np.uint64))
    Fa, da, lla, _, _ = factor_analysis(S, N, k, mode)
    Fb, db, llb, _, _ = factor_analysis(moment, N, k, mode)
    assert abs(lla - llb) <= 1e-10 * abs(lla)
    np.testing.assert_allclose(Fb @ Fb.T + np.diag(db), Fa @ Fa.T + np.diag(da), atol=1e-8)


def test_fit_with_either_sigma_step_agrees_and_repeats_bitwise():
    Xs, Y, *_ = simulate(N=800, K=8, p=2, k=2, seed=12)
    a = gls.fit(Xs, Y, rank=2, sigma_step="moment")
    b = gls.fit(Xs, Y, rank=2, sigma_step="residuals")
    assert a.converged and b.converged
    assert abs(a.llf - b.llf) <= 1e-9 * abs(a.llf)
    np.testing.assert_allclose(b.params, a.params, rtol=1e-6, atol=1e-9)
    assert gls.fit(Xs, Y, rank=2, sigma_step="residuals").fingerprint == b.fingerprint


def test_auto_sigma_step_forms_s_after_a_sweep_whose_products_would_have_paid_for_it(
        monkeypatch):
    """``K > 100 k``: the "auto" Sigma-step starts from the residuals and forms S from the
    sweep after one that multiplied more vectors than S costs (``fit.moment_pays``:
    break-even 455 vectors at N = 5000, K = 2000; 32 at N = 600, K = 150). One factor in
    the data at rank 1 needs few products (27, 18, 6: the residuals stay); two factors
    at rank 1 needed 101 in the first sweep, then S. The turn is a function of the
    counts, so it repeats bit for bit, and the fit reaches the moment path's optimum."""
    fit_module = sys.modules["reprogls.gls.fit"]
    assert fit_module.moment_pays(455, 5000, 2000)
    assert not fit_module.moment_pays(454, 5000, 2000)
    assert fit_module.moment_pays(32, 600, 150) and not fit_module.moment_pays(31, 600, 150)
    real = fit_module.factor_analysis
    seen = []

    def recorded(S, *args, **kwargs):
        out = real(S, *args, **kwargs)
        seen.append((type(S).__name__, getattr(S, "vectors", None)))
        return out

    monkeypatch.setattr(fit_module, "factor_analysis", recorded)
    Xs, Y, *_ = simulate_sur(600, 150, 2, 1, seed=3, shared=True)
    gls.fit(Xs, Y, rank=1, cov_type="none")
    assert len(seen) > 1 and all(name == "ResidualMoment" and vectors < 32
                                 for name, vectors in seen)
    Xs, Y, *_ = simulate_sur(600, 150, 2, 2, seed=3, shared=True)
    seen.clear()
    turned = gls.fit(Xs, Y, rank=1, cov_type="none")
    assert seen[0][0] == "ResidualMoment" and seen[0][1] >= 32
    assert len(seen) > 1 and all(name == "MomentMatrix" for name, _ in seen[1:])
    assert gls.fit(Xs, Y, rank=1, cov_type="none").fingerprint == turned.fingerprint
    moment = gls.fit(Xs, Y, rank=1, cov_type="none", sigma_step="moment")
    assert abs(turned.llf - moment.llf) <= 1e-9 * abs(moment.llf)
    seen.clear()
    gls.fit(Xs, Y, rank=1, cov_type="none", sigma_step="residuals")  # asked for: kept
    assert len(seen) > 1 and all(name == "ResidualMoment" for name, _ in seen)


@pytest.mark.parametrize("solver,max_iter,fixed", [("cg", 200, False), ("cg", 1, False),
                                                   ("gram", 200, False), ("gram", 1, True)])
def test_fitted_values_are_x_beta_and_resid_is_y_minus_them(solver, max_iter, fixed):
    """The fit keeps the fitted values of its last residuals (no extra pass): they must be
    ``sur_matvec(X, params)`` bit for bit -- also when the last sweep's solve was finished
    after the loop (``max_iter=1`` on the CG path) and with Sigma fixed -- and ``resid``
    must be ``Y - fittedvalues`` bit for bit."""
    from reprogls.gls.data import prepare
    from reprogls.kernels import sur_matvec

    Xs, Y, _, F, d = simulate(N=700, K=5, p=3, k=2, seed=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = gls.fit(Xs, Y, rank=2, beta_solver=solver, max_iter=max_iter, cov_type="none",
                      sigma=(F, d) if fixed else None)
    data = prepare(Xs, Y)
    U = sur_matvec(data.X, data.offsets, res.params, "compensated", "cpu")
    assert (res.fittedvalues.view(np.uint64) == U.view(np.uint64)).all()
    assert (res.resid.view(np.uint64) == (Y - U).view(np.uint64)).all()


@pytest.mark.parametrize("solver,ridge,fixed", [("gram", 0.0, False), ("gram", 0.3, False),
                                                ("gram", 0.0, True), ("cg", 0.0, False)])
def test_plugin_covariance_is_the_inverse_normal_matrix_at_the_final_sigma(solver, ridge,
                                                                           fixed):
    """The gram solver hands its last Cholesky factor of ``A`` to the plug-in covariance
    (the same ``A``: the final Sigma, ``X^T X`` and ridge); the result must be bit for bit
    the covariance formed from scratch at the fit's ``(F, d)``."""
    from reprogls.gls._dense import gram
    from reprogls.gls.covariance import inverse_normal_matrix
    from reprogls.gls.data import prepare
    from reprogls.kernels import woodbury_factor

    Xs, Y, _, F, d = simulate(N=600, K=5, p=3, k=2, seed=8)
    res = gls.fit(Xs, Y, rank=2, beta_solver=solver, ridge=ridge,
                  sigma=(F, d) if fixed else None)
    data = prepare(Xs, Y)
    fresh = inverse_normal_matrix(gram(data.X, "compensated"), data.offsets,
                                  woodbury_factor(res.F, res.d, "compensated"), ridge)
    assert (res.cov_params().view(np.uint64) == fresh.view(np.uint64)).all()


@pytest.mark.parametrize("slab_chunks", [1, 3, 64])
@pytest.mark.parametrize("mode", ["compensated", "plain"])
def test_quadratic_form_by_slabs_has_the_bits_of_the_whole_dot(monkeypatch, slab_chunks,
                                                                mode):
    """The log-likelihood's ``dot(E, E Sigma^-1)`` formed a slab of CRO-1 chunks at a time
    equals the dot over the whole matrices bit for bit (K = 7 does not divide a chunk, so
    slabs start and end inside rows; 17.1 chunks, the last one partial)."""
    import importlib

    from reprogls.kernels import dot, woodbury_factor, woodbury_solve

    fit_module = importlib.import_module("reprogls.gls.fit")
    rng = np.random.default_rng(8)
    E = rng.standard_normal((20_000, 7)) * np.exp(rng.uniform(-20, 20, (20_000, 1)))
    F, d = rng.standard_normal((7, 3)), 0.1 + rng.uniform(size=7)
    factor = woodbury_factor(F, d, mode)
    whole = dot(E.ravel(), woodbury_solve(factor, E, "cpu").ravel(), mode, "cpu")
    monkeypatch.setattr(fit_module, "QUAD_SLAB_CHUNKS", slab_chunks)
    got = fit_module.quadratic_form(E, factor, "cpu")
    assert np.float64(got).view(np.uint64) == np.float64(whole).view(np.uint64)


def test_r_squared_is_statsmodels_centred_with_an_intercept_and_uncentred_without():
    """With a diagonal Sigma fixed (GLS = OLS per equation), each equation's R^2 is
    statsmodels' OLS rsquared: centred where the design has a nonzero constant column
    (ones or 2.0, given or added), uncentred where it has none -- the centred form
    there can be negative and was what every equation got."""
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(0)
    N = 400
    Xs = [rng.standard_normal((N, 2)) + 3.0,
          np.column_stack([np.full(N, 2.0), rng.standard_normal(N)]),
          rng.standard_normal((N, 3))]
    Y = np.column_stack([X @ rng.standard_normal(X.shape[1]) + 5.0 + rng.standard_normal(N)
                         for X in Xs])
    diagonal = (np.zeros((3, 0)), np.ones(3))
    res = gls.fit(Xs, Y, sigma=diagonal)
    assert res.has_constant == (False, True, False)
    assert [res.equation(j)["rsquared_centred"] for j in range(3)] == [False, True, False]
    text = res.summary()
    assert "y0   R-squared (uncentred):" in text and "y1   R-squared: " in text
    assert "$R^2_u = " in text.as_latex() and "(R-squared (uncentred) " in text.as_html()
    for j, X in enumerate(Xs):
        np.testing.assert_allclose(res.equation(j)["rsquared"],
                                   sm.OLS(Y[:, j], X).fit().rsquared, rtol=1e-12)
    added = gls.fit(Xs, Y, sigma=diagonal, add_constant=True)
    assert added.added_constant == (True, False, True) and all(added.has_constant)
    for j, X in enumerate(Xs):
        np.testing.assert_allclose(added.equation(j)["rsquared"],
                                   sm.OLS(Y[:, j], sm.add_constant(X)).fit().rsquared,
                                   rtol=1e-12)


def test_information_criteria_count_sigma_only_where_it_was_estimated():
    """aic / bic count P coefficients plus Sigma's K + K k - k (k - 1) / 2 parameters when
    the fit estimated Sigma, the coefficients alone when the caller fixed it (they
    counted Sigma's parameters either way)."""
    Xs, Y, _, F, d = simulate(N=300, K=6, p=3, k=2, seed=3)
    estimated = gls.fit(Xs, Y, rank=2)
    fixed = gls.fit(Xs, Y, sigma=(F, d))
    assert estimated.df_model == 18 + 6 + 12 - 1 and fixed.df_model == 18
    assert fixed.aic == -2.0 * fixed.llf + 2.0 * 18
    assert fixed.bic == pytest.approx(-2.0 * fixed.llf + np.log(300) * 18, rel=1e-15)


def test_result_api_and_fingerprint():
    Xs, Y, *_ = simulate(N=600, K=6, p=2, k=2, seed=1)
    res = gls.fit({f"e{j}": (Y[:, j], Xs[j]) for j in range(6)}, rank=2, add_constant=True)
    assert res.converged and res.params.shape == (18,)
    assert res.conf_int().shape == (18, 2) and np.all(res.bse > 0)
    assert res.cov_params().shape == (18, 18)
    assert res.resid.shape == (600, 6) and np.allclose(res.resid + res.fittedvalues, Y)
    assert res.aic < res.bic and res.sigma().shape == (6, 6)
    assert "e3" in res.summary() and "const" in res.summary()
    assert res.equation("e0")["rsquared"] > 0.5
    assert len(res.fingerprint) == 64
    again = gls.fit({f"e{j}": (Y[:, j], Xs[j]) for j in range(6)}, rank=2, add_constant=True)
    assert again.fingerprint == res.fingerprint


def test_summary_renders_text_html_and_latex_from_the_same_numbers():
    Xs, Y, *_ = simulate(N=300, K=3, p=2, k=1, seed=6)
    names = {"y_a": 0, "b&c<d>": 1, "plain": 2}
    res = gls.fit({n: (Y[:, j], Xs[j]) for n, j in names.items()}, rank=1, add_constant=True)
    summary = res.summary()
    assert isinstance(summary, str) and summary.as_text() == str(summary)
    coef = f"{res.params[4]:.4f}"
    assert coef in summary and coef in summary.as_html() and coef in summary.as_latex()
    html_text = summary.as_html()
    assert "b&amp;c&lt;d&gt;" in html_text and "b&c<d>" not in html_text
    assert html_text.count("<table") == 4 and html_text.count("</table>") == 4
    latex = summary.as_latex()
    assert r"y\_a" in latex and r"b\&c\textless{}d\textgreater{}" in latex
    assert latex.count(r"\begin{tabular}") == latex.count(r"\end{tabular}") == 4
    header = summary.splitlines()[2:8]
    assert all(len(line) <= 78 for line in header) and "AIC: " in summary


def test_summary_text_keeps_every_cell_apart_and_every_name_whole():
    """A number too wide for its column (a z of 1.7e7, as an exactly fitted equation
    gives) switches to scientific notation instead of running into its neighbour, and
    a long regressor name widens the name column instead of being cut."""
    from reprogls.gls.summary import EquationTable, Summary

    long_name = "log_household_income_per_capita"
    rows = [("x2", 1.0, 5.94e-8, 16830876.411, 0.0, 1.0, 1.0),
            (long_name, -123456789.5, 1e-300, -float("inf"), float("nan"), -1e300, 1e300)]
    text = Summary([("Equations", "1")], [EquationTable("y1", 1.0, rows)])
    table = text.split("Equation: y1")[1].splitlines()[2:4]
    fields = [line.split() for line in table]
    assert [f[0] for f in fields] == ["x2", long_name] and all(len(f) == 7 for f in fields)
    assert [float(v) for v in fields[0][1:]] == pytest.approx(
        [1.0, 0.0, 1.68e7, 0.0, 1.0, 1.0], rel=1e-3)
    assert fields[1][1:] == ["-1.2346e+08", "0.0000", "-inf", "nan", "-1.0e+300",
                             "1.00e+300"]
    assert len({len(line) for line in table}) == 1
    for markup in (text.as_html(), text.as_latex()):  # (1e300 was 300 digits there)
        assert "1.0000e+300" in markup and "-1.2346e+08" in markup and "0000000" not in markup
        assert long_name.replace("_", r"\_") in markup or long_name in markup


def test_to_frame_holds_the_summary_numbers_unrounded_by_equation_and_regressor():
    pytest.importorskip("pandas")
    Xs, Y, *_ = simulate(N=300, K=3, p=2, k=1, seed=6)
    names = ["first", "second", "third"]
    res = gls.fit({n: (Y[:, j], Xs[j]) for j, n in enumerate(names)}, rank=1,
                  add_constant=True)
    frame = res.to_frame(alpha=0.1)
    assert list(frame.columns) == ["coef", "std err", "z", "P>|z|", "[0.05", "0.95]"]
    assert frame.index.names == ["equation", "regressor"]
    assert list(frame.index) == [(n, r) for n, regs in zip(names, res.regressor_names,
                                                           strict=True) for r in regs]
    assert frame.loc[("second", "const"), "coef"] == res.params[3]
    expected = np.column_stack([res.params, res.bse, res.tvalues, res.pvalues,
                                res.conf_int(0.1)])
    got = np.ascontiguousarray(frame.to_numpy(dtype=np.float64))
    assert np.array_equal(got.view(np.uint64), expected.view(np.uint64))
    # the summary's table shows the same numbers (its default alpha 0.05)
    row = res.to_frame().loc[("third", "x1")]
    line = next(ln for ln in res.summary().split("Equation: third")[1].splitlines()
                if ln.startswith("x1 "))
    assert line.split()[1:] == [f"{row['coef']:.4f}", f"{row['std err']:.4f}",
                                f"{row['z']:.3f}", f"{row['P>|z|']:.3f}",
                                f"{row['[0.025']:.3f}", f"{row['0.975]']:.3f}"]
    none = gls.fit(Xs, Y, rank=1, cov_type="none").to_frame()
    assert none["coef"].notna().all() and none.drop(columns="coef").isna().all().all()
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\)"):
        res.to_frame(alpha=1.5)
    with pytest.raises(TypeError, match="alpha must be a real number"):
        res.conf_int(alpha="0.05")


def test_to_frame_names_pandas_when_it_is_missing(monkeypatch):
    import sys

    Xs, Y, *_ = simulate(N=60, K=3, p=1, k=1, seed=1)
    res = gls.fit(Xs, Y, rank=1)
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas -> ImportError
    with pytest.raises(ImportError, match="pip install pandas"):
        res.to_frame()


@pytest.mark.parametrize("solver", ["gram", "cg"])
def test_both_beta_solvers_agree(solver):
    """The two solvers reach the same optimum by different paths (the CG's early sweeps
    stop early, and its preconditioner couples the equations here). The likelihood is
    flat to second order there: at ``tol=1e-8`` the stopping points differ by ~1e-7
    relative in beta, at ``tol=1e-12`` by ~2e-8, so the fits run to 1e-12."""
    Xs, Y, *_ = simulate(N=500, K=5, p=3, k=2, seed=2)
    res = gls.fit(Xs, Y, rank=2, beta_solver=solver, cg_tol=1e-13, tol=1e-12)
    ref = gls.fit(Xs, Y, rank=2, beta_solver="gram", tol=1e-12)
    np.testing.assert_allclose(res.params, ref.params, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("max_iter", [200, 1])
def test_cg_fit_returns_beta_solved_to_cg_tol_at_the_final_sigma(max_iter):
    """Inside the loop each sweep's CG stops once its residual fell by
    ``CG_SWEEP_REDUCTION``; the last sweep's solve is finished to ``cg_tol``, converged
    or not. On this problem the last sweep stops early (its true relative residual
    would be ~2e-10 at convergence), so the bound holds only because the fit finishes
    that solve."""
    from reprogls.gls import beta as beta_step
    from reprogls.gls.data import prepare
    from reprogls.kernels import dot, sur_normal_matvec, woodbury_factor

    Xs, Y, *_ = simulate(N=2000, K=50, p=5, k=3, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if max_iter == 1 else "error")
        res = gls.fit(Xs, Y, rank=3, beta_solver="cg", cov_type="none", cg_tol=1e-10,
                      max_iter=max_iter)
    assert res.converged == (max_iter > 1)
    data = prepare(Xs, Y)
    factor = woodbury_factor(res.F, res.d, "compensated")
    b = beta_step.rhs(data.X, data.offsets, data.Y, factor, "cpu")
    r = b - sur_normal_matvec(data.X, data.offsets, factor, res.params, "cpu")
    rel = np.sqrt(dot(r, r, "compensated", "cpu") / dot(b, b, "compensated", "cpu"))
    assert rel <= 1e-10


def test_cg_reduction_stops_early_and_says_so():
    from reprogls.gls import beta as beta_step
    from reprogls.gls.data import prepare
    from reprogls.gls.ols import block_grams, factor_blocks
    from reprogls.kernels import woodbury_factor

    Xs, Y, _, F, d = simulate(N=600, K=6, p=3, k=2, seed=3)
    data = prepare(Xs, Y)
    factor = woodbury_factor(F, d, "compensated")
    blocks = factor_blocks(block_grams(data, "compensated", "cpu"), 0.0, data, "compensated")
    sinv_diag = np.diag(beta_step.sigma_inverse(factor)).copy()
    b = beta_step.rhs(data.X, data.offsets, data.Y, factor, "cpu")
    args = (data.X, data.offsets, factor, b, np.zeros(data.X.shape[1]), blocks, sinv_diag,
            0.0, 1e-12, 200, "cpu")
    full, full_iters, full_finished, full_reached, full_residual = beta_step.solve_cg(*args)
    _, early_iters, early_finished, early_reached, _ = beta_step.solve_cg(*args,
                                                                          reduction=1e-3)
    assert full_finished and not early_finished and 0 < early_iters < full_iters
    assert full_reached and full_residual <= 1e-12 and not early_reached
    # running out of steps is not an early stop: the fit would not repeat the solve, but
    # it did not reach the tolerance either
    capped = beta_step.solve_cg(*args[:-2], 1, "cpu", reduction=1e-3)
    assert capped.iters == 1 and capped.finished and not capped.reached_tol
    assert capped.residual > 1e-12
    again = beta_step.solve_cg(*args, reduction=0.0)
    assert again[1] == full_iters and (again[0].view(np.uint64) == full.view(np.uint64)).all()


@pytest.mark.parametrize("ridge", [0.0, 0.7])
def test_cg_residual_from_the_fit_residuals(ridge):
    """``rhs_and_residual``: ``b`` has the bits of ``rhs``; ``r0 = X^T vec(E Sigma^-1) -
    ridge beta0`` agrees with ``b - A beta0`` (to rounding: they cancel differently), and
    a CG handed that ``r0`` takes it instead of computing its own."""
    from reprogls.gls import beta as beta_step
    from reprogls.gls.data import prepare
    from reprogls.gls.fit import residuals
    from reprogls.gls.ols import block_grams, factor_blocks
    from reprogls.kernels import sur_normal_matvec, woodbury_factor

    Xs, Y, _, F, d = simulate(N=900, K=6, p=3, k=2, seed=5)
    data = prepare(Xs, Y)
    factor = woodbury_factor(F, d, "compensated")
    beta0 = np.random.default_rng(1).standard_normal(data.X.shape[1])
    E = residuals(data.X, data.offsets, data.Y, beta0, "compensated", "cpu")
    b, r0 = beta_step.rhs_and_residual(data.X, data.offsets, data.Y, E, factor, beta0, ridge,
                                       "cpu")
    b_alone = beta_step.rhs(data.X, data.offsets, data.Y, factor, "cpu")
    assert (b.view(np.uint64) == b_alone.view(np.uint64)).all()
    direct = b - (sur_normal_matvec(data.X, data.offsets, factor, beta0, "cpu")
                  + ridge * beta0)
    np.testing.assert_allclose(r0, direct, rtol=0, atol=1e-10 * np.abs(b).max())
    assert not np.array_equal(r0, direct)  # a different rounding, not the same computation
    blocks = factor_blocks(block_grams(data, "compensated", "cpu"), ridge, data,
                           "compensated")
    sinv_diag = np.diag(beta_step.sigma_inverse(factor)).copy()
    args = (data.X, data.offsets, factor, b, beta0, blocks, sinv_diag, ridge, 1e-12, 200,
            "cpu")
    own = beta_step.solve_cg(*args)
    given = beta_step.solve_cg(*args, r0=direct)
    assert (own[0].view(np.uint64) == given[0].view(np.uint64)).all()
    from_residuals = beta_step.solve_cg(*args, r0=r0)
    np.testing.assert_allclose(from_residuals[0], own[0], rtol=1e-9)


def test_cov_type_none_skips_the_covariance_without_a_dense_nan_matrix():
    Xs, Y, *_ = simulate(N=300, K=4, seed=9)
    res = gls.fit(Xs, Y, rank=1, cov_type="none")
    assert res.cov is None and np.isnan(res.bse).all() and res.bse.shape == (12,)
    with pytest.raises(ValueError, match="cov_type='plugin'"):
        res.cov_params()
    assert "none" in res.summary()
    np.testing.assert_array_equal(res.params, gls.fit(Xs, Y, rank=1).params)


def test_fits_in_concurrent_threads_have_the_bits_of_sequential_ones():
    """Fits run from several Python threads at once (a thread pool over data sets)
    share the kernels' task threads, the reused scratch buffers and the compiled
    kernels; each gives the fingerprint it gives alone."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(simulate(1500, 12, 3, 2, seed, True)[:2], options) for seed in range(3)
            for options in (dict(rank=2, beta_solver="cg"),
                            dict(rank=2, beta_solver="gram", cov_type="robust"))]

    def run(job):
        (Xs, Y), options = job
        return gls.fit(Xs, Y, **options).fingerprint

    alone = [run(job) for job in jobs]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(run, jobs * 2)) == alone * 2


def test_non_convergence_warns_not_raises():
    Xs, Y, *_ = simulate(N=300, K=5, seed=4)
    with pytest.warns(gls.ConvergenceWarning):
        res = gls.fit(Xs, Y, rank=2, max_iter=1, tol=1e-15)
    assert not res.converged
    assert len(res.llf_history) == 1


def test_a_cg_breakdown_is_an_error_not_nan():
    """A step of zero or negative curvature (a singular or indefinite operator) stops the
    CG with an error naming the ways out, not a ZeroDivisionError or NaN coefficients."""
    from reprogls.gls import beta as beta_step

    b = np.arange(1.0, 6.0)
    for operator, curvature in ((lambda v: 0.0 * v, "= 0"), (lambda v: -v, "= -")):
        with pytest.raises(ValueError, match=f"broke down \\(the curvature p\\^T A p "
                                             f"{curvature}.*beta_solver='gram'"):
            beta_step.conjugate_gradients(operator, lambda r: r.copy(), b, np.zeros(5),
                                          "compensated", 1e-10, 50)


@pytest.mark.parametrize("fixed", [False, True])
def test_a_last_cg_short_of_cg_tol_warns(fixed):
    """A CG beta-step that runs out of cg_max_iter before cg_tol (ill-conditioned A, or a
    small cg_max_iter) gives a ConvergenceWarning with its residual, as the penalised
    step does; it used to return that beta as if solved. Solved to cg_tol: no warning."""
    Xs, Y, _, F, d = simulate(N=400, K=6, p=3, seed=12)
    sigma = (F, d) if fixed else None
    with warnings.catch_warnings():
        warnings.simplefilter("error", gls.ConvergenceWarning)
        full = gls.fit(Xs, Y, rank=2, sigma=sigma, beta_solver="cg", cov_type="none")
    with pytest.warns(gls.ConvergenceWarning, match=r"cg_max_iter=1 iterations at a "
                                                    r"residual .* relative to \|\|b\|\|"):
        short = gls.fit(Xs, Y, rank=2, sigma=sigma, beta_solver="cg", cov_type="none",
                        cg_max_iter=1)
    assert not np.array_equal(short.params, full.params)


@pytest.mark.parametrize("solver", ["gram", "cg"])
def test_llf_history_is_the_convergence_path(solver):
    """One log-likelihood per sweep; the alternating maximisation raises it every sweep;
    the last entry is llf itself (with the last CG finished, the same to ~1e-9)."""
    Xs, Y, _, F, d = simulate(N=700, K=6, seed=11)
    res = gls.fit(Xs, Y, rank=2, beta_solver=solver, tol=1e-12)
    path = np.array(res.llf_history)
    assert res.converged and path.size == res.n_iter >= 3
    assert (np.diff(path) > 0).all(), path
    if solver == "gram":
        assert path[-1] == res.llf
    else:
        assert abs(path[-1] - res.llf) <= 1e-9 * abs(res.llf)
    fixed = gls.fit(Xs, Y, sigma=(F, d))
    assert fixed.llf_history == (fixed.llf,) and fixed.n_iter == 1


def test_bad_arguments():
    Xs, Y, *_ = simulate(N=100, K=3)
    with pytest.raises(ValueError, match="rank must be in"):
        gls.fit(Xs, Y, rank=3)
    with pytest.raises(ValueError, match="beta_solver"):
        gls.fit(Xs, Y, rank=1, beta_solver="qr")
    with pytest.raises(ValueError, match="cov_type"):
        gls.fit(Xs, Y, rank=1, cov_type="hc3")
    with pytest.raises(ValueError, match="ridge"):
        gls.fit(Xs, Y, rank=1, ridge=-1.0)
    with pytest.raises(ValueError, match="sigma_step"):
        gls.fit(Xs, Y, rank=1, sigma_step="em")


_CHILD = """
import json, numba
from tests.test_gls_fit import simulate
from reprogls import gls
Xs, Y, *_ = simulate(N=700, K=6, p=3, k=2, seed=11)
a = gls.fit(Xs, Y, rank=2, beta_solver="gram")
b = gls.fit(Xs, Y, rank=2, beta_solver="cg")
r = gls.fit(Xs, Y, rank=2, cov_type="robust")
e = gls.fit(Xs, Y, rank=2, sigma_step="residuals")
z = gls.fit(Xs, Y, rank=0, cov_type="robust")
lasso = [gls.fit(Xs, Y, rank=2, l1=30.0, bounds=(-1.0, 1.0), beta_solver=solver)
         for solver in ("gram", "cg")]
print(json.dumps({"threads": numba.get_num_threads(), "gram": a.fingerprint,
                  "cg": b.fingerprint, "robust": r.fingerprint, "residuals": e.fingerprint,
                  "rank0": z.fingerprint,
                  "lasso": [f.fingerprint for f in lasso],
                  "iters": [a.n_iter, b.n_iter] + [f.n_iter for f in lasso]}))
"""


@pytest.mark.slow
def test_fingerprint_does_not_depend_on_thread_count():
    outs = []
    for threads in (1, 2, 8):
        env = dict(os.environ, NUMBA_NUM_THREADS=str(threads),
                   PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        run = subprocess.run([sys.executable, "-c", _CHILD], env=env, cwd=ROOT, check=True,
                             capture_output=True, text=True, timeout=900)
        outs.append(json.loads(run.stdout.strip().splitlines()[-1]))
    assert [o["threads"] for o in outs] == [1, 2, 8]
    assert len({(o["gram"], o["cg"], o["robust"], o["residuals"], o["rank0"], tuple(o["lasso"]),
                 tuple(o["iters"])) for o in outs}) == 1


@pytest.mark.gpu
@pytest.mark.parametrize("solver", ["cg", "gram"])
def test_gpu_fit_moves_x_to_the_device_a_few_times_not_once_per_kernel(monkeypatch, solver):
    """A host X passed to a CUDA kernel is copied to the GPU on every call. The fit keeps
    one copy there (every CG step, every sweep, every column of ``X^T X``, the OLS start
    and the SEs read it): X crosses once (four times until the seventeenth session), and
    the fit's bits stay the CPU's."""
    from reprogls.kernels import _validate

    Xs, Y = simulate_sur(700, 6, 3, 2, 11, True)[:2]
    P = sum(x.shape[1] for x in Xs)
    moved = []
    real = _validate.to_device

    def counting(x, device, dtype=np.float64):
        if device.kind == "cuda" and isinstance(x, np.ndarray) and x.shape == (700, P):
            moved.append(x.shape)
        return real(x, device, dtype)

    monkeypatch.setattr(_validate, "to_device", counting)
    res = gls.fit(Xs, Y, rank=2, beta_solver=solver, device="cuda")
    assert res.fingerprint == gls.fit(Xs, Y, rank=2, beta_solver=solver,
                                      device="cpu").fingerprint
    assert len(moved) == 1, len(moved)


def count_n_row_transfers(monkeypatch, N: int):
    """``(to_gpu, to_host, emulated)``: lists that record the shape of every array of
    ``N`` rows copied to the GPU (``cupy.asarray`` of a NumPy array) and, on the emulator
    only (``emulated``; a real CuPy array's ``get`` cannot be wrapped), back to the host
    (``ndarray.get``), until ``monkeypatch.undo()``."""
    import cupy

    from tests import cuda_emulator

    to_gpu, to_host = [], []
    real_asarray = cupy.asarray

    def counting_asarray(a, *args, **kwargs):
        if isinstance(a, np.ndarray) and a.shape[:1] == (N,):
            to_gpu.append(a.shape)
        return real_asarray(a, *args, **kwargs)

    monkeypatch.setattr(cupy, "asarray", counting_asarray)
    emulated = cuda_emulator.requested()
    if emulated:
        real_get = cupy.ndarray.get

        def counting_get(self):
            if self.shape[:1] == (N,):
                to_host.append(self.shape)
            return real_get(self)

        monkeypatch.setattr(cupy.ndarray, "get", counting_get)
    return to_gpu, to_host, emulated


@pytest.mark.gpu
@pytest.mark.parametrize("solver, sigma_step, cov", [("cg", "moment", "plugin"),
                                                     ("gram", "residuals", "robust"),
                                                     ("cg", "residuals", "none")])
def test_gpu_fit_keeps_its_n_by_k_arrays_on_the_device(monkeypatch, solver, sigma_step,
                                                       cov):
    """The N x K arrays of a GPU fit stay in GPU memory (``reprogls.gls._resident``):
    ``X`` and ``Y`` cross to the GPU once; no N-vector crosses (the large-K Sigma-step's
    ``E V`` stays there), nor do the robust scores; and, counted on the emulator, only
    the result's fitted values and residuals come back. Built from the public kernels,
    which return NumPy arrays, the three-sweep CG fit moved 35 N x K arrays across and
    the residual Sigma-step 378 N-vectors each way. The bits stay the CPU's."""
    Xs, Y = simulate(700, 6, 3, 2, 11, True)[:2]
    N, K, P = 700, 6, sum(x.shape[1] for x in Xs)
    to_gpu, to_host, emulated = count_n_row_transfers(monkeypatch, N)
    options = dict(rank=2, beta_solver=solver, sigma_step=sigma_step, cov_type=cov)
    res = gls.fit(Xs, Y, device="cuda", **options)
    monkeypatch.undo()
    assert res.fingerprint == gls.fit(Xs, Y, device="cpu", **options).fingerprint
    assert sorted(to_gpu) == [(N, K), (N, P)], to_gpu
    if emulated:
        assert sorted(to_host) == [(N, K)] * 2, to_host


@pytest.mark.gpu
def test_gpu_fit_turns_from_the_residuals_to_s_as_the_cpu_does(monkeypatch):
    """``K > 100 k`` under "auto": the first sweep's products from the residuals (on the
    GPU, ``E`` there) count past ``fit.moment_pays`` (63 vectors against 24 at N = 240,
    K = 105), so the later sweeps form S on the GPU, as on the CPU; the same bits."""
    fit_module = sys.modules["reprogls.gls.fit"]
    real = fit_module.factor_analysis
    seen = []

    def recorded(S, *args, **kwargs):
        seen.append(type(S).__name__)
        return real(S, *args, **kwargs)

    monkeypatch.setattr(fit_module, "factor_analysis", recorded)
    Xs, Y = simulate_sur(240, 105, 2, 2, seed=3, shared=True)[:2]
    cpu = gls.fit(Xs, Y, rank=1, cov_type="none")
    turns = list(seen)
    seen.clear()
    gpu = gls.fit(Xs, Y, rank=1, cov_type="none", device="cuda")
    assert turns[0] == "ResidualMoment" and "MomentMatrix" in turns and seen == turns
    assert gpu.fingerprint == cpu.fingerprint


@pytest.mark.gpu
@pytest.mark.parametrize("options", [dict(beta_solver="gram"),
                                     dict(beta_solver="cg", add_constant=True),
                                     dict(sigma_step="residuals", cov_type="robust"),
                                     dict(sigma="fixed")])
def test_a_second_gpu_fits_with_the_cpu_bits(second_gpu, options):
    """``device="cuda:1"`` from NumPy inputs, and CuPy inputs that live on that GPU
    (``device="auto"`` follows them), while CuPy's current device is 0: every step runs
    under the fit's device (CuPy refuses arrays of another GPU in its own kernels, and
    the emulator does too, so an elementwise step outside the fit's device context
    fails here), and the fingerprint is the CPU's; ``predict`` and ``score`` on CuPy
    data there equal the host result's."""
    import cupy

    Xs, Y = simulate(300, 5, 3, 2, 3, True)[:2]
    if options.get("sigma") == "fixed":  # (its rank is F's)
        options = dict(sigma=(np.full((5, 1), 0.3), np.linspace(0.5, 1.5, 5)))
    else:
        options = dict(rank=2, **options)
    host = gls.fit(Xs, Y, device="cpu", **options)
    assert cupy.cuda.Device().id == 0
    res = gls.fit(Xs, Y, device=second_gpu, **options)
    assert res.device == second_gpu and res.fingerprint == host.fingerprint
    with cupy.cuda.Device(1):
        Xd, Yd = [cupy.asarray(x) for x in Xs], cupy.asarray(Y)
    on_their_gpu = gls.fit(Xd, Yd, **options)
    assert on_their_gpu.device == second_gpu
    assert on_their_gpu.fingerprint == host.fingerprint
    assert np.array_equal(on_their_gpu.predict(Xd).view(np.uint64),
                          host.predict(Xs).view(np.uint64))
    assert on_their_gpu.score(Xd, Yd) == host.score(Xs, Y)


@pytest.mark.gpu
@pytest.mark.parametrize("solver, add_constant", [("cg", False), ("gram", True)])
def test_cupy_inputs_are_fitted_on_their_gpu_without_crossing_to_the_host(monkeypatch,
                                                                          solver,
                                                                          add_constant):
    """CuPy designs and Y with ``device="auto"``: packed and fitted on their GPU with the
    CPU's fingerprint. No N-row array crosses to the GPU (``prepare`` copied every design
    and Y to the host and the fit copied the packed X and Y back: ~0.7 GB at N = 20000,
    K = 200, p = 10) and, counted on the emulator, the only N-row arrays that come back
    are the result's fitted values and residuals (the CG's coupling estimate gathers its
    1024 sampled rows on the GPU first). With ``device="cpu"`` the same inputs are
    fitted on the host, again with the same bits."""
    import cupy

    Xs, Y = simulate(1500, 5, 3, 2, 4, True)[:2]
    N, K = Y.shape
    options = dict(rank=2, beta_solver=solver, add_constant=add_constant)
    expect = gls.fit(Xs, Y, device="cpu", **options).fingerprint
    Xd, Yd = [cupy.asarray(x) for x in Xs], cupy.asarray(Y)
    before = [a.get() for a in (*Xd, Yd)]
    to_gpu, to_host, emulated = count_n_row_transfers(monkeypatch, N)
    res = gls.fit(Xd, Yd, **options)
    monkeypatch.undo()
    assert res.device.startswith("cuda") and res.fingerprint == expect
    assert to_gpu == [], to_gpu
    if emulated:
        assert sorted(to_host) == [(N, K)] * 2, to_host
    host = gls.fit(Xd, Yd, device="cpu", **options)
    assert host.fingerprint == expect
    # the result's predict and score take CuPy data too (they run on the host)
    assert np.array_equal(res.predict(Xd).view(np.uint64),
                          host.predict(Xs).view(np.uint64))
    assert res.score(Xd, Yd) == host.score(Xs, Y)
    for b, a in zip(before, (*Xd, Yd), strict=True):  # the caller's arrays are untouched
        assert np.array_equal(b.view(np.uint64), a.get().view(np.uint64))


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["compensated", "plain"])
def test_gpu_sigma_step_from_residuals_has_the_cpu_bits(mode):
    """The large-K Sigma-step's products ``M Q`` and ``diag(S)`` on the GPU (E copied once,
    a ``gemv``/``gemv_t`` per column) equal the CPU's one-pass products bitwise."""
    rng = np.random.default_rng(21)
    E = np.log1p(np.abs(rng.standard_normal((8200, 40)))) - 1.0  # two chunks of rows
    Q = rng.standard_normal((40, 3))
    sqrt_d = np.sqrt(0.05 + rng.uniform(size=40))
    cpu, gpu = ResidualMoment(E, mode), ResidualMoment(E, mode, "cuda")
    assert np.array_equal(gpu.diagonal().view(np.uint64), cpu.diagonal().view(np.uint64))
    assert np.array_equal(gpu.scaled(sqrt_d)(Q).view(np.uint64),
                          cpu.scaled(sqrt_d)(Q).view(np.uint64))


@pytest.mark.gpu
def test_gpu_fit_refuses_a_rank_past_the_woodbury_kernel_before_any_work(monkeypatch):
    """rank > 64 (or a fixed F with 65 columns) on the GPU: NotImplementedError naming the
    limit and the way out, raised before X is packed or any kernel runs."""
    import importlib

    fit_module = importlib.import_module("reprogls.gls.fit")
    Xs, Y, *_ = simulate(N=100, K=70, p=1, k=2, seed=3)

    def no_packing(*args, **kwargs):
        raise AssertionError("the fit started working")

    monkeypatch.setattr(fit_module, "on_device", no_packing)
    with pytest.warns(IdentificationWarning), pytest.raises(NotImplementedError,
                                                             match=r"rank <= 64.*device='cpu'"):
        gls.fit(Xs, Y, rank=65, device="cuda")
    F, d = np.ones((70, 65)), np.ones(70)
    with pytest.raises(NotImplementedError, match="got rank 65"):
        gls.fit(Xs, Y, sigma=(F, d), device="cuda")


def _random_fit_case(seed: int):
    """A small random SUR system and fit options: 2-5 equations of 0-3 regressors, 8-119
    rows, every solver, Sigma-step, covariance and mode, sometimes a fixed Sigma (rank
    0..K)."""
    rng = np.random.default_rng(seed)
    K, N = int(rng.integers(2, 6)), int(rng.integers(8, 120))
    Xs = [rng.standard_normal((N, int(w))) for w in rng.integers(0, 4, K)]
    Y = rng.standard_normal((N, K))
    options = dict(rank=int(rng.integers(1, K)), add_constant=bool(rng.random() < 0.5),
                   ridge=float(rng.choice([0.0, 0.1])), max_iter=int(rng.integers(1, 4)),
                   cov_type=str(rng.choice(["plugin", "robust", "none"])),
                   beta_solver=str(rng.choice(["auto", "cg", "gram"])),
                   sigma_step=str(rng.choice(["auto", "moment", "residuals"])),
                   mode=str(rng.choice(["plain", "compensated"])))
    if rng.random() < 0.2:  # (Sigma's rank is then F's: the drawn rank goes)
        options["sigma"] = (rng.standard_normal((K, int(rng.integers(0, K + 1)))),
                            rng.uniform(0.1, 1.0, K))
        del options["rank"]
    return Xs, Y, options


@pytest.mark.gpu
@pytest.mark.parametrize("seed", range(12))
def test_random_small_fits_have_the_cpu_fingerprint_on_the_gpu(seed):
    """Beyond the golden fits: random layouts (empty equations, one-column designs,
    added constants) and option sets give the CPU's fingerprint on the GPU. (140 such
    fits agreed on the emulator under both schedules when this test was written.)"""
    Xs, Y, options = _random_fit_case(seed)
    with warnings.catch_warnings():  # short max_iter, ranks past Ledermann's bound
        warnings.simplefilter("ignore", (gls.ConvergenceWarning, IdentificationWarning))
        cpu = gls.fit(Xs, Y, device="cpu", **options)
        gpu = gls.fit(Xs, Y, device="cuda", **options)
    assert gpu.fingerprint == cpu.fingerprint


@pytest.mark.parametrize("mode", ["compensated", "plain"])
@pytest.mark.parametrize("N", [1, 31, 8193, 20001])
def test_mean_squares_are_the_one_column_rmatvec(mode, N):
    """The fit's mean squares of the y_j (the units of d's floor) come from ``gemv_t(Y *
    Y, 1)`` on the CPU; by definition they are ``sur_rmatvec(Y, arange(K + 1), Y) / N``.
    Same terms, same CRO-1 order: the same bits, for magnitudes far apart, squares that
    overflow or underflow, and row counts around the chunk size."""
    from reprogls.gls.fit import mean_squares
    from reprogls.kernels import sur_rmatvec

    rng = np.random.default_rng(N)
    K = 7
    Y = rng.standard_normal((N, K)) * 10.0 ** rng.uniform(-150, 150, (N, K))
    Y[:, 3] = 0.0
    Y[: N // 2 + 1, 4] = 1e160  # squares overflow: +inf
    Y[:, 5] *= 1e-170  # squares underflow to subnormals and zeros
    expected = sur_rmatvec(Y, np.arange(K + 1), Y, mode, "cpu") / N
    got = mean_squares(Y, mode, "cpu")
    assert (got.view(np.uint64) == expected.view(np.uint64)).all()
    assert np.isinf(got[4]) and got[3] == 0.0
