"""Estimator input layer: packing, names, validation messages; OLS on the audited path."""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest

from reprogls import gls
from reprogls.gls._dense import gram
from reprogls.gls.ols import diagonal_blocks
from reprogls.kernels import reference as ref


def small_system(N=200, widths=(3, 1, 4), seed=0):
    rng = np.random.default_rng(seed)
    Xs = [rng.standard_normal((N, p)) for p in widths]
    Y = rng.standard_normal((N, len(widths)))
    return Xs, Y


def test_list_input_packs_in_order():
    Xs, Y = small_system()
    data = gls.prepare(Xs, Y)
    assert data.offsets.tolist() == [0, 3, 4, 8]
    assert np.array_equal(data.X[:, 4:], Xs[2]) and np.array_equal(data.Y, Y)
    assert data.equation_names == ["y0", "y1", "y2"]
    assert data.regressor_names[0] == ["x0", "x1", "x2"]
    assert data.X.flags.c_contiguous and data.nobs == 200 and data.n_equations == 3


@pytest.mark.parametrize("n_threads", [1, 2])
def test_packing_handles_any_layout_dtype_and_constant(n_threads):
    """The compiled pack reads designs through their strides: Fortran order, strided
    views, a 1-D design, integer, bool and big-endian dtypes, a broadcast (zero-stride)
    design; constants are inserted where asked,
    and the result is the NumPy concatenation bit for bit (N spans several slabs and is
    not a multiple of one)."""
    import numba

    from reprogls.gls._pack import SLAB_ROWS

    N = 3 * SLAB_ROWS + 5
    rng = np.random.default_rng(3)
    wide = rng.standard_normal((N, 9))
    Xs = [np.asfortranarray(rng.standard_normal((N, 3))), wide[:, ::4],
          rng.standard_normal(N), rng.integers(-5, 5, (N, 2)), rng.random((N, 2)) < 0.5,
          np.zeros((N, 0)), rng.standard_normal((N, 2)).astype(">f8"),
          np.broadcast_to(rng.standard_normal(3), (N, 3))]
    Xs[0][:, 1] = 1.0  # already has a constant: none is added
    Y = rng.standard_normal((N, len(Xs)))
    before = numba.get_num_threads()
    numba.set_num_threads(n_threads)
    try:
        data = gls.prepare(Xs, Y, add_constant=True)
    finally:
        numba.set_num_threads(before)
    ones = np.ones((N, 1))
    # (the broadcast design's columns are each one nonzero value throughout: constants,
    # so none is added there either, as statsmodels' has_constant="skip")
    expect = np.concatenate([Xs[0], ones, Xs[1], ones, Xs[2][:, None], ones,
                             Xs[3].astype(float), ones, Xs[4].astype(float), ones, ones,
                             Xs[6].astype(float), Xs[7]], axis=1)
    assert data.widths.tolist() == [3, 4, 2, 3, 3, 1, 3, 3]
    assert data.X.flags.c_contiguous
    assert np.array_equal(data.X.view(np.uint64), expect.view(np.uint64))
    assert np.array_equal(data.Y.view(np.uint64), Y.view(np.uint64))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_found_in_any_slab_and_the_first_equation_is_named(bad):
    from reprogls.gls._pack import SLAB_ROWS

    Xs, Y = small_system(N=5 * SLAB_ROWS + 3)
    Xs = [x.copy() for x in Xs]
    Xs[2][4 * SLAB_ROWS + 1, 3] = bad  # the last slab but one
    Xs[1][-1, 0] = bad  # the last row of the last slab: equation 1 comes first
    with pytest.raises(ValueError, match=r"equation 'y1' \(Xs\[1\]\), column 'x0': 1 row"):
        gls.prepare(Xs, Y)
    Xs[1][-1, 0] = 0.0
    Y = Y.copy()
    Y[0, 2] = bad  # X_2 before y_2 of the same equation
    with pytest.raises(ValueError, match=r"equation 'y2' \(Xs\[2\]\), column 'x3'"):
        gls.prepare(Xs, Y)
    Xs[2][4 * SLAB_ROWS + 1, 3] = 0.0
    with pytest.raises(ValueError, match=r"y of equation 'y2'.*1 row"):
        gls.prepare(Xs, Y)


def test_dict_and_pandas_names_flow_through():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(1)
    X1 = pd.DataFrame(rng.standard_normal((50, 2)), columns=["income", "age"])
    X2 = pd.Series(rng.standard_normal(50), name="price")
    data = gls.prepare({"food": (pd.Series(rng.standard_normal(50)), X1),
                        "fuel": (rng.standard_normal(50), X2)}, add_constant=True)
    assert data.equation_names == ["food", "fuel"]
    assert data.regressor_names == [["const", "income", "age"], ["const", "price"]]
    assert np.all(data.X[:, 0] == 1.0) and np.all(data.X[:, 3] == 1.0)


