"""The scikit-learn style estimator ``LowRankGLS`` and the package-level entry points."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import reprogls
from reprogls import gls
from reprogls.gls import LowRankGLS, NotFittedError
from reprogls.gls.simulate import simulate_sur


def bits(a):
    return np.ascontiguousarray(a, dtype=np.float64).view(np.uint64)


@pytest.fixture(scope="module")
def data():
    Xs, Y, *_ = simulate_sur(300, 5, 3, 2, 0, True)
    return Xs, Y


def test_fit_is_gls_fit_bit_for_bit(data):
    Xs, Y = data
    model = LowRankGLS(rank=2, mode="plain").fit(Xs, Y)
    res = gls.fit(Xs, Y, rank=2, mode="plain")
    assert model.result_.fingerprint == res.fingerprint
    np.testing.assert_array_equal(bits(np.concatenate(model.coef_)), bits(res.params))
    np.testing.assert_array_equal(bits(model.components_), bits(res.F.T))
    np.testing.assert_array_equal(bits(model.noise_variance_), bits(res.d))
    assert model.n_iter_ == res.n_iter and model.converged_ == res.converged
    assert model.loglike_ == res.llf and model.n_equations_ == 5
    assert [c.shape for c in model.coef_] == [(3,)] * 5


def test_score_is_mean_loglik_and_predict_matches_result(data):
    Xs, Y = data
    model = LowRankGLS(rank=2).fit(Xs, Y)
    assert model.score(Xs, Y) == -model.result_.score(Xs, Y)
    # on the training data the mean log-likelihood per row is llf / N
    np.testing.assert_allclose(model.score(Xs, Y), model.loglike_ / Y.shape[0], rtol=1e-12)
    np.testing.assert_array_equal(bits(model.predict(Xs)), bits(model.result_.fittedvalues))


def test_score_names_bad_held_out_data(data):
    """Held-out ``Y`` of the wrong shape, non-numeric, or with a NaN (in ``Y`` or in a new
    design) is an error saying what to fix, not a NumPy broadcasting message or NaN."""
    Xs, Y = data
    res = gls.fit(Xs, Y, rank=2, cov_type="none")
    with pytest.raises(ValueError, match=r"Y must have shape \(300, 5\).*got \(300, 4\)"):
        res.score(Xs, Y[:, :4])
    with pytest.raises(ValueError, match=r"Y must have shape \(300, 5\).*got \(10, 5\)"):
        res.score(Xs, Y[:10])
    with pytest.raises(TypeError, match=r"Y has dtype <U.*needs real numbers"):
        res.score(Xs, Y.astype(str))
    Y_nan = Y.copy()
    Y_nan[[3, 7], 2] = np.nan
    with pytest.raises(ValueError, match=r"equation 2 .* in 2 rows"):
        res.score(Xs, Y_nan)
    Xs_inf = [X.copy() for X in Xs]
    Xs_inf[4][0, 1] = np.inf
    with pytest.raises(ValueError, match=r"equation 4 .* in 1 rows"):
        res.score(Xs_inf, Y)
    Y_int = np.round(Y).astype(np.int64)  # integers convert to float64 first
    assert res.score(Xs, Y_int) == res.score(Xs, Y_int.astype(np.float64))


def test_sklearn_clone_and_params_round_trip(data):
    base = pytest.importorskip("sklearn.base")
    model = LowRankGLS(rank=3, ridge=0.5, cov_type="none")
    twin = base.clone(model)
    assert twin is not model and twin.get_params() == model.get_params()
    assert not hasattr(twin, "result_")
    assert model.set_params(rank=2, mode="plain") is model
    assert (model.rank, model.mode) == (2, "plain")
    assert repr(model) == "LowRankGLS(rank=2, ridge=0.5, cov_type='none', mode='plain')"


def test_grid_over_rank_picks_by_held_out_score():
    Xs, Y, *_ = simulate_sur(600, 6, 2, 2, 1, True)
    train, test = slice(0, 400), slice(400, 600)
    scores = {k: LowRankGLS(rank=k).fit([X[train] for X in Xs], Y[train])
              .score([X[test] for X in Xs], Y[test]) for k in (1, 2, 3)}
    assert max(scores, key=scores.get) >= 2  # the data have two factors
    assert scores[2] > scores[1]


def test_hyper_parameters_are_those_of_gls_fit_with_the_same_defaults():
    import inspect

    mine = inspect.signature(LowRankGLS.__init__).parameters
    fit = inspect.signature(gls.fit).parameters
    # fit's per-call start is the estimator's warm_start (the previous result_)
    assert list(mine)[1:] == [n for n in fit if n not in ("Xs", "Y", "start")] + \
        ["warm_start"]
    assert all(mine[n].default == fit[n].default for n in list(mine)[1:-1])
    assert mine["warm_start"].default is False and fit["start"].default is None
    assert tuple(LowRankGLS().get_params()) == tuple(list(mine)[1:])


def test_bad_parameters_and_unfitted_use():
    with pytest.raises(ValueError, match=r"invalid parameter 'rnak'.*valid parameters: rank"):
        LowRankGLS().set_params(rnak=2)
    model = LowRankGLS()
    with pytest.raises(NotFittedError, match="not fitted yet; call fit"):
        model.predict([np.ones((3, 1))])
    with pytest.raises(AttributeError):  # also an AttributeError, as in scikit-learn
        model.score([np.ones((3, 1))], np.ones((3, 1)))
    # validation happens in fit, with the function's messages
    with pytest.raises(ValueError, match="cov_type must be"):
        LowRankGLS(cov_type="sandwich").fit(*simulate_sur(50, 3, 2, 1, 0, True)[:2])


def test_predict_adds_the_constant_again_and_accepts_names():
    Xs, Y, *_ = simulate_sur(200, 3, 2, 1, 2, True)
    eqs = {f"eq{j}": (Y[:, j], Xs[j]) for j in range(3)}
    model = LowRankGLS(rank=1, add_constant=True).fit(eqs)
    assert model.result_.added_constant == (True, True, True)
    with_const = [np.column_stack([np.ones(200), X]) for X in Xs]
    expected = bits(model.result_.fittedvalues)
    np.testing.assert_array_equal(bits(model.predict(Xs)), expected)
    np.testing.assert_array_equal(bits(model.predict(with_const)), expected)
    by_name = {f"eq{j}": Xs[j] for j in (2, 0, 1)}
    np.testing.assert_array_equal(bits(model.predict(by_name)), expected)
    with pytest.raises(ValueError, match="missing"):
        model.predict({"eq0": Xs[0]})
    with pytest.raises(ValueError, match=r"equation widths \[1, 1, 1\], the fit had "
                       r"\[3, 3, 3\] \(\[2, 2, 2\] before the added constants\)"):
        model.predict([X[:, :1] for X in Xs])


def test_predict_and_score_take_the_fits_dict_and_pandas_names():
    """The dict fit takes, ``{name: (y, X)}``, in any key order: predict uses its designs,
    score its ``y``s too (no Y); pandas designs (and a Y frame) whose columns are the
    fit's names in another order are reordered (by position they paired each coefficient
    with another column, silently); pandas designs with other names are refused (they
    were read by position), their NumPy values are read by position, and so are pandas
    designs when the fit's names were made up (NumPy designs); the same for a ``Y``
    frame's columns against the equation names. Mixed or doubled inputs are refused."""
    pd = pytest.importorskip("pandas")
    Xs, Y, *_ = simulate_sur(200, 3, 3, 1, 4, True)
    frames = [pd.DataFrame(X, columns=["a", "b", "c"]) for X in Xs]
    eqs = {f"eq{j}": (pd.Series(Y[:, j]), frames[j]) for j in range(3)}
    res = gls.fit(eqs, rank=1, add_constant=True)
    expected = bits(res.fittedvalues)
    shuffled = {f"eq{j}": eqs[f"eq{j}"] for j in (1, 2, 0)}
    np.testing.assert_array_equal(bits(res.predict(shuffled)), expected)
    assert res.score(shuffled) == res.score(Xs, Y)
    assert LowRankGLS(rank=1, add_constant=True).fit(eqs).score(eqs) == -res.score(eqs)
    reordered = [f[["c", "a", "b"]] for f in frames]
    np.testing.assert_array_equal(bits(res.predict(reordered)), expected)
    with_const = [f.assign(const=1.0)[["b", "const", "c", "a"]] for f in frames]
    np.testing.assert_array_equal(bits(res.predict(with_const)), expected)
    Y_frame = pd.DataFrame(Y, columns=["eq0", "eq1", "eq2"])
    assert res.score(Xs, Y_frame[["eq2", "eq0", "eq1"]]) == res.score(Xs, Y)
    renamed = [f.set_axis(["x", "y", "z"], axis=1) for f in frames]
    with pytest.raises(ValueError, match=r"equation 'eq0' has columns \['x', 'y', 'z'\], "
                                         r"but the fit's regressors are \['a', 'b', 'c'\]"):
        res.predict(renamed)
    with pytest.raises(ValueError, match=r"rename the columns.*X\.to_numpy\(\)"):
        res.score({**eqs, "eq1": (eqs["eq1"][0], frames[1].rename(columns={"b": "B"}))})
    with pytest.raises(ValueError, match="fit's regressors"):
        LowRankGLS(rank=1, add_constant=True).fit(eqs).predict(renamed)
    by_position = [f.to_numpy() for f in renamed]
    np.testing.assert_array_equal(bits(res.predict(by_position)), expected)
    unnamed = gls.fit([f.to_numpy() for f in frames], Y, rank=1, add_constant=True)
    np.testing.assert_array_equal(bits(unnamed.predict(renamed)),  # made-up names: x0 ..
                                  bits(unnamed.predict(frames)))
    # the same for a Y frame: the dict's keys are given names, y0 .. made-up ones
    other = Y_frame.set_axis(["a", "b", "c"], axis=1)
    with pytest.raises(ValueError, match=r"Y has columns \['a', 'b', 'c'\], but the fit's "
                                         r"equations are \['eq0', 'eq1', 'eq2'\].*"
                                         r"Y\.to_numpy\(\)"):
        res.score(Xs, other)
    assert res.score(Xs, other.to_numpy()) == res.score(Xs, Y)
    assert unnamed.equation_names == ["y0", "y1", "y2"]
    assert unnamed.score(Xs, other) == unnamed.score(Xs, Y)
    framed = gls.fit(frames, Y_frame, rank=1, add_constant=True)
    with pytest.raises(ValueError, match="Y has columns"):
        framed.score(frames, other)
    with pytest.raises(ValueError, match="not a mix"):
        res.predict({**eqs, "eq1": frames[1]})
    with pytest.raises(TypeError, match="Y is given twice"):
        res.score(eqs, Y)
    with pytest.raises(TypeError, match=r"score needs Y \(N, K\), unless Xs is a dict"):
        res.score(Xs)
    with pytest.raises(ValueError, match="y of equation 'eq2' must be one column"):
        res.score({**eqs, "eq2": (np.ones((200, 2)), frames[2])})


