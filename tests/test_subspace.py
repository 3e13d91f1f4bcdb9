"""The compiled steps of the Sigma-step's subspace iteration (reprogls/gls/_subspace.py)
give the bits of their plain-Python/public-kernel references."""

from __future__ import annotations

import numpy as np
import pytest

from reprogls import kernels
from reprogls.gls import _subspace
from reprogls.gls.eigen import orthonormalize_reference, top_eigenpairs
from reprogls.kernels import reference as ref
from reprogls.kernels.cpu._cro import nrm2_segment
from tests.corpus import cases, same_bits

MODES = ("compensated", "plain")


@pytest.mark.parametrize("mode", MODES)
def test_nrm2_equals_reference_on_the_corpus(mode):
    for label, x, _ in cases():
        if x.shape[0] > 20_000:
            continue
        got = nrm2_segment(np.ascontiguousarray(x), mode == "compensated")
        assert same_bits(got, ref.cro_nrm2(x, mode)), label


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("K,k", [(1, 1), (5, 3), (50, 3), (64, 4), (9000, 2)])
def test_orthonormalize_equals_reference(K, k, mode):
    rng = np.random.default_rng([K, k])
    Z = rng.standard_normal((K, k)) * 10.0 ** rng.uniform(-3, 3, k)
    if k > 2:
        Z[:, 2] = Z[:, 0] * 3.0  # dependent column: its remainder is rounding noise
    got = _subspace.orthonormalize(Z.copy(), mode == "compensated")
    assert same_bits(got, orthonormalize_reference(Z, mode))


def test_orthonormalize_leaves_a_zero_column():
    Z = np.zeros((7, 2))
    Z[:, 0] = np.arange(7.0)
    got = _subspace.orthonormalize(Z, True)
    assert same_bits(got, orthonormalize_reference(Z, "compensated"))
    assert same_bits(got[:, 1], np.zeros(7))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("K", "k"), [(40, 4), (40, 5), (8192 + 3, 3)])
def test_rayleigh_matrix_is_symmetrised_cro1_dots(mode, K, k):
    """Each ``G[a, b]`` the dot kernel's bits: vectors of one chunk (two dots per pass,
    an odd count leaving one) and of two chunks (one at a time)."""
    rng = np.random.default_rng(3)
    Q, MQ = rng.standard_normal((K, k)), rng.standard_normal((K, k))
    G = np.array([[kernels.dot(np.ascontiguousarray(Q[:, a]), np.ascontiguousarray(MQ[:, b]),
                               mode, "cpu") for b in range(k)] for a in range(k)])
    got = _subspace.rayleigh_matrix(Q, MQ, mode == "compensated")
    assert same_bits(got, (G + G.T) * 0.5)


