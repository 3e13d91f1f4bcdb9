"""``GLSResult.with_covariance``: a fit's covariance without fitting again, the bits of
fitting with ``cov_type``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from reprogls import gls
from tests.corpus import same_bits


@pytest.fixture(scope="module")
def system():
    Xs, Y, *_ = gls.simulate_sur(400, 6, 3, 2, seed=4)
    return Xs, Y


@pytest.mark.parametrize("cov_type", ["plugin", "robust"])
@pytest.mark.parametrize("options", [
    {"rank": 2},
    {"rank": 1, "beta_solver": "cg", "mode": "plain"},
    {"rank": 2, "ridge": 3.0, "add_constant": True},
    {"rank": 1, "sigma_step": "residuals", "max_iter": 2},  # stopped by max_iter
])
def test_with_covariance_is_the_bits_of_fitting_with_it(system, cov_type, options):
    """Fitted with ``cov_type="none"`` then given the covariance: the covariance and the
    fingerprint (params, F, d, llf, bse) of a fit made with ``cov_type``, across the dense
    and CG beta-steps, a ridge, added constants and a fit stopped by ``max_iter``; the
    result it came from keeps no covariance, and the data are not modified."""
    Xs, Y = system
    before = [X.copy() for X in Xs], Y.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gls.ConvergenceWarning)
        fast = gls.fit(Xs, Y, cov_type="none", **options)
        direct = gls.fit(Xs, Y, cov_type=cov_type, **options)
    got = fast.with_covariance(Xs, Y, cov_type)
    assert got.cov_type == cov_type and same_bits(got.cov, direct.cov)
    assert got.fingerprint == direct.fingerprint
    assert fast.cov is None and np.all(np.isnan(fast.bse))
    assert all(same_bits(a, b) for a, b in zip(Xs, before[0], strict=True))
    assert same_bits(Y, before[1])


def test_with_covariance_of_named_equations_and_a_fixed_sigma(system):
    """The dict form ``{name: (y, X)}``, and a fit with ``sigma`` fixed."""
    Xs, Y = system
    eqs = {f"eq{j}": (Y[:, j], X) for j, X in enumerate(Xs)}
    fast = gls.fit(eqs, rank=2, cov_type="none")
    assert fast.with_covariance(eqs).fingerprint == gls.fit(eqs, rank=2).fingerprint
    sigma = (np.full((6, 1), 0.5), np.linspace(0.5, 1.5, 6))
    fast = gls.fit(Xs, Y, sigma=sigma, cov_type="none")
    direct = gls.fit(Xs, Y, sigma=sigma, cov_type="robust")
    assert same_bits(fast.with_covariance(Xs, Y, "robust").cov, direct.cov)


def test_with_covariance_refuses_other_data_penalised_fits_and_other_types(system):
    """Other values than the fit's (its residuals at params differ), another shape, a
    fit with l1 (no valid covariance), and a ``cov_type`` it cannot give: a
    ``ValueError`` that says so."""
    Xs, Y = system
    fast = gls.fit(Xs, Y, rank=1, cov_type="none")
    Y_other = Y.copy()
    Y_other[7, 2] = np.nextafter(Y_other[7, 2], np.inf)  # one ulp in one value
    with pytest.raises(ValueError, match="not the data this result was fitted to"):
        fast.with_covariance(Xs, Y_other)
    with pytest.raises(ValueError, match="not the system this result was fitted to"):
        fast.with_covariance(Xs[:5], Y[:, :5])
    with pytest.raises(ValueError, match="not the system this result was fitted to"):
        fast.with_covariance([X[:300] for X in Xs], Y[:300])
    penalised = gls.fit(Xs, Y, rank=1, l1=1.0)
    with pytest.raises(ValueError, match="not valid for a fit with l1 or bounds"):
        penalised.with_covariance(Xs, Y)
    for cov_type in ("none", "sandwich"):
        with pytest.raises(ValueError, match="cov_type must be 'plugin' or 'robust'"):
            fast.with_covariance(Xs, Y, cov_type)
    with pytest.raises(ValueError, match="with_covariance"):
        fast.cov_params()


@pytest.mark.gpu
@pytest.mark.parametrize("cov_type", ["plugin", "robust"])
def test_with_covariance_on_the_gpu_is_the_cpu_bits(system, cov_type):
    """A GPU fit given its covariance afterwards: the bits of the GPU fit made with it,
    which are the CPU's."""
    Xs, Y = system
    fast = gls.fit(Xs, Y, rank=2, cov_type="none", device="cuda")
    got = fast.with_covariance(Xs, Y, cov_type)
    assert got.device == fast.device
    assert got.fingerprint == gls.fit(Xs, Y, rank=2, cov_type=cov_type, device="cpu").fingerprint
