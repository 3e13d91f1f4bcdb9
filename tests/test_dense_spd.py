"""Dense kernels of the estimator: the tiled lower Gram, the several-right-hand-side
products and the parallel Cholesky and SPD inverse equal their NumPy references bitwise
(thread counts: tests/test_threads.py)."""

from __future__ import annotations

import numpy as np
import pytest

from reprogls.gls._dense import matmul, mirror_lower, symmetric_matmul
from reprogls.kernels import reference as ref
from reprogls.kernels.cpu import spd
from reprogls.kernels.cpu._cro import CHUNK
from reprogls.kernels.cpu.gram import TILE, lower_gram
from reprogls.kernels.cpu.linalg import ROW_BLOCK, cholesky_entry, cholesky_kernel, cholesky_pair
from reprogls.kernels.cpu.multi import (
    COLUMN_TILE,
    lower_rows_times,
    rows_times,
    rows_transposed_times,
)
from tests.corpus import same_bits
from tests.digests import (
    cpu_cholesky_inverse,
    reference_lower_gram,
    reference_rows_times,
    reference_rows_transposed_times,
    spd_problem,
)
from tests.linalg_cases import ROWS, sur_problem, wide

MODES = ("compensated", "plain")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n_rows", (*ROWS, 20_000))
def test_lower_gram_equals_reference_gemv_t(n_rows, mode):
    """136 columns: four full tiles and a partial one; rows across lanes and chunks."""
    X = sur_problem(n_rows)[0]
    assert X.shape[1] % TILE
    got = lower_gram(X, mode == "compensated")
    assert same_bits(np.tril(got), reference_lower_gram(X, mode))


@pytest.mark.parametrize("shape", [(0, 3), (5, 0), (40, 1), (33, TILE), (300, 2 * TILE)])
def test_lower_gram_edge_shapes(shape):
    X = wide(np.random.default_rng(list(shape)), shape)
    for mode in MODES:
        got = lower_gram(X, mode == "compensated")
        assert got.shape == (shape[1], shape[1])
        assert same_bits(np.tril(got), reference_lower_gram(X, mode))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n_rows", (*ROWS, 20_000))
def test_several_right_hand_sides_equal_one_gemv_per_column(n_rows, mode):
    """``A B`` and ``A^T B`` column by column are the reference gemv / gemv_t bits; the
    136 columns of A cover whole and partial column tiles, rows cover lanes and chunks."""
    A = sur_problem(n_rows)[0]
    rng = np.random.default_rng(n_rows)
    B = wide(rng, (n_rows, 3))
    V = wide(rng, (A.shape[1], 3))
    compensated = mode == "compensated"
    assert same_bits(rows_transposed_times(A, B, compensated),
                     reference_rows_transposed_times(A, B, mode))
    assert same_bits(rows_times(A, np.ascontiguousarray(V.T), compensated),
                     reference_rows_times(A, V, mode))


@pytest.mark.parametrize("shape", [(0, 3, 2), (5, 0, 2), (7, 4, 0), (1, 1, 1),
                                   (33, COLUMN_TILE, 1), (40, COLUMN_TILE + 1, 5)])
def test_several_right_hand_sides_edge_shapes(shape):
    n, p, k = shape
    rng = np.random.default_rng(list(shape))
    A, B, V = wide(rng, (n, p)), wide(rng, (n, k)), wide(rng, (p, k))
    for mode in MODES:
        compensated = mode == "compensated"
        got_t = rows_transposed_times(A, B, compensated)
        got = rows_times(A, np.ascontiguousarray(V.T), compensated)
        assert got_t.shape == (p, k) and got.shape == (n, k)
        assert same_bits(got_t, reference_rows_transposed_times(A, B, mode))
        assert same_bits(got, reference_rows_times(A, V, mode))


@pytest.mark.parametrize(("n", "width"), [(0, 2100), (1, 2100), (7, 2100),
                                          (ROW_BLOCK - 1, 2100), (ROW_BLOCK, 2100),
                                          (ROW_BLOCK + 1, 2100), (3 * ROW_BLOCK + 5, 2100),
                                          (21, CHUNK + 9)])
def test_lower_product_equals_the_reference_lower_triangle(n, width):
    """``lower_rows_times``: the lower triangle of ``A B`` with the reference gemv bits,
    across blocks of ``ROW_BLOCK`` rows taken from the last; rows of one chunk (two rows
    per pass) and of two chunks (one row at a time)."""
    rng = np.random.default_rng(n)
    A, V = wide(rng, (n, width)), wide(rng, (width, n))
    for mode in MODES:
        got = lower_rows_times(A, np.ascontiguousarray(V.T), mode == "compensated")
        assert got.shape == (n, n)
        assert same_bits(np.tril(got), np.tril(reference_rows_times(A, V, mode)))


def test_symmetric_matmul_is_the_mirrored_product():
    """``symmetric_matmul(M, W)`` has the bits of ``mirror_lower(matmul(M, W))`` (the
    sandwich ``M (B M)`` of the robust covariance) and refuses a product that is not
    square."""
    rng = np.random.default_rng(5)
    M, B = wide(rng, (70, 70)), wide(rng, (70, 70))
    M, B = M + M.T, B + B.T
    for mode in MODES:
        W = matmul(B, M, mode)
        got = symmetric_matmul(M, W, mode)
        assert same_bits(got, mirror_lower(matmul(M, W, mode)))
        assert same_bits(got, got.T)
    for A, B_ in ((M[:5], W), (M[:, :5], W)):
        with pytest.raises(ValueError, match="square product"):
            symmetric_matmul(A, B_, "plain")


