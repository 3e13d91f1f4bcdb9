"""A stand-in for the part of CuPy that reprogls uses, backed by host memory.

Installed as ``sys.modules["cupy"]`` (see :func:`tests.cuda_emulator.install`), it lets
the package's own CUDA launchers (``reprogls/kernels/cuda/*.py``) and the ``gpu`` tests
run unchanged: ``RawModule`` compiles the CUDA C with the host emulator
(:mod:`.compiler`) instead of NVRTC.

"Device" arrays behave like CuPy's where it matters for catching host/device mistakes:
implicit conversion to NumPy raises ``TypeError`` (use ``.get()``), and mixing them with
NumPy arrays in arithmetic raises. Each allocation is its own mapping whose data ends at
(or, with ``REPROGLS_CUDA_EMULATOR_ALIGN=start``, starts at) an inaccessible page:
reading or writing past that side kills the process with SIGSEGV; guard bytes on the
other side are checked after every launch. Fresh ``empty`` memory is filled with NaN
bytes, so a kernel that reads what it never wrote shows it.

It reports two devices (``REPROGLS_CUDA_EMULATOR_DEVICES``), with CuPy's notion of the
current one (``with cupy.cuda.Device(n):``): each array lives on the device that was
current when it was allocated, and CuPy's own kernels (arithmetic, assignment, copies,
``isfinite``, ``all``) and the package's launches refuse an array of another device, as
CuPy does where the GPUs cannot reach each other's memory. A step of a ``device="cuda:1"``
fit that runs outside that device's context fails here, not only on a multi-GPU machine.
"""

from __future__ import annotations

import ctypes
import math
import mmap
import operator
import os
import weakref

import numpy as np

from .compiler import EmulatorError, compile_module

float64, float32, int64, int32, uint64, uint32, bool_ = (
    np.float64, np.float32, np.int64, np.int32, np.uint64, np.uint32, np.bool_)

GUARD_BYTES = 256
_GUARD = 0xA5
_FRESH = 0xFF  # every float64 made of these bytes is a NaN
_PAGE = mmap.PAGESIZE
_libc = ctypes.CDLL(None, use_errno=True)
_allocations: list[tuple[weakref.ref, int, int]] = []
#: ``REPROGLS_CUDA_EMULATOR_ALIGN``: ``end`` (default) puts each array's last byte just
#: before an inaccessible page, ``start`` its first byte just after one; the other side
#: gets guard bytes. The ``gpu`` suite runs once each way (tests/test_cuda_emulator.py).
ALIGN_ENV = "REPROGLS_CUDA_EMULATOR_ALIGN"


def _align() -> str:
    value = os.environ.get(ALIGN_ENV, "end").strip().lower()
    if value not in ("end", "start"):
        raise EmulatorError(f"{ALIGN_ENV} must be 'end' or 'start', got {value!r}")
    return value


