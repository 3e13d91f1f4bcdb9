"""CPU kernels equal the reference bit for bit on the adversarial corpus."""

from __future__ import annotations

import numpy as np
import pytest

from reprogls import kernels
from reprogls.kernels import reference as ref
from tests.corpus import bits, cases

MODES = ("compensated", "plain")
SMALL = list(cases())
BIG = list(cases(big=True))


def _check(label, x, y, mode):
    assert bits(kernels.sum(x, mode, "cpu")) == bits(ref.cro_sum(x, mode)), label
    assert bits(kernels.dot(x, y, mode, "cpu")) == bits(ref.cro_dot(x, y, mode)), label
    assert bits(kernels.nrm2(x, mode, "cpu")) == bits(ref.cro_nrm2(x, mode)), label


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", SMALL, ids=[c[0] for c in SMALL])
def test_cpu_equals_reference(case, mode):
    _check(*case, mode)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", BIG, ids=[c[0] for c in BIG])
def test_cpu_equals_reference_big(case, mode):
    _check(*case, mode)


@pytest.mark.parametrize("step", [2, 3, -1, -7])
def test_strided_views_equal_their_contiguous_copies(step):
    rng = np.random.default_rng(5)
    base = rng.standard_normal(3 * 8192 + 77) * 10.0 ** rng.uniform(-20, 20, 3 * 8192 + 77)
    other = rng.standard_normal(base.size)
    x, y = base[::step], other[::step]
    xc, yc = np.ascontiguousarray(x), np.ascontiguousarray(y)
    for mode in MODES:
        assert bits(kernels.sum(x, mode)) == bits(ref.cro_sum(xc, mode))
        assert bits(kernels.dot(x, y, mode)) == bits(ref.cro_dot(xc, yc, mode))
        assert bits(kernels.nrm2(x, mode)) == bits(ref.cro_nrm2(xc, mode))


def test_modes_differ_on_cancellation():
    # the negative control for mode plumbing: the two modes must not collapse into one
    x = np.resize(np.array([1e16, 1.0, -1e16]), 3 * 32 * 5)
    assert kernels.sum(x, "plain") != kernels.sum(x, "compensated")


def test_repeated_calls_give_identical_bits():
    x = np.random.default_rng(1).standard_normal(1_000_003)
    first = bits(kernels.sum(x))
    assert all(bits(kernels.sum(x)) == first for _ in range(5))
