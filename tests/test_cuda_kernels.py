"""CUDA kernels equal the reference bit for bit (needs a GPU: marked ``gpu``)."""

from __future__ import annotations

import numpy as np
import pytest

from reprogls import kernels
from reprogls.kernels import reference as ref
from tests.corpus import bits, cases

pytestmark = pytest.mark.gpu
MODES = ("compensated", "plain")
SMALL = list(cases())
BIG = list(cases(big=True))


def _cuda():
    from reprogls.kernels.cuda import reductions

    return reductions


def _check(label, x, y, mode, warps_per_block):
    import cupy as cp

    cuda = _cuda()
    comp = mode == "compensated"
    xd, yd = cp.asarray(x), cp.asarray(y)
    assert bits(cuda.cro_sum(xd, comp, warps_per_block)) == bits(ref.cro_sum(x, mode)), label
    assert bits(cuda.cro_dot(xd, yd, comp, warps_per_block)) == bits(ref.cro_dot(x, y, mode)), label
    assert bits(cuda.cro_nrm2(xd, comp, warps_per_block)) == bits(ref.cro_nrm2(x, mode)), label


@pytest.mark.parametrize("warps_per_block", [1, 8, 32])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", SMALL, ids=[c[0] for c in SMALL])
def test_cuda_equals_reference(case, mode, warps_per_block):
    _check(*case, mode, warps_per_block)


@pytest.mark.parametrize("warps_per_block", [4, 16])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", BIG, ids=[c[0] for c in BIG])
def test_cuda_equals_reference_big(case, mode, warps_per_block):
    _check(*case, mode, warps_per_block)


def test_public_api_auto_follows_cupy_data_and_returns_host_floats():
    import cupy as cp

    x = np.random.default_rng(0).standard_normal(100_003)
    value = kernels.sum(cp.asarray(x))
    assert isinstance(value, float)
    assert bits(value) == bits(ref.cro_sum(x))
    assert bits(kernels.dot(x, x, device="cuda")) == bits(kernels.dot(x, x, device="cpu"))


def test_repeated_runs_identical():
    import cupy as cp

    x = cp.asarray(np.random.default_rng(1).standard_normal(3_000_001))
    first = bits(kernels.sum(x))
    assert all(bits(kernels.sum(x)) == first for _ in range(10))


def test_mixed_devices_under_auto_raise():
    import cupy as cp

    with pytest.raises(ValueError, match="different devices"):
        kernels.dot(cp.ones(3), np.ones(3))


def test_strided_cupy_views():
    import cupy as cp

    x = np.random.default_rng(2).standard_normal(50_001)
    assert bits(kernels.sum(cp.asarray(x)[::3])) == bits(ref.cro_sum(np.ascontiguousarray(x[::3])))


def test_caller_cupy_array_not_modified():
    import cupy as cp

    x = cp.asarray(np.random.default_rng(3).standard_normal(10_000))
    before = x.copy()
    kernels.nrm2(x)
    assert bool((x.view(cp.uint64) == before.view(cp.uint64)).all())
