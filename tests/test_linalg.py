"""Linear-algebra kernels: CPU equals the reference bitwise; properties; bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reprogls import kernels
from reprogls.kernels import reference as ref
from reprogls.kernels.cpu import streamed
from reprogls.kernels.cpu.gram import block_pair_plan, column_pair_grams
from tests.corpus import same_bits
from tests.digests import reference_pair_grams
from tests.linalg_cases import INTERLEAVED, ROWS, WIDTHS, factor_problem, sur_problem, wide

MODES = ("compensated", "plain")



@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n_rows", (*ROWS, 20_000))
def test_column_pair_grams_equal_reference_gemv_t(n_rows, mode):
    """Every Gram entry of the one-pass kernel has the bits of the reference gemv_t, for
    the per-equation blocks (widths 0, 1, 32, 33 and 70, whose 2485 pairs span tiles).
    The dense lower triangle (``lower_gram``): tests/test_dense_spd.py."""
    X, offsets, *_ = sur_problem(n_rows)
    plan = block_pair_plan(offsets)
    got = column_pair_grams(X, plan, mode == "compensated")
    assert got.shape == (plan.n_pairs,)
    assert same_bits(got, reference_pair_grams(X, plan, mode))
    assert sorted(map(tuple, plan.targets.tolist())) == sorted(
        (o + m, o + a) for o, w in zip(offsets[:-1].tolist(), np.diff(offsets).tolist(),
                                       strict=True)
        for a in range(w) for m in range(a, w))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (40, 33), (8193, 5), (100, 8193),
                                   (2, 40_000), (0, 5), (4, 0), (127, 100), (129, 8192),
                                   (2, 100), (65, 64)])
def test_gemv_and_gemv_t(shape, mode):
    """Also rows taken in pairs half a block apart (``multi._rows_times_tasks``), with an
    odd row left alone (127 = 64 + 63 rows), a last block of one row, at a chunk's full
    length (129 x 8192, and 65 x 64), and one pair (2 x 100)."""
    rng = np.random.default_rng(list(shape))
    A = wide(rng, shape)
    x, y = wide(rng, shape[1]), wide(rng, shape[0])
    assert same_bits(kernels.gemv(A, x, mode, "cpu"), ref.gemv(A, x, mode))
    assert same_bits(kernels.gemv_t(A, y, mode, "cpu"), ref.gemv_t(A, y, mode))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n_rows", [1, 31, 160, 8193, 20_000])
def test_reductions_over_rows_with_whole_chunk_tasks_on_one_thread(n_rows, mode):
    """On one thread ``gemv_t``, ``A^T B`` and ``sur_rmatvec`` give a task all 32 lanes
    of a chunk (:func:`.rowgroups.lanes_per_task`); the bits are the reference's, as with
    the 8-lane tasks of several threads."""
    import numba

    from reprogls.kernels.cpu.multi import rows_transposed_times
    from reprogls.kernels.cpu.rowgroups import lanes_per_task
    from tests.digests import reference_rows_transposed_times

    assert lanes_per_task(1, 300) == 32 and lanes_per_task(2, 300) == 8
    assert lanes_per_task(1, 4096) == 8  # 32 lanes' accumulators would pass 512 KiB
    rng = np.random.default_rng(n_rows)
    A, B = wide(rng, (n_rows, 300)), wide(rng, (n_rows, 3))
    X, offsets, _, W = sur_problem(n_rows, WIDTHS, seed=1)
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        assert same_bits(kernels.gemv_t(A, B[:, 0], mode, "cpu"), ref.gemv_t(A, B[:, 0], mode))
        assert same_bits(rows_transposed_times(A, B, mode == "compensated"),
                         reference_rows_transposed_times(A, B, mode))
        assert same_bits(kernels.sur_rmatvec(X, offsets, W, mode, "cpu"),
                         ref.sur_rmatvec(X, offsets, W, mode))
    finally:
        numba.set_num_threads(before)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("widths", [WIDTHS, INTERLEAVED], ids=["widths", "interleaved"])
@pytest.mark.parametrize("n_rows", ROWS)
def test_sur_matvec_and_rmatvec(n_rows, widths, mode):
    X, offsets, beta, W = sur_problem(n_rows, widths)
    assert same_bits(kernels.sur_matvec(X, offsets, beta, mode, "cpu"),
                     ref.sur_matvec(X, offsets, beta, mode))
    assert same_bits(kernels.sur_rmatvec(X, offsets, W, mode, "cpu"),
                     ref.sur_rmatvec(X, offsets, W, mode))


#: Layouts whose vectors of eight columns span 1, 2, 3, 4 equations (the streamed
#: ``sur_rmatvec``) and 8 (the block kernels), with an equation of 0 columns inside a
#: vector and, last, more columns than one column tile (``streamed.COLUMN_TILE``).
SPAN_LAYOUTS = {1: (8, 16, 24), 2: (10,) * 7, 3: (3, 0, 2, 4, 9, 6), 4: (1, 2, 3, 4, 5, 6, 7),
                8: (1,) * 12 + (2, 9), "tiles": (10,) * (streamed.COLUMN_TILE // 10 + 1)}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layout", SPAN_LAYOUTS)
@pytest.mark.parametrize("n_rows", (1, 31, 100, 8193))
def test_sur_rmatvec_streamed_and_block_paths_equal_reference(layout, n_rows, mode):
    """Both implementations of ``sur_rmatvec`` -- rows streamed with per-column weights
    (spans up to 4) and the block kernels (any span) -- have the reference's bits; the
    public kernel takes the streamed one exactly when the span allows."""
    from reprogls.kernels.cpu import rowgroups

    widths = SPAN_LAYOUTS[layout]
    if layout == "tiles":
        n_rows = min(n_rows, 100)
    X, offsets, _, W = sur_problem(n_rows, widths, seed=len(widths))
    expect = ref.sur_rmatvec(X, offsets, W, mode)
    compensated = mode == "compensated"
    plan = streamed.weight_plan(offsets)
    assert plan.most == (2 if layout == "tiles" else layout)
    assert plan.span == {1: 2, 2: 2, 3: 4, 4: 4}.get(plan.most, plan.most)
    fast = streamed.streamed_rmatvec(X, offsets, W, compensated)
    assert (fast is None) == (plan.most > streamed.MAX_SPAN)
    if fast is not None:
        assert same_bits(fast, expect)
        # two weight matrices in one pass (half-width column tiles)
        W2 = np.ascontiguousarray(W[::-1])
        pair = streamed.streamed_rmatvec(X, offsets, W, compensated, W2)
        assert same_bits(pair[0], expect)
        assert same_bits(pair[1], ref.sur_rmatvec(X, offsets, W2, mode))
    assert same_bits(rowgroups.sur_rmatvec(X, offsets, W, compensated), expect)
    assert same_bits(kernels.sur_rmatvec(X, offsets, W, mode, "cpu"), expect)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 12), min_size=1, max_size=30))
def test_weight_plan_names_every_columns_equation(widths):
    """``eqv[(c // 8) * span + pick[c]]`` is column ``c``'s equation, for any widths."""
    from reprogls.kernels.cpu.streamed import weight_plan

    offsets = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
    plan = weight_plan(offsets)
    columns = np.arange(offsets[-1])
    eq = np.searchsorted(offsets, columns, side="right") - 1
    assert np.array_equal(plan.eq_of_column, eq)
    got = plan.eqv[(columns // 8) * plan.span + plan.pick[columns]]
    assert np.array_equal(got, eq)
    assert 1 <= plan.most <= plan.span <= 8 and plan.pick.min(initial=0) >= 0
    assert plan.pick.max(initial=0) < plan.most


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("widths", [tuple(range(33)), (10,) * 7, (32, 1, 0, 31), WIDTHS],
                         ids=["0-32", "ten", "edges", "past-32"])
@pytest.mark.parametrize("n_rows", (1, 31, 100))
def test_sur_matvec_row_trees_and_blocks_equal_reference(widths, n_rows, mode):
    """Both implementations of ``sur_matvec`` -- each dot's lane tree along the row
    (every width up to 32; rows with inf, NaN and -0.0 products) and the block kernels
    -- have the reference's bits; the row trees decline layouts wider than 32."""
    from reprogls.kernels.cpu import rowgroups

    X, offsets, beta, _ = sur_problem(n_rows, widths, seed=n_rows)
    if n_rows > 1:
        X[0, :3], X[-1, ::4], beta[1::7] = np.inf, np.nan, -0.0
    expect = ref.sur_matvec(X, offsets, beta, mode)
    compensated = mode == "compensated"
    rows = np.full(expect.shape, 7.0)
    took = streamed.streamed_matvec(X, offsets, beta, compensated, rows)
    assert took == (max(widths) <= 32)
    if took:
        assert same_bits(rows, expect)
    assert same_bits(rowgroups.sur_matvec(X, offsets, beta, compensated), expect)
    assert same_bits(kernels.sur_matvec(X, offsets, beta, mode, "cpu"), expect)


def test_sur_matvec_long_equation_spans_chunks():
    X, offsets, beta, _ = sur_problem(3, widths=(2, 8200, 1))
    for mode in MODES:
        assert same_bits(kernels.sur_matvec(X, offsets, beta, mode),
                         ref.sur_matvec(X, offsets, beta, mode))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("widths", [tuple(range(33)), (32, 1, 0, 31), (10,) * 7],
                         ids=["0-32", "edges", "ten"])
def test_row_dots8_equals_reference_for_eight_rows_and_fewer(widths, mode):
    """The fused operator's eight-row dots (every width up to 32, a column count that is
    not a multiple of 8, inf / NaN / -0.0 products): slot ``b`` of each equation's vector
    holds row ``i0 + b``'s dot, and with fewer than eight rows the spare slots repeat
    row ``i0``'s; the stride between equations is the caller's."""
    from numba import njit

    from reprogls.kernels.cpu.row_trees import row_dots8

    @njit
    def dots8(X, offsets, beta, i0, n_rows, out, compensated):
        if compensated:
            row_dots8(X, offsets, beta, i0, n_rows, out, 3, 11, True)
        else:
            row_dots8(X, offsets, beta, i0, n_rows, out, 3, 11, False)

    X, offsets, beta, _ = sur_problem(13, widths, seed=8)
    X[2, :3], X[9, ::4], beta[1::7] = np.inf, np.nan, -0.0
    expect = ref.sur_matvec(X, offsets, beta, mode)
    K = len(widths)
    for i0, n_rows in ((0, 8), (5, 8), (9, 4), (12, 1)):
        out = np.full(3 + 11 * K, 7.0)
        dots8(X, offsets, beta, i0, n_rows, out, mode == "compensated")
        got = out[3:].reshape(K, 11)
        for b in range(8):
            assert same_bits(got[:, b], expect[i0 + (b if b < n_rows else 0)])
        assert (got[:, 8:] == 7.0).all() and (out[:3] == 7.0).all()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("widths,span", [(tuple(range(33)), 4), ((10,) * 7, 2),
                                         ((32, 1, 0, 31), 2)], ids=["0-32", "ten", "edges"])
@pytest.mark.parametrize("n_rows", [1, 31, 100, 8195])
def test_fused_rows_in_place_every_width_up_to_32(n_rows, widths, span, mode):
    """The streamed fused operator over equations of every width 0 .. 32 (each tree of
    :func:`.row_trees.row_dots8`), both weight spans of the interleaved lane steps
    (:mod:`.fused_rows`), a column count with a partial last vector (70) and partial row
    groups; on finite data (finite results, so every lane's steps count) and with
    inf / NaN / -0.0 in X and v (a non-finite row makes every output NaN through the
    Woodbury solve, so that case checks only the canonical NaN)."""
    X, offsets, v, _ = sur_problem(n_rows, widths=widths, seed=n_rows)
    assert streamed.weight_plan(offsets).span == span
    _check_streamed_fused(X, offsets, v, *factor_problem(len(widths), 3), mode,
                          poison=n_rows > 1)


def _check_streamed_fused(X, offsets, v, F, d, mode, poison=True):
    """The streamed fused operator equals the reference bit for bit, on the finite data
    (with finite results), then, if ``poison``, with inf / NaN / -0.0 in X and v."""
    factor = kernels.woodbury_factor(F, d, mode)
    spec_factor = ref.woodbury_factor(F, d, mode)
    for finite in (True, False):
        if not finite and poison:
            X[0, :3], X[-1, ::9], v[1::7] = np.inf, np.nan, -0.0
        rows = streamed.streamed_normal_matvec(X, offsets, v, factor.G, factor.d, factor.L,
                                               mode == "compensated")
        assert rows is not None
        if finite:
            assert np.isfinite(rows).all()
        assert same_bits(rows, ref.sur_normal_matvec(X, offsets, spec_factor, v))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n_rows,widths,k", [
    (300, (2, 3, 0, 5) * 25, 5), (8195, (2, 3, 0, 5) * 25, 1), (97, (3,) * 70, 33),
    (40, (2,) * 8200, 2), (70, (4,) * 9, 0)], ids=["K100", "K100-k1", "k33", "K8200", "k0"])
def test_fused_rows_many_equations_and_ranks(n_rows, widths, k, mode):
    """The streamed fused operator where the Woodbury block's ``t = G^T u`` has lanes of
    several equations (K = 100, 70), more ranks than lanes (k = 33), K past one chunk of
    terms (8200) and no rank (k = 0, a diagonal Sigma); finite data with finite results,
    then inf / NaN / -0.0."""
    X, offsets, v, _ = sur_problem(n_rows, widths=widths, seed=k)
    _check_streamed_fused(X, offsets, v, *factor_problem(len(widths), k), mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("K,k", [(7, 1), (7, 6), (40, 3), (33, 32), (40, 33), (1, 1),
                                 (5, 0), (8200, 2), (40, 16), (40, 17), (200, 5), (200, 10),
                                 (64, 11), (256, 3), (257, 3), (1000, 10), (8192, 1),
                                 (300, 0)])
def test_woodbury_kernels(K, k, mode):
    """Ranks past one lane (k = 33) and K past one chunk (t = G^T r over 8200 terms);
    the one-pass output of ``k <= 16`` ranks (16) and the tiles past it (17); groups of
    four, two and one ranks in the plain lane sums (5, 10, 11); lanes of more than eight
    terms, whose terms compete for L1 sets (K = 257 .. 8192, docs/performance.md), and a
    diagonal Sigma there (300, 0)."""
    F, d = factor_problem(K, k)
    mine, spec = kernels.woodbury_factor(F, d, mode), ref.woodbury_factor(F, d, mode)
    assert same_bits(mine.G, spec.G) and same_bits(mine.L, spec.L)
    R = wide(np.random.default_rng(K), (8193 if K < 1000 else 37, K))
    assert same_bits(kernels.woodbury_solve(mine, R, "cpu"), ref.woodbury_solve(spec, R))
    assert same_bits(kernels.woodbury_logdet(mine), ref.woodbury_logdet(spec))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("widths", [(3, 0, 1, 5, 12), INTERLEAVED, (1,) * 12 + (2, 9)],
                         ids=["small", "interleaved", "span8"])
@pytest.mark.parametrize("n_rows", [1, 100, 8193, 20_000])
def test_fused_normal_operator_equals_composition_and_spec(n_rows, widths, mode):
    """Row counts with partial blocks and missing row groups in the last chunk; the
    small layout takes the streamed rows, the interleaved one (a 40-column equation) and
    "span8" (eight equations in one vector of columns) the block kernels, and both
    implementations are checked on the small one."""
    from reprogls.kernels.cpu import rowgroups

    X, offsets, v, _ = sur_problem(n_rows, widths=widths)
    F, d = factor_problem(len(widths), 2)
    factor = kernels.woodbury_factor(F, d, mode)
    fused = kernels.sur_normal_matvec(X, offsets, factor, v, "cpu")
    composed = kernels.sur_rmatvec(
        X, offsets, kernels.woodbury_solve(factor, kernels.sur_matvec(X, offsets, v, mode)),
        mode)
    assert same_bits(fused, composed)
    args = (X, offsets, v, factor.G, factor.d, factor.L, mode == "compensated")
    rows = streamed.streamed_normal_matvec(*args)
    most = streamed.weight_plan(offsets).most
    assert (rows is None) == (max(widths) > 32 or most > streamed.MAX_SPAN)
    assert (rows is None) == (widths != (3, 0, 1, 5, 12))
    if rows is not None:
        assert same_bits(rows, composed)
        assert same_bits(rowgroups.normal_matvec(*args), composed)
    assert same_bits(fused, ref.sur_normal_matvec(X, offsets, ref.woodbury_factor(F, d, mode),
                                                  v))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("widths,k", [((3, 0, 1, 5, 12), 1), ((3, 0, 1, 5, 12), 4),
                                      (INTERLEAVED, 3), ((1,) * 12 + (2, 9), 2)],
                         ids=["k1", "kK-1", "interleaved", "span8"])
@pytest.mark.parametrize("n_rows", [1, 100, 8193, 20_000])
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("path", ["dispatch", "blocks"])
def test_solved_rmatvecs_equal_woodbury_then_rmatvec(path, n_threads, n_rows, widths, k,
                                                      mode):
    """The estimator's one-pass ``X^T vec(R Sigma^-1)`` for one and two right-hand sides
    has the bits of ``sur_rmatvec(woodbury_solve(R))`` (and so of the reference), both
    as dispatched (rows streamed where the span allows: every layout here but "span8")
    and from the block kernels."""
    import numba

    from reprogls.kernels.cpu import linalg as cpu_linalg
    from reprogls.kernels.cpu import rowgroups

    solved_rmatvecs = (cpu_linalg if path == "dispatch" else rowgroups).solved_rmatvecs

    X, offsets, _, W = sur_problem(n_rows, widths=widths)
    F, d = factor_problem(len(widths), k)
    factor = kernels.woodbury_factor(F, d, mode)
    W2 = wide(np.random.default_rng(n_rows), W.shape)
    expect = [kernels.sur_rmatvec(X, offsets, kernels.woodbury_solve(factor, R, "cpu"), mode,
                                  "cpu") for R in (W, W2)]
    before = numba.get_num_threads()
    numba.set_num_threads(n_threads)
    try:
        args = (factor.G, factor.d, factor.L, mode == "compensated")
        pair = solved_rmatvecs(X, offsets, [W, W2], *args)
        single = solved_rmatvecs(X, offsets, [W2], *args)
    finally:
        numba.set_num_threads(before)
    assert len(pair) == 2 and len(single) == 1
    assert same_bits(pair[0], expect[0]) and same_bits(pair[1], expect[1])
    assert same_bits(single[0], expect[1])
    if path == "dispatch":  # overwrite: R Sigma^-1 may replace R, with the same results
        W_copy, W2_copy = W.copy(), W2.copy()
        kept = solved_rmatvecs(X, offsets, [W_copy, W2_copy], *args, overwrite=(False, True))
        assert same_bits(kept[0], expect[0]) and same_bits(kept[1], expect[1])
        assert same_bits(W_copy, W)  # not allowed: untouched
        if streamed_layout := widths != (1,) * 12 + (2, 9):
            assert same_bits(W2_copy, kernels.woodbury_solve(factor, W2, "cpu"))
        assert streamed_layout or same_bits(W2_copy, W2)
    ref_factor = ref.woodbury_factor(F, d, mode)
    assert same_bits(pair[0], ref.sur_rmatvec(X, offsets, ref.woodbury_solve(ref_factor, W),
                                              mode))


@settings(max_examples=40, deadline=None)
@given(K=st.integers(2, 30), data=st.data())
def test_woodbury_solve_matches_dense_solve(K, data):
    k = data.draw(st.integers(1, K - 1))
    F, d = factor_problem(K, k, seed=data.draw(st.integers(0, 10**6)))
    factor = kernels.woodbury_factor(F, d)
    Sigma = np.diag(d) + F @ F.T  # dense check, off the audited path
    R = np.random.default_rng(K).standard_normal((7, K))
    expected = np.linalg.solve(Sigma, R.T).T
    got = kernels.woodbury_solve(factor, R)
    cond = np.linalg.cond(Sigma)
    assert np.max(np.abs(got - expected)) <= 1e-12 * cond * np.max(np.abs(expected))
    assert kernels.woodbury_logdet(factor) == pytest.approx(np.linalg.slogdet(Sigma)[1],
                                                            rel=1e-12, abs=1e-12)


def test_pack_sur_layout_and_validation():
    rng = np.random.default_rng(0)
    Xs = [rng.standard_normal((6, 2)), np.zeros((6, 0)), rng.standard_normal(6)]
    X, offsets = kernels.pack_sur(Xs)
    assert offsets.tolist() == [0, 2, 2, 3]
    assert np.array_equal(X[:, :2], Xs[0]) and np.array_equal(X[:, 2], Xs[2])
    with pytest.raises(ValueError, match="same number of rows"):
        kernels.pack_sur([np.ones((5, 1)), np.ones((6, 1))])
    with pytest.raises(ValueError, match="non-empty list"):
        kernels.pack_sur([])
    with pytest.raises(TypeError, match="float32"):
        kernels.pack_sur([np.ones((3, 1), dtype=np.float32)])
    with pytest.raises(TypeError, match=r"not a dict; pass list\(Xs.values\(\)\)"):
        kernels.pack_sur({"a": np.ones((3, 1))})
    for designs in (tuple(Xs), (x for x in Xs)):  # any iterable of designs
        again, again_offsets = kernels.pack_sur(designs)
        assert np.array_equal(again, X) and again_offsets.tolist() == offsets.tolist()
    with pytest.raises(ValueError, match="not one array"):
        kernels.pack_sur(np.ones((6, 3)))
    for not_a_list in (3, "Xs"):
        with pytest.raises(TypeError, match="Xs must be a list of per-equation designs"):
            kernels.pack_sur(not_a_list)


@pytest.mark.parametrize("offsets,match", [([0, 3, 2, 5], "non-decreasing"),
                                           ([1, 3, 5], r"offsets\[0\] must be 0"),
                                           ([0, 3, 4], "must equal the number of columns"),
                                           ([0], "K\\+1 >= 2"),
                                           ([0.0, 5.0], "integers")])
def test_bad_offsets(offsets, match):
    X = np.ones((4, 5))
    with pytest.raises((ValueError, TypeError), match=match):
        kernels.sur_matvec(X, offsets, np.ones(5))


def test_shape_mismatches_name_the_argument():
    X, offsets, beta, W = sur_problem(10)
    with pytest.raises(ValueError, match="beta must have shape"):
        kernels.sur_matvec(X, offsets, beta[:-1])
    with pytest.raises(ValueError, match="W must have shape"):
        kernels.sur_rmatvec(X, offsets, W[:, :-1])
    with pytest.raises(ValueError, match="x must have shape"):
        kernels.gemv(np.ones((3, 4)), np.ones(3))
    with pytest.raises(ValueError, match="two-dimensional"):
        kernels.gemv(np.ones(3), np.ones(3))


@pytest.mark.parametrize("d,match", [(np.array([1.0, 0.0, 1.0]), "positive and finite"),
                                     (np.array([1.0, -2.0, 1.0]), "positive and finite"),
                                     (np.array([1.0, np.nan, 1.0]), "positive and finite"),
                                     (np.array([1.0, np.inf, 1.0]), "positive and finite"),
                                     (np.ones(2), "d must have shape")])
def test_bad_diagonal(d, match):
    with pytest.raises(ValueError, match=match):
        kernels.woodbury_factor(np.ones((3, 1)), d)


def test_rank_larger_than_K_and_non_finite_F():
    with pytest.raises(ValueError, match="k <= K"):
        kernels.woodbury_factor(np.ones((2, 3)), np.ones(2))
    with pytest.raises(ValueError, match="F must be finite"):
        kernels.woodbury_factor(np.array([[np.nan], [1.0]]), np.ones(2))


def test_cholesky_failure_is_an_error_not_nan():
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        ref.cholesky(np.array([[1.0, 0.0], [2.0, 1.0]]))
    from reprogls.kernels.cpu.linalg import cholesky_kernel

    L = np.empty((2, 2))
    assert cholesky_kernel(np.array([[1.0, 0.0], [2.0, 1.0]]), True, L) == 1
    # overflow in F makes the capacitance non-finite: a clear error, never NaN results
    with pytest.raises(kernels.NotPositiveDefiniteError):
        kernels.woodbury_factor(np.array([[1e200], [1e200]]), np.array([1e-200, 1.0]))


def test_solve_checks_factor_and_shapes():
    F, d = factor_problem(4, 2)
    factor = kernels.woodbury_factor(F, d)
    with pytest.raises(TypeError, match="WoodburyFactor"):
        kernels.woodbury_solve((F, d), np.ones((3, 4)))
    with pytest.raises(ValueError, match="R must have shape"):
        kernels.woodbury_solve(factor, np.ones((3, 5)))


def test_inputs_are_not_modified():
    X, offsets, beta, W = sur_problem(100)
    F, d = factor_problem(len(offsets) - 1, 2)
    copies = [a.copy() for a in (X, offsets, beta, W, F, d)]
    factor = kernels.woodbury_factor(F, d)
    kernels.sur_matvec(X, offsets, beta)
    kernels.sur_rmatvec(X, offsets, W)
    kernels.woodbury_solve(factor, W)
    kernels.sur_normal_matvec(X, offsets, factor, beta)
    for before, after in zip(copies, (X, offsets, beta, W, F, d), strict=True):
        assert same_bits(before, after) if before.dtype == np.float64 else np.array_equal(
            before, after)


def test_fortran_ordered_input_is_copied_not_rejected():
    rng = np.random.default_rng(1)
    A = np.asfortranarray(rng.standard_normal((50, 9)))
    x = rng.standard_normal(9)
    assert same_bits(kernels.gemv(A, x), ref.gemv(np.ascontiguousarray(A), x))


@pytest.mark.parametrize("mode", MODES)
def test_block_cholesky_solves_equal_the_per_block_solves(mode):
    """The CG's block-Jacobi step in one compiled call has the bits of one
    ``cholesky_solve_kernel`` per block divided by its scale (blocks of 0, 1, 3 and 40
    columns, widely scaled)."""
    from reprogls.kernels.cpu.linalg import block_cholesky_solves, cholesky_solve_kernel

    rng = np.random.default_rng(5)
    widths = [3, 0, 1, 40, 3, 0]
    offsets = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
    factors = []
    for p in widths:
        B = rng.standard_normal((p, p)) * 10.0 ** rng.uniform(-3, 3)
        factors.append(np.tril(B) + np.diag(np.abs(np.diag(B)) + 1.0) if p else
                       np.zeros((0, 0)))
    r = rng.standard_normal(offsets[-1]) * 10.0 ** rng.uniform(-50, 50, offsets[-1])
    scale = rng.uniform(0.1, 10.0, len(widths))
    got = np.full_like(r, np.nan)
    flat = np.concatenate([L.ravel() for L in factors])
    ptr = np.concatenate([[0], np.cumsum([L.size for L in factors])]).astype(np.int64)
    block_cholesky_solves(flat, ptr, offsets, r, scale, mode == "compensated", got)
    expected = np.empty_like(r)
    for j, L in enumerate(factors):
        o0, o1 = offsets[j], offsets[j + 1]
        if o1 > o0:
            u = np.empty(o1 - o0)
            cholesky_solve_kernel(L, r[o0:o1].copy(), mode == "compensated", u)
            expected[o0:o1] = u / scale[j]
    assert same_bits(got, expected)


@pytest.mark.parametrize("widths", [[3, 0, 2, 1], [0, 0], [5]])
def test_cpu_sur_matvec_and_woodbury_into_a_buffer_of_garbage(widths):
    """The fit recycles N x K buffers (``out=``): every entry must be written, zeros for
    equations without regressors included, with the bits of a fresh result."""
    from reprogls.kernels.cpu import rowgroups

    rng = np.random.default_rng(11)
    N, K = 77, len(widths)
    X = np.ascontiguousarray(rng.standard_normal((N, sum(widths))))
    offsets = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
    beta = rng.standard_normal(sum(widths))
    fresh = rowgroups.sur_matvec(X, offsets, beta, True)
    garbage = np.full((N, K), np.nan)
    got = rowgroups.sur_matvec(X, offsets, beta, True, garbage)
    assert got is garbage and (got.view(np.uint64) == fresh.view(np.uint64)).all()
    F, d = rng.standard_normal((K, 1)), 0.5 + rng.uniform(size=K)
    factor = kernels.woodbury_factor(F, d)
    fresh = rowgroups.woodbury_solve(got, factor.G, factor.d, factor.L, True)
    garbage = np.full((N, K), np.nan)
    rowgroups.woodbury_solve(got, factor.G, factor.d, factor.L, True, garbage)
    assert (garbage.view(np.uint64) == fresh.view(np.uint64)).all()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n_rows", (1, 33, 300))
def test_public_out_gets_the_bits_of_a_fresh_result(n_rows, mode):
    """``sur_matvec(..., out=)`` and ``woodbury_solve(..., out=)`` write every entry of a
    buffer of NaNs with the reference's bits and return that buffer; the solve also in
    place (``out=R``), where each block of rows is read before it is written."""
    X, offsets, beta, _ = sur_problem(n_rows)
    K = len(offsets) - 1
    expect = ref.sur_matvec(X, offsets, beta, mode)
    out = np.full((n_rows, K), np.nan)
    assert kernels.sur_matvec(X, offsets, beta, mode, "cpu", out=out) is out
    assert same_bits(out, expect)
    F, d = factor_problem(K, 2)
    factor = kernels.woodbury_factor(F, d, mode)
    spec = ref.woodbury_factor(F, d, mode)
    R = np.random.default_rng(n_rows).standard_normal((n_rows, K))
    solved = ref.woodbury_solve(spec, R)
    out = np.full_like(R, np.nan)
    assert kernels.woodbury_solve(factor, R, "cpu", out=out) is out
    assert same_bits(out, solved)
    in_place = R.copy()
    assert kernels.woodbury_solve(factor, in_place, out=in_place) is in_place
    assert same_bits(in_place, solved)


def test_bad_out_names_the_problem():
    X, offsets, beta, _ = sur_problem(20)
    N, K = X.shape[0], len(offsets) - 1
    F, d = factor_problem(K, 1)
    factor = kernels.woodbury_factor(F, d)
    R = np.ones((N, K))
    cases = [
        (TypeError, "NumPy array", [[0.0] * K] * N),
        (TypeError, "float64", np.zeros((N, K), dtype=np.float32)),
        (ValueError, "out must have shape", np.zeros((N, K + 1))),
        (ValueError, "C-contiguous", np.zeros((K, N)).T),
    ]
    read_only = np.zeros((N, K))
    read_only.flags.writeable = False
    cases.append((ValueError, "read-only", read_only))
    for error, match, out in cases:
        with pytest.raises(error, match=match):
            kernels.sur_matvec(X, offsets, beta, out=out)
        with pytest.raises(error, match=match):
            kernels.woodbury_solve(factor, R, out=out)
    # overlapping an input: X as a strided view of a buffer whose first N K values are
    # also out (checked against the caller's array, not the contiguous copy made of it);
    # a view of R's memory other than R itself
    buffer = np.zeros((N, X.shape[1] + K))
    buffer[:, :X.shape[1]] = X
    with pytest.raises(ValueError, match="out overlaps X"):
        kernels.sur_matvec(buffer[:, :X.shape[1]], offsets, beta,
                           out=buffer.reshape(-1)[:N * K].reshape(N, K))
    R2 = np.ones((N + 1, K))
    with pytest.raises(ValueError, match=r"out overlaps R.*R itself"):
        kernels.woodbury_solve(factor, R2[:-1], out=R2[1:])
    before = X.copy()
    kernels.sur_matvec(X, offsets, beta, out=np.zeros((N, K)))
    assert same_bits(before, X)
