"""The Sigma-step's restarted block Krylov eigen-solver (``eigen.krylov_eigenpairs``) and
its compiled steps (``_subspace.extend_basis``, ``_subspace.rayleigh_extend``)."""

from __future__ import annotations

import numpy as np
import pytest

from reprogls.gls import _subspace, eigen, sigma
from reprogls.gls._dense import matmul
from reprogls.kernels import reference as ref
from tests.corpus import same_bits

MODES = ["compensated", "plain"]


def _extend_basis_reference(BT, n, Z, mode):
    """``extend_basis`` in NumPy with the reference CRO-1 dot and norm: the oracle."""
    BT = BT.copy()
    for c in range(Z.shape[1]):
        v = Z[:, c].copy()
        for _ in range(2):
            for j in range(n + c):
                v = v - ref.cro_dot(BT[j], v, mode) * BT[j]
        norm = ref.cro_nrm2(v, mode)
        BT[n + c] = v / norm if norm > 0.0 else v
    return BT


def _crowded(K, strong, edge, gap, seed):
    """A symmetric K x K matrix ``U diag(w) U^T`` with ``strong`` eigenvalues far above
    a bulk whose top values fall from ``edge`` by the ratio ``1 - gap`` each (the
    spectrum of the Sigma-step's ``M`` at a rank beyond the data's factors), and ``w``
    descending."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((K, K)))
    bulk = edge * (1.0 - gap) ** np.arange(K - len(strong))
    w = np.r_[strong, bulk]
    M = (U * w) @ U.T
    return np.ascontiguousarray((M + M.T) * 0.5), w


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("K,n,b", [(1, 0, 1), (9, 3, 2), (50, 12, 6), (300, 35, 7)])
def test_extend_basis_equals_the_reference(K, n, b, mode):
    """Twice-repeated modified Gram-Schmidt against the basis rows and the block's
    earlier columns, CRO-1 dots and norm: the reference's bits, and an orthonormal
    basis."""
    rng = np.random.default_rng(K + n)
    BT = np.zeros((n + b, K))
    if n:
        BT[:n] = np.linalg.qr(rng.standard_normal((K, n)))[0].T
    Z = rng.standard_normal((K, b))
    got = BT.copy()
    _subspace.extend_basis(got, n, Z, mode == "compensated")
    assert same_bits(got, _extend_basis_reference(BT, n, Z, mode))
    np.testing.assert_allclose(got @ got.T, np.eye(n + b), atol=1e-14)


@pytest.mark.parametrize("mode", MODES)
def test_the_threaded_steps_give_the_same_bits_on_one_thread_and_two(mode):
    """Large enough for the threads (``run_tasks`` past its serial cutoff): the first
    projections of ``extend_basis`` and the rows of ``rayleigh_extend`` shared among
    them give the reference's and the serial ``rayleigh_matrix``'s bits on one thread
    and on two."""
    import numba

    rng = np.random.default_rng(11)
    K, n, b = 1200, 60, 9
    BT = np.zeros((n + b, K))
    BT[:n] = np.linalg.qr(rng.standard_normal((K, n)))[0].T
    Z = rng.standard_normal((K, b))
    MBT = rng.standard_normal((n + b, K))
    expected = _extend_basis_reference(BT, n, Z, mode)
    compensated = mode == "compensated"
    before = numba.get_num_threads()
    try:
        for n_threads in (1, 2):
            numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
            got = BT.copy()
            _subspace.extend_basis(got, n, Z, compensated)
            assert same_bits(got, expected)
            G = np.full((n + b, n + b), np.nan)
            _subspace.rayleigh_extend(got, MBT, G, 0, n, compensated)
            T = _subspace.rayleigh_extend(got, MBT, G, n, n + b, compensated)
            assert same_bits(T, _subspace.rayleigh_matrix(got.T, MBT.T, compensated))
    finally:
        numba.set_num_threads(before)


def test_extend_basis_leaves_a_vector_in_the_span_as_it_is_left():
    """A new vector already in the span leaves a rounding residue, normalised; an exact
    zero stays zero (the norm 0 rule of ``orthonormalize``)."""
    BT = np.zeros((3, 4))
    BT[0, 0] = BT[1, 1] = 1.0
    Z = np.zeros((4, 1))
    _subspace.extend_basis(BT, 2, Z, True)
    assert same_bits(BT[2], np.zeros(4))


@pytest.mark.parametrize("mode", MODES)
def test_rayleigh_extend_reuses_the_known_dots_and_has_rayleigh_matrixs_bits(mode):
    rng = np.random.default_rng(5)
    K, n = 60, 12
    BT, MBT = rng.standard_normal((n, K)), rng.standard_normal((n, K))
    G = np.full((n, n), np.nan)
    first = _subspace.rayleigh_extend(BT, MBT, G, 0, 5, mode == "compensated")
    assert same_bits(first, _subspace.rayleigh_matrix(BT[:5].T, MBT[:5].T,
                                                      mode == "compensated"))
    grown = _subspace.rayleigh_extend(BT, MBT, G, 5, n, mode == "compensated")
    assert same_bits(grown, _subspace.rayleigh_matrix(BT.T, MBT.T, mode == "compensated"))


@pytest.mark.parametrize("mode", MODES)
def test_krylov_converges_on_a_crowded_edge_where_the_subspace_iteration_stalls(mode):
    """Three strong eigenvalues and a k-th at the edge of a bulk falling by 1.5% a value
    (``lambda_5 / lambda_4 = 0.985``): the subspace iteration stops at its cap
    unconverged, the block Krylov method converges, to within its noise floor of the
    eigenvalues, with far fewer products (measured: 128 vectors multiplied, values
    within 2.1 eps lambda_1 of the construction's; the subspace iteration uncapped
    stopped after 3216, 430 eps lambda_1 off)."""
    K, k = 300, 4
    M, w = _crowded(K, [90.0, 70.0, 50.0], 2.7, 0.015, seed=1)
    Q0 = np.random.default_rng(2).standard_normal((K, k))
    counts = {"vectors": 0}

    def product(Q):
        counts["vectors"] += Q.shape[1]
        return matmul(M, Q, mode)

    _, _, converged = eigen.top_eigenpairs(product, Q0, mode)
    assert not converged and counts["vectors"] == (eigen.EIGEN_MAX_ITER + 1) * k
    counts["vectors"] = 0
    lam, Q, converged = eigen.krylov_eigenpairs(product, Q0, mode)
    assert converged and counts["vectors"] < eigen.EIGEN_MAX_ITER * k / 3
    # values: within the stopping floor, 16 eps lambda_1 (absolute)
    np.testing.assert_allclose(lam, w[:k], rtol=0, atol=16 * 2.0 ** -52 * w[0])
    np.testing.assert_allclose(Q.T @ Q, np.eye(k), atol=1e-13)
    residual = np.linalg.norm(M @ Q - Q * lam, axis=0)
    assert residual.max() < 1e-5 * w[k - 1]


def test_krylov_gives_the_same_bits_from_the_matrix_and_the_operator_on_one_thread_and_two():
    import numba

    K, k = 120, 3
    M, _ = _crowded(K, [40.0, 30.0], 2.0, 0.02, seed=3)
    Q0 = np.random.default_rng(4).standard_normal((K, k))
    before = numba.get_num_threads()
    results = []
    try:
        for n_threads in (1, 2):
            numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
            results.append(eigen.krylov_eigenpairs(M, Q0, "compensated"))
            results.append(eigen.krylov_eigenpairs(
                lambda Q: matmul(M, Q, "compensated"), Q0, "compensated"))
    finally:
        numba.set_num_threads(before)
    lam, Q, converged = results[0]
    assert converged
    for other_lam, other_Q, other_converged in results[1:]:
        assert other_converged and same_bits(other_lam, lam) and same_bits(other_Q, Q)


def _counted_crowded_edge():
    """A 200 x 200 crowded edge (two strong values, the bulk falling 1% a value), a
    start of k = 3 vectors, and a product ``Q -> M Q`` that counts the vectors it
    multiplies in ``counts["vectors"]``."""
    M, w = _crowded(200, [60.0, 40.0], 2.5, 0.01, seed=6)
    Q0 = np.random.default_rng(7).standard_normal((200, 3))
    counts = {"vectors": 0}

    def product(Q):
        counts["vectors"] += Q.shape[1]
        return matmul(M, Q, "compensated")

    return M, w, Q0, counts, product


def test_krylov_restarts_and_reports_a_cap():
    """``depth`` 1 keeps two blocks before each restart, and a restart keeps k Ritz
    vectors (no room for more): one product to start, one a block and two restarts of
    ``[Y, V]``, then the result comes back unconverged; more restarts converge. The
    default depth converges within 16 eps lambda_1 of the values (measured 2.8 after 111
    vectors; the change per block understates the error where convergence per block is
    slow: depth 1 stopped 383 eps lambda_1 off after 2784 vectors, depth 6 21 off after
    159)."""
    M, w, Q0, counts, product = _counted_crowded_edge()
    k = Q0.shape[1]

    _, _, converged = eigen.krylov_eigenpairs(product, Q0, "compensated", depth=1,
                                              max_restarts=2)
    assert not converged and counts["vectors"] == (1 + 3 + 2) * k
    _, _, converged = eigen.krylov_eigenpairs(M, Q0, "compensated", depth=1,
                                              max_restarts=2000)
    assert converged
    lam, _, converged = eigen.krylov_eigenpairs(M, Q0, "compensated")
    assert converged
    np.testing.assert_allclose(lam, w[:k], rtol=0, atol=16 * 2.0 ** -52 * w[0])


def test_a_thick_restart_keeps_two_blocks_of_ritz_vectors_and_the_next_block(monkeypatch):
    """``depth`` 3 (a basis of 4 blocks): Q, then three blocks (4k vectors multiplied);
    the restart keeps 2k Ritz vectors beside the next block and multiplies those 3k
    anew, then grows the one block left (k): 8k, unconverged after the one restart.
    And keeping 2k is why it converges faster where the values crowd: at depth 6 on the
    crowded edge, 159 vectors multiplied against 273 with restarts that keep k, and
    the values 21 against 99 eps lambda_1 off."""
    _, w, Q0, counts, product = _counted_crowded_edge()
    k = Q0.shape[1]

    _, _, converged = eigen.krylov_eigenpairs(product, Q0, "compensated", depth=3,
                                              max_restarts=1)
    assert not converged and counts["vectors"] == 8 * k
    multiplied, error = {}, {}
    for keep_blocks in (2, 1):
        monkeypatch.setattr(eigen, "KRYLOV_KEEP_BLOCKS", keep_blocks)
        counts["vectors"] = 0
        lam, _, converged = eigen.krylov_eigenpairs(product, Q0, "compensated", depth=6,
                                                    max_restarts=2000)
        assert converged
        multiplied[keep_blocks] = counts["vectors"]
        error[keep_blocks] = np.abs(lam - w[:k]).max()
    assert multiplied[2] < multiplied[1] and error[2] < error[1]


def test_krylov_with_no_room_for_a_block_is_the_subspace_iteration():
    """``K < 2 k``: no Krylov block fits beside ``Q``; the subspace iteration's bits."""
    rng = np.random.default_rng(8)
    B = rng.standard_normal((5, 5))
    M = np.ascontiguousarray(B @ B.T)
    Q0 = rng.standard_normal((5, 3))
    for got, want in zip(eigen.krylov_eigenpairs(M, Q0, "compensated"),
                         eigen.top_eigenpairs(M, Q0, "compensated"), strict=True):
        assert same_bits(np.asarray(got), np.asarray(want))


