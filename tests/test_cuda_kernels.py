"""CUDA kernels equal the reference bit for bit (needs a GPU: marked ``gpu``)."""

from __future__ import annotations

import numpy as np
import pytest

from reprogls import kernels
from reprogls.kernels import reference as ref
from tests.corpus import bits, cases, same_bits

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


def _public_kernel_calls():
    """``{name: call(args, device, **keywords)}`` for every public kernel, with its NumPy
    arguments: the inputs that :func:`test_every_public_kernel_runs_on_a_second_gpu`
    moves."""
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal(20_011), rng.standard_normal(20_011)
    A = rng.standard_normal((301, 37))
    X, offsets = kernels.pack_sur([rng.standard_normal((301, p)) for p in (3, 0, 5, 1)])
    beta, W = rng.standard_normal(X.shape[1]), rng.standard_normal((301, 4))
    factor = kernels.woodbury_factor(rng.standard_normal((4, 2)), rng.uniform(0.5, 1.5, 4))
    lam = np.abs(rng.standard_normal(20_011))
    calls = {
        "sum": ((x,), lambda a, dev, **kw: kernels.sum(*a, device=dev, **kw)),
        "dot": ((x, y), lambda a, dev, **kw: kernels.dot(*a, device=dev, **kw)),
        "nrm2": ((x,), lambda a, dev, **kw: kernels.nrm2(*a, device=dev, **kw)),
        "exp": ((x,), lambda a, dev, **kw: kernels.exp(*a, device=dev, **kw)),
        "log": ((np.abs(x),), lambda a, dev, **kw: kernels.log(*a, device=dev, **kw)),
        "gemv": ((A, A[0]), lambda a, dev, **kw: kernels.gemv(*a, device=dev, **kw)),
        "gemv_t": ((A, A[:, 0]), lambda a, dev, **kw: kernels.gemv_t(*a, device=dev, **kw)),
        "sur_matvec": ((X, beta), lambda a, dev, **kw: kernels.sur_matvec(
            a[0], offsets, a[1], device=dev, **kw)),
        "sur_rmatvec": ((X, W), lambda a, dev, **kw: kernels.sur_rmatvec(
            a[0], offsets, a[1], device=dev, **kw)),
        "sur_normal_matvec": ((X, beta), lambda a, dev, **kw: kernels.sur_normal_matvec(
            a[0], offsets, factor, a[1], device=dev, **kw)),
        "woodbury_solve": ((W,), lambda a, dev, **kw: kernels.woodbury_solve(factor, *a,
                                                                        device=dev, **kw)),
        "soft_threshold": ((x, lam), lambda a, dev, **kw: kernels.soft_threshold(
            *a, device=dev, **kw)),
        "soft_threshold_box": ((x, lam), lambda a, dev, **kw: kernels.soft_threshold_box(
            *a, -1.0, 0.5, device=dev, **kw)),
        "prox_elastic_net": ((x, lam), lambda a, dev, **kw: kernels.prox_elastic_net(
            *a, 0.5, 0.1, device=dev, **kw)),
        "fista_step": ((x, y, x[::-1].copy(), lam), lambda a, dev, **kw: kernels.fista_step(
            a[0], a[1], 0.1, a[2], 0.3, a[3], device=dev, **kw)),
    }
    return calls


#: The public kernels whose results are arrays (the reductions return Python floats).
ARRAY_KERNELS = sorted(set(_public_kernel_calls()) - {"sum", "dot", "nrm2"})


@pytest.mark.parametrize("name", ARRAY_KERNELS)
def test_result_device_keeps_the_result_on_the_gpu(name):
    """``result="device"``: a CuPy array with the bits the default (a NumPy array) has;
    on the CPU the option changes nothing."""
    import cupy as cp

    args, call = _public_kernel_calls()[name]

    def each(out):
        return out if isinstance(out, tuple) else (out,)

    expect = each(call(args, "cpu"))
    on_host = each(call(args, "cuda"))
    kept = each(call(args, "cuda", result="device"))
    on_cpu = each(call(args, "cpu", result="device"))
    assert len(expect) == len(on_host) == len(kept) == len(on_cpu)
    for e, h, k, c in zip(expect, on_host, kept, on_cpu, strict=True):
        assert isinstance(h, np.ndarray) and isinstance(c, np.ndarray), name
        assert isinstance(k, cp.ndarray), name
        assert same_bits(h, e) and same_bits(k.get(), e) and same_bits(c, e), name


@pytest.mark.parametrize("name", sorted(_public_kernel_calls()))
def test_every_public_kernel_runs_on_a_second_gpu(second_gpu, name):
    """Each public kernel on ``device="cuda:1"`` from NumPy inputs, and on CuPy inputs
    that live on GPU 1 (``device="auto"`` follows them), while the current device is 0:
    the launches and CuPy's own steps run on that GPU (the emulator, as CuPy, refuses
    an array of another GPU) and give the CPU's bits."""
    import cupy as cp

    args, call = _public_kernel_calls()[name]
    expect = call(args, "cpu")
    with cp.cuda.Device(1):
        on_gpu1 = tuple(cp.asarray(a) for a in args)
    for got in (call(args, second_gpu), call(on_gpu1, "auto")):
        assert cp.cuda.Device().id == 0
        pairs = zip(*(r if isinstance(r, tuple) else (r,) for r in (expect, got)), strict=True)
        for e, g in pairs:
            assert np.array_equal(np.asarray(g).view(np.uint64),
                                  np.asarray(e).view(np.uint64)), name
