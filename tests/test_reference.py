"""The executable spec itself: hand-checked values and mathematical properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from reprogls.kernels import reference as ref
from tests.corpus import bits

MODES = ("compensated", "plain")
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


def test_constants_are_cro1():
    assert (ref.CRO_VERSION, ref.LANES, ref.CHUNK) == (1, 32, 8192)
    assert bits(ref.CANONICAL_NAN) == 0x7FF8000000000000


@pytest.mark.parametrize("mode", MODES)
def test_empty_sum_is_positive_zero(mode):
    for f in (ref.cro_sum, ref.cro_nrm2):
        assert bits(f(np.array([]), mode)) == bits(0.0)
    assert bits(ref.cro_dot(np.array([]), np.array([]), mode)) == bits(0.0)


@pytest.mark.parametrize("mode", MODES)
def test_sum_of_negative_zeros_keeps_the_sign(mode):
    assert bits(ref.cro_sum(np.full(40, -0.0), mode)) == bits(-0.0)


def test_compensated_recovers_what_plain_loses():
    # 1e16 + 1 - 1e16 in one lane: plain loses the 1, TwoSum keeps it.
    x = np.zeros(65)
    x[0], x[32], x[64] = 1e16, 1.0, -1e16
    assert ref.cro_sum(x, "plain") == 0.0
    assert ref.cro_sum(x, "compensated") == 1.0


def test_lane_order_is_the_spec():
    # lane 0 gets x[0], x[32]; lane 1 gets x[1]. Result = tree of lanes, computed by hand.
    x = np.zeros(33)
    x[0], x[1], x[32] = 1.0, 2.0**-53, 2.0**-53
    # plain: lane0 = 1 + 2^-53 = 1 (ties to even), lane1 = 2^-53, tree: 1 + 2^-53 = 1
    assert ref.cro_sum(x, "plain") == 1.0
    # compensated: lane0 comp 2^-53, lane1 2^-53 -> comp total 2^-52 -> 1 + 2^-52
    assert ref.cro_sum(x, "compensated") == 1.0 + 2.0**-52


@pytest.mark.parametrize("mode", MODES)
def test_non_finite_results(mode):
    assert ref.cro_sum(np.array([1.0, np.inf, 2.0]), mode) == np.inf
    assert bits(ref.cro_sum(np.array([np.inf, -np.inf]), mode)) == bits(ref.CANONICAL_NAN)
    neg_nan = np.array([0x7FF8000000000001 | (1 << 63)], dtype=np.uint64).view(np.float64)
    assert bits(ref.cro_sum(neg_nan, mode)) == bits(ref.CANONICAL_NAN)
    assert bits(ref.cro_dot(neg_nan, np.ones(1), mode)) == bits(ref.CANONICAL_NAN)
    assert bits(ref.cro_nrm2(np.array([np.inf, np.nan]), mode)) == bits(ref.CANONICAL_NAN)
    assert ref.cro_nrm2(np.array([-np.inf, 1.0]), mode) == np.inf


@pytest.mark.parametrize("scale", [1e-300, 1e-320, 1e300, 3e307, 1.0])
def test_nrm2_does_not_overflow_or_underflow(scale):
    x = np.array([3.0, 4.0]) * scale
    expected = 5.0 * scale
    assert math.isfinite(ref.cro_nrm2(x))
    assert ref.cro_nrm2(x) == pytest.approx(expected, rel=1e-15, abs=0)


def test_nrm2_subnormal_scaling_factors_are_normal():
    e, f1, f2 = ref.nrm2_scaling(5e-324)  # 2**-e = 2**1074 is not representable
    assert e == -1073
    assert f1 * 2.0**-600 * f2 == 2.0**(1073 - 600)  # f1 * f2 == 2**1073, exactly
    assert min(f1, f2) >= 2.0**-1022 and max(f1, f2) < np.inf
    assert ref.cro_nrm2(np.array([5e-324])) == 5e-324


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.integers(0, 300), elements=st.floats(-1e6, 1e6)))
def test_compensated_sum_is_close_to_exact(x):
    # error bound of compensated summation: |s - exact| <= eps|exact| + O(n^2 eps^2) sum|x|
    # with eps = 2**-52 (one ulp of 1.0). (The constant was 2.2e-16 < 2**-52, less than
    # one ulp for sums just above a power of two; hypothesis found such a case on
    # 2026-12-01, reconstructed below.)
    exact = math.fsum(x)
    got = ref.cro_sum(x)
    eps = float(np.finfo(np.float64).eps)
    bound = eps * abs(exact) + 1e-28 * len(x) ** 2 * float(np.abs(x).sum())
    assert abs(got - exact) <= bound


def test_compensated_sum_is_faithful_not_correctly_rounded():
    """``a + b`` is a tie that rounds up (to even) while a tiny third term puts the exact
    sum just below it: TwoSum's error ``-2**-33`` absorbs the tiny term, and the final
    ``s + comp`` is the same tie again. The result is one ulp (2**-32 at 2**20) above the
    correctly rounded sum -- within ``eps |exact|``, not within 2.2e-16 |exact|."""
    x = np.array([2.0**20 + 2.0**-32, 2.0**-33, -1e-88])
    exact = math.fsum(x)
    assert ref.cro_sum(x) - exact == 2.0**-32
    assert abs(ref.cro_sum(x) - exact) <= float(np.finfo(np.float64).eps) * abs(exact)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.integers(1, 200), elements=st.floats(-1e300, 1e300)))
def test_nrm2_matches_high_precision(x):
    import mpmath

    with mpmath.workdps(60):
        exact = mpmath.sqrt(mpmath.fsum(mpmath.mpf(float(v)) ** 2 for v in x))
        got = ref.cro_nrm2(x)
        if exact == 0:
            assert got == 0.0
        else:
            # a few ulp, or one unit of the subnormal range for subnormal norms
            assert abs(mpmath.mpf(got) - exact) <= max(1e-15 * exact, mpmath.mpf(2.0**-1074))


@settings(max_examples=100, deadline=None)
@given(arrays(np.float64, st.integers(0, 100), elements=finite))
def test_spec_is_a_function_of_the_data(x):
    assert bits(ref.cro_sum(x)) == bits(ref.cro_sum(x.copy()))


def test_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        ref.cro_sum(np.ones(3), "kahan")