def test_equation_names_must_be_distinct():
    """Results, predict/score dicts and Wald restrictions find an equation by name: a Y
    frame that repeats a column name is refused (it fitted, with two equations of one
    name in the summary)."""
    pd = pytest.importorskip("pandas")
    Xs, Y = small_system()
    with pytest.raises(ValueError, match=r"Y's columns give \['a'\] more than once"):
        gls.fit(Xs, pd.DataFrame(Y, columns=["a", "b", "a"]), rank=1)


def test_add_constant_skips_existing_constant():
    Xs, Y = small_system()
    Xs[0] = np.column_stack([np.ones(200), Xs[0]])
    data = gls.prepare(Xs, Y, add_constant=True)
    assert data.widths.tolist() == [4, 2, 5]


def constant_test_designs(N: int = 40) -> list[np.ndarray]:
    """Designs that probe the "has a constant" test's shortcut (only columns whose first
    two values are equal and nonzero are read in full): first rows alike in a column
    that is not constant, ones except the first or the last row, a constant column last,
    a NaN first row, a bool column of True, an empty design, a constant 2.0 (an
    intercept too), a zero column (not one) and a one-row design."""
    rng = np.random.default_rng(11)
    designs = [rng.standard_normal((N, 3)) for _ in range(10)]
    designs[0][:2, :] = 1.0  # first two rows ones, no constant column
    designs[1][1:, 2] = 1.0  # ones but the first row (a random value there)
    designs[2][:-1, 0] = 1.0  # ones but the last row
    designs[2][0, 1] = 1.0
    designs[3][:, 2] = 1.0  # a constant, last
    designs[4][:, 1] = 1.0
    designs[4][0, 1] = np.nan  # (a NaN there: prepare then names it)
    designs[5] = np.column_stack([designs[5], np.ones(N, dtype=bool)])
    designs[6] = np.zeros((N, 0))
    designs[7][:, 1] = 2.0  # a constant other than one: an intercept
    designs[8][:, 0] = 0.0  # a zero column: not an intercept
    designs[9] = designs[9][:1]  # one row: its nonzero values are constants
    return designs


def _has_intercept(d: np.ndarray) -> bool:
    """The oracle: a column with one nonzero value throughout (statsmodels' test)."""
    d = d.astype(np.float64)
    return d.shape[0] > 0 and bool(((d == d[0]) & (d[0] != 0.0)).all(axis=0).any())


def test_add_constant_detects_a_constant_column_as_a_full_comparison_does():
    designs = constant_test_designs()
    oracle = [_has_intercept(d) for d in designs]
    assert oracle == [False, False, False, True, False, True, False, True, False, True]
    data_mod = importlib.import_module("reprogls.gls.data")
    arrays = [d.astype(np.float64) for d in designs]
    assert data_mod._constant_column_flags(arrays, on_gpu=False) == oracle
    clean = [d for j, d in enumerate(designs) if j not in (4, 9)]
    data = gls.prepare(clean, np.zeros((40, len(clean))), add_constant=True)
    kept = [h for j, h in enumerate(oracle) if j not in (4, 9)]
    assert list(data.added_constant) == [not h for h in kept]
    assert data.has_constant == (True,) * len(clean)
    plain = gls.prepare(clean, np.zeros((40, len(clean))))
    assert list(plain.has_constant) == kept and not any(plain.added_constant)


def test_nan_is_reported_with_equation_column_and_rows():
    Xs, Y = small_system()
    Xs[2] = Xs[2].copy()
    Xs[2][[3, 7, 9], 1] = [np.nan, np.inf, np.nan]
    with pytest.raises(ValueError, match=r"equation 'y2' \(Xs\[2\]\), column 'x1': 3 row"):
        gls.prepare(Xs, Y)
    Y2 = Y.copy()
    Y2[0, 1] = np.nan
    with pytest.raises(ValueError, match=r"y of equation 'y1'.*1 row"):
        gls.prepare([*Xs[:2], small_system()[0][2]], Y2)