def test_a_dict_keyed_by_numbers_predicts_and_scores_as_it_fitted():
    """fit keeps the equation names as str; predict and score used to look the keys of
    the very dict fit took ({2020: (y, X)}) up as given and called every equation
    missing. Keys that are one name as str, in fit or after, are refused."""
    Xs, Y, *_ = simulate_sur(150, 3, 2, 1, 6, True)
    eqs = {2020 + j: (Y[:, j], Xs[j]) for j in range(3)}
    res = gls.fit(eqs, rank=1)
    assert res.equation_names == ["2020", "2021", "2022"]
    np.testing.assert_array_equal(bits(res.predict({y: X for y, (_, X) in eqs.items()})),
                                  bits(res.fittedvalues))
    assert res.score(eqs) == res.score(Xs, Y)
    assert res.score({str(y): pair for y, pair in eqs.items()}) == res.score(Xs, Y)
    with pytest.raises(ValueError, match="two keys that are one equation name"):
        res.predict({**{y: X for y, (_, X) in eqs.items()}, "2020": Xs[0]})
    with pytest.raises(ValueError, match=r"missing \['2022'\], not in the fit \[2023\]"):
        res.predict({2020: Xs[0], 2021: Xs[1], 2023: Xs[2]})
    with pytest.raises(ValueError, match=r"the dict's keys give \['1'\] more than once"):
        gls.fit({1: eqs[2020], "1": eqs[2021], 2: eqs[2022]}, rank=1)
    assert res.equation("2021")["name"] == "2021"
    with pytest.raises(IndexError, match=r"the equation named '2021' is equation\('2021'\)"):
        res.equation(2021)  # an int is an index


