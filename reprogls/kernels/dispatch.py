"""Public kernel functions with a ``device=`` argument, and the backend lookup.

Results are returned on the host as Python floats (bit-exact float64 values:
``np.float64(r).view(np.uint64)`` shows their bits).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from . import reference
from ._validate import as_vector, same_length
from .devices import Device, resolve_device

__all__ = ["dot", "nrm2", "sum", "warmup"]

_BACKENDS = {"cpu": "reprogls.kernels.cpu", "cuda": "reprogls.kernels.cuda.reductions"}


def backend(device: Device) -> ModuleType:
    """The kernel module for a resolved device (imported on first use)."""
    return importlib.import_module(_BACKENDS[device.kind])


def cuda_context(device: Device):
    """Make ``device`` CuPy's current device inside a ``with`` block (no-op on the CPU)."""
    import contextlib

    if device.kind != "cuda":
        return contextlib.nullcontext()
    import cupy

    return cupy.cuda.Device(device.index)


def sum(x: Any, mode: str = "compensated", device: str | Device = "auto") -> float:  # noqa: A001
    """Bitwise-reproducible sum of a vector.

    .. math:: \\operatorname{sum}(x) = \\sum_{i=0}^{n-1} x_i

    reduced in the canonical order CRO-1 (:mod:`reprogls.kernels.reference`), so the
    result has the same bits on every device, thread count and machine.

    Parameters
    ----------
    x : array_like, shape (n,)
        float64 (integers and bools are converted to float64; float32 raises).
    mode : {"compensated", "plain"}
        Compensated (default) carries each lane's rounding errors with TwoSum; plain
        adds directly.
    device : {"auto", "cpu", "cuda", "cuda:N"} or Device
        Where to run; ``"auto"`` follows the data.

    Returns
    -------
    float
        The sum; ``+0.0`` for ``n = 0``; NaN results are the canonical quiet NaN.
    """
    compensated = reference.check_mode(mode)
    dev = resolve_device(device, x)
    with cuda_context(dev):
        return backend(dev).cro_sum(as_vector(x, "x", dev), compensated)


def dot(x: Any, y: Any, mode: str = "compensated", device: str | Device = "auto") -> float:
    """Bitwise-reproducible dot product.

    .. math:: x \\cdot y = \\sum_{i=0}^{n-1} \\operatorname{fl}(x_i y_i)

    Each product is rounded once (never fused with the addition), then reduced in CRO-1
    order. Parameters as :func:`sum`; ``x`` and ``y`` must have the same length.
    """
    compensated = reference.check_mode(mode)
    dev = resolve_device(device, x, y)
    with cuda_context(dev):
        xv, yv = as_vector(x, "x", dev), as_vector(y, "y", dev)
        same_length(xv, yv)
        return backend(dev).cro_dot(xv, yv, compensated)


def nrm2(x: Any, mode: str = "compensated", device: str | Device = "auto") -> float:
    """Bitwise-reproducible Euclidean norm that does not overflow or underflow needlessly.

    .. math:: \\lVert x \\rVert_2 = 2^{e} \\sqrt{\\textstyle\\sum_i ((x_i f_1) f_2)^2}

    with powers of two ``f1 * f2 = 2**-e`` chosen from ``max |x_i|`` (see
    :func:`reprogls.kernels.reference.cro_nrm2` for the exact definition). Representable
    norms of vectors with entries near 1e300 or 1e-300 come out finite and accurate.
    Parameters as :func:`sum`.
    """
    compensated = reference.check_mode(mode)
    dev = resolve_device(device, x)
    with cuda_context(dev):
        return backend(dev).cro_nrm2(as_vector(x, "x", dev), compensated)


def warmup(devices: tuple[str, ...] | None = None, jobs: int | None = None) -> list[str]:
    """Compile (or load from Numba's cache) every kernel, in both modes, on the devices.

    The first call of a Numba kernel in a fresh install compiles it (about 50 s for the
    whole package on one core); later processes load the compiled code from the cache.
    The CPU kernels are compiled by ``jobs`` worker processes side by side
    (:mod:`reprogls.kernels.warm`), then loaded here; when all of them are already in
    the cache, no worker starts and they are only loaded here (about 1 s).

    Parameters
    ----------
    devices : tuple of str, optional
        Defaults to every available device.
    jobs : int, optional
        Worker processes for the CPU kernels (default: one per CPU core; 1 compiles in
        this process only).

    Returns
    -------
    list of str
        The devices warmed up.
    """
    import numpy as np

    from . import elementary, linalg, prox, warm
    from .devices import available_devices

    names = list(devices) if devices is not None else available_devices()
    v = np.array([1.0, 2.0, 3.0])
    X = np.arange(12.0).reshape(4, 3)
    offsets = np.array([0, 1, 3])
    for name in names:
        if name == "cpu":
            warm.warm_parallel(warm.TASKS, jobs)
            continue
        for mode in ("compensated", "plain"):
            sum(v, mode=mode, device=name)
            dot(v, v, mode=mode, device=name)
            nrm2(v, mode=mode, device=name)
            linalg.gemv(X, v, mode, name)
            linalg.gemv_t(X, np.ones(4), mode, name)
            linalg.sur_matvec(X, offsets, v, mode, name)
            linalg.sur_rmatvec(X, offsets, np.ones((4, 2)), mode, name)
            factor = linalg.woodbury_factor(np.ones((2, 1)), np.ones(2), mode)
            linalg.woodbury_solve(factor, np.ones((4, 2)), name)
            linalg.sur_normal_matvec(X, offsets, factor, v, name)
        elementary.log(v, name)
        elementary.exp(v, name)
        prox.soft_threshold(v, 1.0, name)
        prox.soft_threshold(v, v, name)
        prox.soft_threshold_box(v, 1.0, 0.0, 2.0, name)
        prox.prox_elastic_net(v, 1.0, 0.5, 1.0, device=name)
        prox.fista_step(v, v, 0.1, v, 0.5, 1.0, device=name)
    return names
