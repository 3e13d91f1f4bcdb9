"""Deterministic kernels: the same inputs give the same bits on every device.

Public functions take ``device="auto" | "cpu" | "cuda" | "cuda:N"`` and
``mode="compensated" | "plain"``; :mod:`reprogls.kernels.reference` is the executable
specification (canonical reduction order CRO-1) every implementation equals bit for bit.
Results are Python floats and NumPy arrays; ``result="device"`` keeps a GPU's array
result there as a CuPy array.
"""

from . import reference
from .devices import CudaUnavailableError, Device, available_devices
from .dispatch import dot, nrm2, sum, warmup  # noqa: A004 (the kernel is called sum)
from .elementary import exp, log
from .linalg import (
    NotPositiveDefiniteError,
    WoodburyFactor,
    gemv,
    gemv_t,
    pack_sur,
    sur_matvec,
    sur_normal_matvec,
    sur_rmatvec,
    woodbury_factor,
    woodbury_logdet,
    woodbury_solve,
)
from .prox import fista_step, prox_elastic_net, soft_threshold, soft_threshold_box
from .reference import CANONICAL_NAN, CHUNK, CRO_VERSION, LANES

__all__ = [
    "CANONICAL_NAN",
    "CHUNK",
    "CRO_VERSION",
    "LANES",
    "CudaUnavailableError",
    "Device",
    "NotPositiveDefiniteError",
    "WoodburyFactor",
    "available_devices",
    "cpu_threads",
    "dot",
    "exp",
    "fista_step",
    "gemv",
    "gemv_t",
    "log",
    "nrm2",
    "pack_sur",
    "prox_elastic_net",
    "reference",
    "soft_threshold",
    "soft_threshold_box",
    "sum",
    "sur_matvec",
    "sur_normal_matvec",
    "sur_rmatvec",
    "warmup",
    "woodbury_factor",
    "woodbury_logdet",
    "woodbury_solve",
]


def cpu_threads() -> int:
    """Number of threads the CPU kernels use (Numba's ``get_num_threads()``, as read by
    the task runner :func:`reprogls.kernels.cpu.tasks.threads`)."""
    from .cpu.tasks import threads

    return threads()
