"""The flat-run CRO-1 reductions (cpu/segments.py) and the data-movement intrinsics
(cpu/simd.py) against the reference, directly (the public kernels test them through the
SUR operators, too)."""

from __future__ import annotations

import numpy as np
import pytest

from reprogls.kernels.cpu.segments import dot_segments, dot_segments_ranks, dot_tree
from reprogls.kernels.cpu.simd import transpose8x8, transpose8x8_scatter
from reprogls.kernels.reference.cro import reduce_rows
from tests.corpus import same_bits

MODES = (True, False)


def terms(rng, n, L, bshift, sa, sb):
    """Operands laid out with term strides ``sa``, ``sb``, values over 1e-20..1e20 with a
    few specials; returns ``(A, B, V)`` where ``V[x, t]`` is the term the kernels form."""
    A = rng.choice([-1.0, 1.0], n * sa + L) * 10.0 ** rng.uniform(-20, 20, n * sa + L)
    nb = n * sb + (L >> bshift) + 1
    B = rng.standard_normal(nb)
    if n > 3:
        A[rng.integers(0, n * sa, 4)] = [-0.0, np.inf, 1e300, 5e-324]
        B[rng.integers(0, max(1, n * sb), 2)] = [-0.0, 1e10]
    t, x = np.meshgrid(np.arange(n), np.arange(L), indexing="ij")
    with np.errstate(all="ignore"):
        V = (A[t * sa + x] * B[t * sb + (x >> bshift)]).T
    return A, B, V


def run(fn, A, sa, B, sb, bshift, n, L, compensated):
    chunks = max(1, -(-n // 8192))
    S = np.full(32 * L * chunks + 16 * L, np.nan)  # stale scratch must not matter
    E = np.full_like(S, np.nan)
    out = np.empty(L)
    fn(A, sa, B, sb, bshift, n, L, compensated, S, E, out)
    return out


@pytest.mark.parametrize("compensated", MODES)
@pytest.mark.parametrize("fn", [dot_tree, dot_segments], ids=["tree", "segments"])
@pytest.mark.parametrize("L,bshift", [(1, 0), (8, 0), (24, 0), (32, 5), (96, 5)])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 16, 17, 31, 32, 33, 64, 65, 100])
def test_short_and_medium_reductions_equal_the_reference(n, L, bshift, fn, compensated):
    rng = np.random.default_rng([n, L, bshift])
    for sa, sb in ((L, L >> bshift), (L + 3, (L >> bshift) + 2)):  # dense and strided
        A, B, V = terms(rng, n, L, bshift, sa, sb)
        expected = reduce_rows(V, compensated) if n else np.zeros(L)
        assert same_bits(run(fn, A, sa, B, sb, bshift, n, L, compensated), expected)


@pytest.mark.parametrize("compensated", MODES)
@pytest.mark.parametrize("n", [8191, 8192, 8193, 3 * 8192 + 5])
def test_reductions_over_several_chunks(n, compensated):
    rng = np.random.default_rng(n)
    for L, bshift in ((8, 0), (32, 5)):
        A, B, V = terms(rng, n, L, bshift, L, L >> bshift)
        assert same_bits(run(dot_tree, A, L, B, L >> bshift, bshift, n, L, compensated),
                         reduce_rows(V, compensated))


