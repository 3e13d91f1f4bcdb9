"""Argument checks and conversions shared by the public kernel functions.

Policy (the caller's arrays are never modified; every conversion makes a new array):

* float64 (in either byte order: big-endian data convert exactly) is the one supported
  floating dtype. float16/float32/longdouble raise ``TypeError`` (no CRO-1 spec exists
  for them yet); complex, object and string arrays raise ``TypeError``.
* Integer and bool arrays are converted to float64 (``astype(np.float64)``); integers
  beyond 2**53 in magnitude round to the nearest float64 in that conversion.
* Strided (non-contiguous) vectors are copied to a contiguous array.
* Read-only arrays (``flags.writeable`` false: a ``np.load(..., mmap_mode="r")``, a
  ``np.frombuffer`` of bytes) are passed to the compiled kernels through a writable
  alias of the same memory, not copied (:func:`writable_alias`).
* Inputs are moved once to the resolved device (NumPy <-> CuPy).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .devices import Device, is_cupy_array, to_host


def design_list(Xs: Any, or_else: str = "") -> list:
    """``Xs`` (a list, tuple or any iterable of per-equation designs) as a non-empty
    list. One array (NumPy or CuPy) gets a ``ValueError`` saying to split it, anything
    that is not iterable (or a string) a ``TypeError`` naming its type; ``or_else``
    names another accepted form in that message (e.g. a dict)."""
    if isinstance(Xs, np.ndarray) or is_cupy_array(Xs):
        raise ValueError("Xs must be a non-empty list of per-equation designs (N, p_j), "
                         "not one array: split it into the equations' designs")
    try:
        if isinstance(Xs, str | bytes):
            raise TypeError
        designs = list(Xs)
    except TypeError:
        raise TypeError(f"Xs must be a list of per-equation designs (N, p_j){or_else}, "
                        f"got {type(Xs).__name__}") from None
    if not designs:
        raise ValueError("Xs must be a non-empty list of per-equation designs (N, p_j)")
    return designs


def as_vector(x: Any, name: str, device: Device) -> Any:
    """Return ``x`` as a C-contiguous 1-D float64 array on ``device``.

    Raises
    ------
    TypeError
        Unsupported dtype (float32 and other non-float64 floats, complex, object).
    ValueError
        ``x`` is not one-dimensional.
    """
    x = _checked_dtype(x, name)
    if x.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {tuple(x.shape)}; "
                         f"pass {name}.ravel() to treat all its elements as one vector")
    return to_device(x, device)


def same_length(x: Any, y: Any, names: tuple[str, str] = ("x", "y")) -> None:
    """Raise ``ValueError`` unless two vectors have the same length."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{names[0]} and {names[1]} must have the same length, got "
                         f"{x.shape[0]} and {y.shape[0]}")


def _checked_dtype(x: Any, name: str) -> Any:
    if not is_cupy_array(x):
        x = np.asarray(x)
    dtype = np.dtype(x.dtype)
    # float64 in either byte order (big-endian data from a file converts exactly)
    if dtype.kind == "f" and dtype.newbyteorder("=") != np.float64:
        raise TypeError(f"{name} has dtype {dtype.name}; reprogls kernels compute in float64 "
                        f"only (no CRO-1 spec for {dtype.name} exists yet): pass "
                        f"{name}.astype(np.float64)")
    if dtype.kind not in "fiub":
        raise TypeError(f"{name} has dtype {dtype}; reprogls kernels need real numbers "
                        "(float64, or integer/bool arrays, which are converted to float64)")
    return x


class _ReadOnlyMemory:
    """A read-only array's memory offered to NumPy as writable (its array interface with
    the read-only flag cleared); holds the array, so the memory lives as long as any
    array made from it."""

    def __init__(self, array: np.ndarray):
        self.array = array
        interface = dict(array.__array_interface__)
        interface["data"] = (interface["data"][0], False)
        self.__array_interface__ = interface


def writable_alias(x: np.ndarray) -> np.ndarray:
    """``x`` itself when writeable, else a writeable array over the same memory.

    Numba types a read-only array as another type than a writeable one, so every kernel
    compiled again (and cached again) on its first read-only call: 0.5 s for ``sum``, 9 s
    for ``sur_normal_matvec`` on the 2-core Zen 3 box, none of it covered by
    ``warmup()``. The kernels never write their inputs (the tests check the callers'
    arrays bit for bit), so the alias is only read; copying instead would cost the
    array's size in memory and time (a memory-mapped X of several GB)."""
    if x.flags.writeable:
        return x
    return np.asarray(_ReadOnlyMemory(x))


