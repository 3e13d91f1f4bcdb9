"""Public soft-thresholding kernels (elementwise, exact zeros) with ``device=``.

Definitions and term formulas: :mod:`reprogls.kernels.reference.prox`. ``lam``, ``lo``
and ``hi`` are scalars or arrays of the length of ``x``. Results return to the host
(``result="device"`` keeps a GPU's result there as a CuPy array).
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from ._validate import as_param, as_vector, check_shape
from .devices import Device, check_result, deliver, resolve_device
from .dispatch import cuda_context

__all__ = ["fista_step", "prox_elastic_net", "soft_threshold", "soft_threshold_box"]


def _backend(device: Device):
    return importlib.import_module(f"reprogls.kernels.{device.kind}.elementwise")


def _box(lo, hi, n):
    lo_p = as_param(lo, "lo", n)
    hi_p = as_param(hi, "hi", n)
    if np.any(np.asarray(lo_p) > np.asarray(hi_p)):
        bad = int(np.argmax(np.broadcast_to(np.asarray(lo_p) > np.asarray(hi_p), (n,))))
        raise ValueError(f"lo must be <= hi (index {bad}: lo = "
                         f"{np.broadcast_to(lo_p, (n,))[bad]}, hi = "
                         f"{np.broadcast_to(hi_p, (n,))[bad]})")
    return lo_p, hi_p


def _enet_params(l1_ratio, step):
    l1_ratio, step = float(l1_ratio), float(step)
    if not 0.0 <= l1_ratio <= 1.0:
        raise ValueError(f"l1_ratio must be in [0, 1], got {l1_ratio}")
    if not (step > 0.0 and np.isfinite(step)):
        raise ValueError(f"step must be positive and finite, got {step}")
    return l1_ratio, step


def soft_threshold(x: Any, lam: Any, device: str | Device = "auto", *,
                   result: str = "host") -> Any:
    """Soft-thresholding ``S_lam(x)``, the prox of ``lam |x|``.

    .. math:: S_\\lambda(x) = \\begin{cases} x - \\lambda & x > \\lambda \\\\
              x + \\lambda & x < -\\lambda \\\\ +0 & \\text{otherwise} \\end{cases}

    Parameters
    ----------
    x : array_like (n,)
    lam : float or array_like (n,)
        ``>= 0``, not NaN.
    device : {"auto", "cpu", "cuda", "cuda:N"}
    result : {"host", "device"}
        ``"host"`` (default): a NumPy array. ``"device"``: the array where it was computed,
        a CuPy array on a GPU (no copy to the host), NumPy on the CPU.

    Returns
    -------
    ndarray (n,); NaN in ``x`` gives the canonical NaN.
    """
    check_result(result)
    dev = resolve_device(device, x)
    with cuda_context(dev):
        xd = as_vector(x, "x", dev)
        lam_p = as_param(lam, "lam", xd.shape[0], nonnegative=True)
        return deliver(_backend(dev).soft_threshold(xd, lam_p), result)


def soft_threshold_box(x: Any, lam: Any, lo: Any, hi: Any,
                       device: str | Device = "auto", *, result: str = "host") -> Any:
    """``clip(S_lam(x), lo, hi)``: the prox of ``lam |x|`` plus the indicator of ``[lo, hi]``
    (``result`` as :func:`soft_threshold`)."""
    check_result(result)
    dev = resolve_device(device, x)
    with cuda_context(dev):
        xd = as_vector(x, "x", dev)
        n = xd.shape[0]
        lam_p = as_param(lam, "lam", n, nonnegative=True)
        lo_p, hi_p = _box(lo, hi, n)
        return deliver(_backend(dev).soft_threshold_box(xd, lam_p, lo_p, hi_p), result)


def prox_elastic_net(x: Any, lam: Any, l1_ratio: float = 1.0, step: float = 1.0,
                     lo: Any = -np.inf, hi: Any = np.inf,
                     device: str | Device = "auto", *, result: str = "host") -> Any:
    """Prox of ``step * lam * (l1_ratio |x| + (1 - l1_ratio) x^2 / 2)`` with box ``[lo, hi]``.

    .. math:: \\operatorname{clip}\\left(\\frac{S_{a \\rho}(x)}{1 + a (1 - \\rho)},
              lo, hi\\right), \\quad a = \\text{step}\\cdot\\lambda, \\rho = \\text{l1\\_ratio}

    ``result`` as :func:`soft_threshold`.
    """
    check_result(result)
    l1_ratio, step = _enet_params(l1_ratio, step)
    dev = resolve_device(device, x)
    with cuda_context(dev):
        xd = as_vector(x, "x", dev)
        n = xd.shape[0]
        lam_p = as_param(lam, "lam", n, nonnegative=True)
        lo_p, hi_p = _box(lo, hi, n)
        return deliver(_backend(dev).prox_elastic_net(xd, lam_p, l1_ratio, step, lo_p, hi_p),
                       result)


def fista_step(z: Any, grad: Any, step: float, x_prev: Any, momentum: float, lam: Any,
               l1_ratio: float = 1.0, lo: Any = -np.inf, hi: Any = np.inf,
               device: str | Device = "auto", *, result: str = "host") -> tuple[Any, Any]:
    """One fused proximal-gradient (FISTA) step in a single pass.

    .. math:: x^+ = \\operatorname{prox}_{\\text{step}}(z - \\text{step}\\,\\nabla),
              \\qquad z^+ = x^+ + \\mu (x^+ - x_{\\text{prev}})

    with the elastic-net/box prox of :func:`prox_elastic_net`. Returns ``(x_new, z_next)``
    (``result`` as :func:`soft_threshold`, for both).
    """
    check_result(result)
    l1_ratio, step = _enet_params(l1_ratio, step)
    momentum = float(momentum)
    if not np.isfinite(momentum):
        raise ValueError(f"momentum must be finite, got {momentum}")
    dev = resolve_device(device, z, grad, x_prev)
    with cuda_context(dev):
        zd = as_vector(z, "z", dev)
        gd = as_vector(grad, "grad", dev)
        xp = as_vector(x_prev, "x_prev", dev)
        n = zd.shape[0]
        check_shape(gd, (n,), "grad", "same length as z")
        check_shape(xp, (n,), "x_prev", "same length as z")
        lam_p = as_param(lam, "lam", n, nonnegative=True)
        lo_p, hi_p = _box(lo, hi, n)
        x_new, z_next = _backend(dev).fista_step(zd, gd, step, xp, momentum, lam_p, l1_ratio,
                                                 lo_p, hi_p)
        return deliver(x_new, result), deliver(z_next, result)