@pytest.mark.parametrize("compensated", MODES)
@pytest.mark.parametrize("n", [31, 32, 33, 200, 1000, 8192, 8193])
def test_reductions_of_several_ranks_equal_the_reference(n, compensated):
    # dot_segments_ranks (the Woodbury block's t = G^T u): k ranks share A; groups of
    # 4, 2 and 1 ranks per lane-sum call (k = 1 .. 11), or rank by rank where the
    # scratch holds fewer than two ranks' lanes or n is outside one chunk of >= 32 terms
    L = 32  # one coefficient per sequence: the block's 32 rows
    rng = np.random.default_rng(n)
    A = rng.choice([-1.0, 1.0], n * L + L) * 10.0 ** rng.uniform(-20, 20, n * L + L)
    A[rng.integers(0, n * L, 4)] = [-0.0, np.inf, 1e300, 5e-324]
    for k in range(1, 12):
        BT = rng.standard_normal((k, n))
        BT[k - 1, rng.integers(0, n)] = -0.0
        t, x = np.meshgrid(np.arange(n), np.arange(L), indexing="ij")
        with np.errstate(all="ignore"):
            expected = np.concatenate([reduce_rows((A[t * L + x] * BT[q, t]).T, compensated)
                                       for q in range(k)])
        for ranks_held in (1, 4):
            chunks = max(1, -(-n // 8192))
            S = np.full(max(32 * L * chunks, 32 * L * ranks_held) + 16 * L, np.nan)
            E = np.full_like(S, np.nan)
            out = np.full(k * L, np.nan)
            dot_segments_ranks(A, L, BT, n, L, compensated, S, E, out)
            rank_by_rank = np.concatenate([run(dot_segments, A, L, BT[q], 1, 5, n, L,
                                               compensated) for q in range(k)])
            assert same_bits(out, rank_by_rank), (k, ranks_held)
            assert same_bits(out, expected), (k, ranks_held)


def test_transposes_move_tiles_exactly():
    from numba import njit

    @njit
    def tile(A, a_row, a_col, B, b_row, b_col):
        transpose8x8(A, a_row, a_col, B, b_row, b_col)

    @njit
    def scatter(X, i0, m, dest, out):
        transpose8x8_scatter(X, i0, m, dest, out)

    rng = np.random.default_rng(0)
    A = rng.standard_normal((19, 21))
    A[3, 5], A[4, 6] = -0.0, np.nan
    B = np.full((17, 23), 7.0)
    tile(A, 3, 5, B, 9, 11)
    expected = np.full((17, 23), 7.0)
    expected[9:17, 11:19] = A[3:11, 5:13].T
    assert same_bits(B, expected)
    dest = rng.permutation(30).astype(np.int64)
    out = np.full(30 * 8, 7.0)
    scatter(A, 2, 4, dest, out)
    for c in range(8):
        assert same_bits(out[dest[4 + c] * 8:dest[4 + c] * 8 + 8], A[2:10, 4 + c])
    assert np.count_nonzero(out != 7.0) <= 64


@pytest.mark.parametrize("compensated", MODES)
def test_register_trees_equal_the_reference_for_every_width(compensated):
    """Every specialised register tree (n = 1 .. MAX_TERMS) and the first width past
    them, on terms that stress the finalize rule: NaN, +-inf, sums that overflow (TwoSum
    turns them into NaN compensations), signed zeros, subnormals, cancellation."""
    from reprogls.kernels.cpu.register_trees import MAX_TERMS

    rng = np.random.default_rng(2026)
    L = 64
    specials = np.array([np.nan, np.inf, -np.inf, 1.7e308, -1.7e308, -0.0, 0.0, 5e-324,
                         1e16, -1e16, 1.0])
    for n in range(1, MAX_TERMS + 2):
        for trial in range(4):
            A, B, _ = terms(rng, n, L, 5, L, 2)
            if trial:  # a special in about one term in four, all rows
                mask = rng.random(n * L) < 0.25
                A[:n * L][mask] = rng.choice(specials, int(mask.sum()))
                B[:2 * n][rng.random(2 * n) < 0.2] = 1.0
                A[np.arange(n) * L] = -0.0  # sequence 0: a sum of -0.0 is -0.0
                A[np.arange(n) * L + 1] = np.where(np.arange(n) % 2, 1e308, 1.5e308)
            t, x = np.meshgrid(np.arange(n), np.arange(L), indexing="ij")
            with np.errstate(all="ignore"):
                V = (A[t * L + x] * B[t * 2 + (x >> 5)]).T
            expected = reduce_rows(V, compensated)
            got = run(dot_tree, A, L, B, 2, 5, n, L, compensated)
            assert same_bits(got, expected), (n, trial)


def test_unmanaged_views_share_the_data_and_leave_the_owner_intact():
    """``views.unmanaged`` is a view (same data, shape, strides): writes through it and
    through its slices land in the owner, and the owner outlives many such views."""
    from numba import njit

    from reprogls.kernels.cpu.views import unmanaged

    @njit
    def write_through(M, reps):
        for r in range(reps):
            V = unmanaged(M)
            row = V[r % M.shape[0], 1:]
            row[0] += 1.0
        return unmanaged(M)[0, 0]

    M = np.arange(12.0).reshape(3, 4)
    expected = M.copy()
    expected[:, 1] += np.array([4.0, 3.0, 3.0])
    assert write_through(M, 10) == 0.0
    assert same_bits(M, expected)


@pytest.mark.parametrize("n", [0, 1, 31, 8192, 8193, 20000, 3 * 8192 + 5])
@pytest.mark.parametrize("compensated", MODES)
def test_dot_segment_of_any_length_is_the_cro1_dot(n, compensated):
    """``_cro.dot_segment`` (a dot inlined into the dense kernels' loops): one chunk in
    registers, longer segments through ``dot_chunks`` and its own chunk slots -- the bits
    of the reference dot (and sum, without ``y``) at every length."""
    from numba import njit

    from reprogls.kernels.cpu._cro import dot_segment
    from reprogls.kernels.reference.cro import cro_dot, cro_sum

    @njit
    def segment(x, y, compensated):
        return dot_segment(x, y, compensated)

    @njit
    def segment_sum(x, compensated):
        return dot_segment(x, None, compensated)

    rng = np.random.default_rng(n)
    x = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-12, 12, n)
    y = rng.standard_normal(n)
    mode = "compensated" if compensated else "plain"
    assert same_bits(np.float64(segment(x, y, compensated)), np.float64(cro_dot(x, y, mode)))
    assert same_bits(np.float64(segment_sum(x, compensated)), np.float64(cro_sum(x, mode)))