def test_top_eigenpairs_match_numpy():
    rng = np.random.default_rng(0)
    B = rng.standard_normal((30, 30))
    M = B @ B.T
    lam, Q, _ = top_eigenpairs(M, rng.standard_normal((30, 3)), "compensated")
    expected = np.linalg.eigvalsh(M)[::-1][:3]
    np.testing.assert_allclose(lam, expected, rtol=1e-10)
    np.testing.assert_allclose(np.abs(Q.T @ Q), np.eye(3), atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_top_eigenpairs_of_an_operator_carry_the_product(mode, monkeypatch):
    """With ``M`` given as a function (the residuals' ``S``), each iteration takes one
    product (``(M Q) V`` is carried, not recomputed): the same eigenpairs as with the
    matrix, in one product per iteration (one Jacobi solve each) plus one to start."""
    from reprogls.gls import eigen
    from reprogls.gls._dense import matmul

    rng = np.random.default_rng(4)
    B = rng.standard_normal((40, 40))
    M = (B * np.r_[np.full(3, 4.0), np.ones(37)]) @ B.T
    counts = {"products": 0, "iterations": 0}

    def product(Q):
        counts["products"] += 1
        return matmul(M, Q, mode)

    def counted_jacobi(T):
        counts["iterations"] += 1
        return jacobi(T)

    jacobi = eigen.jacobi_eigh
    monkeypatch.setattr(eigen, "jacobi_eigh", counted_jacobi)
    Q0 = rng.standard_normal((40, 3))
    lam, Q, _ = top_eigenpairs(product, Q0, mode)
    assert counts["iterations"] >= 2
    assert counts["products"] == counts["iterations"] + 1
    lam_matrix, Q_matrix, _ = top_eigenpairs(M, Q0, mode)
    np.testing.assert_allclose(lam, np.linalg.eigvalsh(M)[::-1][:3], rtol=1e-10)
    np.testing.assert_allclose(lam, lam_matrix, rtol=1e-12)
    np.testing.assert_allclose(np.abs(Q.T @ Q_matrix), np.eye(3), atol=1e-8)


@pytest.mark.parametrize("negligible", [0.0, 2.0 ** -53, 1e-3])
@pytest.mark.parametrize("n", [1, 2, 3, 5, 10, 33])
def test_compiled_jacobi_equals_the_python_loop(n, negligible):
    """``jacobi_eigh`` (compiled rotations) has the bits of ``jacobi_eigh_reference``
    (the Python loop) on random symmetric matrices of wide magnitudes, on ones with
    repeated eigenvalues and exact zeros off the diagonal, and when the sweep cap
    stops it; rotating to exact zeros or skipping the negligible entries. (The tiled
    sweeps of large matrices are checked against this loop below.)"""
    from reprogls.gls.eigen import jacobi_eigh, jacobi_eigh_reference

    rng = np.random.default_rng(n)
    cases = []
    for scale in (1e-150, 1.0, 1e150):
        B = rng.standard_normal((n, n)) * scale
        cases.append((B + B.T, 30))
    cases.append((np.eye(n) * 2.0, 30))
    D = np.diag(np.arange(n, dtype=float))
    D[0, n - 1] = D[n - 1, 0] = 0.5 if n > 1 else 0.0
    cases.append((D, 30))
    B = rng.standard_normal((n, n))
    cases.append((B + B.T, 1))  # stopped by the cap
    for T, sweeps in cases:
        before = T.copy()
        got_values, got_vectors = jacobi_eigh(T, sweeps, negligible)
        ref_values, ref_vectors = jacobi_eigh_reference(T, sweeps, negligible)
        assert (got_values.view(np.uint64) == ref_values.view(np.uint64)).all()
        assert (got_vectors.view(np.uint64) == ref_vectors.view(np.uint64)).all()
        assert (T.view(np.uint64) == before.view(np.uint64)).all()  # input unchanged


def _symmetric_cases(n: int, seed: int) -> list[np.ndarray]:
    """Dense, nearly diagonal and sparse symmetric matrices of order n."""
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((n, n))
    dense = B + B.T
    near = np.diag(np.arange(1.0, n + 1.0)) + 1e-6 * dense
    sparse = np.where(rng.random((n, n)) < 0.1, B, 0.0)
    return [dense, near, sparse + sparse.T]


@pytest.mark.parametrize("negligible", [0.0, 2.0 ** -53, 1e-3])
def test_tiled_jacobi_changes_no_bit(negligible):
    """``_subspace.tiled_rotations`` (sweeps of ``jacobi_sweep``: the copies into the
    columns deferred and tiled), serial and pipelined (the eigenvectors rotated on a
    pool thread, a sweep behind), has the bits of ``jacobi_rotations`` -- A and V -- at
    orders around the 8 x 8 tiles (below one tile, whole tiles, partial last tiles),
    for dense, nearly diagonal and sparse matrices, to the stopping rule and stopped by
    the sweep cap. (``jacobi_rotations`` is the Python loop's bits,
    :func:`test_compiled_jacobi_equals_the_python_loop`.)"""
    from reprogls.gls._subspace import jacobi_rotations, tiled_rotations

    for n in (1, 2, 7, 8, 9, 15, 16, 17, 23, 24, 31, 40, 64, 65, 100, 131):
        for T in _symmetric_cases(n, 1000 + n):
            for sweeps in (1, 2, 30):
                A0, V0 = T.copy(), np.eye(n)
                jacobi_rotations(A0, V0, sweeps, negligible)
                for pipelined in (False, True):
                    A, V = T.copy(), np.eye(n)
                    tiled_rotations(A, V, sweeps, negligible, pipelined)
                    assert (A.view(np.uint64) == A0.view(np.uint64)).all(), (n, sweeps)
                    assert (V.view(np.uint64) == V0.view(np.uint64)).all(), (n, sweeps)


def test_large_jacobi_is_the_same_on_one_thread_and_two():
    """``eigen.jacobi_eigh`` from ``LARGE_JACOBI_MIN`` on (tiled; pipelined when two
    threads are there): the same bits on one thread and on two, and those of the
    column-by-column rotations."""
    import numba

    from reprogls.gls import eigen
    from reprogls.gls._subspace import jacobi_rotations

    T = _symmetric_cases(eigen.LARGE_JACOBI_MIN + 9, 7)[0]
    before = numba.get_num_threads()
    results = []
    try:
        for n_threads in (1, 2):
            numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
            results.append(eigen.jacobi_eigh(T, 30, eigen.NEGLIGIBLE))
    finally:
        numba.set_num_threads(before)
    (w1, v1), (w2, v2) = results
    assert (w1.view(np.uint64) == w2.view(np.uint64)).all()
    assert (v1.view(np.uint64) == v2.view(np.uint64)).all()
    A, VT = T.copy(), np.eye(T.shape[0])
    jacobi_rotations(A, VT, 30, eigen.NEGLIGIBLE)
    order = sorted(range(len(A)), key=lambda i: (-A[i, i], i))  # jacobi_eigh's order
    assert (w1.view(np.uint64) == np.diag(A)[order].view(np.uint64)).all()
    assert (v1.view(np.uint64) == np.ascontiguousarray(VT[order].T).view(np.uint64)).all()


def test_jacobi_refuses_a_matrix_that_is_not_symmetric_bit_for_bit():
    """The compiled rotations update rows and copy them into the columns, which is the
    reference's arithmetic only for an exactly symmetric ``T``."""
    from reprogls.gls.eigen import jacobi_eigh

    T = np.array([[2.0, 1.0], [np.nextafter(1.0, 2.0), 3.0]])
    with pytest.raises(ValueError, match="transpose bit for bit"):
        jacobi_eigh(T)
    with pytest.raises(ValueError, match="transpose bit for bit"):
        jacobi_eigh(np.ones((2, 3)))


def test_descending_order_is_pythons_sorted_by_negated_value_then_index():
    rng = np.random.default_rng(11)
    cases = [np.array([]), np.array([1.0]), np.array([0.0, -0.0, 0.0]),
             np.array([2.0, 2.0, 3.0, -1.0, 2.0]), np.array([-np.inf, 1.0, np.inf, 1.0])]
    cases += [rng.integers(-3, 4, n).astype(float) for n in (2, 5, 9, 17)]
    cases += [rng.standard_normal(n) for n in (3, 8)]
    for values in cases:
        expected = sorted(range(values.shape[0]), key=lambda i: (-values[i], i))
        assert list(_subspace.descending_order(values)) == expected, values


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("K,k,spectrum", [(1, 1, "random"), (6, 1, "random"),
                                          (50, 3, "random"), (50, 3, "repeated"),
                                          (80, 5, "wide"), (40, 4, "slow")])
def test_compiled_subspace_iteration_equals_the_python_loop(monkeypatch, K, k, spectrum,
                                                           mode):
    """``top_eigenpairs`` of a small matrix (one compiled call) has the bits of the loop
    of kernel calls it replaced (forced by ``COMPILED_MAX_WORK = 0``): random, repeated
    and widely spread spectra, and a slowly converging one stopped by ``max_iter``."""
    from reprogls.gls import eigen

    rng = np.random.default_rng([K, k])
    B = rng.standard_normal((K, K))
    if spectrum == "repeated":
        U = np.linalg.qr(B)[0]
        M = (U * np.r_[np.full(4, 5.0), np.ones(K - 4)]) @ U.T
    elif spectrum == "wide":
        M = (B * 10.0 ** rng.uniform(-4, 4, K)) @ B.T
    elif spectrum == "slow":
        U = np.linalg.qr(B)[0]
        M = (U * (1.0 - np.arange(K) * 1e-3)) @ U.T
    else:
        M = B @ B.T
    Q0 = rng.standard_normal((K, k))
    max_iter = 7 if spectrum == "slow" else 200
    got = top_eigenpairs(M, Q0, mode, max_iter=max_iter)
    monkeypatch.setattr(eigen, "COMPILED_MAX_WORK", 0)
    expected = top_eigenpairs(M, Q0, mode, max_iter=max_iter)
    for a, b in zip(got, expected, strict=True):
        assert same_bits(a, b)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("K,k,weak", [(6, 1, False), (50, 3, False), (40, 4, True)])
def test_compiled_profile_equals_the_python_steps(monkeypatch, K, k, weak, mode):
    """``profile`` of a moment matrix (one compiled call) has the bits of the steps it
    replaced (forced by ``COMPILED_MAX_WORK = 0``), also when some of the top eigenvalues
    of ``D^-1/2 S D^-1/2`` are below 1 (no loading; left out of the log-determinant)."""
    from reprogls.gls import eigen, sigma

    rng = np.random.default_rng([K, k, weak])
    F = rng.standard_normal((K, k)) * (np.r_[3.0, np.full(k - 1, 1e-3)] if weak else 1.0)
    d = 0.05 + 0.2 * rng.uniform(size=K)
    E = rng.standard_normal((4 * K, k)) @ F.T + rng.standard_normal((4 * K, K)) * np.sqrt(d)
    S = sigma.MomentMatrix(sigma.residual_moment(E, mode), mode)
    Q0 = np.linalg.qr(rng.standard_normal((K, k)))[0]
    d_at = np.diag(S.S) * 1.5 if weak else d * rng.uniform(0.5, 2.0, K)
    got = sigma.profile(S, 4 * K, mode, d_at, Q0)
    monkeypatch.setattr(eigen, "COMPILED_MAX_WORK", 0)
    expected = sigma.profile(S, 4 * K, mode, d_at, Q0)
    top = np.linalg.eigvalsh(S.S / np.sqrt(np.outer(d_at, d_at)))[::-1][:k]
    assert (top < 1).any() == weak and (top > 1).any()
    for name in ("F", "Q", "ll", "grad", "update"):
        assert same_bits(np.asarray(getattr(got, name)), np.asarray(getattr(expected, name))), name


def _spd_with_spectrum(K, values, seed):
    U = np.linalg.qr(np.random.default_rng(seed).standard_normal((K, K)))[0]
    return (U * values) @ U.T


def test_negligible_rule_keeps_the_eigenvalues():
    """Skipping rotations below ``2^-53 sqrt|a_pp a_qq|`` leaves the eigenvalues within a
    few ulps of the rotations to exact zeros (and of LAPACK's)."""
    from reprogls.gls.eigen import NEGLIGIBLE, jacobi_eigh

    for seed in range(3):
        M = _spd_with_spectrum(30, np.linspace(1.0, 3.0, 30), seed)
        M = (M + M.T) * 0.5
        exact, _ = jacobi_eigh(M, 30, 0.0)
        thresholded, _ = jacobi_eigh(M, 30, NEGLIGIBLE)
        np.testing.assert_allclose(thresholded, exact, rtol=1e-14)
        np.testing.assert_allclose(thresholded, np.linalg.eigvalsh(M)[::-1], rtol=1e-13)


@pytest.mark.parametrize("K", [1, 2, 7, 40])
def test_full_space_eigenpairs_compiled_equals_the_steps_and_numpy(K):
    """The whole-space eigen-solve compiled into the profile has the bits of its steps
    from Python (``jacobi_eigh`` of ``(M + M^T) / 2``), also for an ``M`` that is
    symmetric only to an ulp (the scaled moment matrix is); eigenvalues as NumPy's to
    1e-12, eigenvectors orthonormal and NumPy's up to sign."""
    from reprogls.gls import eigen

    values = np.r_[np.linspace(9.0, 2.0, min(K, 5)), np.linspace(1.5, 0.5, max(K - 5, 0))]
    M = _spd_with_spectrum(K, values, K)
    M[0, -1] = np.nextafter(M[0, -1], np.inf)  # symmetric to an ulp
    before = M.copy()
    got = _subspace.full_space_eigenpairs(M, eigen.JACOBI_SWEEPS, eigen.NEGLIGIBLE)
    expected = eigen.full_space_eigenpairs(M)
    for a, b in zip(got, expected, strict=True):
        assert same_bits(a, b)
    assert same_bits(M, before)
    lam, Q = got
    np.testing.assert_allclose(lam, np.sort(values)[::-1], rtol=1e-12)
    np.testing.assert_allclose(Q.T @ Q, np.eye(K), atol=1e-13)
    np.testing.assert_allclose(np.abs(Q.T @ np.linalg.eigh(M)[1][:, ::-1]), np.eye(K),
                               atol=1e-8)


def test_full_space_eigenvalues_keep_their_relative_accuracy_beside_a_huge_one():
    """A scaled matrix ``D^-1/2 S D^-1/2`` with a tiny ``d_j`` (a Heywood case) has one
    eigenvalue ~1e8 beside ones ~1: Jacobi on it finds the small ones to ~1e-14
    relative (against the eigenvalues of the same matrix in extended precision);
    products with a rotated basis would carry errors of ``eps lambda_max`` ~ 1e-8."""
    mpmath = pytest.importorskip("mpmath")
    from reprogls.gls import eigen

    rng = np.random.default_rng(1)
    K = 8
    C = np.linalg.qr(rng.standard_normal((K, K)))[0]
    S = (C * np.linspace(3.0, 0.4, K)) @ C.T
    d = np.diag(S).copy()
    d[2] *= 1e-8
    sqrt_d = np.sqrt(d)
    M = (S / sqrt_d[:, None]) / sqrt_d[None, :]
    lam, _ = eigen.full_space_eigenpairs(M)
    mpmath.mp.dps = 50
    exact = sorted((float(v) for v in mpmath.eigsy(mpmath.matrix(((M + M.T) * 0.5)
                                                                 .tolist()))[0]),
                   reverse=True)
    assert lam[0] > 1e7 and lam[-1] < 1.0
    np.testing.assert_allclose(lam, exact, rtol=1e-13)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("K,k", [(6, 2), (20, 10), (30, 29)])
def test_full_space_profile_compiled_equals_the_steps(monkeypatch, K, k, mode):
    """``profile`` of the whole eigenproblem (``Q=None``, top ``k`` of it) in one
    compiled call has the bits of its steps from Python, with the column-by-column
    rotations and with the tiled ones (``LARGE_JACOBI_MIN``), and reaches the subspace
    iteration's profile to rounding where that converges."""
    from reprogls.gls import eigen, sigma

    rng = np.random.default_rng([K, k])
    F = rng.standard_normal((K, 2))
    d = 0.05 + 0.2 * rng.uniform(size=K)
    E = rng.standard_normal((8 * K, 2)) @ F.T + rng.standard_normal((8 * K, K)) * np.sqrt(d)
    S = sigma.MomentMatrix(sigma.residual_moment(E, mode), mode)
    d_at = d * rng.uniform(0.5, 2.0, K)
    got = sigma.profile(S, 8 * K, mode, d_at, None, k)
    assert got.Q.shape == (K, k) and got.F.shape == (K, k)
    monkeypatch.setattr(eigen, "COMPILED_MAX_WORK", 0)
    expected = sigma.profile(S, 8 * K, mode, d_at, None, k)
    monkeypatch.setattr(eigen, "LARGE_JACOBI_MIN", 1)  # the tiled, pipelined sweeps
    tiled = sigma.profile(S, 8 * K, mode, d_at, None, k)
    for name in ("F", "Q", "ll", "grad", "update"):
        assert same_bits(np.asarray(getattr(got, name)), np.asarray(getattr(expected, name))), name
        assert same_bits(np.asarray(getattr(got, name)), np.asarray(getattr(tiled, name))), name
    if k == 2:  # two clear factors: the subspace iteration converges
        sub = sigma.profile(S, 8 * K, mode, d_at, np.eye(K, k))
        np.testing.assert_allclose(got.ll, sub.ll, rtol=1e-13)
        # the subspace iteration stops when the eigenvalues change by 1e-13 relative:
        # its eigenvectors (errors ~ the square root of the eigenvalues') agree to ~1e-8
        np.testing.assert_allclose(np.abs(got.F.T @ sub.F), np.abs(got.F.T @ got.F),
                                   rtol=1e-6)


def test_the_whole_eigenproblem_needs_a_moment_matrix_and_the_rank():
    from reprogls.gls import sigma

    S = sigma.MomentMatrix(np.eye(5) * 2.0, "compensated")
    with pytest.raises(ValueError, match="needs a MomentMatrix S and the rank"):
        sigma.profile(S, 10, "compensated", np.ones(5), None)
    residuals = sigma.ResidualMoment(np.ones((10, 5)), "compensated")
    with pytest.raises(ValueError, match="needs a MomentMatrix S and the rank"):
        sigma.profile(residuals, 10, "compensated", np.ones(5), None, 2)


@pytest.mark.parametrize("mode", MODES)
def test_the_whole_eigenproblem_from_the_residuals_is_the_moment_matrixs(mode):
    """Given the residuals at ``16 k >= K``, the factor analysis forms ``S`` once, as
    ``residual_moment`` does, and so has the bits of the moment matrix's; below that
    rule the two differ (the residuals' subspace iteration never forms ``S``)."""
    from reprogls.gls import sigma

    rng = np.random.default_rng(9)
    K, N = 12, 600
    F = rng.standard_normal((K, 2))
    E = rng.standard_normal((N, 2)) @ F.T + rng.standard_normal((N, K)) * 0.5
    E = np.ascontiguousarray(E - E.mean(axis=0))
    moment = sigma.factor_analysis(sigma.residual_moment(E, mode), N, 6, mode)
    residuals = sigma.factor_analysis(sigma.ResidualMoment(E, mode), N, 6, mode)
    assert moment.eigensolver == residuals.eigensolver == "whole"
    for a, b in zip(moment[:-1], residuals[:-1], strict=True):
        assert same_bits(np.asarray(a), np.asarray(b))


def test_sigma_step_at_a_rank_beyond_the_factors_uses_the_whole_space(monkeypatch):
    """At k = 10 of K = 20 (two factors in the data) the Sigma-step solves the whole
    eigenproblem (``16 k >= K``) in every evaluation and reaches the likelihood of the
    subspace iteration (which took 0.59 s there against 0.064 s); the alsgls sizes S and
    M keep the subspace iteration."""
    from reprogls.gls import eigen, sigma

    assert eigen.uses_full_space(20, 10) and eigen.uses_full_space(32, 2)
    assert not eigen.uses_full_space(50, 3) and not eigen.uses_full_space(200, 5)
    rng = np.random.default_rng(4)
    K, N = 20, 2000
    F = rng.standard_normal((K, 2))
    E = rng.standard_normal((N, 2)) @ F.T + rng.standard_normal((N, K)) * 0.4
    S = sigma.residual_moment(np.ascontiguousarray(E - E.mean(axis=0)), "compensated")
    calls = []
    real = sigma.profile
    monkeypatch.setattr(sigma, "profile", lambda *a, **kw: calls.append(
        None if a[4] is None else a[4].shape) or real(*a, **kw))
    _, _, ll_full, _, _ = sigma.factor_analysis(S, N, 10, "compensated")
    assert calls and all(shape is None for shape in calls)
    calls.clear()
    _, _, ll_sub, _, solver = sigma.factor_analysis(S, N, 10, "compensated",
                                                     eigensolver="subspace")
    assert calls and all(shape == (K, 10) for shape in calls) and solver == "subspace"
    # the likelihood is flat at this rank and both stop on a change of 1e-10 relative per
    # step (~190 evaluations each): they agree to a few 1e-9 (measured 3.5e-9)
    np.testing.assert_allclose(ll_full, ll_sub, rtol=1e-8)


def test_sigma_step_turns_to_the_whole_space_when_the_subspace_iteration_stalls(
        monkeypatch):
    """At k = 2 of K = 40 with one factor in the data (``16 k < K <= 32 k`` and K < 100:
    ``eigen.eigensolver_for``) the subspace iteration stops at its cap; that evaluation
    is made again on the whole space, and
    every later one is too (``"whole"`` reported for the fit's next sweep), reaching
    the optimum of the whole space throughout. Kept on the subspace iteration it stalls
    and ends lower; the block Krylov method throughout (the default past ``32 k``, and
    past ``16 k`` from K = 100) converges in every evaluation and reaches the whole
    space's optimum."""
    from reprogls.gls import eigen, sigma

    assert eigen.eigensolver_for(40, 2) == "subspace" == eigen.eigensolver_for(64, 2)
    assert eigen.eigensolver_for(99, 4) == "subspace"
    assert eigen.eigensolver_for(32, 2) == "whole" == eigen.eigensolver_for(96, 6)
    assert eigen.eigensolver_for(65, 2) == "krylov" == eigen.eigensolver_for(300, 6)
    assert eigen.eigensolver_for(100, 6) == "krylov" == eigen.eigensolver_for(300, 10)
    rng = np.random.default_rng(9)
    K, N = 40, 4000
    E = (rng.standard_normal((N, 1)) @ rng.standard_normal((1, K))
         + rng.standard_normal((N, K)) * rng.uniform(0.5, 1.5, K))
    S = sigma.residual_moment(np.ascontiguousarray(E - E.mean(axis=0)), "compensated")
    calls = []
    real = sigma.profile

    def recorded(*a, **kw):
        got = real(*a, **kw)
        solver = "whole" if a[4] is None else "krylov" if kw.get("krylov") else "subspace"
        calls.append((solver, got.converged))
        return got

    monkeypatch.setattr(sigma, "profile", recorded)
    _, _, ll, _, solver = sigma.factor_analysis(S, N, 2, "compensated")
    assert solver == "whole"
    stall = calls.index(("subspace", False))
    assert calls[stall + 1:] and all(c == ("whole", True) for c in calls[stall + 1:])
    assert calls[:stall] == [("subspace", True)] * stall
    calls.clear()
    _, _, ll_w, _, solver = sigma.factor_analysis(S, N, 2, "compensated",
                                                  eigensolver="whole")
    assert solver == "whole" and all(c == ("whole", True) for c in calls)
    # the whole space from the start reaches the same optimum (measured: 6e-12 apart)
    np.testing.assert_allclose(ll_w, ll, rtol=1e-10)
    calls.clear()
    _, _, ll_sub, _, solver = sigma.factor_analysis(S, N, 2, "compensated",
                                                    eigensolver="subspace")
    assert solver == "subspace" and all(c[0] == "subspace" for c in calls)
    assert ("subspace", False) in calls
    assert ll >= ll_sub - 1e-9 * abs(ll_sub)
    calls.clear()
    _, _, ll_k, _, solver = sigma.factor_analysis(S, N, 2, "compensated",
                                                  eigensolver="krylov")
    assert solver == "krylov" and calls and all(c == ("krylov", True) for c in calls)
    np.testing.assert_allclose(ll_k, ll_w, rtol=1e-10)
    with pytest.raises(ValueError, match="eigensolver must be one of"):
        sigma.factor_analysis(S, N, 2, "compensated", eigensolver="lanczos")


def test_the_golden_stall_problem_turns_to_the_whole_space(monkeypatch):
    """``gram-stall-whole-space`` covers the turn (its fingerprint pins those bits): the
    static rule keeps it on the subspace iteration, and the first sweep's Sigma-step
    ends on the whole space, which the later sweeps are handed."""
    import sys

    from reprogls import gls
    from reprogls.audit.problems import PROBLEMS
    from reprogls.gls import eigen

    fit_module = sys.modules["reprogls.gls.fit"]
    build, kwargs = PROBLEMS["gram-stall-whole-space"]
    Xs, Y = build()
    K, k = Y.shape[1], kwargs["rank"]
    assert eigen.eigensolver_for(K, k) == "subspace"
    calls = []
    real = fit_module.factor_analysis

    def recorded(*a, **kw):
        out = real(*a, **kw)
        calls.append((kw.get("eigensolver"), out.eigensolver))
        return out

    monkeypatch.setattr(fit_module, "factor_analysis", recorded)
    gls.fit(Xs, Y, **kwargs)
    assert calls[0] == (None, "whole")
    assert len(calls) > 1 and all(c == ("whole", "whole") for c in calls[1:])
