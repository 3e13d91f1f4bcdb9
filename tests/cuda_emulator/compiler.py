"""Compile a CUDA C source for the host emulator and launch its kernels through ctypes.

:func:`compile_module` takes the text NVRTC would get (``sources.source(name)``), finds
every ``extern "C" __global__ void name(params)``, appends one C++ launcher per kernel
(``emu_launch__name(grid, block, argv)``: every CUDA thread of the grid runs ``name`` with
the arguments unpacked from ``argv``) and builds a shared library with ``g++``
(``-ffp-contract=off``: no FMA contraction, as ``--fmad=false`` on the GPU). Libraries
are cached by the hash of their text.

:class:`HostKernel` checks each argument against the kernel's declared parameter before
a launch -- a device array of the pointer's element type, or a NumPy scalar of the
parameter's exact type -- which a real CuPy launch does not: a ``np.int32`` passed for a
``long long`` is silently wrong on a GPU and an error here.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEADER = Path(__file__).with_name("host_cuda.hpp")
CXX_FLAGS = ("-std=c++17", "-O2", "-fPIC", "-shared", "-ffp-contract=off", "-fno-fast-math",
             "-w")
#: C parameter types the launchers pass, and the NumPy dtype each must come as.
SCALARS = {"long long": np.int64, "int": np.int32, "unsigned": np.uint32,
           "unsigned int": np.uint32, "double": np.float64}
POINTEES = {"double": np.float64, "long long": np.int64, "int": np.int32,
            "unsigned long long": np.uint64}
_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)', re.S)


#: ``REPROGLS_CUDA_EMULATOR_SCHEDULE=reverse`` runs warps and lanes in descending order
#: (default ascending): a kernel with a missing barrier between threads that share
#: memory gives other bits under the other order.
SCHEDULE_ENV = "REPROGLS_CUDA_EMULATOR_SCHEDULE"


def schedule() -> int:
    """0 (ascending) or 1 (descending), from :data:`SCHEDULE_ENV`."""
    value = os.environ.get(SCHEDULE_ENV, "ascending").strip().lower()
    if value not in ("ascending", "reverse"):
        raise EmulatorError(f"{SCHEDULE_ENV} must be 'ascending' or 'reverse', got {value!r}")
    return int(value == "reverse")


class EmulatorError(RuntimeError):
    """A kernel misbehaved under the emulator (divergence, deadlock, a bad argument, a
    write past an allocation); the message names the kernel."""


@dataclass(frozen=True)
class Parameter:
    """One kernel parameter: its C base type, whether it is a pointer, its name."""

    base: str
    pointer: bool
    name: str

    @property
    def c_type(self) -> str:
        return f"{self.base} *" if self.pointer else self.base


def compiler() -> str | None:
    """The C++ compiler to use (``$CXX`` or ``g++``), or None when there is none."""
    return shutil.which(os.environ.get("CXX", "g++"))


def parse_kernels(text: str) -> dict[str, tuple[Parameter, ...]]:
    """``{kernel name: parameters}`` of every ``extern "C" __global__`` function."""
    kernels = {}
    for name, params in _KERNEL.findall(text):
        parsed = []
        for raw in params.split(","):
            words = raw.replace("__restrict__", " ").replace("*", " * ").split()
            pointer = "*" in words
            words = [w for w in words if w not in ("*", "const")]
            parsed.append(Parameter(" ".join(words[:-1]), pointer, words[-1]))
        kernels[name] = tuple(parsed)
    return kernels


def _launchers(kernels: dict[str, tuple[Parameter, ...]]) -> str:
    out = []
    for name, params in kernels.items():
        args = ", ".join(f"*reinterpret_cast<{p.c_type} *>(a[{i}])"
                         for i, p in enumerate(params))
        out.append(f'extern "C" int emu_launch__{name}(unsigned gx, unsigned bx, void **a) {{\n'
                   f"    const std::function<void()> run = [a] {{ {name}({args}); }};\n"
                   f"    return emu::launch(gx, bx, run);\n}}\n")
    return "\n".join(out)


def compile_module(text: str, cache_dir: Path | None = None) -> HostModule:
    """Build (or load from the cache) the host library of one CUDA C source text."""
    cxx = compiler()
    if cxx is None:
        raise EmulatorError("the CUDA host emulator needs a C++17 compiler (g++); "
                            "install it (apt-get install g++) or set $CXX")
    kernels = parse_kernels(text)
    program = f'#include "{HEADER}"\n{text}\n{_launchers(kernels)}'
    key = hashlib.sha256((HEADER.read_text() + program + " ".join(CXX_FLAGS)).encode())
    cache_dir = cache_dir or Path(tempfile.gettempdir()) / f"reprogls-cuda-emulator-{os.getuid()}"
    cache_dir.mkdir(parents=True, exist_ok=True)
    lib = cache_dir / f"{key.hexdigest()[:24]}.so"
    if not lib.exists():
        src = lib.with_suffix(f".{os.getpid()}.cpp")  # per process: builds may race
        src.write_text(program)
        partial = lib.with_suffix(f".{os.getpid()}.so")
        result = subprocess.run([cxx, *CXX_FLAGS, str(src), "-o", str(partial)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise EmulatorError(f"g++ could not build the emulated module:\n{result.stderr}")
        partial.replace(lib)  # atomic: concurrent test processes never load half a file
        src.unlink()
    return HostModule(ctypes.CDLL(str(lib)), kernels)


class HostModule:
    """The kernels of one compiled source (cf. ``cupy.RawModule``)."""

    def __init__(self, lib: ctypes.CDLL, kernels: dict[str, tuple[Parameter, ...]]):
        self._lib = lib
        self._kernels = kernels
        lib.emu_error.restype = ctypes.c_char_p

    def get_function(self, name: str) -> HostKernel:
        if name not in self._kernels:
            raise EmulatorError(f"no kernel {name!r} in the module; it has "
                                f"{sorted(self._kernels)}")
        launch = getattr(self._lib, f"emu_launch__{name}")
        launch.restype = ctypes.c_int
        launch.argtypes = (ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_void_p))
        return HostKernel(name, self._kernels[name], launch, self._lib)


def _extent(shape, name: str, what: str) -> int:
    shape = tuple(int(s) for s in (shape if isinstance(shape, tuple) else (shape,)))
    if any(s < 1 for s in shape) or any(s != 1 for s in shape[1:]):
        raise EmulatorError(f"{name}: {what} {shape} is not a positive 1-D extent "
                            "(the kernels are written for 1-D grids and blocks)")
    return shape[0]


class HostKernel:
    """One kernel, called as CuPy's ``RawKernel``: ``kernel(grid, block, args)``."""

    def __init__(self, name, params, launch, lib):
        self.name, self.params, self._launch, self._lib = name, params, launch, lib

    def _argument(self, p: Parameter, value):
        from . import fake_cupy

        where = f"{self.name}: argument {p.name!r} ({p.c_type})"
        if p.pointer:
            if not isinstance(value, fake_cupy.ndarray):
                raise EmulatorError(f"{where} got {type(value).__name__}, not a device array")
            want = POINTEES.get(p.base)
            if want is None:
                raise EmulatorError(f"{where}: no NumPy dtype for {p.base!r}; add it to "
                                    "compiler.POINTEES")
            if value.dtype != want:
                raise EmulatorError(f"{where} got a {value.dtype} array, needs {np.dtype(want)}")
            if not value.flags.c_contiguous:
                raise EmulatorError(f"{where} got a non-contiguous array")
            return ctypes.c_void_p(value.data_pointer)
        want = SCALARS.get(p.base)
        if want is None:
            raise EmulatorError(f"{where}: no NumPy scalar type for {p.base!r}; add it to "
                                "compiler.SCALARS")
        if type(value) is not want:
            raise EmulatorError(f"{where} got {type(value).__name__} {value!r}, needs "
                                f"{want.__name__}")
        return _scalar_ctype(want)(value)

    def __call__(self, grid, block, args):
        from . import fake_cupy

        if len(args) != len(self.params):
            raise EmulatorError(f"{self.name} takes {len(self.params)} arguments "
                                f"({', '.join(p.name for p in self.params)}), got {len(args)}")
        elsewhere = [p.name for p, v in zip(self.params, args, strict=True)
                     if isinstance(v, fake_cupy.ndarray)
                     and v.device_id != fake_cupy.current_device()]
        if elsewhere:  # (on a GPU: an illegal address, or another device's memory)
            raise EmulatorError(f"{self.name} launched on device "
                                f"{fake_cupy.current_device()} got arrays on another device: "
                                f"{', '.join(elsewhere)}")
        holders = [self._argument(p, v) for p, v in zip(self.params, args, strict=True)]
        argv = (ctypes.c_void_p * max(1, len(holders)))(
            *[ctypes.cast(ctypes.pointer(h), ctypes.c_void_p) for h in holders])
        gx, bx = _extent(grid, self.name, "grid"), _extent(block, self.name, "block")
        self._lib.emu_set_schedule(schedule())
        if self._launch(gx, bx, argv) != 0:
            raise EmulatorError(f"{self.name}: {self._lib.emu_error().decode()}")
        fake_cupy.check_guards(self.name)


def _scalar_ctype(dtype):
    return {np.int64: ctypes.c_longlong, np.int32: ctypes.c_int, np.uint32: ctypes.c_uint,
            np.float64: ctypes.c_double}[dtype]