def to_device(x: Any, device: Device, dtype=np.float64) -> Any:
    """``x`` as a C-contiguous array of ``dtype`` on ``device`` (copies only when needed;
    on the CPU a read-only one is passed as :func:`writable_alias`)."""
    if device.kind == "cpu":
        if is_cupy_array(x):
            x = x.get()
        return writable_alias(np.ascontiguousarray(x, dtype=dtype))
    import cupy

    # CuPy copies a non-native (big-endian) array's bytes as they are, reading them as
    # native: silently wrong values (cupy issues #3652, #4288); convert on the host first
    if isinstance(x, np.ndarray) and not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    with cupy.cuda.Device(device.index):
        return cupy.ascontiguousarray(cupy.asarray(x), dtype=dtype)


def as_matrix(A: Any, name: str, device: Device) -> Any:
    """``A`` as a C-contiguous 2-D float64 array on ``device`` (same dtype policy)."""
    A = _checked_dtype(A, name)
    if A.ndim != 2:
        raise ValueError(f"{name} must be two-dimensional, got shape {tuple(A.shape)}")
    return to_device(A, device)


def host_vector(x: Any, name: str) -> np.ndarray:
    """A 1-D float64 NumPy copy-if-needed of ``x`` (for small parameters)."""
    return as_vector(x, name, Device("cpu"))


def as_offsets(offsets: Any, n_columns: int) -> np.ndarray:
    """Validate SUR ``offsets`` (K+1 non-decreasing ints from 0 to ``n_columns``); host int64."""
    arr = np.asarray(to_host(offsets))
    if arr.ndim != 1 or arr.shape[0] < 2:
        raise ValueError("offsets must be a 1-D array of K+1 >= 2 column offsets "
                         "(equation j owns columns offsets[j]:offsets[j+1])")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"offsets must hold integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr[0] != 0:
        raise ValueError(f"offsets[0] must be 0, got {arr[0]}")
    if np.any(np.diff(arr) < 0):
        bad = int(np.argmax(np.diff(arr) < 0))
        raise ValueError(f"offsets must be non-decreasing: offsets[{bad}] = {arr[bad]} > "
                         f"offsets[{bad + 1}] = {arr[bad + 1]}")
    if arr[-1] != n_columns:
        raise ValueError(f"offsets[-1] must equal the number of columns of X ({n_columns}), "
                         f"got {arr[-1]}")
    return arr


def check_shape(x: Any, shape: tuple[int, ...], name: str, hint: str) -> None:
    """Raise ``ValueError`` unless ``x.shape == shape``."""
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)} ({hint}), got "
                         f"{tuple(x.shape)}")


def as_param(value: Any, name: str, n: int, *, nonnegative: bool = False) -> Any:
    """A scalar or length-``n`` parameter: a float, or a 1-D float64 NumPy array.

    NaN is rejected; with ``nonnegative`` so are negative values.
    """
    if np.ndim(value) == 0 and not is_cupy_array(value):
        v = float(value)
        if v != v:
            raise ValueError(f"{name} must not be NaN")
        if nonnegative and v < 0:
            raise ValueError(f"{name} must be >= 0, got {v}")
        return v
    arr = host_vector(value, name)
    if arr.shape[0] != n:
        raise ValueError(f"{name} must be a scalar or have the length of x ({n}), got "
                         f"{arr.shape[0]}")
    if np.isnan(arr).any():
        raise ValueError(f"{name} must not contain NaN (index {int(np.argmax(np.isnan(arr)))})")
    if nonnegative and (arr < 0).any():
        bad = int(np.argmax(arr < 0))
        raise ValueError(f"{name} must be >= 0, got {arr[bad]} at index {bad}")
    return arr


def as_output(out: Any, shape: tuple[int, ...], inputs: dict[str, Any],
              in_place: str | None = None) -> np.ndarray:
    """Check a caller's ``out`` array: a writeable, C-contiguous float64 NumPy array of
    ``shape`` that shares no memory with the caller's ``inputs`` (name -> argument as
    passed), except that it may be exactly the input named ``in_place`` (the same bytes,
    shape, strides and dtype), for kernels that read each row before writing it.

    Results always come back to the host, so ``out`` is a NumPy array on every device.

    Raises
    ------
    TypeError
        ``out`` is not a NumPy array, or not float64.
    ValueError
        Wrong shape, not C-contiguous or read-only, or overlapping an input.
    """
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a NumPy array (results come back to the host on "
                        f"every device), got {type(out).__name__}")
    if out.dtype != np.float64:
        raise TypeError(f"out has dtype {out.dtype}; it must be float64 "
                        f"(np.empty({tuple(shape)}))")
    check_shape(out, shape, "out", "the shape of the result")
    if not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous; allocate it with np.empty({tuple(shape)})")
    if not out.flags.writeable:
        raise ValueError("out is read-only; pass a writeable array")
    for name, arg in inputs.items():
        if not isinstance(arg, np.ndarray) or not np.may_share_memory(out, arg):
            continue
        if name == in_place and _same_layout(out, arg):
            continue
        exactly = "" if in_place is None else f" (or {in_place} itself, to work in place)"
        raise ValueError(f"out overlaps {name}; pass a separate array{exactly}")
    return out


def _same_layout(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``a`` and ``b`` view the same bytes the same way (and have one dtype)."""
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype)