def test_shape_errors():
    Xs, Y = small_system()
    with pytest.raises(ValueError, match="len\\(Xs\\) = 3 equations but Y has 2 columns"):
        gls.prepare(Xs, Y[:, :2])
    with pytest.raises(ValueError, match=r"same number of rows N; most inputs have 200, "
                                         r"but the design of 'y1' has 100$"):
        gls.prepare([Xs[0], Xs[1][:100], Xs[2]], Y)
    with pytest.raises(ValueError, match=r"Y has 199 rows but the designs have 200"):
        gls.prepare(Xs, Y[:-1])
    many = [Xs[0][:, :1]] * 2000  # K = 2000: five named, and how many in all
    with pytest.raises(ValueError, match=r"has 100, .* \(1000 inputs in all\)$"):
        gls.prepare([X if j % 2 else X[:100] for j, X in enumerate(many)], np.ones((200, 2000)))
    eqs = {"a": (Y[:, 0], Xs[0]), "b": (Y[:150, 1], Xs[1])}
    with pytest.raises(ValueError, match=r"but y of 'b' has 150$"):
        gls.prepare(eqs)
    with pytest.raises(ValueError, match="needs N > p_j"):
        gls.prepare([np.ones((3, 3)), np.ones((3, 1))], np.ones((3, 2)))
    with pytest.raises(ValueError, match="Y is required"):
        gls.prepare(Xs)
    with pytest.raises(ValueError, match=r"Y looks transposed.*pass Y\.T"):
        gls.prepare(Xs, Y.T)
    with pytest.raises(ValueError, match="not one array"):
        gls.prepare(np.column_stack(Xs), Y)
    for not_a_list in (5, "Xs", None):
        with pytest.raises(TypeError, match="Xs must be a list of per-equation designs"):
            gls.prepare(not_a_list, Y)


def test_designs_may_come_as_any_iterable():
    Xs, Y = small_system()
    expect = gls.prepare(Xs, Y)
    for designs in (tuple(Xs), (x for x in Xs)):
        got = gls.prepare(designs, Y)
        assert np.array_equal(got.X.view(np.uint64), expect.X.view(np.uint64))


def test_non_numeric_data():
    Xs, Y = small_system()
    with pytest.raises(TypeError, match="non-numeric"):
        gls.prepare([np.array([["a", 1.0]] * 200, dtype=object), *Xs[1:]], Y)
    with pytest.raises(TypeError, match="dtype"):
        gls.prepare([np.ones((200, 1), dtype=complex), *Xs[1:]], Y)
    pd = pytest.importorskip("pandas")
    text = pd.DataFrame({"a": Xs[0][:, 0], "c": np.where(Xs[0][:, 0] > 0, "u", "v")})
    with pytest.raises(TypeError, match="non-numeric"):
        gls.prepare([text.astype({"c": "category"}), *Xs[1:]], Y)


def test_missing_values_of_pandas_nullable_dtypes_are_named_as_missing():
    """pd.NA in a nullable column (Float64, Int64) is a missing value: the error names
    the equation, the column and the row count as for NaN (it said "non-numeric"), and
    the same columns without NA fit as their float64 values."""
    pd = pytest.importorskip("pandas")
    Xs, Y = small_system()
    frame = pd.DataFrame(Xs[0], columns=[f"x{m}" for m in range(Xs[0].shape[1])])
    holed = frame.astype("Float64")
    holed.iloc[[3, 7], 1] = pd.NA
    with pytest.raises(ValueError, match=r"column 'x1'.*2 row\(s\) hold NaN"):
        gls.prepare([holed, *Xs[1:]], Y)
    counts = pd.Series(np.arange(200), name="y0").astype("Int64")
    counts.iloc[5] = pd.NA
    frame_y = pd.DataFrame(Y, columns=["y0", "y1", "y2"]).assign(y0=counts)
    with pytest.raises(ValueError, match=r"'y0'.*1 row\(s\) hold NaN"):
        gls.prepare(Xs, frame_y)
    with pytest.raises(ValueError, match=r"1 row\(s\) hold NaN"):
        gls.prepare({"e0": (counts, Xs[0]), "e1": (Y[:, 1], Xs[1]), "e2": (Y[:, 2], Xs[2])})
    plain = gls.prepare([frame.astype("Float64"), *Xs[1:]], Y)
    assert np.array_equal(plain.X.view(np.uint64), gls.prepare(Xs, Y).X.view(np.uint64))


def test_caller_data_not_modified():
    Xs, Y = small_system()
    before = [x.copy() for x in Xs] + [Y.copy()]
    data = gls.prepare(Xs, Y, add_constant=True)
    data.X[:] = 0.0
    gls.ols(gls.prepare(Xs, Y))
    for a, b in zip(before, [*Xs, Y], strict=True):
        assert np.array_equal(a.view(np.uint64), b.view(np.uint64))


def test_check_rank():
    assert gls.check_rank(3, 10) == 3
    assert gls.check_rank(0, 10) == 0 and gls.check_rank(0, 1) == 0  # Sigma = diag(d)
    for bad in (10, -1):
        with pytest.raises(ValueError, match=r"rank must be in 0\.\.K-1 = 0\.\.9"):
            gls.check_rank(bad, 10)
    with pytest.raises(ValueError, match=r"K >= 2 equations; with K = 1 only rank=0"):
        gls.check_rank(1, 1)
    with pytest.raises(TypeError, match="integer"):
        gls.check_rank(2.0, 10)
    with pytest.warns(gls.IdentificationWarning, match="Ledermann"):
        gls.check_rank(4, 6)  # (6 - 4)**2 = 4 < 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gls.check_rank(2, 6)  # 16 >= 8: identified