def _allocate(shape, dtype, fill=_FRESH) -> np.ndarray:
    """Fresh "device" memory: its own mapping, the data against an inaccessible page on
    one side (:data:`ALIGN_ENV`: a kernel that reads or writes past that side faults and
    the process dies with SIGSEGV) and guard bytes on the other (checked after every
    launch)."""
    shape = tuple(int(s) for s in (shape if isinstance(shape, tuple | list) else (shape,)))
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    pages = -(-(nbytes + GUARD_BYTES) // _PAGE)
    at_end = _align() == "end"
    region = mmap.mmap(-1, (pages + 1) * _PAGE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(region))
    fence = base + (pages * _PAGE if at_end else 0)
    if _libc.mprotect(ctypes.c_void_p(fence), ctypes.c_size_t(_PAGE), 0):
        raise OSError(ctypes.get_errno(), "mprotect of the guard page failed")
    raw = np.frombuffer(region, dtype=np.uint8, count=pages * _PAGE,
                        offset=0 if at_end else _PAGE)
    start = pages * _PAGE - nbytes if at_end else 0
    guard = (start - GUARD_BYTES, start) if at_end else (nbytes, nbytes + GUARD_BYTES)
    raw[guard[0]:guard[1]] = _GUARD
    raw[start:start + nbytes] = fill
    _allocations.append((weakref.ref(raw), *guard))
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def check_guards(kernel_name: str) -> None:
    """Raise if a launch wrote into the guard bytes of any live allocation."""
    alive = []
    for ref, lo, hi in _allocations:
        raw = ref()
        if raw is None:
            continue
        alive.append((ref, lo, hi))
        if (raw[lo:hi] != _GUARD).any():
            raw[lo:hi] = _GUARD  # report once
            raise EmulatorError(f"{kernel_name} wrote outside an array it was given "
                                "(guard bytes beside it changed)")
    _allocations[:] = alive


#: ``REPROGLS_CUDA_EMULATOR_DEVICES``: how many devices the emulator reports (2 by
#: default, so that ``device="cuda:1"`` and CuPy arrays on a second GPU are tested).
DEVICES_ENV = "REPROGLS_CUDA_EMULATOR_DEVICES"
#: The current device: the innermost ``with Device(n)`` block's, else the one ``use()``
#: chose (0 at the start), as in CuPy.
_current: list[int] = [0]


def device_count() -> int:
    value = os.environ.get(DEVICES_ENV, "2").strip()
    if not value.isdigit() or int(value) < 1:
        raise EmulatorError(f"{DEVICES_ENV} must be a positive integer, got {value!r}")
    return int(value)


def current_device() -> int:
    return _current[-1]


class _Device:
    """``cupy.cuda.Device``: ``Device()`` is the current device; ``with Device(n):``
    makes ``n`` current inside the block."""

    def __init__(self, device=None):
        if device is None:
            device = current_device()
        if isinstance(device, bool) or not isinstance(device, int | np.integer) or not (
                0 <= int(device) < device_count()):
            raise ValueError(f"the emulator has {device_count()} CUDA device(s), not "
                             f"{device!r}")
        self.id = int(device)

    def __enter__(self):
        _current.append(self.id)
        return self

    def __exit__(self, *exc):
        _current.pop()
        return False

    def use(self):
        _current[0] = self.id
        return self

    def synchronize(self):  # every emulated launch has finished when it returns
        return None

    def __eq__(self, other):
        return isinstance(other, _Device) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


def check_on_current_device(arrays, what: str) -> None:
    """CuPy's rule for its kernels (without peer access between the GPUs): every array
    they touch lives on the current device."""
    for a in arrays:
        if isinstance(a, ndarray) and a.device_id != current_device():
            raise ValueError(f"The device where the array resides ({a.device_id}) is "
                             f"different from the current device ({current_device()}). "
                             f"Peer access could not be activated automatically. ({what})")


class ndarray:  # noqa: N801 (CuPy's name)
    """A device array: host memory behind CuPy's interface (the subset reprogls uses)."""

    __array_priority__ = 100

    def __init__(self, host: np.ndarray, device_id: int | None = None):
        self._host = host
        #: the device the memory lives on: where it was allocated (views: their base's)
        self.device_id = current_device() if device_id is None else device_id

    # --- what a device array tells about itself
    shape = property(lambda self: self._host.shape)
    ndim = property(lambda self: self._host.ndim)
    size = property(lambda self: self._host.size)
    dtype = property(lambda self: self._host.dtype)
    nbytes = property(lambda self: self._host.nbytes)
    itemsize = property(lambda self: self._host.itemsize)
    strides = property(lambda self: self._host.strides)
    flags = property(lambda self: self._host.flags)
    device = property(lambda self: _Device(self.device_id))
    T = property(lambda self: ndarray(self._host.T, self.device_id))
    data_pointer = property(lambda self: self._host.ctypes.data)

    def __len__(self):
        return len(self._host)

    def __repr__(self):
        return f"emulated_cupy.ndarray({self._host!r})"

    # --- CuPy refuses implicit transfers to the host; so does this
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use "
                        "`.get()` to construct a NumPy array explicitly.")

    def __array_ufunc__(self, *args, **kwargs):
        return NotImplemented

    def get(self) -> np.ndarray:  # (CuPy switches to the array's device for the copy)
        return self._host.copy()

    def __bool__(self):
        return bool(self._host)

    # --- views and copies stay on the device
    def __getitem__(self, key):
        host = self._host[_host_key(key)]
        if isinstance(host, np.ndarray) and np.shares_memory(host, self._host):
            return ndarray(host, self.device_id)  # a view: no kernel, where its base is
        check_on_current_device([self, *_index_arrays(key)], "indexing")
        return _new(np.asarray(host))  # gathered by a kernel into a new array

    def __setitem__(self, key, value):
        check_on_current_device([self, value, *_index_arrays(key)], "assignment")
        self._host[_host_key(key)] = _operand(value)

    def reshape(self, *shape, order="C"):
        host = self._host.reshape(*shape, order=order)
        if np.shares_memory(host, self._host):
            return ndarray(host, self.device_id)
        check_on_current_device([self], "reshape copy")
        return _new(host)

    def ravel(self):
        return self.reshape(-1)

    def view(self, dtype):
        return ndarray(self._host.view(dtype), self.device_id)

    def transpose(self, *axes):
        return ndarray(self._host.transpose(*axes), self.device_id)

    def copy(self):
        check_on_current_device([self], "copy")
        out = _allocate(self.shape, self.dtype)
        out[...] = self._host
        return ndarray(out)

    def astype(self, dtype, copy=True):
        if not copy and self.dtype == np.dtype(dtype):
            return self
        check_on_current_device([self], "astype")
        out = _allocate(self.shape, dtype)
        out[...] = self._host
        return ndarray(out)

    # --- the reductions reprogls asks of a device array (flags, not audited numbers)
    def all(self, axis=None):
        check_on_current_device([self], "all")
        return _new(np.asarray(self._host.all(axis=axis)))


def _index_arrays(key) -> list:
    keys = key if isinstance(key, tuple) else (key,)
    return [k for k in keys if isinstance(k, ndarray)]


