"""``gls.select_rank``: the rank of Sigma by AIC / BIC over deterministic fits."""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest

from reprogls import gls
from reprogls.gls import IdentificationWarning
from reprogls.gls import select as select_module
from tests.corpus import same_bits

fit_module = importlib.import_module("reprogls.gls.fit")


@pytest.fixture(scope="module")
def three_factors():
    """N = 1500, K = 12 equations of 3 regressors, three factors in the errors."""
    Xs, Y, *_ = gls.simulate_sur(1500, 12, 3, 3, seed=5, shared=False)
    return Xs, Y


def test_bic_finds_the_data_rank_and_the_table_is_the_fits(three_factors):
    """BIC picks the three factors; every row is the bits of ``gls.fit`` at that rank;
    the chosen rank comes with the plug-in covariance of ``gls.fit(rank=3)`` bit for bit
    (given to the candidate, not fitted again), and the criteria are ``-2 llf + q log N``
    and ``-2 llf + 2 q``."""
    Xs, Y = three_factors
    before = [X.copy() for X in Xs], Y.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IdentificationWarning)
        sel = gls.select_rank(Xs, Y, ranks=[5, 1, 2, 3, 4, 3])
    assert sel.criterion == "bic" and sel.ranks == (1, 2, 3, 4, 5)
    assert sel.best_rank == 3
    for i, k in enumerate(sel.ranks):
        alone = gls.fit(Xs, Y, rank=k, cov_type="none")
        assert same_bits(np.array(sel.llf[i]), np.array(alone.llf))
        assert sel.df_model[i] == alone.df_model
        assert sel.bic[i] == alone.bic and sel.aic[i] == alone.aic
        np.testing.assert_allclose(sel.bic[i], -2.0 * alone.llf
                                   + np.log(1500.0) * alone.df_model, rtol=1e-15)
        assert sel.aic[i] == -2.0 * alone.llf + 2.0 * alone.df_model
        assert sel.converged[i]
    assert sel.bic[2] < min(sel.bic[:2] + sel.bic[3:])
    chosen = gls.fit(Xs, Y, rank=3)
    assert sel.result.rank == 3 and same_bits(sel.result.params, chosen.params)
    assert same_bits(sel.result.cov, chosen.cov) and np.all(sel.result.bse > 0)
    assert all(same_bits(a, b) for a, b in zip(Xs, before[0], strict=True))
    assert same_bits(Y, before[1])
    text = str(sel)
    assert "best rank 3" in text and len(text.splitlines()) == 2 + 5


def test_aic_without_covariance_returns_the_candidate_itself(three_factors):
    Xs, Y = three_factors
    sel = gls.select_rank(Xs, Y, ranks=range(1, 5), criterion="aic", cov_type="none")
    best = int(np.argmin(sel.aic))
    assert sel.best_rank == sel.ranks[best]
    assert np.all(np.isnan(sel.result.bse))  # no covariance was computed
    pd = pytest.importorskip("pandas")
    frame = sel.to_frame()
    assert list(frame.index) == [1, 2, 3, 4] and frame.index.name == "rank"
    assert isinstance(frame, pd.DataFrame) and list(frame["aic"]) == list(sel.aic)


def test_named_equations_and_fit_options_pass_through(three_factors):
    Xs, Y = three_factors
    eqs = {f"eq{j}": (Y[:, j], Xs[j]) for j in range(len(Xs))}
    sel = gls.select_rank(eqs, ranks=[2, 3], add_constant=True, mode="plain")
    alone = gls.fit(eqs, rank=sel.best_rank, add_constant=True, mode="plain")
    assert sel.result.fingerprint == alone.fingerprint


