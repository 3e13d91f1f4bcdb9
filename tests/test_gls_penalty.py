"""L1-penalised (lasso, elastic net) and box-constrained fits: against scikit-learn and
SciPy on the whitened stacked system, the optimality conditions, exact zeros, the
unpenalised constants, bad input, and the same bits on the GPU (on every thread count:
``tests/test_gls_fit.py::test_fingerprint_does_not_depend_on_thread_count``)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from reprogls import gls
from reprogls.gls import LowRankGLS
from reprogls.gls.penalty import free_coefficients, make_penalty
from tests.sur_stack import whitened_stack
from tests.test_gls_fit import simulate


def sparse_system(N=300, K=5, p=4, k=2, seed=1):
    """A SUR system whose true coefficients are half zeros, and its ``(F, d)``."""
    rng = np.random.default_rng(seed)
    Xs = [rng.standard_normal((N, p)) for _ in range(K)]
    B = rng.standard_normal((K, p)) * (rng.random((K, p)) < 0.5)
    F, d = rng.standard_normal((K, k)), 0.3 + rng.random(K)
    Y = (np.column_stack([Xs[j] @ B[j] for j in range(K)])
         + rng.standard_normal((N, k)) @ F.T + rng.standard_normal((N, K)) * np.sqrt(d))
    return Xs, Y, F, d


def penalised_objective(beta, yw, Xw, l1, ridge=0.0):
    """``||yw - Xw beta||^2 / 2 + l1 ||beta||_1 + ridge ||beta||^2 / 2`` (NumPy, float64)."""
    r = yw - Xw @ beta
    return 0.5 * r @ r + l1 * np.abs(beta).sum() + 0.5 * ridge * beta @ beta


@pytest.mark.parametrize("solver", ["gram", "cg"])
@pytest.mark.parametrize("l1", [1.0, 30.0, 300.0])
def test_lasso_with_fixed_sigma_matches_sklearn_on_the_whitened_stack(solver, l1):
    """With Sigma fixed, the penalised GLS is the lasso on the whitened stacked system:
    scikit-learn's ``Lasso`` minimises ``||y - X w||^2 / (2 n) + alpha ||w||_1``, so
    ``alpha = l1 / (N K)``."""
    linear_model = pytest.importorskip("sklearn.linear_model")
    Xs, Y, F, d = sparse_system()
    N, K = Y.shape
    res = gls.fit(Xs, Y, sigma=(F, d), l1=l1, beta_solver=solver)
    yw, Xw = whitened_stack(Xs, Y, F, d)
    ref = linear_model.Lasso(alpha=l1 / (N * K), fit_intercept=False, tol=1e-14,
                             max_iter=100000).fit(Xw, yw).coef_
    np.testing.assert_allclose(res.params, ref, rtol=1e-8, atol=1e-8)
    assert np.array_equal(res.params == 0, ref == 0)
    # the zeros are exact and positive; the objective is no worse than scikit-learn's
    assert not np.signbit(res.params[res.params == 0]).any()
    ours, theirs = (penalised_objective(b, yw, Xw, l1) for b in (res.params, ref))
    assert ours <= theirs + 1e-10 * abs(theirs)
    assert res.cov is None and res.cov_type == "none"


def test_elastic_net_is_l1_plus_ridge_and_matches_sklearn():
    linear_model = pytest.importorskip("sklearn.linear_model")
    Xs, Y, F, d = sparse_system(seed=2)
    N, K = Y.shape
    l1, ridge = 20.0, 50.0
    res = gls.fit(Xs, Y, sigma=(F, d), l1=l1, ridge=ridge)
    yw, Xw = whitened_stack(Xs, Y, F, d)
    # ElasticNet: ||y - X w||^2 / (2 n) + alpha rho ||w||_1 + alpha (1 - rho) ||w||^2 / 2
    ref = linear_model.ElasticNet(alpha=(l1 + ridge) / (N * K), l1_ratio=l1 / (l1 + ridge),
                                  fit_intercept=False, tol=1e-14,
                                  max_iter=100000).fit(Xw, yw).coef_
    np.testing.assert_allclose(res.params, ref, rtol=1e-8, atol=1e-8)
    assert np.array_equal(res.params == 0, ref == 0)


@pytest.mark.parametrize("solver", ["gram", "cg"])
def test_bounds_match_scipy_bounded_least_squares(solver):
    """Box constraints alone: bounded least squares on the whitened stack (SciPy's
    BVLS), for non-negativity and for per-coefficient boxes."""
    optimize = pytest.importorskip("scipy.optimize")
    Xs, Y, F, d = sparse_system(seed=3)
    yw, Xw = whitened_stack(Xs, Y, F, d)
    P = Xw.shape[1]
    rng = np.random.default_rng(0)
    lo = -rng.uniform(0.0, 0.5, P)
    hi = rng.uniform(0.0, 0.5, P)
    lo[::3], hi[1::3] = -np.inf, np.inf
    for bounds, scipy_bounds in [((0, None), (0, np.inf)), ((lo, hi), (lo, hi))]:
        res = gls.fit(Xs, Y, sigma=(F, d), bounds=bounds, beta_solver=solver)
        ref = optimize.lsq_linear(Xw, yw, bounds=scipy_bounds, method="bvls", tol=1e-14).x
        np.testing.assert_allclose(res.params, ref, rtol=1e-8, atol=1e-8)
        low, high = scipy_bounds
        assert np.all(res.params >= low) and np.all(res.params <= high)
        # coefficients at a bound sit exactly on it
        at_bound = np.isclose(ref, np.broadcast_to(low, ref.shape), atol=1e-9, rtol=0)
        assert np.array_equal(res.params[at_bound], np.broadcast_to(low, ref.shape)[at_bound])


def test_a_penalty_past_the_largest_gradient_gives_exact_zeros():
    """At beta = 0 the gradient of the smooth part is ``-b``; for ``l1 >= max |b|`` zero
    is optimal, and the fit returns exactly ``+0.0`` everywhere; just below it, not."""
    Xs, Y, F, d = sparse_system(seed=4)
    yw, Xw = whitened_stack(Xs, Y, F, d)
    largest = np.abs(Xw.T @ yw).max()
    zero = gls.fit(Xs, Y, sigma=(F, d), l1=1.001 * largest)
    assert (zero.params.view(np.uint64) == 0).all()
    assert np.count_nonzero(gls.fit(Xs, Y, sigma=(F, d), l1=0.99 * largest).params) >= 1


def test_scalar_penalties_leave_the_added_constants_free():
    """With ``add_constant=True`` a scalar ``l1`` or bound skips the ``const`` columns:
    under a penalty that zeroes every slope, each constant is its equation's GLS fit on
    a constant alone (here, Sigma fixed and diagonal: the mean of y_j); an array ``l1``
    penalises exactly the coefficients it names."""
    Xs, Y, _, d = sparse_system(seed=5)
    K = Y.shape[1]
    Y = Y + np.arange(1, K + 1)  # constants well away from zero
    diagonal = (np.zeros((K, 0)), d)
    res = gls.fit(Xs, Y, sigma=diagonal, l1=1e9, bounds=(-0.1, 0.1), add_constant=True)
    const = res.offsets[:-1]
    assert res.regressor_names[0][0] == "const"
    np.testing.assert_allclose(res.params[const], Y.mean(axis=0), rtol=1e-9)  # cg_tol 1e-10
    assert (np.delete(res.params, const) == 0).all()
    weights = np.zeros(res.params.size)
    weights[const] = 1e9
    pinned = gls.fit(Xs, Y, sigma=diagonal, l1=weights, add_constant=True)
    assert (pinned.params[const] == 0).all() and np.all(np.delete(pinned.params, const) != 0)


def test_full_fit_satisfies_the_lasso_optimality_conditions_at_its_sigma():
    """The alternating fit's beta is the penalised GLS at its final Sigma: with
    ``g = X*^T (y* - X* beta)`` on the stack whitened by that Sigma, ``g_m = l1 sign(beta_m)``
    where ``beta_m != 0`` and ``|g_m| <= l1`` where it is zero."""
    Xs, Y, *_ = simulate(N=400, K=5, p=4, k=2, seed=10)
    l1 = 40.0
    for solver in ("gram", "cg"):
        res = gls.fit(Xs, Y, rank=2, l1=l1, beta_solver=solver)
        assert res.converged and 0 < np.count_nonzero(res.params) < res.params.size
        yw, Xw = whitened_stack(Xs, Y, res.F, res.d)
        g = Xw.T @ (yw - Xw @ res.params)
        active = res.params != 0
        scale = np.abs(Xw.T @ yw).max()
        np.testing.assert_allclose(g[active], l1 * np.sign(res.params[active]),
                                   atol=1e-7 * scale)
        assert np.all(np.abs(g[~active]) <= l1 + 1e-7 * scale)


@pytest.mark.parametrize("solver", ["gram", "cg"])
def test_uncentred_regressors_beside_a_constant_converge_by_newton_steps(solver):
    """Regressors around 100 beside an unpenalised constant make the scaled normal
    matrix badly conditioned: FISTA alone took 500 iterations per step without reaching
    ``cg_tol`` and the fit 27 sweeps (2-3.5 s). The Newton step on the free set every 25
    iterations solves each step (gradient mapping ~1e-16): the fit takes 3 sweeps, no
    warning, and meets the optimality conditions, constants free."""
    rng = np.random.default_rng(0)
    N, K = 500, 4
    Xs = [100.0 + rng.standard_normal((N, 3)) for _ in range(K)]
    Y = (np.column_stack([X @ (rng.standard_normal(3) * (rng.random(3) < 0.6)) + 5
                          for X in Xs])
         + rng.standard_normal((N, K)) + rng.standard_normal((N, 1)))
    l1 = 20.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", gls.ConvergenceWarning)
        res = gls.fit(Xs, Y, rank=1, l1=l1, add_constant=True, beta_solver=solver)
    assert res.converged and res.n_iter <= 5
    Xc = [np.column_stack([np.ones(N), X]) for X in Xs]
    yw, Xw = whitened_stack(Xc, Y, res.F, res.d)
    g = Xw.T @ (yw - Xw @ res.params)
    const = np.zeros(res.params.size, bool)
    const[res.offsets[:-1]] = True
    active = (res.params != 0) & ~const
    scale = np.abs(Xw.T @ yw).max()
    np.testing.assert_allclose(g[const], 0.0, atol=1e-9 * scale)
    np.testing.assert_allclose(g[active], l1 * np.sign(res.params[active]), atol=1e-9 * scale)
    assert np.all(np.abs(g[~active & ~const]) <= l1 + 1e-9 * scale)
    assert np.count_nonzero(res.params[~const] == 0) >= 2


def test_a_step_at_the_fused_operators_rounding_level_stops_and_says_why():
    """In a Heywood case (here ``d_0`` ~ 4e-9 at the optimum) ``Sigma^-1`` by Woodbury
    is inexact by ~1e-9 relative, so the fused operator (which recomputes it in every
    call) is too, and the gradient mapping cannot reach ``cg_tol = 1e-10``: the step
    stops when it stalls, returns its best iterate and warns with the reason; the dense
    normal matrix (fixed, hence exactly linear) solves it to ``cg_tol``. Run to
    ``tol = 1e-10`` the two fits agree to 4.4e-8 relative in beta and have the same
    zeros. (At the default ``tol`` they differ by 4e-5: the sweeps stop on a flat
    likelihood. Before the Sigma-step solved the whole eigenproblem here (K <= 16 k,
    forty-third session) they differed by 1.8e-5 to 2.7e-5 even at ``tol = 1e-10`` or
    1e-11: the subspace iteration's eigenvalues carried errors of ``eps lambda_max``,
    and ``lambda_max`` ~ 1 / d_0 ~ 1e8.)"""
    Xs, Y, *_ = simulate(N=400, K=5, p=4, k=2, seed=6)
    with pytest.warns(gls.ConvergenceWarning, match="stalled .* min d = 4"):
        fused = gls.fit(Xs, Y, rank=2, l1=40.0, beta_solver="cg")
    with warnings.catch_warnings():
        warnings.simplefilter("error", gls.ConvergenceWarning)
        dense = gls.fit(Xs, Y, rank=2, l1=40.0, beta_solver="gram")
    assert fused.converged and dense.converged and dense.d.min() < 1e-8
    assert np.array_equal(fused.params == 0, dense.params == 0)
    with pytest.warns(gls.ConvergenceWarning, match="stalled"):
        fused = gls.fit(Xs, Y, rank=2, l1=40.0, beta_solver="cg", tol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("error", gls.ConvergenceWarning)
        dense = gls.fit(Xs, Y, rank=2, l1=40.0, beta_solver="gram", tol=1e-10)
    assert fused.converged and dense.converged
    np.testing.assert_allclose(fused.params, dense.params, rtol=1e-6, atol=1e-10)
    assert np.array_equal(fused.params == 0, dense.params == 0)


def test_the_two_solvers_agree_and_the_objective_decides_convergence():
    """A penalty that dominates the likelihood (most coefficients shrink, Sigma grows
    with the residuals) converges in tens of sweeps: the stop is on the penalised
    objective, the quantity the sweeps decrease (the log-likelihood alone keeps falling
    as the shrinkage feeds back through Sigma). Both beta solvers reach the same fit."""
    Xs, Y, *_ = simulate(N=2000, K=12, p=5, k=2, seed=7)
    fits = {solver: gls.fit(Xs, Y, rank=2, l1=600.0, beta_solver=solver)
            for solver in ("gram", "cg")}
    for res in fits.values():
        assert res.converged
        assert 0 < np.count_nonzero(res.params) < res.params.size
    np.testing.assert_allclose(fits["gram"].params, fits["cg"].params, rtol=1e-6,
                               atol=1e-7)
    np.testing.assert_allclose(fits["gram"].llf, fits["cg"].llf, rtol=1e-9)


def test_no_penalty_is_the_unpenalised_fit_bit_for_bit():
    Xs, Y, *_ = simulate(N=300, K=4, seed=8)
    plain = gls.fit(Xs, Y, rank=1)
    for options in (dict(l1=0.0), dict(l1=np.zeros(12)), dict(bounds=(None, None)),
                    dict(bounds=(-np.inf, np.inf), l1=0)):
        assert gls.fit(Xs, Y, rank=1, **options).fingerprint == plain.fingerprint


def test_a_penalised_step_that_runs_out_of_iterations_warns():
    Xs, Y, F, d = sparse_system(seed=9)
    with pytest.warns(gls.ConvergenceWarning, match="cg_max_iter=2"):
        gls.fit(Xs, Y, sigma=(F, d), l1=5.0, cg_max_iter=2)


def test_bad_penalties_are_refused_by_name():
    Xs, Y, *_ = sparse_system(N=100, K=3, seed=10)
    P = sum(x.shape[1] for x in Xs)
    cases = [
        (dict(l1=-1.0), ValueError, "l1 must be >= 0"),
        (dict(l1=np.nan), ValueError, "l1 must be >= 0"),
        (dict(l1=np.inf), ValueError, "l1 must be >= 0"),
        (dict(l1=np.ones(P - 1)), ValueError, r"shape \(P,\)"),
        (dict(l1="big"), TypeError, "l1 must be a real"),
        (dict(l1=True), TypeError, "l1 must be a real"),
        (dict(bounds=(1.0, -1.0)), ValueError, "no feasible value"),
        (dict(bounds=(np.inf, None)), ValueError, "no feasible value"),
        (dict(bounds=(np.nan, 1.0)), ValueError, "NaN"),
        (dict(bounds=0.0), TypeError, "bounds must be a pair"),
        (dict(bounds=(0.0, 1.0, 2.0)), TypeError, "bounds must be a pair"),
        (dict(bounds=(np.zeros(P + 1), None)), ValueError, r"bounds\[0\]"),
        (dict(l1=1.0, cov_type="plugin"), ValueError, "cov_type='none'"),
        (dict(bounds=(0, None), cov_type="robust"), ValueError, "not valid for a fit"),
    ]
    for options, error, message in cases:
        with pytest.raises(error, match=message):
            gls.fit(Xs, Y, rank=1, **options)


def test_make_penalty_copies_and_does_not_touch_the_callers_arrays():
    weights = np.array([0.0, 1.0, 2.0])
    lo = np.array([-1.0, -np.inf, 0.0])
    before = weights.copy(), lo.copy()
    penalty = make_penalty(weights, (lo, 5.0), 3, np.array([True, False, False]))
    penalty.l1[:] = 7.0
    penalty.lo[:] = 7.0
    assert np.array_equal(weights, before[0]) and np.array_equal(lo, before[1])
    # a scalar upper bound skips the constant column, arrays do not
    assert penalty.hi.tolist() == [np.inf, 5.0, 5.0]
    # bounds as a (2, P) array; a coefficient pinned by lo = hi
    pinned = make_penalty(0.0, np.array([[-1.0, 0.5, 0.0], [1.0, 0.5, np.inf]]), 3,
                          np.zeros(3, dtype=bool))
    assert pinned.lo.tolist() == [-1.0, 0.5, 0.0] and pinned.hi.tolist() == [1.0, 0.5, np.inf]


def test_aic_counts_the_coefficients_the_penalty_leaves_free():
    """``df_model`` counts a coefficient unless the L1 term zeroed it or a bound holds it
    (an unpenalised coefficient that happens to be zero still counts)."""
    Xs, Y, *_ = simulate(N=400, K=5, p=4, k=2, seed=10)
    plain = gls.fit(Xs, Y, rank=2)
    res = gls.fit(Xs, Y, rank=2, l1=40.0, bounds=(-1.0, 1.0))
    held = np.count_nonzero((res.params == 0) | (np.abs(res.params) == 1.0))
    assert held >= 3 and res.free_coefficients == res.params.size - held
    assert plain.df_model - res.df_model == held
    assert res.aic == -2 * res.llf + 2 * res.df_model
    # a zero where l1_m = 0 is a free coefficient that happens to be zero
    penalty = make_penalty(np.array([0.0, 1.0, 1.0]), (-1.0, 1.0), 3, np.zeros(3, bool))
    assert free_coefficients(penalty, np.array([0.0, 0.0, 0.5])) == 2
    assert free_coefficients(penalty, np.array([0.0, 0.5, 1.0])) == 2


def test_a_coefficient_pinned_by_equal_bounds_keeps_its_value():
    Xs, Y, *_ = simulate(N=200, K=3, p=2, k=1, seed=3)
    lo, hi = np.full(6, -np.inf), np.full(6, np.inf)
    lo[2] = hi[2] = 0.3
    lo[4] = hi[4] = 0.0
    res = gls.fit(Xs, Y, rank=1, bounds=(lo, hi), l1=1.0)
    assert res.params[2] == 0.3 and res.params[4] == 0.0
    assert np.count_nonzero(res.params) == 5


def test_the_estimator_class_takes_the_penalties():
    Xs, Y, *_ = simulate(N=300, K=4, seed=11)
    model = LowRankGLS(rank=1, l1=25.0, bounds=(-2, 2)).fit(Xs, Y)
    assert model.get_params()["l1"] == 25.0 and model.get_params()["bounds"] == (-2, 2)
    direct = gls.fit(Xs, Y, rank=1, l1=25.0, bounds=(-2, 2))
    assert model.result_.fingerprint == direct.fingerprint
    assert "l1=25.0" in repr(model)
    assert model.result_.penalty == "l1=25, bounds"
    assert "Penalty: l1=25, bounds" in model.result_.summary()
    assert gls.fit(Xs, Y, rank=1, l1=np.arange(12.0), ridge=0.5).penalty == \
        "l1 (per coefficient), ridge=0.5"
    assert "Penalty" not in gls.fit(Xs, Y, rank=1).summary()


@pytest.mark.gpu
@pytest.mark.parametrize("options", [dict(l1=30.0, beta_solver="cg"),
                                     dict(l1=30.0, ridge=5.0, beta_solver="gram"),
                                     dict(bounds=(0.0, None), add_constant=True),
                                     dict(l1=10.0, sigma="fixed"),
                                     dict(l1=20.0, add_constant=True, uncentred=True,
                                          beta_solver="cg")])
def test_penalised_fits_have_the_cpu_fingerprint_on_the_gpu(options):
    """Including a fit whose steps take the active-set Newton steps (regressors around
    100 beside constants: CG on the free set with the fused operator on the GPU)."""
    Xs, Y, *_ = simulate(N=300, K=5, p=3, k=2, seed=12)
    if options.pop("uncentred", False):
        Xs = [X + 100.0 for X in Xs]
    if options.get("sigma") == "fixed":  # (its rank is F's)
        options = dict(options, sigma=(np.full((5, 1), 0.3), np.linspace(0.5, 1.5, 5)))
    else:
        options = dict(options, rank=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", gls.ConvergenceWarning)
        cpu = gls.fit(Xs, Y, device="cpu", **options)
        gpu = gls.fit(Xs, Y, device="cuda", **options)
    assert gpu.fingerprint == cpu.fingerprint