def test_package_level_names():
    assert reprogls.fit is gls.fit
    assert reprogls.LowRankGLS is LowRankGLS
    assert reprogls.GLSResult is gls.GLSResult
    with pytest.raises(AttributeError, match="no attribute 'fitt'"):
        _ = reprogls.fitt


def test_fit_warnings_name_the_callers_line(data):
    """The fit's warnings point at the line that called ``LowRankGLS.fit`` (they named
    estimator.py's call of gls.fit), keep their category and text, and still honour the
    caller's filters (an "error" filter raises them at that line)."""
    Xs, Y = data
    with pytest.warns(Warning) as caught:
        LowRankGLS(rank=4, max_iter=1, cov_type="none").fit(Xs, Y)  # K = 5: rank 4 is past
    kinds = {type(w.message).__name__ for w in caught}  # Ledermann's bound; one sweep
    assert kinds == {"IdentificationWarning", "ConvergenceWarning"}, kinds
    assert {w.filename for w in caught} == {__file__}
    with pytest.warns(gls.ConvergenceWarning, match="did not converge in 1 sweeps"):
        gls.fit(Xs, Y, rank=2, max_iter=1, cov_type="none")
    with warnings.catch_warnings():
        warnings.simplefilter("error", gls.ConvergenceWarning)
        with pytest.raises(gls.ConvergenceWarning):
            LowRankGLS(rank=2, max_iter=1, cov_type="none").fit(Xs, Y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LowRankGLS(rank=2, cov_type="none").fit(Xs, Y)  # converges: nothing to raise
