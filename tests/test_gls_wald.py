"""``GLSResult.wald_test``: linear restrictions on the coefficients, against statsmodels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from reprogls import gls
from reprogls.gls.simulate import simulate_sur
from tests.sur_stack import whitened_stack


def restrictions(P: int) -> tuple[np.ndarray, np.ndarray]:
    """Two restrictions over 2-regressor equations: beta_{0,1} = beta_{1,1} (across
    equations) and beta_{2,0} + beta_{3,1} = 0.5."""
    R = np.zeros((2, P))
    R[0, 1], R[0, 3] = 1.0, -1.0
    R[1, 4], R[1, 7] = 1.0, 1.0
    return R, np.array([0.0, 0.5])


@pytest.mark.parametrize("cov_type", ["plugin", "robust"])
def test_wald_test_matches_statsmodels_on_the_whitened_stack(cov_type):
    """With Sigma fixed, the fit is OLS on the whitened stack (see test_gls_fit), so its
    Wald statistic and p-value are statsmodels' chi-squared Wald test there, with the
    plug-in (fixed scale) or the cluster-by-observation covariance."""
    sm = pytest.importorskip("statsmodels.api")
    Xs, Y, _, F, d = simulate_sur(200, 4, 2, 2, seed=8)
    Y = Y * (1.0 + np.abs(Xs[0][:, :1]))
    res = gls.fit(Xs, Y, sigma=(F, d), cov_type=cov_type)
    N, K = Y.shape
    kwds = ({"cov_type": "fixed scale", "cov_kwds": {"scale": 1.0}} if cov_type == "plugin"
            else {"cov_type": "cluster",
                  "cov_kwds": {"groups": np.repeat(np.arange(N), K),
                               "use_correction": False, "df_correction": False}})
    ref = sm.OLS(*whitened_stack(Xs, Y, F, d)).fit(**kwds)
    R, q = restrictions(res.params.size)
    got = res.wald_test(R, q)
    want = ref.wald_test((R, q), use_f=False, scalar=True)
    assert got.df == 2
    np.testing.assert_allclose(got.statistic, want.statistic, rtol=1e-8)
    np.testing.assert_allclose(got.pvalue, want.pvalue, rtol=1e-6)
    assert 0.0 < got.pvalue < 1.0
    assert str(got).startswith("Wald test of 2 restrictions: chi2(2) = ")


def test_one_zero_restriction_is_the_squared_z_and_its_p_value():
    Xs, Y, B, _, _ = simulate_sur(300, 5, 3, 2, seed=2)
    Y[:, 1] -= Xs[1][:, 2] * B[1, 2]  # a true coefficient of zero: a p-value inside (0, 1)
    res = gls.fit(Xs, Y, rank=2)
    m = 5
    test = res.wald_test(np.eye(res.params.size)[m])
    np.testing.assert_allclose(test.statistic, res.tvalues[m] ** 2, rtol=1e-13)
    np.testing.assert_allclose(test.pvalue, res.pvalues[m], rtol=1e-10)
    assert 1e-6 < test.pvalue < 1.0


def test_restrictions_at_the_estimate_give_zero_and_p_one():
    """q equal to R beta itself: W = 0 and p = 1 exactly (W = z^T z cannot round below
    zero, where a negative W would have given a NaN p-value)."""
    Xs, Y, *_ = simulate_sur(200, 4, 2, 2, seed=3)
    res = gls.fit(Xs, Y, rank=1)
    R = np.eye(res.params.size)[[0, 3, 6]]
    test = res.wald_test(R, res.params[[0, 3, 6]])
    assert test.statistic == 0.0 and test.pvalue == 1.0


def test_named_restrictions_are_the_matrix_bit_for_bit():
    """Restrictions keyed by (equation, regressor), as to_frame's index, give the very
    statistic of the matrix form; a restriction that holds in truth is not rejected by
    much, one that does not is."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(4)
    N = 400
    data = {}
    for j in range(3):
        X = pd.DataFrame(rng.standard_normal((N, 2)), columns=["price", "income"])
        y = 1.0 - 0.7 * X["price"] + (0.2 + 0.1 * j) * X["income"]
        data[f"good{j}"] = (y + 0.3 * rng.standard_normal(N), X)
    res = gls.fit(data, rank=1, add_constant=True)
    same_price = [{("good0", "price"): 1, ("good1", "price"): -1},
                  {("good1", "price"): 1.0, ("good2", "price"): -1.0}]
    named = res.wald_test(same_price)
    index = res.to_frame().index
    R = np.zeros((2, res.params.size))
    R[0, index.get_loc(("good0", "price"))], R[0, index.get_loc(("good1", "price"))] = 1, -1
    R[1, index.get_loc(("good1", "price"))], R[1, index.get_loc(("good2", "price"))] = 1, -1
    matrix = res.wald_test(R)
    assert np.array_equal(named.R, R)
    assert np.float64(named.statistic).view(np.uint64) == np.float64(
        matrix.statistic).view(np.uint64)
    assert named.pvalue > 1e-3  # true restrictions
    same_income = res.wald_test({("good0", "income"): 1, ("good2", "income"): -1})
    assert same_income.pvalue < 1e-6  # 0.2 against 0.4
    np.testing.assert_allclose(named.pvalue, stats.chi2.sf(named.statistic, 2), rtol=1e-12)