def _factor_residuals(seed, N, K, factors):
    """Centred residuals with ``factors`` common factors and uniquenesses of 0.25-2.25."""
    rng = np.random.default_rng(seed)
    E = (rng.standard_normal((N, factors)) @ rng.standard_normal((factors, K))
         + rng.standard_normal((N, K)) * rng.uniform(0.5, 1.5, K))
    return np.ascontiguousarray(E - E.mean(axis=0))


def _record_evaluations(monkeypatch):
    """Record ``(by Krylov, converged)`` for every likelihood evaluation of the
    Sigma-step (``sigma.profile``) into the returned list."""
    calls = []
    real = sigma.profile

    def recorded(*a, **kw):
        got = real(*a, **kw)
        calls.append((bool(kw.get("krylov")), got.converged))
        return got

    monkeypatch.setattr(sigma, "profile", recorded)
    return calls


@pytest.mark.parametrize("mode", MODES)
def test_sigma_step_past_32_ranks_uses_krylov_and_reaches_the_whole_spaces_optimum(
        monkeypatch, mode):
    """K = 70 equations, one factor in the data, rank 2 (``K > 32 k``): every evaluation
    by the block Krylov method, each converged, the same optimum as the whole space's
    (and the residuals' ``S`` gives the moment matrix's path)."""
    K, N = 70, 3000
    E = _factor_residuals(11, N, K, 1)
    S = sigma.residual_moment(E, mode)
    assert eigen.eigensolver_for(K, 2) == "krylov"
    calls = _record_evaluations(monkeypatch)
    step = sigma.factor_analysis(S, N, 2, mode)
    assert step.eigensolver == "krylov"
    assert calls and all(c == (True, True) for c in calls)
    whole = sigma.factor_analysis(S, N, 2, mode, eigensolver="whole")
    np.testing.assert_allclose(step.loglik, whole.loglik, rtol=1e-10)
    np.testing.assert_allclose(step.d, whole.d, rtol=1e-5)
    from_residuals = sigma.factor_analysis(sigma.ResidualMoment(E, mode), N, 2, mode)
    assert from_residuals.eigensolver == "krylov"
    np.testing.assert_allclose(from_residuals.loglik, step.loglik, rtol=1e-12)


