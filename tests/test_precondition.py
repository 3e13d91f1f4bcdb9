"""The CG's coupled preconditioner (:mod:`reprogls.gls.precondition`): bitwise against a
NumPy oracle written from its docstrings with the reference CRO-1 kernels, the algebra
against dense matrices, and its effect on the CG."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from reprogls import gls
from reprogls.gls import precondition
from reprogls.gls.simulate import simulate_sur
from reprogls.kernels import pack_sur, woodbury_factor
from reprogls.kernels.reference.cro import cro_dot
from reprogls.kernels.reference.linalg import cholesky

beta_step = sys.modules["reprogls.gls.beta"]
ols_module = sys.modules["reprogls.gls.ols"]
MODES = ["compensated", "plain"]


def bits(a) -> np.ndarray:
    return np.ascontiguousarray(np.atleast_1d(np.asarray(a, dtype=np.float64))).view(np.uint64)


def designs(widths, N=300, shared=True, seed=0):
    """Designs of the given widths; ``shared``: a common base plus noise (column ``c`` of
    every equation correlated), else independent."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((N, max(widths)))
    return [(base[:, :p] if shared else 0.0) + 0.5 * rng.standard_normal((N, p))
            for p in widths]


def block_factors(Xs, mode):
    return [cholesky(X.T @ X + 0.0, mode) if X.shape[1] else np.zeros((0, 0)) for X in Xs]


def forward(L, t, mode):
    z = np.empty(L.shape[0])
    for i in range(L.shape[0]):
        z[i] = (t[i] - cro_dot(L[i, :i], z[:i], mode)) / L[i, i]
    return z


def backward(L, z, mode):
    n = L.shape[0]
    u = np.empty(n)
    for i in range(n - 1, -1, -1):
        u[i] = (z[i] - cro_dot(np.ascontiguousarray(L[i + 1:, i]), u[i + 1:], mode)) / L[i, i]
    return u


def oracle_coupling_matrix(X, rows, offsets, factors, mode):
    """``(Z^T Z) * fl(N / n)`` with ``Z[s, c]`` = CRO-1 dot of the sampled row with
    ``WT[c]``, ``WT[c, o_j + t] = (L_j^-1)[c, t]`` (column t of ``L_j^-1`` by forward
    substitution of ``e_t``)."""
    K = offsets.shape[0] - 1
    p_max = int(np.diff(offsets).max())
    WT = np.zeros((p_max, offsets[-1]))
    for j in range(K):
        o0, o1 = offsets[j], offsets[j + 1]
        for t in range(o1 - o0):
            unit = np.zeros(o1 - o0)
            unit[t] = 1.0
            WT[: o1 - o0, o0 + t] = forward(factors[j], unit, mode)
    Z = np.array([[cro_dot(X[i], WT[c], mode) for c in range(p_max)] for i in rows])
    R = np.array([[cro_dot(Z[:, a].copy(), Z[:, b].copy(), mode) for b in range(p_max)]
                  for a in range(p_max)])
    return R * (X.shape[0] / len(rows))


def oracle_coupled_solve(factors, offsets, factor, sinv_diag, rho, r, mode):
    K, k = factor.G.shape
    p_max = int(np.diff(offsets).max())
    lam = (1.0 - rho) * sinv_diag + rho / factor.d
    H = factor.G / lam[:, None]
    Cc = np.zeros((k, k))
    for a in range(k):
        for q in range(a + 1):
            c = cro_dot(factor.F[:, a].copy(), factor.G[:, q].copy(), mode) + (a == q)
            Cc[a, q] = c / rho - cro_dot(factor.G[:, a].copy(), H[:, q].copy(), mode)
    Lc = cholesky(Cc, mode)
    Y = np.zeros((p_max, K))
    for j in range(K):
        o0, o1 = offsets[j], offsets[j + 1]
        if o1 > o0:
            Y[: o1 - o0, j] = forward(factors[j], r[o0:o1], mode)
    Z = np.empty_like(Y)
    for c in range(p_max):
        t = np.array([cro_dot(H[:, q].copy(), Y[c], mode) for q in range(k)])
        u = backward(Lc, forward(Lc, t, mode), mode)
        Z[c] = [Y[c, j] / lam[j] + cro_dot(H[j], u, mode) for j in range(K)]
    out = np.empty(offsets[-1])
    for j in range(K):
        o0, o1 = offsets[j], offsets[j + 1]
        if o1 > o0:
            out[o0:o1] = backward(factors[j], Z[: o1 - o0, j], mode)
    return out


WIDTHS = [[3, 1, 0, 2, 3], [4, 4, 4], [1, 5]]


def sigma_factor(K, k, mode, seed=1):
    rng = np.random.default_rng(seed)
    return woodbury_factor(rng.standard_normal((K, k)), 0.05 + 0.2 * rng.uniform(size=K),
                           mode)


def sigma_inverse(factor):
    return np.linalg.inv(factor.F @ factor.F.T + np.diag(factor.d))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("widths", WIDTHS)
