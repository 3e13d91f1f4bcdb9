"""Warm starts (``fit(..., start=)``, ``LowRankGLS(warm_start=True)``): the optimum of
the fit from OLS; going on from a fit that ran out of sweeps; deterministic, the
caller's arrays untouched; bad starts named."""

from __future__ import annotations

import numpy as np
import pytest

from reprogls import gls
from reprogls.gls import LowRankGLS
from tests.test_gls_penalty import sparse_system


def bits(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).view(np.uint64)


@pytest.fixture(scope="module")
def system():
    return sparse_system(N=400, K=6, p=4, k=2, seed=3)


@pytest.mark.parametrize("solver", ["gram", "cg"])
def test_a_fit_started_at_its_own_result_stops_at_once(system, solver):
    Xs, Y, *_ = system
    res = gls.fit(Xs, Y, rank=2, beta_solver=solver, tol=1e-10)
    again = gls.fit(Xs, Y, rank=2, beta_solver=solver, tol=1e-10, start=res)
    assert again.converged and again.n_iter <= 2 < res.n_iter
    # a change of the likelihood below tol = 1e-10 leaves the coefficients ~sqrt(tol)
    # from the optimum: the extra sweep moves them by that much, and gains likelihood
    scale = np.abs(res.params).max()
    np.testing.assert_allclose(again.params, res.params, rtol=0, atol=3e-5 * scale)
    np.testing.assert_allclose(again.d, res.d, rtol=1e-4)
    assert again.llf >= res.llf - 1e-10 * abs(res.llf)


@pytest.mark.parametrize("solver", ["gram", "cg"])
def test_a_start_elsewhere_reaches_the_optimum_of_the_fit_from_ols(system, solver):
    """From a heavily penalised fit's result (many exact zeros, a different Sigma) the
    unpenalised fit reaches the fit from OLS: the same likelihood and coefficients."""
    Xs, Y, *_ = system
    far = gls.fit(Xs, Y, rank=2, l1=300.0, beta_solver=solver)
    assert (far.params == 0).sum() >= 4
    # the sweeps converge linearly (55-70 sweeps to tol = 1e-14 here): the coefficients
    # of two fits that stop at tol agree to about the distance tol leaves to the optimum
    ols_start = gls.fit(Xs, Y, rank=2, beta_solver=solver, tol=1e-14)
    res = gls.fit(Xs, Y, rank=2, beta_solver=solver, tol=1e-14, start=far)
    assert res.converged and ols_start.converged
    scale = np.abs(ols_start.params).max()
    np.testing.assert_allclose(res.params, ols_start.params, rtol=0, atol=1e-7 * scale)
    assert abs(res.llf - ols_start.llf) <= 1e-12 * abs(ols_start.llf)


def test_a_start_is_deterministic_and_leaves_the_callers_arrays_alone(system):
    Xs, Y, *_ = system
    first = gls.fit(Xs, Y, rank=2, l1=30.0)
    params, F, d = first.params.copy(), first.F.copy(), first.d.copy()
    triple = (first.params, first.F, first.d)
    a = gls.fit(Xs, Y, rank=2, l1=10.0, start=triple)
    b = gls.fit(Xs, Y, rank=2, l1=10.0, start=first)  # the result gives the same triple
    assert a.fingerprint == b.fingerprint
    assert np.array_equal(bits(a.params), bits(b.params))
    for before, after in ((params, first.params), (F, first.F), (d, first.d)):
        assert np.array_equal(bits(before), bits(after))


def test_with_sigma_fixed_the_direct_solver_ignores_the_start(system):
    """With Sigma fixed the Gram path solves the normal equations directly: the start's
    coefficients are not used, and its F, d never are (Sigma is the caller's)."""
    Xs, Y, F, d = system
    plain = gls.fit(Xs, Y, sigma=(F, d), beta_solver="gram")
    other = gls.fit(Xs, Y, rank=2)
    started = gls.fit(Xs, Y, sigma=(F, d), beta_solver="gram", start=other)
    assert started.fingerprint == plain.fingerprint
    # the CG path starts its iterations there and solves to cg_tol
    cg = gls.fit(Xs, Y, sigma=(F, d), beta_solver="cg", start=(other.params, None, None))
    np.testing.assert_allclose(cg.params, plain.params, rtol=1e-8, atol=1e-10)