def test_the_basis_holds_a_quarter_of_k_or_half_below_twenty_ranks():
    """``krylov_depth``: at most 16 blocks, 256 vectors beside the first block, and a
    basis of K / 4 vectors, or K / 2 where K / 4 holds at most four blocks (K < 20 k);
    below one block, the subspace iteration."""
    assert eigen.krylov_depth(2000, 25) == 10 and eigen.krylov_depth(2000, 6) == 16
    assert eigen.krylov_depth(70, 2) == 7  # K / 4 (the golden gram-krylov)
    assert eigen.krylov_depth(240, 10) == 5 and eigen.krylov_depth(300, 10) == 6
    assert eigen.krylov_depth(199, 10) == 8  # 199 < 20 k: K / 2 = 99 vectors
    assert eigen.krylov_depth(300, 20) == 6 and eigen.krylov_depth(400, 25) == 7
    assert eigen.krylov_depth(5, 3) < 1 and eigen.krylov_depth(300, 16, depth=3) == 3
    for K in range(2, 400, 7):
        for k in range(1, K // 2 + 1, 3):
            depth = eigen.krylov_depth(K, k)
            assert depth < 1 or (depth + 2) * k <= K  # the basis and its next block fit


def test_from_250_equations_krylov_takes_over_the_whole_space_down_to_ten_ranks():
    """``uses_full_space``: ``16 k >= K``, except from K = 250 where ``K >= 10 k``."""
    assert eigen.eigensolver_for(249, 16) == "whole" == eigen.eigensolver_for(200, 20)
    assert eigen.eigensolver_for(250, 25) == "krylov" == eigen.eigensolver_for(256, 16)
    assert eigen.eigensolver_for(400, 25) == "krylov" == eigen.eigensolver_for(300, 30)
    assert eigen.eigensolver_for(300, 31) == "whole" == eigen.eigensolver_for(600, 80)
    assert not eigen.uses_full_space(400, 40) and eigen.uses_full_space(400, 41)


@pytest.mark.slow
def test_sigma_step_at_256_equations_and_16_ranks_uses_krylov_and_reaches_the_whole_spaces(
        monkeypatch):
    """K = 256, rank 16 (``16 k = K``: the whole space until the fifty-first session),
    three factors in the data: every evaluation by the block Krylov method, with a basis
    of up to K / 2 vectors, each converged, the whole space's optimum."""
    K, N = 256, 3000
    S = sigma.residual_moment(_factor_residuals(12, N, K, 3), "compensated")
    calls = _record_evaluations(monkeypatch)
    step = sigma.factor_analysis(S, N, 16, "compensated")
    assert step.eigensolver == "krylov" and eigen.krylov_depth(K, 16) == 7
    assert calls and all(c == (True, True) for c in calls)
    whole = sigma.factor_analysis(S, N, 16, "compensated", eigensolver="whole")
    np.testing.assert_allclose(step.loglik, whole.loglik, rtol=1e-12)
    np.testing.assert_allclose(step.d, whole.d, rtol=1e-5)