def test_coupling_matrix_matches_the_oracle_bitwise(widths, mode, monkeypatch):
    """13 sampled rows of 97 (COUPLING_ROWS lowered), unequal widths with 0 and 1
    regressors; ``counts[c]`` = equations with more than ``c`` regressors."""
    monkeypatch.setattr(precondition, "COUPLING_ROWS", 13)
    Xs = designs(widths, N=97)
    X, offsets = pack_sur(Xs)
    factors = block_factors(Xs, mode)
    R, counts = precondition.coupling_matrix(X, offsets, factors, mode)
    rows = (np.arange(13, dtype=np.int64) * 97) // 13
    want = oracle_coupling_matrix(X, rows, offsets, factors, mode)
    assert (bits(R) == bits(want)).all()
    assert counts.tolist() == [sum(p > c for p in widths) for c in range(max(widths))]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("widths", WIDTHS)
@pytest.mark.parametrize("rho", [0.3, 0.8, 1.0])
def test_coupled_solve_matches_the_oracle_bitwise(widths, mode, rho):
    Xs = designs(widths)
    _, offsets = pack_sur(Xs)
    factors = block_factors(Xs, mode)
    K = len(widths)
    factor = sigma_factor(K, min(2, K - 1), mode)
    sinv_diag = np.diag(beta_step.sigma_inverse(factor)).copy()
    r = np.random.default_rng(3).standard_normal(offsets[-1])
    packed, ptr = precondition.pack_block_factors(factors)
    M = precondition.CoupledPreconditioner(packed, ptr, offsets, factor, sinv_diag, rho)
    assert M.ok
    r_before = r.copy()
    got = M(r)
    assert (bits(r) == bits(r_before)).all()
    want = oracle_coupled_solve(factors, offsets, factor, sinv_diag, rho, r, mode)
    assert (bits(got) == bits(want)).all()


@pytest.mark.parametrize("widths", WIDTHS)
@pytest.mark.parametrize("rho", [0.3, 1.0])
def test_coupled_solve_applies_its_dense_operator(widths, rho):
    """``M^-1 = L^-T E^T (T^-1 (x) I) E L^-1`` with ``E`` the embedding of the real columns
    into the zero-padded ``K x p_max`` layout and ``T = (1 - rho) diag(Sigma^-1) +
    rho Sigma^-1``; with equal widths it is the inverse of ``L (T (x) I) L^T``."""
    Xs = designs(widths)
    _, offsets = pack_sur(Xs)
    factors = block_factors(Xs, "compensated")
    K, P, p_max = len(widths), offsets[-1], max(widths)
    factor = sigma_factor(K, min(2, K - 1), "compensated")
    Sinv = sigma_inverse(factor)
    T = (1 - rho) * np.diag(np.diag(Sinv)) + rho * Sinv
    E = np.zeros((K * p_max, P))  # padded index (j, c) -> j * p_max + c
    Linv = np.zeros((P, P))
    for j in range(K):
        for c in range(widths[j]):
            E[j * p_max + c, offsets[j] + c] = 1.0
        if widths[j]:
            sl = slice(offsets[j], offsets[j + 1])
            Linv[sl, sl] = np.linalg.inv(factors[j])
    Minv = Linv.T @ E.T @ np.kron(np.linalg.inv(T), np.eye(p_max)) @ E @ Linv
    packed, ptr = precondition.pack_block_factors(factors)
    apply = precondition.CoupledPreconditioner(packed, ptr, offsets, factor,
                                               np.diag(Sinv).copy(), rho)
    r = np.random.default_rng(4).standard_normal(P)
    np.testing.assert_allclose(apply(r), Minv @ r, rtol=1e-9, atol=1e-12)
    if len(set(widths)) == 1:
        M = np.linalg.inv(Linv) @ np.kron(T, np.eye(p_max)) @ np.linalg.inv(Linv).T
        np.testing.assert_allclose(apply(r), np.linalg.solve(M, r), rtol=1e-9, atol=1e-12)


def test_identical_designs_make_the_coupled_preconditioner_exact():
    """Zellner's case: every design the same, so ``rho = 1`` and ``M = A``: one CG step."""
    X = designs([3], N=200)[0]
    Xs = [X] * 4
    Xp, offsets = pack_sur(Xs)
    factors = block_factors(Xs, "compensated")
    rho = precondition.design_coupling(Xp, offsets, factors, "compensated")
    assert 0.999 <= rho <= 1.0
    factor = sigma_factor(4, 2, "compensated")
    Sinv = sigma_inverse(factor)
    b = np.random.default_rng(5).standard_normal(12)
    beta, iters, finished, _, _ = beta_step.solve_cg(
        Xp, offsets, factor, b, np.zeros(12), factors, np.diag(Sinv).copy(), 0.0, 1e-12,
        50, "cpu", coupling=rho)
    A = np.kron(Sinv, X.T @ X)
    np.testing.assert_allclose(beta, np.linalg.solve(A, b), rtol=1e-10)
    assert finished and iters <= 2


