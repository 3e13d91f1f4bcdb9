"""Public portable ``log`` and ``exp``: the same bits on every device (fdlibm algorithms
built from correctly rounded operations; see :mod:`reprogls.kernels.reference.elementary`).
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from ._validate import as_vector
from .devices import Device, resolve_device, to_host
from .dispatch import cuda_context

__all__ = ["exp", "log"]


def _apply(name: str, x: Any, device: str | Device) -> np.ndarray:
    dev = resolve_device(device, x)
    with cuda_context(dev):
        xd = as_vector(x, "x", dev)
        out = getattr(importlib.import_module(f"reprogls.kernels.{dev.kind}.elementwise"),
                      name)(xd)
        return to_host(out)


def log(x: Any, device: str | Device = "auto") -> np.ndarray:
    """Natural logarithm, elementwise, max error below 1 ulp, identical on every device.

    ``log(x < 0)`` and ``log(NaN)`` are the canonical NaN, ``log(+-0) = -inf``.
    """
    return _apply("log", x, device)


def exp(x: Any, device: str | Device = "auto") -> np.ndarray:
    """Exponential, elementwise, max error below 1 ulp, identical on every device.

    Overflows to ``inf`` above ~709.78 and underflows to ``+0.0`` below ~-745.13.
    """
    return _apply("exp", x, device)
