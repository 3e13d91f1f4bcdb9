"""Argument checks and conversions shared by the public kernel functions.

Policy (the caller's arrays are never modified; every conversion makes a new array):

* float64 is the one supported floating dtype. float16/float32/longdouble raise
  ``TypeError`` (no CRO-1 spec exists for them yet); complex, object and string arrays
  raise ``TypeError``.
* Integer and bool arrays are converted to float64 (``astype(np.float64)``); integers
  beyond 2**53 in magnitude round to the nearest float64 in that conversion.
* Strided (non-contiguous) vectors are copied to a contiguous array.
* Inputs are moved once to the resolved device (NumPy <-> CuPy).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .devices import Device, is_cupy_array


def _dtype_of(x: Any) -> np.dtype:
    return np.dtype(x.dtype) if hasattr(x, "dtype") else np.asarray(x).dtype


def as_vector(x: Any, name: str, device: Device) -> Any:
    """Return ``x`` as a C-contiguous 1-D float64 array on ``device``.

    Raises
    ------
    TypeError
        Unsupported dtype (float32 and other non-float64 floats, complex, object).
    ValueError
        ``x`` is not one-dimensional.
    """
    if is_cupy_array(x):
        dtype = np.dtype(x.dtype)
    else:
        x = np.asarray(x)
        dtype = x.dtype
    if dtype.kind == "f" and dtype != np.float64:
        raise TypeError(f"{name} has dtype {dtype}; reprogls kernels compute in float64 only "
                        f"(no CRO-1 spec for {dtype} exists yet): pass "
                        f"{name}.astype(np.float64)")
    if dtype.kind not in "fiub":
        raise TypeError(f"{name} has dtype {dtype}; reprogls kernels need real numbers "
                        "(float64, or integer/bool arrays, which are converted to float64)")
    if x.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {tuple(x.shape)}; "
                         f"pass {name}.ravel() to reduce over all elements")
    if device.kind == "cpu":
        if is_cupy_array(x):
            x = x.get()
        return np.ascontiguousarray(x, dtype=np.float64)
    import cupy

    with cupy.cuda.Device(device.index):
        return cupy.ascontiguousarray(cupy.asarray(x), dtype=cupy.float64)


def same_length(x: Any, y: Any, names: tuple[str, str] = ("x", "y")) -> None:
    """Raise ``ValueError`` unless two vectors have the same length."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{names[0]} and {names[1]} must have the same length, got "
                         f"{x.shape[0]} and {y.shape[0]}")
