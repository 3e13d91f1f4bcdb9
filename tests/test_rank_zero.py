"""``rank=0``: ``Sigma = diag(d)``, the model without common factors.

The equations' errors are independent, so the GLS beta-step is least squares equation
by equation (a penalty weighs equation j's squares by ``1 / d_j``), the ML uniquenesses
are ``d_j = e_j^T e_j / N`` and the log-likelihood is the sum of the equations' own. It
is the baseline :func:`reprogls.gls.select_rank` compares factor models against, and the
only rank a single equation has. The oracles: statsmodels OLS per equation, its
cluster-robust covariance on the whitened stacked system, and the closed forms.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from reprogls import gls
from tests.corpus import same_bits
from tests.sur_stack import whitened_stack


def unequal_system(N=300, K=5, seed=4):
    """K equations of 1-3 independent regressors, two factors in the errors."""
    Xs, Y, *_ = gls.simulate_sur(N, K, 3, 2, seed, shared=False)
    return [X[:, : 1 + j % 3] for j, X in enumerate(Xs)], Y


@pytest.mark.parametrize("beta_solver", ["gram", "cg"])
@pytest.mark.parametrize("sigma_step", ["moment", "residuals"])
def test_rank_zero_is_least_squares_equation_by_equation(beta_solver, sigma_step):
    sm = pytest.importorskip("statsmodels.api")
    Xs, Y = unequal_system()
    N, K = Y.shape
    res = gls.fit(Xs, Y, rank=0, beta_solver=beta_solver, sigma_step=sigma_step)
    assert res.F.shape == (K, 0) and res.rank == 0 and res.converged
    ols = [sm.OLS(Y[:, j], X).fit() for j, X in enumerate(Xs)]
    np.testing.assert_allclose(res.params, np.concatenate([o.params for o in ols]),
                               rtol=1e-10)
    np.testing.assert_allclose(res.d, [o.ssr / N for o in ols], rtol=1e-12)
    # the plug-in covariance scales by the ML d_j = ssr / N, not ssr / (N - p_j)
    ml_bse = np.concatenate([o.bse * np.sqrt(o.df_resid / N) for o in ols])
    np.testing.assert_allclose(res.bse, ml_bse, rtol=1e-8)
    np.testing.assert_allclose(res.llf, sum(o.llf for o in ols), rtol=1e-12)
    P = sum(X.shape[1] for X in Xs)
    assert res.df_model == P + K  # the coefficients and d, no loadings
    assert res.aic == -2.0 * res.llf + 2.0 * (P + K)
    assert same_bits(res.resid, Y - res.fittedvalues)


def test_rank_zero_robust_covariance_is_the_cluster_sandwich():
    """Clustered by observation across equations, as for every rank (the errors of the
    data are correlated, which the sandwich allows for and the plug-in does not)."""
    sm = pytest.importorskip("statsmodels.api")
    Xs, Y = unequal_system(N=250, seed=6)
    N, K = Y.shape
    res = gls.fit(Xs, Y, rank=0, cov_type="robust")
    ref = sm.OLS(*whitened_stack(Xs, Y, np.zeros((K, 0)), res.d)).fit(
        cov_type="cluster", cov_kwds={"groups": np.repeat(np.arange(N), K),
                                      "use_correction": False, "df_correction": False})
    np.testing.assert_allclose(res.params, ref.params, rtol=1e-8)
    np.testing.assert_allclose(res.cov_params(), ref.cov_params(), rtol=1e-8, atol=1e-14)
    plugin = gls.fit(Xs, Y, rank=0)
    assert same_bits(plugin.params, res.params)
    assert np.max(np.abs(res.bse / plugin.bse - 1.0)) > 0.01


def test_a_penalty_weighs_each_equation_by_its_uniqueness():
    """With ``ridge`` the normal equations ``(X_j^T X_j / d_j + ridge I) beta_j = X_j^T
    y_j / d_j`` are per-equation ridge regressions with penalty ``ridge d_j``."""
    Xs, Y = unequal_system(seed=7)
    res = gls.fit(Xs, Y, rank=0, ridge=30.0)
    expected = [np.linalg.solve(X.T @ X + 30.0 * res.d[j] * np.eye(X.shape[1]), X.T @ Y[:, j])
                for j, X in enumerate(Xs)]
    np.testing.assert_allclose(res.params, np.concatenate(expected), rtol=1e-8)


def test_one_equation_fits_at_rank_zero_only():
    sm = pytest.importorskip("statsmodels.api")
    Xs, Y = unequal_system()
    X, y = Xs[2], Y[:, 2:3]
    res = gls.fit([X], y, rank=0)
    ols = sm.OLS(y[:, 0], X).fit()
    np.testing.assert_allclose(res.params, ols.params, rtol=1e-10)
    np.testing.assert_allclose(res.llf, ols.llf, rtol=1e-12)
    assert "Rank: 0" in res.summary()
    for rank in (None, 1):  # (the default rank is 1)
        with pytest.raises(ValueError, match="K = 1 only rank=0"):
            gls.fit([X], y, rank=rank)


def test_select_rank_weighs_the_factor_models_against_independent_equations():
    """BIC picks rank 0 where the errors are independent and the data's rank where they
    share factors; the rank-0 row is the bits of ``gls.fit(rank=0)``."""
    independent = gls.simulate_sur(1500, 8, 3, 0, seed=9, shared=False)[:2]
    factors = gls.simulate_sur(1500, 8, 3, 2, seed=9, shared=False)[:2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gls.IdentificationWarning)
        none = gls.select_rank(*independent, ranks=range(0, 4))
        two = gls.select_rank(*factors, ranks=range(0, 4))
    assert none.ranks == (0, 1, 2, 3) and none.best_rank == 0
    assert two.best_rank == 2 and two.bic[0] > two.bic[2]
    alone = gls.fit(*independent, rank=0)
    assert same_bits(none.result.params, alone.params)
    assert same_bits(np.array(none.llf[0]), np.array(alone.llf))


def test_low_rank_gls_at_rank_zero_has_no_components():
    Xs, Y = unequal_system()
    model = gls.LowRankGLS(rank=0).fit(Xs, Y)
    assert model.components_.shape == (0, Y.shape[1])
    assert same_bits(model.noise_variance_, gls.fit(Xs, Y, rank=0).d)
    assert np.isfinite(model.score(Xs, Y))


def test_a_warm_start_at_rank_zero_repeats_the_fit():
    Xs, Y = unequal_system()
    first = gls.fit(Xs, Y, rank=0)
    again = gls.fit(Xs, Y, rank=0, start=first)
    assert again.fingerprint == first.fingerprint


@pytest.mark.gpu
@pytest.mark.parametrize("options", [
    {"beta_solver": "gram"},
    {"beta_solver": "cg", "sigma_step": "residuals", "mode": "plain"},
    {"beta_solver": "cg", "cov_type": "robust", "ridge": 0.5},
])
def test_rank_zero_on_the_gpu_has_the_cpu_bits(options):
    Xs, Y = unequal_system()
    cpu = gls.fit(Xs, Y, rank=0, device="cpu", **options)
    gpu = gls.fit(Xs, Y, rank=0, device="cuda", **options)
    assert gpu.fingerprint == cpu.fingerprint
