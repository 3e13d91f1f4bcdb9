"""CRO-1 reductions: sum, dot, nrm2 (device x mode x size) and NumPy/BLAS baselines."""

from __future__ import annotations

import numpy as np

from reprogls import kernels

from ._common import DEVICES, MODES, machine_read_bandwidth, require_device, sizes, timed_gbps

SIZES = sizes([2**16, 2**23])


class Reductions:
    params = (["sum", "dot", "nrm2"], SIZES, DEVICES, MODES)
    param_names = ["kernel", "n", "device", "mode"]
    timeout = 300

    def setup(self, kernel, n, device, mode):
        require_device(device)
        rng = np.random.default_rng(0)
        self.x, self.y = rng.standard_normal(n), rng.standard_normal(n)
        if device == "cuda":
            import cupy as cp

            self.x, self.y = cp.asarray(self.x), cp.asarray(self.y)
        f = {"sum": lambda: kernels.sum(self.x, mode, device),
             "dot": lambda: kernels.dot(self.x, self.y, mode, device),
             "nrm2": lambda: kernels.nrm2(self.x, mode, device)}[kernel]
        self.fn = f
        self.nbytes = (16 if kernel in ("dot", "nrm2") else 8) * n
        self.fn()  # JIT compilation / cache load outside the timed region

    def time_kernel(self, kernel, n, device, mode):
        self.fn()

    def peakmem_kernel(self, kernel, n, device, mode):
        self.fn()

    def track_gbps(self, kernel, n, device, mode):
        return timed_gbps(self.fn, self.nbytes)

    track_gbps.unit = "GB/s"

    def track_fraction_of_read_bandwidth(self, kernel, n, device, mode):
        return timed_gbps(self.fn, self.nbytes) / machine_read_bandwidth()

    track_fraction_of_read_bandwidth.unit = "fraction"


class ReductionsNumPy:
    """Baselines: np.sum (pairwise), BLAS ddot, np.linalg.norm."""

    params = (["sum", "dot", "nrm2"], SIZES)
    param_names = ["kernel", "n"]

    def setup(self, kernel, n):
        rng = np.random.default_rng(0)
        x, y = rng.standard_normal(n), rng.standard_normal(n)
        self.fn = {"sum": lambda: np.sum(x), "dot": lambda: np.dot(x, y),
                   "nrm2": lambda: np.linalg.norm(x)}[kernel]
        self.nbytes = (16 if kernel == "dot" else 8) * n

    def time_numpy(self, kernel, n):
        self.fn()

    def track_gbps(self, kernel, n):
        return timed_gbps(self.fn, self.nbytes)

    track_gbps.unit = "GB/s"