def test_the_identification_warning_names_the_callers_line():
    """Raised for fit's rank, the warning points at the line that called fit (it named
    fit.py's own line, as check_rank's caller), and at check_rank's caller otherwise."""
    Xs, Y = small_system()
    with pytest.warns(gls.IdentificationWarning) as caught:
        gls.fit(Xs, Y, rank=2, cov_type="none")
        gls.check_rank(2, 3)
    assert [w.filename for w in caught] == [__file__, __file__]


@pytest.mark.parametrize("sigma,error,match", [
    ((np.ones((4, 1)), np.ones(4)), ValueError, r"F must have shape \(K, k\) = \(3, k\)"),
    ((np.ones(3), np.ones(3)), ValueError, r"F\.reshape\(3, 1\)"),
    ((np.ones((3, 1)), np.ones(4)), ValueError, r"d must have shape \(3,\)"),
    ((np.ones((3, 1)), np.array([1.0, 0.0, 1.0])), ValueError, "sigma=.*positive and finite"),
    ((np.full((3, 1), np.nan), np.ones(3)), ValueError, "sigma=.*F must be finite"),
    ((np.ones((3, 1)),), TypeError, "pair .* tuple of length 1"),
    ("F, d", TypeError, "pair"),
])
def test_fixed_sigma_is_checked_against_the_equations(sigma, error, match):
    """A fixed ``sigma`` that does not fit the K equations is an error naming it, raised
    before any kernel runs (an F with K + 1 rows once reached the kernels, which trust
    their inputs, and the process died with a heap corruption)."""
    Xs, Y = small_system()
    with pytest.raises(error, match=match):
        gls.fit(Xs, Y, sigma=sigma, cov_type="none")


def test_fixed_sigma_may_be_diagonal_or_full_rank():
    """``k = 0`` (a diagonal Sigma: weighted least squares per equation, coupled by
    nothing) and ``k = K`` are both valid fixed Sigmas; with ``k = 0`` GLS is OLS per
    equation (each equation's weight cancels in its own normal equations)."""
    Xs, Y = small_system()
    d = np.array([0.5, 2.0, 1.0])
    diagonal = gls.fit(Xs, Y, sigma=(np.empty((3, 0)), d), cov_type="none")
    for j, Xj in enumerate(Xs):
        expect = np.linalg.lstsq(Xj, Y[:, j], rcond=None)[0]
        got = diagonal.params[diagonal.offsets[j]:diagonal.offsets[j + 1]]
        np.testing.assert_allclose(got, expect, rtol=1e-10)
    full = gls.fit(Xs, Y, sigma=(np.eye(3) * 0.3, d), cov_type="none")
    assert full.F.shape == (3, 3) and full.converged


@pytest.mark.parametrize("estimator", [False, True])
def test_a_rank_that_contradicts_a_fixed_sigma_is_an_error(estimator):
    """With ``sigma=(F, d)`` the rank is F's column count. ``rank`` used to be ignored
    there without a word (rank=2 with a one-column F fitted rank 1); now another value is
    an error naming both, while leaving it out or passing F's count gives the same bits."""
    Xs, Y = small_system()
    sigma = (np.full((3, 1), 0.4), np.array([0.5, 2.0, 1.0]))

    def fit(**options):
        if estimator:
            return gls.LowRankGLS(sigma=sigma, **options).fit(Xs, Y).result_
        return gls.fit(Xs, Y, sigma=sigma, **options)

    with pytest.raises(ValueError, match=r"rank=2 does not match sigma=\(F, d\): its F has 1 "
                                         r"column.*leave rank out"):
        fit(rank=2)
    left_out, matching = fit(), fit(rank=1)
    assert left_out.rank == matching.rank == 1
    assert left_out.fingerprint == matching.fingerprint
    with pytest.raises(TypeError, match="rank"):
        fit(rank=1.5)


@pytest.mark.parametrize("mode", ["compensated", "plain"])
def test_block_grams_match_the_reference(mode):
    Xs, Y = small_system(N=9000, widths=(3, 0, 1, 5))
    data = gls.prepare(Xs, Y)
    grams = gls.block_grams(data, mode)
    for Xj, Gj in zip(Xs, grams, strict=True):
        if Xj.shape[1]:
            expected = np.array([[ref.cro_dot(Xj[:, c], Xj[:, a], mode)
                                  for a in range(Xj.shape[1])] for c in range(Xj.shape[1])])
            assert np.array_equal(Gj.view(np.uint64), expected.view(np.uint64))
    cut = diagonal_blocks(gram(data.X, mode), data.offsets)  # what the gram solver uses
    for Gj, Cj in zip(grams, cut, strict=True):
        assert np.array_equal(Gj.view(np.uint64), Cj.view(np.uint64))