@pytest.mark.parametrize("kwargs, error, match", [
    ({"ranks": [1, 2], "criterion": "hqic"}, ValueError, "criterion must be one of"),
    ({"ranks": []}, ValueError, "ranks is empty"),
    ({"ranks": [1, 2.0]}, TypeError, "ranks must be an integer"),
    ({"ranks": "123"}, TypeError, "ranks must be an iterable of integers"),
    ({"ranks": 3}, TypeError, "ranks must be an iterable of integers"),
    ({"ranks": [-1, 1]}, ValueError, r"ranks must be in 0..K-1 = 0..11 .*\[-1\]"),
    ({"ranks": [1, 12]}, ValueError, r"ranks must be in 0..K-1 = 0..11 .*\[12\]"),
    ({"ranks": [1], "rank": 2}, ValueError, "drop rank"),
    ({"ranks": [1], "sigma": None, "l1": 0.1}, ValueError, "drop l1, sigma"),
    ({"ranks": [1], "cov_type": "sandwich"}, ValueError, "cov_type must be 'plugin', "),
])
def test_bad_arguments_fail_before_any_fit(three_factors, monkeypatch, kwargs, error, match):
    Xs, Y = three_factors
    fits = []
    monkeypatch.setattr(select_module, "SharedFit", lambda *a, **kw: fits.append(kw))
    with pytest.raises(error, match=match):
        gls.select_rank(Xs, Y, **kwargs)
    assert fits == []


def test_the_candidates_share_the_rank_free_work_and_keep_the_bits_of_fit(three_factors,
                                                                         monkeypatch):
    """The packing, the Gram blocks, their factors and the OLS start run once for all
    the candidates (:class:`SharedFit`), and every candidate still has the bits of
    ``gls.fit`` at its rank -- on the CG beta-step, at rank 0, with the robust
    covariance given to the chosen one."""
    Xs, Y = three_factors
    options = dict(beta_solver="cg", add_constant=True, mode="plain", tol=1e-9)
    calls = {"prepare": 0, "block_grams": 0, "ols": 0}
    for name in calls:
        real = getattr(fit_module, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(fit_module, name, counted)
    sel = gls.select_rank(Xs, Y, ranks=[0, 2, 3], cov_type="robust", **options)
    assert calls == {"prepare": 1, "block_grams": 1, "ols": 1}
    assert sel.setup_seconds > 0 and len(sel.seconds) == 3
    monkeypatch.undo()
    for i, k in enumerate(sel.ranks):
        alone = gls.fit(Xs, Y, rank=k, cov_type="none", **options)
        assert same_bits(np.array(sel.llf[i]), np.array(alone.llf)), k
    chosen = gls.fit(Xs, Y, rank=sel.best_rank, cov_type="robust", **options)
    assert sel.best_rank == 3 and sel.result.fingerprint == chosen.fingerprint
    assert same_bits(sel.result.cov, chosen.cov) and sel.result.cov_type == "robust"
    assert same_bits(sel.result.resid, chosen.resid)


def test_shared_fit_refuses_a_fit_before_its_set_up(three_factors):
    Xs, Y = three_factors
    system = fit_module.SharedFit(Xs, Y)
    with pytest.raises(RuntimeError, match="set_up must run before fit_rank"):
        system.fit_rank(1, "none")


@pytest.mark.gpu
@pytest.mark.parametrize("options", [{"beta_solver": "gram"},
                                     {"beta_solver": "cg", "mode": "plain"}])
def test_select_rank_on_the_gpu_has_the_cpu_bits(three_factors, options):
    """The candidates share X, Y and the Gram blocks on the GPU; the table and the
    chosen fit (with its plug-in covariance) are the CPU's bits."""
    Xs, Y = three_factors
    cpu = gls.select_rank(Xs, Y, ranks=[0, 2, 3], device="cpu", **options)
    gpu = gls.select_rank(Xs, Y, ranks=[0, 2, 3], device="cuda", **options)
    assert gpu == cpu  # the table (llf, criteria, choice), bit for bit
    assert gpu.result.device != "cpu" and gpu.result.fingerprint == cpu.result.fingerprint