@pytest.mark.parametrize("R,q,error,match", [
    (np.ones(7), None, ValueError, r"R must have shape \(r, P\) = \(r, 8\)"),
    (np.zeros((1, 8)), None, ValueError, "restriction 0 has every weight 0"),
    (np.full(8, np.nan), None, ValueError, "R must be finite"),
    ([["a"] * 8], None, TypeError, "R must be a real matrix"),
    (np.eye(8)[:2], [1.0], ValueError, r"q must hold one value per restriction, shape \(2,\)"),
    (np.eye(8)[:1], [np.inf], ValueError, "q must be finite"),
    (np.eye(8)[:1], ["a"], TypeError, "q must be real numbers"),
    (np.vstack([np.eye(8)[:1], 2 * np.eye(8)[:1]]), None, ValueError,
     "linearly dependent"),
    ({("y0", "x9"): 1}, None, ValueError, r"no coefficient \('y0', 'x9'\).*equation 'y0' has "
                                         r"the regressors \['x0', 'x1'\]"),
    ({("z", "x0"): 1}, None, ValueError, r"the equations are \['y0', 'y1', 'y2', 'y3'\]"),
    ({"x0": 1}, None, ValueError, r"keyed by \(equation, regressor\) pairs"),
    ({("y0", "x0"): "1"}, None, TypeError, "must be a real number"),
])
def test_bad_restrictions_are_named(R, q, error, match):
    Xs, Y, *_ = simulate_sur(100, 4, 2, 1, seed=0)
    res = gls.fit(Xs, Y, rank=1)
    with pytest.raises(error, match=match):
        res.wald_test(R, q)


def test_a_fit_without_covariance_cannot_be_tested():
    Xs, Y, *_ = simulate_sur(100, 4, 2, 1, seed=0)
    res = gls.fit(Xs, Y, rank=1, cov_type="none")
    with pytest.raises(ValueError, match="cov_type='none'"):
        res.wald_test(np.eye(8)[0])


def test_names_compare_as_the_fit_stores_them():
    """The fit keeps equation and regressor names as str; keys of other types (a year, a
    column number) are read the same way, and one coefficient named twice is an error."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(1)
    data = {year: (rng.standard_normal(150),
                   pd.DataFrame(rng.standard_normal((150, 2)), columns=[1, 2]))
            for year in (2020, 2021, 2022)}
    res = gls.fit(data, rank=1)
    by_number = res.wald_test({(2020, 1): 1, (2021, 1): -1})
    by_str = res.wald_test({("2020", "1"): 1, ("2021", "1"): -1})
    assert by_number.statistic == by_str.statistic
    with pytest.raises(ValueError, match=r"\('2020', '1'\) is named twice"):
        res.wald_test({(2020, 1): 1, ("2020", "1"): -1})


def test_a_repeated_column_name_is_not_guessed():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(2)
    X = pd.DataFrame(rng.standard_normal((150, 2)), columns=["x", "x"])
    data = {f"e{j}": (rng.standard_normal(150), X) for j in range(3)}
    res = gls.fit(data, rank=1)
    with pytest.raises(ValueError, match=r"\('e0', 'x'\) names 2 coefficients"):
        res.wald_test({("e0", "x"): 1, ("e1", "x"): -1})
    assert res.wald_test(np.eye(6)[[0]]).df == 1  # the matrix form still serves