def test_ols_matches_lstsq_per_equation():
    Xs, Y = small_system(N=500, widths=(3, 1, 6))
    beta = gls.ols(gls.prepare(Xs, Y))
    offsets = [0, 3, 4, 10]
    for j, Xj in enumerate(Xs):
        expected = np.linalg.lstsq(Xj, Y[:, j], rcond=None)[0]
        np.testing.assert_allclose(beta[offsets[j]:offsets[j + 1]], expected, rtol=1e-10)


def test_ridge_matches_closed_form():
    Xs, Y = small_system(N=100, widths=(4, 2))
    beta = gls.ols(gls.prepare(Xs, Y[:, :2]), ridge=2.5)
    X0 = Xs[0]
    expected = np.linalg.solve(X0.T @ X0 + 2.5 * np.eye(4), X0.T @ Y[:, 0])
    np.testing.assert_allclose(beta[:4], expected, rtol=1e-10)


def test_collinear_design_names_equation_and_column():
    Xs, Y = small_system(N=100, widths=(3, 2))
    Xs[1] = np.column_stack([Xs[1], Xs[1][:, 0] * 2.0 - Xs[1][:, 1]])
    data = gls.prepare(Xs, Y[:, :2])
    with pytest.raises(gls.CollinearityError, match=r"equation 'y1': column 'x2' \(index 2\)"):
        gls.ols(data)
    assert np.all(np.isfinite(gls.ols(data, ridge=1e-3)))  # a ridge makes it solvable
    with pytest.raises(TypeError, match="ridge must be a real number"):
        gls.ols(data, ridge="1e-3")
    Xs[0] = Xs[0].copy()
    Xs[0][:, 1] = 0.0
    with pytest.raises(gls.CollinearityError, match="equation 'y0': column 'x1'"):
        gls.ols(gls.prepare(Xs, Y[:, :2]))


@pytest.mark.parametrize("options,error,match", [
    ({"max_iter": 2.5}, TypeError, "max_iter must be an integer"),
    ({"max_iter": 0}, ValueError, "max_iter must be >= 1"),
    ({"cg_max_iter": 0}, ValueError, "cg_max_iter must be >= 1"),
    ({"cg_max_iter": True}, TypeError, "cg_max_iter must be an integer"),
    ({"tol": float("inf")}, ValueError, "tol must be > 0 and finite"),
    ({"tol": float("nan")}, ValueError, "tol must be > 0 and finite"),
    ({"cg_tol": 0.0}, ValueError, "cg_tol must be > 0 and finite"),
    ({"ridge": float("inf")}, ValueError, "ridge must be >= 0 and finite"),
    ({"ridge": float("nan")}, ValueError, "ridge must be >= 0 and finite"),
    ({"ridge": None}, TypeError, "ridge must be a real number"),
    ({"tol": "1e-8"}, TypeError, "tol must be a real number"),
    ({"cg_tol": np.array([1e-8])}, TypeError, "cg_tol must be a real number"),
    ({"min_uniqueness": True}, TypeError, "min_uniqueness must be a real number"),
    ({"min_uniqueness": 1.0}, ValueError, r"min_uniqueness must be in \[0, 1\)"),
])
def test_fit_options_are_checked(options, error, match):
    """Iteration counts and tolerances that would end in a bare Python error (``cg_tol =
    0`` divided by zero, a float ``max_iter`` reached ``range``) or a misleading one
    (``ridge = inf`` reported a collinear column) are refused up front."""
    Xs, Y = small_system()
    with pytest.raises(error, match=match):
        gls.fit(Xs, Y, rank=1, **options)


def test_dict_y_must_be_one_column():
    Xs, Y = small_system()
    named = {"a": (Y[:, :2], Xs[0]), "b": (Y[:, 1], Xs[1]), "c": (Y[:, 2:3], Xs[2])}
    with pytest.raises(ValueError, match=r"y of equation 'a' must be one column .*\(200, 2\)"):
        gls.prepare(named)
    named["a"] = (Y[:, 0], Xs[0])  # an (N, 1) y, as equation c's, is one column
    assert gls.prepare(named).Y.shape == (200, 3)


def test_pandas_row_indexes_must_agree():
    """Rows are paired by position; as statsmodels does, differently labelled pandas rows
    are refused (naming two inputs) rather than paired silently."""
    pd = pytest.importorskip("pandas")
    Xs, Y = small_system()
    index = pd.RangeIndex(200)
    frames = [pd.DataFrame(X, index=index) for X in Xs]
    ys = [pd.Series(Y[:, j], index=index) for j in range(3)]
    named = {f"e{j}": (ys[j], frames[j]) for j in range(3)}
    assert gls.prepare(named).nobs == 200
    named["e2"] = (ys[2], frames[2].set_axis(pd.RangeIndex(1, 201)))
    with pytest.raises(ValueError, match="row indexes of y of equation 'e0' and the design "
                                         "of equation 'e2' differ"):
        gls.prepare(named)
    shuffled = pd.DataFrame(Y, index=index[::-1])
    with pytest.raises(ValueError, match="row indexes of Y and the design of equation '0'"):
        gls.prepare([frames[0], frames[1], frames[2]], shuffled.set_axis([0, 1, 2], axis=1))
    # NumPy designs carry no labels: nothing to compare with
    assert gls.prepare(Xs, shuffled).nobs == 200