@pytest.mark.parametrize("parallel", (True, False))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n", (1, 2, 31, spd.BLOCK, 33, 2 * spd.BLOCK + 1, 100))
def test_cholesky_and_inverse_equal_reference(n, mode, parallel):
    """The parallel drivers (forced at every order) and the serial row functions."""
    C = spd_problem(n)
    L, inv = cpu_cholesky_inverse(C, mode, parallel)
    L_ref = ref.cholesky(C, mode)
    assert same_bits(L, L_ref)
    assert same_bits(inv, ref.cholesky_inverse(L_ref, mode))
    assert same_bits(inv, inv.T)
    expected = np.linalg.inv(C)
    assert np.max(np.abs(inv - expected)) <= 1e-12 * np.max(np.abs(expected))


@pytest.mark.parametrize("bad_row", (0, 5, spd.BLOCK + 3))
def test_parallel_cholesky_reports_the_failing_pivot(bad_row):
    """A pivot in the serial diagonal block of any column block; matches the serial
    kernel's index and leaves no silent NaN behind as a success."""
    C = spd_problem(2 * spd.BLOCK)
    C[bad_row, bad_row] = -1.0
    for compensated in (True, False):
        L, serial = np.empty_like(C), np.empty_like(C)
        assert spd.cholesky(C, compensated, L, parallel=True) == bad_row
        assert cholesky_kernel(C, compensated, serial) == bad_row


@pytest.mark.parametrize("entry", [(5, 2, np.nan), (spd.BLOCK + 8, 3, np.inf),
                                   (7, 0, -np.inf), (spd.BLOCK + 1, spd.BLOCK, 1e300),
                                   (2 * spd.BLOCK, 2 * spd.BLOCK - 1, np.nan)])
def test_cholesky_stops_at_the_reference_pivot_after_a_non_finite_entry(entry):
    """The kernels fill L column by column, two rows at a time, where the reference goes
    row by row: an entry that turns NaN or infinite (``C[i, j]`` with ``j < i``, or an
    overflowing ``L[i, j]``) must still stop them at the reference's failing pivot, with
    no error raised on the way (and the rows below it computed from the bad column)."""
    i, j, value = entry
    C = spd_problem(2 * spd.BLOCK + 3)
    C[i, j] = value
    for mode in MODES:
        with pytest.raises(ref.NotPositiveDefiniteError, match=rf"pivot {i} is"):
            ref.cholesky(C, mode)
        compensated = mode == "compensated"
        L = np.empty_like(C)
        assert cholesky_kernel(C, compensated, L) == i
        assert spd.cholesky(C, compensated, L, parallel=True) == i


@pytest.mark.parametrize("j", [0, 1, 31, 32, 33, CHUNK, CHUNK + 1])
def test_cholesky_pair_equals_two_entries(j):
    """``cholesky_pair`` against two ``cholesky_entry`` calls on the same operands, for
    dots of 0 terms (the empty dot is +0.0 on both paths), around the lane count, of a
    whole chunk (the longest it pairs) and of a chunk and one term (too long for one
    chunk: one entry at a time). Random rows stand for the finished ``L[:, :j]`` (no
    factorisation of order 8193 is needed to reach these lengths), with a signed zero, a
    subnormal and a large value among them; every other term matters to the sum, so
    that a different order of additions shows: pairing the 8193-term dots as one long
    chunk instead of two chunks changes about half of such dots, and eight are
    compared here."""
    rng = np.random.default_rng(j)
    n = max(j + 9, 6)
    L = rng.standard_normal((n, n))
    L[:, :4] = [-0.0, 5e-324, 1e3, -3.0]
    L[j, j] = 1.5  # the pivot the entries divide by
    C = rng.standard_normal((n, n))
    C[j + 1, j] = -0.0
    for compensated in (True, False):
        paired, single = L.copy(), L.copy()
        for i in range(j + 1, j + 9, 2):
            cholesky_pair(C, paired, i + 1, i, j, compensated)
            cholesky_entry(C, single, i + 1, j, compensated)
            cholesky_entry(C, single, i, j, compensated)
        assert same_bits(paired, single)


def test_dispatch_by_order_is_bitwise_neutral():
    """From ``PARALLEL_MIN`` (``CHOLESKY_PARALLEL_MIN`` for the factor) on the default
    (``parallel=None``) takes the parallel drivers; the bits equal both forced paths at
    order 400."""
    C = spd_problem(400)
    assert C.shape[0] >= max(spd.PARALLEL_MIN, *spd.CHOLESKY_PARALLEL_MIN)
    L, inv = cpu_cholesky_inverse(C, "compensated", parallel=None)
    lower = np.tril_indices(400)
    for parallel in (True, False):
        L_forced, inv_forced = cpu_cholesky_inverse(C, "compensated", parallel)
        assert same_bits(L, L_forced)
        assert same_bits(inv[lower], inv_forced[lower])
