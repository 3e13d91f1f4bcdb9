"""Public portable ``log`` and ``exp``: the same bits on every device (fdlibm algorithms
built from correctly rounded operations; see :mod:`reprogls.kernels.reference.elementary`).
"""

from __future__ import annotations

import importlib
from typing import Any

from ._validate import as_vector
from .devices import Device, check_result, deliver, resolve_device
from .dispatch import cuda_context

__all__ = ["exp", "log"]


def _apply(name: str, x: Any, device: str | Device, result: str) -> Any:
    check_result(result)
    dev = resolve_device(device, x)
    with cuda_context(dev):
        xd = as_vector(x, "x", dev)
        out = getattr(importlib.import_module(f"reprogls.kernels.{dev.kind}.elementwise"),
                      name)(xd)
        return deliver(out, result)


def log(x: Any, device: str | Device = "auto", *, result: str = "host") -> Any:
    """Natural logarithm, elementwise, max error below 1 ulp, identical on every device.

    ``log(x < 0)`` and ``log(NaN)`` are the canonical NaN, ``log(+-0) = -inf``.
    ``result="device"`` keeps a GPU's result there as a CuPy array (default ``"host"``:
    NumPy).
    """
    return _apply("log", x, device, result)


def exp(x: Any, device: str | Device = "auto", *, result: str = "host") -> Any:
    """Exponential, elementwise, max error below 1 ulp, identical on every device.

    Overflows to ``inf`` above ~709.78 and underflows to ``+0.0`` below ~-745.13.
    ``result`` as :func:`log`.
    """
    return _apply("exp", x, device, result)