@pytest.mark.parametrize("scale,what", [(1e200, "overflow"), (1e-200, "underflow to zero")])
def test_a_column_out_of_float64_range_is_named_as_a_scale_problem(scale, what):
    """A column whose squares leave float64's range makes its Gram pivot inf or 0: the
    error says to rescale it, not that it is collinear."""
    Xs, Y = small_system()
    Xs[2] = Xs[2] * np.array([1.0, 1.0, scale, 1.0])
    with pytest.raises(gls.CollinearityError, match=f"column 'x2' \\(index 2\\) holds values "
                                                    f"of magnitude .* {what}.*rescale"):
        gls.fit(Xs, Y, rank=1)


@pytest.mark.parametrize("scale,what", [(1e160, "overflows"), (1e-160, "underflows"),
                                         (1e-200, "underflows")])
@pytest.mark.parametrize("fixed", [False, True])
def test_a_y_out_of_float64_range_is_named_as_a_scale_problem(scale, what, fixed):
    """A y_j whose mean square overflows, or underflows below the normal range (1e-160:
    subnormal; 1e-200: zero), has no representable Sigma: the error names it before
    any work. (It surfaced as "F must be finite", as a "collinear" normal matrix, or, with
    a fixed Sigma, as llf = NaN.)"""
    Xs, Y = small_system()
    Y[:, 1] *= scale
    sigma = (np.ones((3, 1)), np.ones(3)) if fixed else None
    with pytest.raises(ValueError, match=f"y of equation 'y1' holds values of magnitude up "
                                         f"to .*, whose mean square {what} float64.*rescale"):
        gls.fit(Xs, Y, rank=1, sigma=sigma)


def test_an_all_zero_y_is_not_a_scale_problem():
    Xs, Y = small_system()
    Y[:, 2] = 0.0
    with pytest.warns(gls.ExactFitWarning, match="'y2'"):
        res = gls.fit(Xs, Y, rank=1)
    assert np.all(res.params[4:] == 0.0)


@pytest.mark.parametrize("solver", ["gram", "cg"])
@pytest.mark.parametrize("penalised", [False, True])
@pytest.mark.parametrize("x_scale,y_scale", [(1e4, 1e-150), (1e-100, 1e100), (1.0, 1e-153)])
def test_x_and_y_too_far_apart_is_a_scale_error(solver, penalised, x_scale, y_scale):
    """The normal equations scale as x^2 / y^2: past float64's range they overflow or
    underflow. Every beta-step says so instead of returning its starting point (the CG,
    whose norms overflowed, returned the OLS start as converged: coefficients 7% off
    without a word), calling the designs collinear, or failing on a NaN step. (Without
    the covariance, whose Cholesky would also fail, so that the beta-step is tested.)"""
    Xs, Y = small_system()
    options = {"l1": 1e-3 * x_scale / y_scale} if penalised else {}
    with pytest.raises(ValueError, match="scales of X and Y are too far apart"):
        gls.fit([x * x_scale for x in Xs], Y * y_scale, rank=1, beta_solver=solver,
                cov_type="none", **options)


@pytest.mark.parametrize("exponent", [400, -400])
@pytest.mark.parametrize("solver", ["gram", "cg"])
def test_rescaling_x_by_a_power_of_two_rescales_the_fit_exactly(exponent, solver):
    """Scaling X by 2^e scales every product, sum and solve exactly (far from float64's
    limits), so beta and its standard errors scale by 2^-e bit for bit and Sigma, the
    log-likelihood and the sweeps are unchanged."""
    Xs, Y = small_system(N=300)
    base = gls.fit(Xs, Y, rank=1, beta_solver=solver)
    s = 2.0 ** exponent
    res = gls.fit([x * s for x in Xs], Y, rank=1, beta_solver=solver)
    assert res.n_iter == base.n_iter and res.llf == base.llf
    for a, b in ((res.params * s, base.params), (res.bse * s, base.bse), (res.d, base.d)):
        assert np.array_equal(a.view(np.uint64), b.view(np.uint64))