def test_bad_starts_are_named(system):
    Xs, Y, *_ = system
    res = gls.fit(Xs, Y, rank=2)
    P, K = res.params.size, Y.shape[1]
    with pytest.raises(TypeError, match="start must be a GLSResult"):
        gls.fit(Xs, Y, rank=2, start="previous")
    with pytest.raises(TypeError, match="start must be a GLSResult"):
        gls.fit(Xs, Y, rank=2, start=(res.params, res.F))
    with pytest.raises(gls.StartMismatchError, match=rf"start's params must have shape \({P},\)"):
        gls.fit(Xs, Y, rank=2, start=(res.params[:-1], res.F, res.d))
    with pytest.raises(ValueError, match="the same system"):
        gls.fit(Xs, Y, rank=2, add_constant=True, start=res)
    with pytest.raises(ValueError, match="start's F has 2 factors, the fit rank=3"):
        gls.fit(Xs, Y, rank=3, start=res)
    with pytest.raises(ValueError, match=rf"start's F must have shape \({K}, 2\)"):
        gls.fit(Xs, Y, rank=2, start=(res.params, res.F[:-1], res.d))
    with pytest.raises(ValueError, match="F and d go together"):
        gls.fit(Xs, Y, rank=2, start=(res.params, res.F, None))
    with pytest.raises(ValueError, match="d must be positive"):
        gls.fit(Xs, Y, rank=2, start=(res.params, res.F, np.zeros(K)))
    with pytest.raises(ValueError, match="start's params has non-finite values"):
        gls.fit(Xs, Y, rank=2, start=(np.full(P, np.nan), res.F, res.d))
    with pytest.raises(TypeError, match="start's params must be a real array"):
        gls.fit(Xs, Y, rank=2, start=(["a"] * P, res.F, res.d))
    # a start of the other rank can still start the coefficients
    assert gls.fit(Xs, Y, rank=3, start=(res.params, None, None)).converged


@pytest.mark.parametrize("solver", ["gram", "cg"])
def test_going_on_from_a_fit_that_ran_out_of_sweeps(system, solver):
    """A fit stopped by ``max_iter`` (a ConvergenceWarning) and continued from its result
    needs about the sweeps the whole fit would have had left, and reaches its optimum."""
    Xs, Y, *_ = system
    whole = gls.fit(Xs, Y, rank=2, beta_solver=solver, tol=1e-12)
    assert whole.converged and whole.n_iter > 4
    with pytest.warns(gls.ConvergenceWarning, match="did not converge in 3 sweeps"):
        cut = gls.fit(Xs, Y, rank=2, beta_solver=solver, tol=1e-12, max_iter=3)
    assert not cut.converged
    rest = gls.fit(Xs, Y, rank=2, beta_solver=solver, tol=1e-12, start=cut)
    assert rest.converged and abs(rest.n_iter - (whole.n_iter - 3)) <= 2
    assert abs(rest.llf - whole.llf) <= 1e-10 * abs(whole.llf)
    scale = np.abs(whole.params).max()
    np.testing.assert_allclose(rest.params, whole.params, rtol=0, atol=1e-5 * scale)


def test_the_estimators_warm_start_chains_its_fits(system):
    Xs, Y, *_ = system
    model = LowRankGLS(rank=2, l1=100.0, warm_start=True).fit(Xs, Y)
    first = model.result_
    model.set_params(l1=10.0).fit(Xs, Y)
    assert model.result_.fingerprint == gls.fit(Xs, Y, 2, l1=10.0, start=first).fingerprint
    cold = LowRankGLS(rank=2, l1=100.0).fit(Xs, Y)
    cold.set_params(l1=10.0).fit(Xs, Y)
    assert cold.result_.fingerprint == gls.fit(Xs, Y, 2, l1=10.0).fingerprint
    assert "warm_start=True" in repr(model) and model.get_params()["warm_start"] is True


def test_the_estimators_warm_start_on_another_system_says_so(system):
    """warm_start=True on data of another shape: the error names warm_start (the caller
    passed no start) and the way out, and a cold estimator fits the same data."""
    Xs, Y, *_ = system
    model = LowRankGLS(rank=2, warm_start=True).fit(Xs, Y)
    with pytest.raises(gls.StartMismatchError, match=r"warm_start=True starts from the "
                                                     r"previous fit.*warm_start=False"):
        model.fit(Xs[:-1], Y[:, :-1])
    model.set_params(warm_start=False).fit(Xs[:-1], Y[:, :-1])
    assert model.result_.fingerprint == gls.fit(Xs[:-1], Y[:, :-1], 2).fingerprint


@pytest.mark.gpu
@pytest.mark.parametrize("solver", ["gram", "cg"])
def test_a_warm_started_fit_has_the_cpu_fingerprint_on_the_gpu(system, solver):
    Xs, Y, *_ = system
    first = gls.fit(Xs, Y, rank=2, l1=30.0, beta_solver=solver, device="cpu")
    cpu = gls.fit(Xs, Y, rank=2, beta_solver=solver, device="cpu", start=first)
    gpu = gls.fit(Xs, Y, rank=2, beta_solver=solver, device="cuda", start=first)
    assert gpu.fingerprint == cpu.fingerprint
    import cupy  # a start whose arrays live on the GPU

    on_gpu = (cupy.asarray(first.params), cupy.asarray(first.F), cupy.asarray(first.d))
    assert gls.fit(Xs, Y, rank=2, beta_solver=solver, device="cuda",
                   start=on_gpu).fingerprint == cpu.fingerprint
