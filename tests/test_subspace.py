"""The compiled steps of the Sigma-step's subspace iteration (reprogls/gls/_subspace.py)
give the bits of their plain-Python/public-kernel references."""

from __future__ import annotations

import numpy as np
import pytest

from reprogls import kernels
from reprogls.gls import _subspace
from reprogls.gls.sigma import orthonormalize_reference, top_eigenpairs
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
def test_rayleigh_matrix_is_symmetrised_cro1_dots(mode):
    rng = np.random.default_rng(3)
    Q, MQ = rng.standard_normal((40, 4)), rng.standard_normal((40, 4))
    G = np.array([[kernels.dot(np.ascontiguousarray(Q[:, a]), np.ascontiguousarray(MQ[:, b]),
                               mode, "cpu") for b in range(4)] for a in range(4)])
    got = _subspace.rayleigh_matrix(Q, MQ, mode == "compensated")
    assert same_bits(got, (G + G.T) * 0.5)


def test_top_eigenpairs_match_numpy():
    rng = np.random.default_rng(0)
    B = rng.standard_normal((30, 30))
    M = B @ B.T
    lam, Q = top_eigenpairs(M, rng.standard_normal((30, 3)), "compensated")
    expected = np.linalg.eigvalsh(M)[::-1][:3]
    np.testing.assert_allclose(lam, expected, rtol=1e-10)
    np.testing.assert_allclose(np.abs(Q.T @ Q), np.eye(3), atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_top_eigenpairs_of_an_operator_carry_the_product(mode, monkeypatch):
    """With ``M`` given as a function (the residuals' ``S``), each iteration takes one
    product (``(M Q) V`` is carried, not recomputed): the same eigenpairs as with the
    matrix, in one product per iteration (one Jacobi solve each) plus one to start."""
    from reprogls.gls import sigma
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

    jacobi = sigma.jacobi_eigh
    monkeypatch.setattr(sigma, "jacobi_eigh", counted_jacobi)
    Q0 = rng.standard_normal((40, 3))
    lam, Q = top_eigenpairs(product, Q0, mode)
    assert counts["iterations"] >= 2
    assert counts["products"] == counts["iterations"] + 1
    lam_matrix, Q_matrix = top_eigenpairs(M, Q0, mode)
    np.testing.assert_allclose(lam, np.linalg.eigvalsh(M)[::-1][:3], rtol=1e-10)
    np.testing.assert_allclose(lam, lam_matrix, rtol=1e-12)
    np.testing.assert_allclose(np.abs(Q.T @ Q_matrix), np.eye(3), atol=1e-8)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 10])
def test_compiled_jacobi_equals_the_python_loop(n):
    """``jacobi_eigh`` (compiled rotations) has the bits of ``jacobi_eigh_reference``
    (the Python loop) on random symmetric matrices of wide magnitudes, on ones with
    repeated eigenvalues and exact zeros off the diagonal, and when the sweep cap
    stops it."""
    from reprogls.gls.sigma import jacobi_eigh, jacobi_eigh_reference

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
        got_values, got_vectors = jacobi_eigh(T, sweeps)
        ref_values, ref_vectors = jacobi_eigh_reference(T, sweeps)
        assert (got_values.view(np.uint64) == ref_values.view(np.uint64)).all()
        assert (got_vectors.view(np.uint64) == ref_vectors.view(np.uint64)).all()
        assert (T.view(np.uint64) == before.view(np.uint64)).all()  # input unchanged


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
    from reprogls.gls import sigma

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
    monkeypatch.setattr(sigma, "COMPILED_MAX_WORK", 0)
    expected = top_eigenpairs(M, Q0, mode, max_iter=max_iter)
    for a, b in zip(got, expected, strict=True):
        assert same_bits(a, b)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("K,k,weak", [(6, 1, False), (50, 3, False), (40, 4, True)])
def test_compiled_profile_equals_the_python_steps(monkeypatch, K, k, weak, mode):
    """``profile`` of a moment matrix (one compiled call) has the bits of the steps it
    replaced (forced by ``COMPILED_MAX_WORK = 0``), also when some of the top eigenvalues
    of ``D^-1/2 S D^-1/2`` are below 1 (no loading; left out of the log-determinant)."""
    from reprogls.gls import sigma

    rng = np.random.default_rng([K, k, weak])
    F = rng.standard_normal((K, k)) * (np.r_[3.0, np.full(k - 1, 1e-3)] if weak else 1.0)
    d = 0.05 + 0.2 * rng.uniform(size=K)
    E = rng.standard_normal((4 * K, k)) @ F.T + rng.standard_normal((4 * K, K)) * np.sqrt(d)
    S = sigma.MomentMatrix(sigma.residual_moment(E, mode), mode)
    Q0 = np.linalg.qr(rng.standard_normal((K, k)))[0]
    d_at = np.diag(S.S) * 1.5 if weak else d * rng.uniform(0.5, 2.0, K)
    got = sigma.profile(S, 4 * K, mode, d_at, Q0)
    monkeypatch.setattr(sigma, "COMPILED_MAX_WORK", 0)
    expected = sigma.profile(S, 4 * K, mode, d_at, Q0)
    top = np.linalg.eigvalsh(S.S / np.sqrt(np.outer(d_at, d_at)))[::-1][:k]
    assert (top < 1).any() == weak and (top > 1).any()
    for name in ("F", "Q", "ll", "grad", "update"):
        assert same_bits(np.asarray(getattr(got, name)), np.asarray(getattr(expected, name))), name