def test_design_coupling_estimates_the_shared_correlation():
    """alsgls's simulated designs: base + 0.5 N(0, 1) noise, so the designs of two
    equations correlate by 1 / 1.25 = 0.8; independent designs: below COUPLING_MIN."""
    for shared, lo, hi in [(True, 0.75, 0.85), (False, 0.0, 0.0)]:
        Xs = simulate_sur(3000, 30, 4, 2, 0, shared)[0]
        X, offsets = pack_sur(Xs)
        factors = block_factors(Xs, "compensated")
        rho = precondition.design_coupling(X, offsets, factors, "compensated")
        assert lo <= rho <= hi, (shared, rho)


def guarded_designs(kind, N=3000, K=30, p=4, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((N, p))
    if kind == "intercept":  # the intercept couples by 1, the rest by 0: spread 1
        return [np.column_stack([np.ones(N), rng.standard_normal((N, p - 1))])
                for _ in range(K)]
    # shared columns in another order per equation: coupling off the diagonal
    return [(base + 0.5 * rng.standard_normal((N, p)))[:, rng.permutation(p)]
            for _ in range(K)]


@pytest.mark.parametrize("kind", ["intercept", "permuted"])
def test_the_scalar_model_is_not_used_where_it_does_not_fit(kind):
    """Both designs have a mean coupling of 0.2-0.25, above COUPLING_MIN, but not of the
    form rho I: the guards keep block-Jacobi, which needs fewer CG steps there than the
    scalar model."""
    Xs = guarded_designs(kind)
    X, offsets = pack_sur(Xs)
    factors = block_factors(Xs, "compensated")
    R, counts = precondition.coupling_matrix(X, offsets, factors, "compensated")
    pairs = counts * (counts - 1)
    assert (np.trace(R) - counts.sum()) / pairs.sum() > precondition.COUPLING_MIN
    assert precondition.design_coupling(X, offsets, factors, "compensated") == 0.0
    factor = sigma_factor(30, 3, "compensated")
    Sinv_diag = np.diag(beta_step.sigma_inverse(factor)).copy()
    b = np.random.default_rng(2).standard_normal(X.shape[1])
    steps = [beta_step.solve_cg(X, offsets, factor, b, np.zeros(X.shape[1]), factors,
                                Sinv_diag, 0.0, 1e-10, 500, "cpu", coupling=c)[1]
             for c in (0.0, 0.25)]
    assert steps[0] < steps[1]


def test_coupled_cg_needs_fewer_steps_on_related_designs():
    """Same solution as block-Jacobi (to the CG tolerance), in fewer steps."""
    Xs, Y, _, F, d = simulate_sur(3000, 30, 4, 2, 0, True)
    X, offsets = pack_sur(Xs)
    factors = block_factors(Xs, "compensated")
    factor = woodbury_factor(F, d)
    Sinv_diag = np.diag(beta_step.sigma_inverse(factor)).copy()
    b = beta_step.rhs(X, offsets, np.ascontiguousarray(Y), factor, "cpu")
    rho = precondition.design_coupling(X, offsets, factors, "compensated")
    runs = {name: beta_step.solve_cg(X, offsets, factor, b, np.zeros(X.shape[1]), factors,
                                     Sinv_diag, 0.0, 1e-10, 200, "cpu", coupling=c)
            for name, c in [("block", 0.0), ("coupled", rho)]}
    A = np.zeros((X.shape[1], X.shape[1]))
    Sinv = sigma_inverse(factor)
    for j in range(30):
        for m in range(30):
            A[4 * j:4 * j + 4, 4 * m:4 * m + 4] = Sinv[j, m] * (Xs[j].T @ Xs[m])
    exact = np.linalg.solve(A, b)
    for run in runs.values():
        assert run.finished and run.reached_tol
        assert np.linalg.norm(run.beta - exact) <= 1e-8 * np.linalg.norm(exact)
    assert runs["coupled"][1] < runs["block"][1]


def test_design_coupling_without_coupling_to_estimate():
    X, offsets = pack_sur(designs([3]))
    assert precondition.design_coupling(X, offsets, block_factors(designs([3]), "plain"),
                                        "plain") == 0.0


def test_rho_outside_its_range_is_refused():
    Xs = designs([2, 2])
    _, offsets = pack_sur(Xs)
    packed, ptr = precondition.pack_block_factors(block_factors(Xs, "compensated"))
    factor = sigma_factor(2, 1, "compensated")
    with pytest.raises(ValueError, match="rho"):
        precondition.CoupledPreconditioner(packed, ptr, offsets, factor, np.ones(2), 0.0)


def test_cg_fit_on_related_designs_matches_the_gram_fit():
    """The whole alternating fit with the coupled CG reaches the direct solver's optimum."""
    Xs, Y, *_ = simulate_sur(1500, 12, 3, 2, 7, True)
    a = gls.fit(Xs, Y, rank=2, beta_solver="cg", cg_tol=1e-13, tol=1e-12, cov_type="none")
    b = gls.fit(Xs, Y, rank=2, beta_solver="gram", tol=1e-12, cov_type="none")
    np.testing.assert_allclose(a.params, b.params, rtol=1e-7, atol=1e-9)
    assert abs(a.llf - b.llf) <= 1e-10 * abs(b.llf)
