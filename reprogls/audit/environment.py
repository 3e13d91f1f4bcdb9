"""What an audit records about the machine and the process it ran in.

Nothing here changes a bit of a result (that is the promise the audit checks); it is what
a person needs to see beside a divergence: versions, the CPU Numba compiled for and the
code paths the CPU kernels chose for it, the thread count, the GPUs, and whether the
process flushes subnormals to zero (FTZ) or reads them as zero (DAZ) -- a library loaded
into the process can switch those on, and then subnormal results change.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
from importlib import metadata

import numpy as np

from .. import __version__
from ..kernels import CRO_VERSION, cpu_threads
from ..kernels.devices import cuda_status


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`;
    None where neither says)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def subnormal_arithmetic() -> dict[str, bool]:
    """Whether this thread flushes subnormal results to zero (``ftz``) or treats subnormal
    inputs as zero (``daz``), found by arithmetic on arrays (not folded at compile time):
    ``2**-1022 * 0.5`` is the subnormal ``2**-1023`` unless flushed, and ``2**-1074 * 2``
    is ``2**-1073`` unless the input is read as zero."""
    halves = np.array([2.0 ** -1022]) * np.array([0.5])
    doubles = np.array([2.0 ** -1074]) * np.array([2.0])
    return {"ftz": bool(halves[0] == 0.0), "daz": bool(doubles[0] == 0.0)}


def cpu_code_paths() -> dict:
    """The CPU Numba compiles for and the code paths the CPU kernels chose for it
    (:mod:`reprogls.kernels.cpu.simd`): they change speed, never bits."""
    from ..kernels.cpu import reciprocal, simd

    name, features = simd._host_target()
    zen, avx512 = simd._zen_target()
    return {"llvm_cpu": name,
            "vector_features": ",".join(sorted(
                f[1:] for f in features if f.startswith("+") and
                f[1:].startswith(("sse", "avx", "fma", "neon", "sve")))),
            "zen": zen, "avx512": avx512,
            "adds_on_fma": simd.ADDS_ON_FMA, "gram_adds_on_fma": simd.GRAM_ADDS_ON_FMA,
            "gram_rows": len(simd.GRAM_ROW_GROUPS[0]),
            "lane_sum_width": simd.LANE_SUM_WIDTH_COMPENSATED,
            "reciprocal_division": reciprocal.RECIPROCAL_DIVISION,
            "fused_interleaved": simd.FUSED_INTERLEAVED}


def cuda_devices() -> list[dict]:
    """Name and compute capability of each usable GPU (empty without one)."""
    status = cuda_status()
    if not status.usable:
        return []
    import cupy

    out = []
    for i in range(status.device_count):
        try:
            props = cupy.cuda.runtime.getDeviceProperties(i)
        except Exception as exc:  # describing a device must not stop the audit
            out.append({"device": f"cuda:{i}", "name": f"unknown ({exc})",
                        "compute_capability": None})
            continue
        name = props.get("name", b"")
        out.append({"device": f"cuda:{i}",
                    "name": name.decode(errors="replace") if isinstance(name, bytes)
                    else str(name),
                    "compute_capability": f"{props.get('major')}.{props.get('minor')}"})
    return out


def describe() -> dict:
    """The environment section of an audit report."""
    import numba

    from ..kernels.cpu.jit import cache_is_locked

    status = cuda_status()
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "reprogls": __version__, "cro_version": CRO_VERSION,
        "python": platform.python_version(), "implementation": sys.implementation.name,
        "numpy": np.__version__, "numba": numba.__version__,
        "llvmlite": _version("llvmlite"), "cupy": _version("cupy-cuda12x")
        or _version("cupy-cuda13x") or _version("cupy"),
        "machine": platform.machine(), "system": platform.system(),
        "cpu_model": cpu_model(),
        "cpu": cpu_code_paths(), "cpu_threads": cpu_threads(),
        "numba_num_threads_env": os.environ.get("NUMBA_NUM_THREADS"),
        # whether the kernels' Numba cache is the package's locked one (False: a Numba
        # whose cache internals changed; kernels/cpu/jit.py); never a matter of bits
        "numba_cache_locked": cache_is_locked(),
        "subnormals": subnormal_arithmetic(),
        "cuda": {"usable": status.usable, "reason": status.reason,
                 "devices": cuda_devices()},
    }
