"""The beta-step a fit keeps across its sweeps (``gls.beta_solver.BetaSolver``)."""

from __future__ import annotations

import numpy as np
import pytest

from reprogls.gls._dense import gram
from reprogls.gls.beta_solver import BetaSolver
from reprogls.gls.data import prepare
from reprogls.gls.ols import diagonal_blocks, factor_blocks
from reprogls.gls.precondition import design_coupling
from reprogls.gls.simulate import simulate_sur
from reprogls.kernels import woodbury_factor

MODES = ["compensated", "plain"]


def _system(mode, seed=5):
    """A SUR system (N = 300, K = 4, p = 3), its packed design, and a Sigma = F F^T +
    diag(d) as the Woodbury factor and as the dense K x K matrix."""
    Xs, Y, *_ = simulate_sur(300, 4, 3, 2, seed=seed)
    data = prepare(Xs, Y)
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((4, 2))
    d = rng.uniform(0.5, 1.5, 4)
    return data, woodbury_factor(F, d, mode), F @ F.T + np.diag(d)


def _solver(data, mode, solver, cg_max_iter=500):
    X, offsets = data.X, data.offsets
    XtX = gram(X, mode)
    grams = diagonal_blocks(XtX, offsets)
    block_factors = factor_blocks(grams, 0.0, data, mode)
    coupling = design_coupling(X, offsets, block_factors, mode) if solver == "cg" else 0.0
    return BetaSolver(solver, X, offsets, data.Y, XtX if solver == "gram" else None, grams,
                      block_factors, coupling, None, 0.0, mode, "cpu", 1e-12, cg_max_iter)


def _dense_gls(data, Sigma):
    """``A beta = b`` by LAPACK: ``A[j, l] = (Sigma^-1)_jl X_j^T X_l``, ``b_j = sum_l
    (Sigma^-1)_jl X_j^T y_l``."""
    Sinv = np.linalg.inv(Sigma)
    o, X, Y = data.offsets, data.X, data.Y
    K = len(o) - 1
    A = np.block([[Sinv[j, m] * X[:, o[j]:o[j + 1]].T @ X[:, o[m]:o[m + 1]]
                   for m in range(K)] for j in range(K)])
    b = np.concatenate([X[:, o[j]:o[j + 1]].T @ (Y @ Sinv[:, j]) for j in range(K)])
    return np.linalg.solve(A, b)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("solver", ["gram", "cg"])
def test_beta_solver_is_the_gls_solution(mode, solver):
    """Either solver gives the GLS coefficients of a dense LAPACK solve (to 1e-10
    relative), finished; the gram solver keeps the Cholesky factor of the Sigma it
    solved at (and no other), the CG none; a solve that reached ``cg_tol`` falls short
    of nothing."""
    data, factor, Sigma = _system(mode)
    solve = _solver(data, mode, solver)
    beta0 = np.zeros(data.X.shape[1])
    beta, b, finished = solve(factor, beta0)
    assert finished
    expected = _dense_gls(data, Sigma)
    np.testing.assert_allclose(beta, expected, rtol=0, atol=1e-10 * np.abs(expected).max())
    again, _, _ = solve(factor, beta0, b)  # the right-hand side given: the same bits
    assert (again.view(np.uint64) == beta.view(np.uint64)).all()
    other = woodbury_factor(np.ones((4, 1)), np.ones(4), mode)
    assert solve.cholesky_at(other) is None
    if solver == "gram":
        L = solve.cholesky_at(factor)
        assert L is not None and L.shape == (beta.size, beta.size)
    else:
        assert solve.cholesky_at(factor) is None
    assert solve.shortfalls(factor) == []


def test_a_capped_cg_reports_its_shortfall():
    """CG capped at one iteration: unfinished to ``cg_tol``, and the shortfall names the
    cap, the residual reached and the fixes."""
    data, factor, _ = _system("compensated")
    solve = _solver(data, "compensated", "cg", cg_max_iter=1)
    solve(factor, np.zeros(data.X.shape[1]))
    (note,) = solve.shortfalls(factor)
    assert "cg_max_iter=1 iterations at a residual" in note
    assert "raise cg_max_iter, or pass beta_solver='gram'" in note
