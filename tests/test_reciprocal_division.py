"""Division by a known divisor from its reciprocal (:mod:`reprogls.kernels.cpu.reciprocal`)
gives IEEE division's bits: on random quotients, on quotients next to a rounding
midpoint (where ``RN(a * RN(1/d))`` alone is wrong about half the time), and on the
special values, where the range check must send the quotient to a real division."""

from __future__ import annotations

import random

import llvmlite.binding as llvm
import numpy as np
import pytest
from numba import njit

from reprogls import kernels
from reprogls.kernels.cpu import reciprocal
from reprogls.kernels.cpu.reciprocal import (
    DIVISOR_RANGE,
    GROUP,
    LARGEST,
    SMALLEST,
    reciprocals,
    subtract_from_quotients,
)
from reprogls.kernels.reference import linalg as reference

#: Equations per tile in :func:`_tiles` (the Woodbury block takes eight).
TILE = 2


@njit(error_model="numpy")
def _tiles(a, d, y, b, tile=TILE):
    """``fl(a / d) - b`` tile by tile as the Woodbury block does -- ``d`` and ``y`` per
    equation of 32 consecutive values, reciprocals, or division for a tile the check
    rejects -- and which tiles took the reciprocals."""
    n_eq = d.shape[0]
    out = np.empty(a.shape[0])
    fast = np.zeros((n_eq + tile - 1) // tile, dtype=np.bool_)
    for t in range(fast.shape[0]):
        j0 = t * tile
        m = min(tile, n_eq - j0)
        o = j0 * GROUP
        if subtract_from_quotients(a[o:], d, y, b[o:], out[o:], j0, m):
            fast[t] = True
            continue
        for x in range(o, o + m * GROUP):
            out[x] = a[x] / d[x // GROUP] - b[x]
    return out, fast


def _bits(x):
    return np.ascontiguousarray(x).view(np.uint64)


def _divide(a, d, b):
    with np.errstate(all="ignore"):
        return a / d - b


def _near_midpoints(n: int, seed: int, per_divisor: int = 1) -> tuple[np.ndarray,
                                                                      np.ndarray]:
    """``(a, d)``: ``n`` numerators in [1, 2), ``per_divisor`` consecutive ones for each
    divisor ``d`` in [1, 2) (``n / per_divisor`` of them), whose quotient is within
    ``2^-100`` relative of the midpoint between two doubles: ``2^s a = ((2 n + 1) d +
    e) / 2`` for a small odd ``e``, solved for ``a`` modulo ``d`` (``s = 53`` gives ``a <
    d``, ``s = 52`` gives ``a > d``)."""
    rng = random.Random(seed)
    a_out, d_out = [], []
    while len(a_out) < n:
        d = rng.randrange(2**52, 2**53) | 1
        found = []
        while len(found) < per_divisor:
            e = rng.choice([-1, 1]) * rng.randrange(1, 64, 2)
            s = rng.choice([52, 53])
            a = (d + e) // 2 * pow(pow(2, s, d), -1, d) % d + (d if s == 52 else 0)
            if 2**52 <= a < 2**53:
                found.append(a * 2.0**-52 * rng.choice([-1.0, 1.0]))
        a_out += found
        d_out.append(d * 2.0**-52)
    return np.array(a_out), np.array(d_out)


def test_reciprocal_division_is_on_where_the_target_has_fma():
    features = llvm.get_host_cpu_features().flatten()
    if "+fma" in features:
        assert reciprocal.RECIPROCAL_DIVISION


def test_near_midpoint_quotients_are_the_hard_cases():
    # the generator's cases are hard: one rounded product by RN(1/d) is wrong on ~half
    a, d = _near_midpoints(20_000, 1)
    wrong = np.mean(_bits(a * reciprocals(d)) != _bits(a / d))
    assert 0.3 < wrong < 0.7


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_and_near_midpoint_quotients_equal_division(seed):
    rng = np.random.default_rng(seed)
    n_eq = 12_500
    n = n_eq * GROUP
    # random significands, exponents so that d and a / d stay inside the proven range
    a = (1 + rng.random(n)) * np.exp2(rng.integers(-350, 450, n)) * rng.choice([-1.0, 1.0], n)
    d = (1 + rng.random(n_eq)) * np.exp2(rng.integers(-40, 40, n_eq))
    # divisors with all-ones significands, and near-midpoint pairs at many scales: the
    # second copy scales each equation's numerators and divisor by one power of two m
    # (the quotients stay as hard), the numerators by another
    d[: n_eq // 8] = np.nextafter(2.0, 0) * np.exp2(rng.integers(-40, 40, n_eq // 8))
    ha, hd = _near_midpoints(40 * GROUP * 32, seed, per_divisor=GROUP)
    m = np.exp2(rng.integers(-80, 80, hd.size).astype(float))
    scale = np.exp2(rng.integers(-300, 300, ha.size).astype(float))
    a = np.concatenate([a, ha * scale * np.repeat(m, GROUP), ha])
    d = np.concatenate([d, hd * m, hd])
    b = np.where(rng.random(a.size) < 0.5, 0.0, rng.standard_normal(a.size))
    got, fast = _tiles(a, d, reciprocals(d), b)
    assert fast.all()  # every tile took the reciprocals: the fast path is what is tested
    np.testing.assert_array_equal(_bits(got), _bits(_divide(a, np.repeat(d, GROUP), b)))


def test_special_values_fall_back_to_division_and_equal_it():
    tiny = np.nextafter(0.0, 1.0)
    numerators = [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, -np.nan, tiny, -tiny,
                  2.0**-1022, 2.0**-1000, 2.0**-600, 2.0**-500, 2.0**-401, 2.0**400,
                  np.finfo(float).max, -np.finfo(float).max, 1e300, 3.0, 7.0**300]
    lo, hi = DIVISOR_RANGE
    divisors = np.array([1.0, 3.0, np.nextafter(2.0, 0.0), lo, hi, np.nextafter(lo, 0.0),
                         np.nextafter(hi, np.inf), 2.0**-1000, 2.0**1000, tiny, 2.0**-1022,
                         np.finfo(float).max, 0.1, 1e-300, 1e300])
    y = reciprocals(divisors)
    assert np.all((y == 0.0) == ((divisors < lo) | (divisors > hi)))
    # one equation per divisor, holding every numerator (tiles mixing special values)
    a = np.resize(np.array(numerators), (divisors.size, GROUP)).ravel()
    # one equation per (numerator, divisor) pair, all 32 values alike: each pair's own
    # fast path or fallback
    pa, pd = (np.array(v).ravel() for v in np.meshgrid(numerators, divisors))
    for b_value in (0.0, -0.0, 0.5):
        b = np.full(a.size, b_value)
        got, _ = _tiles(a, divisors, y, b)
        np.testing.assert_array_equal(
            _bits(got), _bits(_divide(a, np.repeat(divisors, GROUP), b)))
        pairs = np.repeat(pa, GROUP)
        b = np.full(pairs.size, b_value)
        got, _ = _tiles(pairs, pd, reciprocals(pd), b, 1)
        want = _divide(pairs, np.repeat(pd, GROUP), b)
        bad = np.flatnonzero(_bits(got) != _bits(want))
        assert bad.size == 0, [(pairs[i], pd[i // GROUP], b_value) for i in bad[:5]]


def test_signed_zeros_take_the_reciprocals():
    a = np.array([0.0, -0.0] * (2 * GROUP))
    d = np.array([0.3, 5.0, 1e-100, 7.0])
    got, fast = _tiles(a, d, reciprocals(d), np.zeros(a.size))
    assert fast.all()
    np.testing.assert_array_equal(_bits(got), _bits(a / np.repeat(d, GROUP)))


@pytest.mark.parametrize("where", [0, 3, 17, 31, GROUP + 8, 2 * GROUP - 1])
def test_the_range_check_rejects_quotients_outside_the_proven_range(where):
    # a value in any vector of either equation of the tile sends the tile to division
    d = np.array([1.0, 2.0])
    for value in (SMALLEST / 2, LARGEST * 4, np.inf, np.nan):
        a = np.full(2 * GROUP, 1.0)
        a[where] = value
        got, fast = _tiles(a, d, reciprocals(d), np.zeros(a.size))
        assert not fast[0], value
        np.testing.assert_array_equal(_bits(got), _bits(_divide(a, np.repeat(d, GROUP), 0.0)))
    a = np.full(2 * GROUP, 1.0)
    _, fast = _tiles(a, d, reciprocals(d), np.zeros(a.size))
    assert fast[0]


@pytest.mark.parametrize("mode", ["compensated", "plain"])
def test_woodbury_solve_with_extreme_uniquenesses_equals_reference(mode):
    # d outside the reciprocals' range (divided), rows with zeros, tiny and huge entries
    rng = np.random.default_rng(3)
    K, k, N = 24, 3, 70
    F = rng.standard_normal((K, k))
    d = 0.05 + rng.random(K)
    d[[0, 5]] = [2.0**-520, 2.0**600]
    F[0] *= 2.0**-300  # keeps the capacitance I + F^T D^-1 F moderate
    R = rng.standard_normal((N, K))
    R[1] = 0.0
    R[2, ::2] = -0.0
    R[3, 3] = 1e-310
    R[4, 4] = 1e305
    factor = kernels.woodbury_factor(F, d, mode)
    got = kernels.woodbury_solve(factor, R, device="cpu")
    want = reference.woodbury_solve(factor, R)
    np.testing.assert_array_equal(_bits(got), _bits(want))