def _host_key(key):
    if isinstance(key, ndarray):
        return key._host
    if isinstance(key, tuple):
        return tuple(k._host if isinstance(k, ndarray) else k for k in key)
    return key


def _operand(value):
    """A device array's memory or a scalar; NumPy arrays are refused, as in CuPy."""
    if isinstance(value, ndarray):
        return value._host
    if isinstance(value, np.ndarray) and value.ndim:
        raise TypeError("Unsupported type <class 'numpy.ndarray'>: move it to the device "
                        "with cupy.asarray first")
    return value


def _new(host_result) -> ndarray:
    out = _allocate(np.shape(host_result), np.asarray(host_result).dtype)
    out[...] = host_result
    return ndarray(out)


def _binary(op, reflected=False):
    def method(self, other):
        try:
            operand = _operand(other)
        except TypeError:
            return NotImplemented
        check_on_current_device([self, other], "elementwise")
        other = operand
        return _new(op(other, self._host) if reflected else op(self._host, other))
    return method


for _name, _op in [("add", operator.add), ("sub", operator.sub), ("mul", operator.mul),
                   ("truediv", operator.truediv), ("floordiv", operator.floordiv),
                   ("mod", operator.mod), ("pow", operator.pow), ("and", operator.and_),
                   ("or", operator.or_), ("xor", operator.xor)]:
    setattr(ndarray, f"__{_name}__", _binary(_op))
    setattr(ndarray, f"__r{_name}__", _binary(_op, reflected=True))
for _name, _op in [("eq", operator.eq), ("ne", operator.ne), ("lt", operator.lt),
                   ("le", operator.le), ("gt", operator.gt), ("ge", operator.ge)]:
    setattr(ndarray, f"__{_name}__", _binary(_op))
def _unary(op):
    def method(self):
        check_on_current_device([self], "elementwise")
        return _new(op(self._host))
    return method


ndarray.__neg__ = _unary(operator.neg)
ndarray.__abs__ = _unary(abs)
ndarray.__hash__ = None
ndarray.__module__ = "cupy"  # what reprogls.kernels.devices.is_cupy_array looks at


# --- module-level functions --------------------------------------------------------------

def empty(shape, dtype=float64, order="C"):
    return ndarray(_allocate(shape, dtype))


def zeros(shape, dtype=float64, order="C"):
    return ndarray(_allocate(shape, dtype, fill=0))


def ones(shape, dtype=float64, order="C"):
    out = _allocate(shape, dtype)
    out[...] = 1
    return ndarray(out)


def empty_like(a, dtype=None):
    return empty(a.shape, a.dtype if dtype is None else dtype)


def asarray(a, dtype=None, order=None):
    """``a`` on the device: device arrays as they are (cast when ``dtype`` differs), host
    data copied into a fresh C-contiguous allocation."""
    if isinstance(a, ndarray):
        return a if dtype is None else a.astype(dtype, copy=False)
    host = np.asarray(a, dtype=dtype)
    out = _allocate(host.shape, host.dtype)
    out[...] = host
    return ndarray(out)


def ascontiguousarray(a, dtype=None):
    a = asarray(a, dtype=dtype)
    if a.ndim == 0:
        a = a.reshape(1)
    return a if a.flags.c_contiguous else a.copy()


def isfinite(a):
    check_on_current_device([a], "isfinite")
    return _new(np.isfinite(_operand(a)))


def copyto(dst, src):
    check_on_current_device([dst, src], "copyto")
    dst._host[...] = _operand(src)


def asnumpy(a):
    return a.get() if isinstance(a, ndarray) else np.asarray(a)


class RawModule:
    """``cupy.RawModule``: the CUDA C source built for the host emulator. The NVRTC
    options are checked to be the package's own (``--fmad=false`` and friends), since the
    emulator's arithmetic assumes them."""

    def __init__(self, code: str, options=(), **kwargs):
        from reprogls.kernels.cuda.sources import NVRTC_OPTIONS

        if tuple(options) != tuple(NVRTC_OPTIONS):
            raise EmulatorError(f"RawModule options {options!r} are not the package's "
                                f"NVRTC options {NVRTC_OPTIONS!r}")
        self._module = compile_module(code)

    def get_function(self, name: str):
        return self._module.get_function(name)


def RawKernel(code: str, name: str, options=(), **kwargs):
    return RawModule(code, options).get_function(name)


class _Runtime:
    """``cupy.cuda.runtime``: a driver that reports :func:`device_count` devices."""

    @staticmethod
    def driverGetVersion():
        return 12080

    @staticmethod
    def getDeviceCount():
        return device_count()

    @staticmethod
    def getDeviceProperties(index):
        """A few of CUDA's ``cudaDeviceProp`` fields, as CuPy returns them (a dict; the
        name as bytes)."""
        if not 0 <= int(index) < device_count():
            raise RuntimeError(f"cudaErrorInvalidDevice: invalid device ordinal {index}")
        return {"name": b"reprogls host emulator", "major": 9, "minor": 0}


class cuda:  # noqa: N801 (a namespace standing in for the ``cupy.cuda`` module)
    Device = _Device
    runtime = _Runtime


__version__ = "emulated"
