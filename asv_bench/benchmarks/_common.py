"""Helpers shared by the benchmark modules (not collected by asv: leading underscore)."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time

import numpy as np

from reprogls import kernels

DEVICES = ["cpu", "cuda"]
MODES = ["plain", "compensated"]

#: ``REPROGLS_ASV_SMOKE=1`` (CI's quick pass): each size list keeps its first (smallest)
#: entry only, so that CI checks that every benchmark runs -- every kernel, device, mode
#: and fit variant -- without the large sizes' setup, which made up half of the pass.
#: Real runs (and the dashboard's results) use every size.
SMOKE = os.environ.get("REPROGLS_ASV_SMOKE") == "1"


def sizes(full: list) -> list:
    """``full``, or its first entry under ``REPROGLS_ASV_SMOKE=1``."""
    return list(full[:1]) if SMOKE else list(full)


def require_device(device: str) -> None:
    """Skip (asv: NotImplementedError in setup) when the device is not usable here."""
    if device == "cuda" and not any(d.startswith("cuda") for d in kernels.available_devices()):
        raise NotImplementedError("no usable CUDA device")


def kept_on(device: str) -> dict:
    """Keyword arguments for a kernel call timed on ``device``: on the GPU
    ``result="device"``, so that the time is the kernel's and not also the copy of its
    result to the host (3-6 GB/s on the H100 machine of 2026-12-06, longer than most
    kernels); pair it with :func:`synced`."""
    return {"result": "device"} if device == "cuda" else {}


def synced(fn, device: str):
    """``fn`` followed, on the GPU, by a device synchronisation: the timer then stops after
    the kernel's work even though its result stays on the device (:func:`kept_on`)."""
    if device != "cuda":
        return fn
    import cupy as cp

    def run():
        out = fn()
        cp.cuda.Device().synchronize()
        return out
    return run


def timed_gbps(fn, nbytes: int, repeat: int = 3) -> float:
    """GB/s of ``fn`` (best of ``repeat``); its results come back to the host, or it
    synchronises the GPU (:func:`synced`), so GPU work has finished when the timer
    stops."""
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return nbytes / best / 1e9


def machine_read_bandwidth() -> float:
    """STREAM-like read bandwidth of this machine in GB/s (BLAS ddot over 2 x 128 MB).

    Measured once per machine and cached in the temp directory, because asv runs every
    benchmark in a fresh process.
    """
    path = os.path.join(tempfile.gettempdir(),
                        f"reprogls-read-bandwidth-{socket.gethostname()}.json")
    try:
        with open(path) as fh:
            return float(json.load(fh)["gbps"])
    except (OSError, ValueError, KeyError):
        pass
    n = 16_000_000
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(n), rng.standard_normal(n)
    np.dot(x, y)
    gbps = timed_gbps(lambda: np.dot(x, y), 16 * n, repeat=5)
    with open(path, "w") as fh:
        json.dump({"gbps": gbps}, fh)
    return gbps
