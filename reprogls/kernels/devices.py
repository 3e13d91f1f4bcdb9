"""Which devices exist, and resolving a ``device=`` argument (DESIGN.md section 5).

* ``"auto"`` (default): the data decides. CuPy arrays run on their GPU, anything else on
  the CPU. Arrays on different devices are an error, never a silent copy.
* ``"cpu"``, ``"cuda"`` (the current CUDA device) and ``"cuda:N"``: inputs are moved once
  at entry. An explicit CUDA device without a usable GPU raises
  :class:`CudaUnavailableError` naming the missing piece.
* CuPy is probed lazily, once, on first need; every exception is caught, so importing
  :mod:`reprogls` never fails or slows down because of CuPy. ``REPROGLS_DISABLE_CUDA=1``
  switches CUDA off.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "CudaUnavailableError",
    "Device",
    "available_devices",
    "check_result",
    "cuda_status",
    "deliver",
    "is_cupy_array",
    "resolve_device",
    "to_host",
]

_INSTALL_HINT = "install the CUDA extra matching your driver: pip install 'reprogls[cuda12]' " \
                "or 'reprogls[cuda13]'"


class CudaUnavailableError(RuntimeError):
    """A CUDA device was asked for explicitly but none is usable; the message says why."""


@dataclass(frozen=True)
class Device:
    """A resolved compute device: ``Device("cpu")`` or ``Device("cuda", index)``."""

    kind: Literal["cpu", "cuda"]
    index: int = 0

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"


@dataclass(frozen=True)
class CudaStatus:
    """Outcome of the one-time CUDA probe."""

    usable: bool
    device_count: int
    reason: str


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


@functools.cache
def cuda_status() -> CudaStatus:
    """Probe CuPy, the NVIDIA driver and the devices once; never raises."""
    if _truthy(os.environ.get("REPROGLS_DISABLE_CUDA")):
        return CudaStatus(False, 0, "CUDA is disabled by the environment variable "
                                    "REPROGLS_DISABLE_CUDA; unset it to use the GPU")
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CuPy/CUDA install
        return CudaStatus(False, 0, f"CuPy is not installed or failed to import ({exc}); "
                                    f"{_INSTALL_HINT}")
    try:
        driver = int(cupy.cuda.runtime.driverGetVersion())
    except Exception as exc:
        return CudaStatus(False, 0, f"no NVIDIA driver could be loaded ({exc}); install the "
                                    "NVIDIA driver, then " + _INSTALL_HINT)
    if driver == 0:
        return CudaStatus(False, 0, "no NVIDIA driver is installed; install the NVIDIA "
                                    "driver, then " + _INSTALL_HINT)
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:
        return CudaStatus(False, 0, f"the NVIDIA driver found no CUDA device ({exc})")
    if count == 0:
        return CudaStatus(False, 0, "the NVIDIA driver found no CUDA device")
    return CudaStatus(True, count, f"{count} CUDA device(s), driver {driver}")


def available_devices() -> list[str]:
    """Devices usable in this process, e.g. ``["cpu", "cuda:0"]``."""
    status = cuda_status()
    return ["cpu"] + [f"cuda:{i}" for i in range(status.device_count if status.usable else 0)]


def is_cupy_array(x: Any) -> bool:
    """True for a CuPy ndarray, decided without importing CuPy."""
    return type(x).__module__.split(".")[0] == "cupy" and hasattr(x, "device")


def to_host(a: Any) -> Any:
    """``a`` on the host: a CuPy array copied into a NumPy one, anything else as it is."""
    return a.get() if is_cupy_array(a) else a


#: Where a public kernel's array result goes (its ``result=`` argument).
RESULT_PLACES = ("host", "device")


def check_result(result: Any) -> None:
    """``result`` (a kernel's ``result=`` argument) checked: ``"host"`` or ``"device"``."""
    if result not in RESULT_PLACES:
        raise ValueError(f"result must be 'host' (NumPy arrays, the default) or 'device' "
                         f"(the array where it was computed: a CuPy array on a GPU, NumPy "
                         f"on the CPU), got {result!r}")


def deliver(a: Any, result: str) -> Any:
    """A kernel's result where ``result`` asks: ``"host"`` copies a CuPy array into a NumPy
    one; ``"device"`` leaves it where it was computed. On the GPU the copy to the host
    (3-6 GB/s on an H100 machine, 2026-12-06) can take longer than the kernel."""
    return to_host(a) if result == "host" else a


def _require_cuda(index: int | None, followed_arrays: bool = False) -> Device:
    """The CUDA device ``index`` (the current one when None), checked to be usable;
    ``followed_arrays``: ``device="auto"`` chose it because the data are CuPy arrays
    there (the message then says so, and that only ``device="cpu"`` runs on the CPU)."""
    status = cuda_status()
    if not status.usable:
        if followed_arrays:
            raise CudaUnavailableError(
                f"the inputs are CuPy arrays on cuda:{index}, which device='auto' follows, "
                f"but {status.reason}. Pass device='cpu' to have them copied to the host "
                "and run on the CPU.")
        raise CudaUnavailableError(f"device='cuda' was requested but {status.reason}. "
                                   "Use device='cpu' or device='auto' to run on the CPU.")
    if index is None:
        import cupy

        index = cupy.cuda.Device().id
    if not 0 <= index < status.device_count:
        raise ValueError(f"device='cuda:{index}' does not exist: this machine has "
                         f"{status.device_count} CUDA device(s) (cuda:0..cuda:"
                         f"{status.device_count - 1})")
    return Device("cuda", index)


def _parse(device: str) -> tuple[str, int | None]:
    text = device.strip().lower()
    if text in ("auto", "cpu", "cuda"):
        return text, None
    if text.startswith("cuda:") and text[5:].isdigit():
        return "cuda", int(text[5:])
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def resolve_device(device: str | Device, *arrays: Any) -> Device:
    """Resolve a ``device=`` argument against the arrays it will be applied to.

    Parameters
    ----------
    device : str or Device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a :class:`Device`.
    *arrays
        The array arguments; under ``"auto"`` they decide the device.

    Raises
    ------
    CudaUnavailableError
        An explicit CUDA device without a usable GPU.
    ValueError
        An unknown device string, or (under ``"auto"``) arrays on different devices.
    TypeError
        ``device`` is neither a string nor a :class:`Device`.
    """
    if isinstance(device, Device):
        return device if device.kind == "cpu" else _require_cuda(device.index)
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'auto', 'cpu' or 'cuda:0', "
                        f"got {type(device).__name__}")
    kind, index = _parse(device)
    if kind == "cpu":
        return Device("cpu")
    if kind == "cuda":
        return _require_cuda(index)
    gpu_ids = {int(a.device.id) for a in arrays if is_cupy_array(a)}
    n_host = sum(1 for a in arrays if not is_cupy_array(a))
    if len(gpu_ids) > 1 or (gpu_ids and n_host):
        where = ", ".join(["cpu"] * bool(n_host) + [f"cuda:{i}" for i in sorted(gpu_ids)])
        raise ValueError(f"device='auto' got arrays on different devices ({where}); move "
                         "them to one device or pass device='cpu' / device='cuda:N' to have "
                         "them moved")
    if gpu_ids:
        return _require_cuda(gpu_ids.pop(), followed_arrays=True)
    return Device("cpu")
