"""Soft-thresholding, the fused FISTA step and portable log/exp, with NumPy baselines."""

from __future__ import annotations

import numpy as np

from reprogls import kernels

from ._common import DEVICES, kept_on, require_device, sizes, synced, timed_gbps

SIZES = sizes([2**16, 2**23])


class Elementwise:
    params = (["soft_threshold", "fista_step", "log", "exp"], SIZES, DEVICES)
    param_names = ["kernel", "n", "device"]
    timeout = 300

    def setup(self, kernel, n, device):
        require_device(device)
        rng = np.random.default_rng(0)
        z, g, xp = (rng.standard_normal(n) for _ in range(3))
        if device == "cuda":
            import cupy as cp

            z, g, xp = cp.asarray(z), cp.asarray(g), cp.asarray(xp)
        keep = kept_on(device)
        self.fn = synced({
            "soft_threshold": lambda: kernels.soft_threshold(z, 0.5, device, **keep),
            "fista_step": lambda: kernels.fista_step(z, g, 0.1, xp, 0.5, 0.2, device=device,
                                                     **keep),
            "log": lambda: kernels.log(abs(z), device, **keep),
            "exp": lambda: kernels.exp(z, device, **keep),
        }[kernel], device)
        self.nbytes = {"fista_step": 5 * 8 * n}.get(kernel, 2 * 8 * n)
        self.fn()

    def time_kernel(self, kernel, n, device):
        self.fn()

    def peakmem_kernel(self, kernel, n, device):
        self.fn()

    def track_gbps(self, kernel, n, device):
        return timed_gbps(self.fn, self.nbytes)

    track_gbps.unit = "GB/s"


class ElementwiseNumPy:
    params = (["soft_threshold", "log", "exp"], SIZES)
    param_names = ["kernel", "n"]

    def setup(self, kernel, n):
        z = np.random.default_rng(0).standard_normal(n)
        a = np.abs(z)
        self.fn = {"soft_threshold": lambda: np.sign(z) * np.maximum(np.abs(z) - 0.5, 0),
                   "log": lambda: np.log(a), "exp": lambda: np.exp(z)}[kernel]

    def time_numpy(self, kernel, n):
        self.fn()