def test_equation_view_names_a_bad_index_or_name():
    Xs, Y = small_system()
    res = gls.fit(Xs, Y, rank=1, cov_type="none")
    assert res.equation(-1)["name"] == res.equation(2)["name"] == "y2"
    assert res.equation("y1")["name"] == "y1"
    with pytest.raises(ValueError, match=r"no equation named 'zz'; the equations are"):
        res.equation("zz")
    with pytest.raises(IndexError, match="out of range for K = 3"):
        res.equation(3)
    with pytest.raises(TypeError, match="index or name"):
        res.equation(1.0)


def test_hand_built_surdata_is_checked():
    """``SURData`` is public and its arrays go to kernels that read raw pointers: offsets
    past the columns of X, a Y of the wrong shape, a Fortran-ordered X or names that do
    not fit are refused when it is built (before, ``block_grams`` read past the end of X
    without a word)."""
    Xs, Y = small_system()
    good = gls.prepare(Xs, Y)
    fields = dict(X=good.X, offsets=good.offsets, Y=good.Y,
                  equation_names=good.equation_names, regressor_names=good.regressor_names)
    assert gls.SURData(**fields).nobs == 200
    bad = [({"offsets": np.array([0, 3, 4, 12])}, "offsets\\[-1\\] must equal"),
           ({"Y": Y[:10]}, "Y must have shape \\(N, K\\) = \\(200, 3\\)"),
           ({"X": np.asfortranarray(good.X)}, "X must be a C-contiguous"),
           ({"Y": Y.astype(np.float32)}, "Y must be a C-contiguous 2-D float64"),
           ({"offsets": good.offsets.astype(np.int32)}, "offsets must be an int64"),
           ({"regressor_names": [["a"]] * 3}, "one regressor name per column")]
    for change, match in bad:
        with pytest.raises(ValueError, match=match):
            gls.SURData(**{**fields, **change})


# --- CuPy inputs: validated and packed on their GPU ---------------------------------------

@pytest.mark.gpu
def test_cupy_inputs_are_packed_on_their_gpu_with_the_host_bits():
    """CuPy designs and Y are packed where they are (``gls._pack.pack_designs_on_device``):
    ``X`` and ``Y`` come back as CuPy arrays on that GPU, equal bit for bit to the host
    packing of the same data, whatever the designs' layout and dtype (a Fortran-ordered
    and a strided view, a 1-D, an integer, a bool and an empty design, an existing
    constant), with the same names; the caller's arrays are not modified."""
    import cupy

    rng = np.random.default_rng(3)
    N = 150
    host = [rng.standard_normal((N, 3)), rng.standard_normal((N, 9)),
            rng.standard_normal(N), rng.integers(-5, 5, (N, 2)), rng.random((N, 2)) < 0.5,
            np.zeros((N, 0))]
    host[0][:, 1] = 1.0  # already has a constant: none is added
    Y = rng.standard_normal((N, len(host)))
    devs = [cupy.asarray(np.ascontiguousarray(host[0].T)).T,  # Fortran order
            cupy.asarray(host[1])[:, ::4], *[cupy.asarray(h) for h in host[2:]]]
    host[1] = host[1][:, ::4]
    before = [d.get() for d in devs]
    expect = gls.prepare(host, Y, add_constant=True)
    data = gls.prepare(devs, cupy.asarray(Y), add_constant=True)
    assert data.on_gpu and data.location == "cuda:0"
    integer_y = gls.prepare(devs, cupy.asarray(np.round(Y * 4).astype(np.int64)))
    assert np.array_equal(integer_y.Y.get(), np.round(Y * 4))
    assert type(data.X).__module__.split(".")[0] == "cupy" and data.X.flags.c_contiguous
    assert np.array_equal(data.X.get().view(np.uint64), expect.X.view(np.uint64))
    assert np.array_equal(data.Y.get().view(np.uint64), expect.Y.view(np.uint64))
    assert data.offsets.tolist() == expect.offsets.tolist()
    assert data.regressor_names == expect.regressor_names
    assert data.added_constant == expect.added_constant
    for b, d in zip(before, devs, strict=True):
        assert np.array_equal(b, d.get())
    named = gls.prepare({"a": (cupy.asarray(Y[:, 0]), devs[0]),
                         "b": (cupy.asarray(Y[:, 1:2]), devs[1])})
    assert np.array_equal(named.Y.get().view(np.uint64), Y[:, :2].copy().view(np.uint64))
    assert named.to_host().location == "cpu"
    assert np.array_equal(named.to_host().X.view(np.uint64),
                          gls.prepare({"a": (Y[:, 0], host[0]),
                                       "b": (Y[:, 1], host[1])}).X.view(np.uint64))


