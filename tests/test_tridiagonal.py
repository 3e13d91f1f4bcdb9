"""The Krylov Rayleigh-Ritz solver: Householder tridiagonalisation, implicit QL and the
back-transformation (``eigen.tridiagonal_eigh``, compiled in ``gls._tridiagonal``)
against its plain-Python oracle bit for bit, and against LAPACK to ``eps ||T||``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reprogls.gls import eigen
from tests.corpus import same_bits

MODES = ["compensated", "plain"]
EPS = np.finfo(np.float64).eps


def _symmetric(n, seed, scale=1.0):
    A = np.random.default_rng(seed).standard_normal((n, n)) * scale
    return (A + A.T) * 0.5


def _spiked(n, seed):
    """A few eigenvalues far above a crowded bulk: a Krylov Rayleigh-Ritz matrix's
    spectrum (the Sigma-step's ``M`` at a rank beyond the data's factors)."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((n, n)))
    w = np.r_[[6900.0, 3000.0, 1000.0], 3.0 - 2.0 * np.arange(n - 3) / n]
    T = (U * w) @ U.T
    return (T + T.T) * 0.5


def _cases():
    """Matrices that take every branch: orders 0-3 (no reflector), even and odd orders
    (the paired dots' odd row), a diagonal matrix and one already tridiagonal (rows whose
    prefix is zero: no reflection), repeated eigenvalues, a zero matrix, a spiked
    spectrum, tiny and huge scales."""
    yield "order 0", np.zeros((0, 0))
    yield "order 1", np.array([[2.5]])
    for n in (2, 3, 8, 33):
        yield f"random {n}", _symmetric(n, n)
    yield "diagonal", np.diag([3.0, -1.0, 2.0, 2.0, 0.5, 7.0])
    tri = np.diag(np.arange(1.0, 10.0)) + np.diag(np.full(8, 0.5), 1) + np.diag(
        np.full(8, 0.5), -1)
    yield "tridiagonal", tri
    yield "identity", np.eye(12)
    U, _ = np.linalg.qr(np.random.default_rng(3).standard_normal((10, 10)))
    T = (U * np.r_[np.full(5, 2.0), np.full(5, -1.0)]) @ U.T
    yield "two clusters", (T + T.T) * 0.5
    yield "zeros", np.zeros((7, 7))
    yield "spiked", _spiked(40, 4)
    yield "tiny", _symmetric(9, 5, 1e-200)
    yield "huge", _symmetric(9, 6, 1e200)


CASES = dict(_cases())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_tridiagonal_eigh_equals_its_reference_bit_for_bit(name, mode):
    T = CASES[name]
    n = T.shape[0]
    for m in sorted({0, min(n, 1), n // 2 + (n % 2), n}):
        values, W = eigen.tridiagonal_eigh(T, m, mode)
        ref_values, ref_W = eigen.tridiagonal_eigh_reference(T, m, mode)
        assert values.shape == (n,) and W.shape == (n, m)
        assert same_bits(values, ref_values) and same_bits(W, ref_W), (name, m)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_tridiagonal_eigh_agrees_with_lapack(name, mode):
    T = CASES[name]
    n = T.shape[0]
    values, W = eigen.tridiagonal_eigh(T, n, mode)
    if n == 0:
        return
    norm = max(np.abs(np.linalg.eigvalsh(T)).max(), np.finfo(np.float64).tiny)
    bound = 8 * n * EPS * norm
    assert np.all(np.diff(values) <= 0)
    assert np.abs(values - np.linalg.eigvalsh(T)[::-1]).max() <= bound
    assert np.abs(T @ W - W * values).max() <= bound
    assert np.abs(W.T @ W - np.eye(n)).max() <= 8 * n * EPS


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 24), seed=st.integers(0, 2**32 - 1),
       exponent=st.integers(-150, 150), mode=st.sampled_from(MODES))
def test_tridiagonal_eigh_bits_hold_for_any_symmetric_matrix(n, seed, exponent, mode):
    T = _symmetric(n, seed, 2.0 ** exponent)
    m = n // 3
    values, W = eigen.tridiagonal_eigh(T, m, mode)
    ref_values, ref_W = eigen.tridiagonal_eigh_reference(T, m, mode)
    assert same_bits(values, ref_values) and same_bits(W, ref_W)


@pytest.mark.parametrize("mode", MODES)
def test_the_values_alone_have_the_bits_of_the_values_with_vectors(mode):
    """The Krylov method asks for the values alone until its basis stops growing: the
    QL's rotations of the eigenvectors never feed its values."""
    for T in (_spiked(60, 10), _symmetric(31, 11), CASES["two clusters"]):
        alone, none = eigen.tridiagonal_eigh(T, 0, mode)
        assert none.shape == (T.shape[0], 0)
        for m in (1, 7, T.shape[0]):
            assert same_bits(alone, eigen.tridiagonal_eigh(T, m, mode)[0])


def test_tridiagonal_eigh_leaves_its_input_alone_and_is_deterministic():
    T = _spiked(60, 8)
    before = T.copy()
    first = eigen.tridiagonal_eigh(T, 20)
    assert same_bits(T, before)
    again = eigen.tridiagonal_eigh(T, 20)
    assert same_bits(first[0], again[0]) and same_bits(first[1], again[1])


def test_the_top_values_are_as_accurate_as_the_krylov_rule_asks():
    """The Krylov method compares Ritz values against a floor of ``RITZ_NOISE eps
    lambda_1``: the solver's own error must lie well inside it."""
    T = _spiked(120, 9)
    values, _ = eigen.tridiagonal_eigh(T, 10)
    exact = np.linalg.eigvalsh(T)[::-1]
    assert np.abs(values[:30] - exact[:30]).max() <= 0.25 * eigen.RITZ_NOISE * exact[0]


@pytest.mark.parametrize("bad, message", [
    (np.ones((3, 4)), "square"),
    (np.array([[1.0, 2.0], [2.0 + 1e-15, 1.0]]), "transpose bit for bit"),
    (np.ones(4), "square"),
])
def test_tridiagonal_eigh_rejects_a_matrix_that_is_not_symmetric(bad, message):
    with pytest.raises(ValueError, match=message):
        eigen.tridiagonal_eigh(bad, 1)
    with pytest.raises(ValueError, match=message):
        eigen.tridiagonal_eigh_reference(bad, 1)


@pytest.mark.parametrize("m", [-1, 4, 1.0, True, "2"])
def test_tridiagonal_eigh_rejects_a_count_outside_the_order(m):
    with pytest.raises(ValueError, match="m \\(the eigenvectors wanted\\)"):
        eigen.tridiagonal_eigh(np.eye(3), m)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_tridiagonal_eigh_raises_on_entries_that_are_not_finite(value):
    T = _symmetric(6, 2)
    T[1, 3] = T[3, 1] = value
    with pytest.raises(np.linalg.LinAlgError, match="did not converge"):
        eigen.tridiagonal_eigh(T, 2)
    with pytest.raises(np.linalg.LinAlgError, match="did not converge"):
        eigen.tridiagonal_eigh_reference(T, 2)
