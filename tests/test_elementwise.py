"""Soft-thresholding family and portable log/exp: oracle, identities, accuracy, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from reprogls import kernels
from reprogls.kernels import reference as ref
from tests.corpus import bits, same_bits

SPECIALS = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 5e-324, 2.2250738585072014e-308,
                     1.7976931348623157e308, 0.5, 2.0, 1e-300, 709.78, -745.1, 710.0, -746.0])



def log_inputs(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([np.ldexp(rng.uniform(0.5, 1, n), rng.integers(-1074, 1024, n)),
                           rng.uniform(0.5, 2.0, n), SPECIALS, -SPECIALS])


def exp_inputs(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.uniform(-750, 712, n), rng.uniform(-1, 1, n),
                           rng.uniform(-1e-8, 1e-8, n // 10), SPECIALS, -SPECIALS])


def test_log_exp_cpu_equal_reference():
    x = log_inputs(20_000)
    assert same_bits(kernels.log(x, "cpu"), ref.log(x))
    y = exp_inputs(20_000)
    assert same_bits(kernels.exp(y, "cpu"), ref.exp(y))


def ulp_error(got: float, exact) -> float:
    import mpmath

    nearest = float(exact)
    if math.isinf(nearest) or nearest == 0.0:
        return 0.0 if got == nearest else math.inf
    return float(abs(mpmath.mpf(got) - exact) / math.ulp(nearest))


def test_log_exp_accuracy_below_one_ulp():
    # 4000 points here; profiling/elementary_accuracy.py runs 10**6 per function.
    import mpmath

    with mpmath.workprec(200):
        x = log_inputs(2000, seed=1)
        x = x[(x > 0) & np.isfinite(x)]
        worst_log = max(ulp_error(v, mpmath.log(mpmath.mpf(float(s))))
                        for s, v in zip(x, kernels.log(x), strict=True))
        y = exp_inputs(2000, seed=1)
        y = y[np.isfinite(y) & (y < 709.78) & (y > -708.0)]
        worst_exp = max(ulp_error(v, mpmath.exp(mpmath.mpf(float(s))))
                        for s, v in zip(y, kernels.exp(y), strict=True))
    assert worst_log <= 1.0 and worst_exp <= 1.0


def test_log_exp_special_values():
    out = kernels.log(np.array([0.0, -0.0, np.inf, -1.0, np.nan, 1.0]))
    assert out[0] == -np.inf and out[1] == -np.inf and out[2] == np.inf and out[5] == 0.0
    assert bits(out[3]) == bits(out[4]) == 0x7FF8000000000000
    e = kernels.exp(np.array([0.0, -np.inf, np.inf, 710.0, -746.0, np.nan]))
    assert e.tolist()[:5] == [1.0, 0.0, np.inf, np.inf, 0.0]
    assert bits(e[5]) == 0x7FF8000000000000


@pytest.mark.parametrize("lam", [0.0, 0.7, np.inf])
def test_soft_threshold_family_cpu_equals_reference(lam):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(50_001) * 2, SPECIALS, -SPECIALS])
    lam_vec = np.abs(rng.standard_normal(x.size))
    assert same_bits(kernels.soft_threshold(x, lam, "cpu"), ref.soft_threshold(x, lam))
    assert same_bits(kernels.soft_threshold(x, lam_vec), ref.soft_threshold(x, lam_vec))
    assert same_bits(kernels.soft_threshold_box(x, lam, -0.5, 1.5),
                     ref.soft_threshold_box(x, lam, -0.5, 1.5))
    lo_vec, hi_vec = -np.abs(rng.standard_normal(x.size)), np.abs(rng.standard_normal(x.size))
    # every parameter per element, and a mix (each combination is its own specialisation)
    assert same_bits(kernels.soft_threshold_box(x, lam_vec, lo_vec, hi_vec),
                     ref.soft_threshold_box(x, lam_vec, lo_vec, hi_vec))
    assert same_bits(kernels.soft_threshold_box(x, lam, lo_vec, 1.5),
                     ref.soft_threshold_box(x, lam, lo_vec, 1.5))
    if np.isfinite(lam):
        assert same_bits(kernels.prox_elastic_net(x, lam_vec, 0.3, 0.8, lo_vec, hi_vec),
                         ref.prox_elastic_net(x, lam_vec, 0.3, 0.8, lo_vec, hi_vec))
        assert same_bits(kernels.prox_elastic_net(x, lam, 0.3, 0.8, -1.0, 2.0),
                         ref.prox_elastic_net(x, lam, 0.3, 0.8, -1.0, 2.0))
        g, xp = rng.standard_normal(x.size), rng.standard_normal(x.size)
        mine = kernels.fista_step(x, g, 0.1, xp, 0.6, lam_vec, 0.5, -3.0, 3.0)
        spec = ref.fista_step(x, g, 0.1, xp, 0.6, lam_vec, 0.5, -3.0, 3.0)
        assert same_bits(mine[0], spec[0]) and same_bits(mine[1], spec[1])


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.integers(1, 50), elements=st.floats(-1e6, 1e6)),
       st.floats(0, 1e3))
def test_soft_threshold_identities(x, lam):
    s = kernels.soft_threshold(x, lam)
    band = np.abs(x) <= lam
    assert np.all(s[band] == 0.0) and np.all(np.signbit(s[band]) == 0)  # exact +0.0
    assert np.all(np.sign(s[~band]) == np.sign(x[~band]))
    assert np.all(np.abs(s) <= np.abs(x))
    expected = np.sign(x) * np.maximum(np.abs(x) - lam, 0.0)
    assert np.allclose(s, expected, rtol=0, atol=1e-9 * max(1.0, lam))
    # prox of lam|.| + box is the clip of S, and l1_ratio = 1, step = 1 is plain S
    assert same_bits(kernels.prox_elastic_net(x, lam), s)
    clipped = kernels.soft_threshold_box(x, lam, -1.0, 2.0)
    assert np.all((clipped >= -1.0) & (clipped <= 2.0))


def test_elastic_net_shrinks_by_the_ridge_factor():
    x = np.array([3.0, -3.0, 0.1])
    out = kernels.prox_elastic_net(x, 1.0, l1_ratio=0.5, step=2.0)
    # a = 2, thr = 1, denom = 1 + 2 * 0.5 = 2
    assert out.tolist() == [1.0, -1.0, 0.0]


@pytest.mark.parametrize("kwargs,match", [
    ({"lam": -1.0}, "lam must be >= 0"),
    ({"lam": np.nan}, "lam must not be NaN"),
    ({"lam": np.array([1.0, -1.0, 0.0])}, "lam must be >= 0"),
    ({"lam": np.ones(2)}, "length of x"),
])
def test_bad_lambda(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kernels.soft_threshold(np.ones(3), **kwargs)


def test_bad_box_and_enet_parameters():
    with pytest.raises(ValueError, match="lo must be <= hi"):
        kernels.soft_threshold_box(np.ones(3), 0.1, 1.0, 0.0)
    with pytest.raises(ValueError, match="l1_ratio"):
        kernels.prox_elastic_net(np.ones(3), 0.1, l1_ratio=1.5)
    with pytest.raises(ValueError, match="step"):
        kernels.prox_elastic_net(np.ones(3), 0.1, step=0.0)
    with pytest.raises(ValueError, match="grad must have shape"):
        kernels.fista_step(np.ones(3), np.ones(2), 0.1, np.ones(3), 0.5, 0.1)


def test_inputs_not_modified():
    x = np.array([3.0, -2.0, 0.5])
    before = x.copy()
    kernels.soft_threshold(x, 1.0)
    kernels.fista_step(x, x, 0.1, x, 0.5, 0.1)
    kernels.log(np.abs(x))
    assert same_bits(x, before)