@pytest.mark.gpu
def test_cupy_designs_constant_test_matches_the_host_in_one_transfer(monkeypatch):
    """``add_constant``'s test on CuPy designs gives the host's flags, and only one array
    (the flags of every column) comes back to the host, whatever K (on the emulator,
    where ``get`` can be counted)."""
    import cupy

    from tests import cuda_emulator

    data_mod = importlib.import_module("reprogls.gls.data")
    arrays = [d.astype(np.float64) for d in constant_test_designs()]
    expect = data_mod._constant_column_flags(arrays, on_gpu=False)
    devs = [cupy.asarray(a) for a in arrays]
    transfers = []
    if cuda_emulator.requested():
        real_get = cupy.ndarray.get
        monkeypatch.setattr(cupy.ndarray, "get",
                            lambda self: transfers.append(self.shape) or real_get(self))
    assert data_mod._constant_column_flags(devs, on_gpu=True) == expect
    if cuda_emulator.requested():
        assert transfers == [(sum(a.shape[1] for a in arrays),)]


@pytest.mark.gpu
def test_cupy_inputs_get_the_host_messages():
    """NaN/inf in a CuPy design or y, mixed host and GPU inputs, a complex CuPy design, a
    collinear design, a y out of float64's range and a CuPy ``SURData.X`` without
    ``on_gpu``: the same messages as for host data."""
    import cupy

    Xs, Y = small_system()
    Xs[2] = Xs[2].copy()
    Xs[2][[3, 7, 9], 1] = [np.nan, np.inf, np.nan]
    devs = [cupy.asarray(x) for x in Xs]
    with pytest.raises(ValueError, match=r"equation 'y2' \(Xs\[2\]\), column 'x1': 3 row"):
        gls.prepare(devs, cupy.asarray(Y))
    Y2 = Y.copy()
    Y2[0, 1] = np.inf
    devs[2] = cupy.asarray(small_system()[0][2])
    with pytest.raises(ValueError, match=r"y of equation 'y1'.*1 row"):
        gls.prepare(devs, cupy.asarray(Y2))
    with pytest.raises(ValueError, match=r"different devices \(cpu, cuda:0\)"):
        gls.prepare([Xs[0], *devs[1:]], cupy.asarray(Y))
    with pytest.raises(ValueError, match=r"different devices \(cpu, cuda:0\)"):
        gls.prepare(devs, Y)
    with pytest.raises(TypeError, match="dtype"):
        gls.prepare([cupy.asarray(np.ones((200, 1), dtype=complex)), *devs[1:]],
                    cupy.asarray(Y))
    collinear = [devs[0], devs[1], cupy.asarray(np.column_stack([Xs[1], Xs[1] * 2.0]))]
    with pytest.raises(gls.CollinearityError, match=r"equation 'y2': column 'x1' \(index 1\)"):
        gls.fit(collinear, cupy.asarray(Y), rank=1)
    with pytest.raises(ValueError, match=r"y of equation 'y0' .* mean square overflows"):
        gls.fit(devs, cupy.asarray(Y * np.array([1e160, 1.0, 1.0])), rank=1)
    good = gls.prepare(devs, cupy.asarray(Y))
    fields = dict(X=good.X, offsets=good.offsets, Y=good.Y,
                  equation_names=good.equation_names, regressor_names=good.regressor_names)
    assert gls.SURData(**fields, on_gpu=True).location == "cuda:0"
    with pytest.raises(ValueError, match=r"X must be a C-contiguous.*on_gpu=True"):
        gls.SURData(**fields)
    with pytest.raises(ValueError, match="X is on cuda:0 but Y on cpu"):
        gls.SURData(**{**fields, "Y": Y}, on_gpu=True)


@pytest.mark.gpu
def test_cupy_inputs_without_a_usable_gpu_name_the_way_out(monkeypatch):
    """CUDA disabled (``REPROGLS_DISABLE_CUDA=1``) with CuPy inputs: ``device="auto"``
    follows the arrays to their GPU and says why it cannot run there and that only
    ``device="cpu"`` runs on the CPU (it said "device='cuda' was requested ... or
    device='auto'", which the caller had not asked and which would not help);
    ``device="cpu"`` fits them on the host with the NumPy inputs' fingerprint."""
    import cupy

    from reprogls.kernels import devices
    from reprogls.kernels.devices import CudaUnavailableError

    Xs, Y = small_system()
    expect = gls.fit(Xs, Y, rank=1, device="cpu").fingerprint
    devs, Yd = [cupy.asarray(x) for x in Xs], cupy.asarray(Y)
    monkeypatch.setenv("REPROGLS_DISABLE_CUDA", "1")
    devices.cuda_status.cache_clear()
    try:
        with pytest.raises(CudaUnavailableError,
                           match=r"CuPy arrays on cuda:0.*disabled.*device='cpu'"):
            gls.fit(devs, Yd, rank=1)
        assert gls.fit(devs, Yd, rank=1, device="cpu").fingerprint == expect
    finally:
        monkeypatch.delenv("REPROGLS_DISABLE_CUDA")
        devices.cuda_status.cache_clear()
