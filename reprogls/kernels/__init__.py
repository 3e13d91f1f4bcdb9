"""Deterministic kernels: the same inputs give the same bits on every device.

Public functions take ``device="auto" | "cpu" | "cuda" | "cuda:N"`` and
``mode="compensated" | "plain"``; :mod:`reprogls.kernels.reference` is the executable
specification (canonical reduction order CRO-1) every implementation equals bit for bit.
"""

from . import reference
from .devices import CudaUnavailableError, Device, available_devices
from .dispatch import dot, nrm2, sum, warmup  # noqa: A004 (the kernel is called sum)
from .reference import CANONICAL_NAN, CHUNK, CRO_VERSION, LANES

__all__ = [
    "CANONICAL_NAN",
    "CHUNK",
    "CRO_VERSION",
    "LANES",
    "CudaUnavailableError",
    "Device",
    "available_devices",
    "cpu_threads",
    "dot",
    "nrm2",
    "reference",
    "sum",
    "warmup",
]


def cpu_threads() -> int:
    """Number of threads the CPU kernels use (Numba's ``get_num_threads()``)."""
    import numba

    return int(numba.get_num_threads())
