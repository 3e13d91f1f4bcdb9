"""Matvecs, SUR operators, Woodbury solve and the fused normal operator, with baselines."""

from __future__ import annotations

import time

import numpy as np

from reprogls import kernels

from ._common import (
    DEVICES,
    MODES,
    SMOKE,
    kept_on,
    machine_read_bandwidth,
    require_device,
    sizes,
    synced,
    timed_gbps,
)

K, P_PER_EQ, RANK = 200, 10, 5
ROWS = sizes([1_000, 8_000])  # X of 16 MB and 128 MB


def _problem(n_rows):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n_rows, K * P_PER_EQ))
    offsets = np.arange(0, K * P_PER_EQ + 1, P_PER_EQ)
    beta = rng.standard_normal(K * P_PER_EQ)
    W = rng.standard_normal((n_rows, K))
    F = rng.standard_normal((K, RANK))
    d = 0.05 + 0.2 * rng.uniform(size=K)
    return X, offsets, beta, W, F, d


def _numpy_equivalents(X, beta, W, F, d) -> dict:
    """The NumPy/BLAS expression of each kernel on :func:`_problem`'s data: ``A @ x``,
    ``A.T @ y`` (``y`` the first column of W, contiguous as the kernels get it),
    ``einsum`` for the SUR operators, the dense-free Woodbury ``R / d - (R G) C^-1 G^T``
    with ``G = D^-1 F`` and ``C = I + F^T G``."""
    rows = X.shape[0]
    X3, B2 = X.reshape(rows, K, P_PER_EQ), beta.reshape(K, P_PER_EQ)
    G = F / d[:, None]
    C = np.eye(RANK) + F.T @ G
    y = np.ascontiguousarray(W[:, 0])
    return {
        "gemv": lambda: X @ beta,
        "gemv_t": lambda: X.T @ y,
        "sur_matvec": lambda: np.einsum("nkp,kp->nk", X3, B2),
        "sur_rmatvec": lambda: np.einsum("nkp,nk->kp", X3, W),
        "woodbury_solve": lambda: W / d - (W @ G) @ np.linalg.solve(C, G.T),
    }


class LinearAlgebra:
    params = (["gemv", "gemv_t", "sur_matvec", "sur_rmatvec", "sur_normal_matvec",
               "woodbury_solve"], ROWS, DEVICES, MODES)
    param_names = ["kernel", "rows", "device", "mode"]
    timeout = 600

    def setup(self, kernel, rows, device, mode):
        require_device(device)
        X, offsets, beta, W, F, d = _problem(rows)
        factor = kernels.woodbury_factor(F, d, mode)
        if device == "cuda":
            import cupy as cp

            X, beta, W = cp.asarray(X), cp.asarray(beta), cp.asarray(W)
        keep = kept_on(device)
        self.fn = synced({
            "gemv": lambda: kernels.gemv(X, beta, mode, device, **keep),
            "gemv_t": lambda: kernels.gemv_t(X, W[:, 0].copy(), mode, device, **keep),
            "sur_matvec": lambda: kernels.sur_matvec(X, offsets, beta, mode, device, **keep),
            "sur_rmatvec": lambda: kernels.sur_rmatvec(X, offsets, W, mode, device, **keep),
            "sur_normal_matvec": lambda: kernels.sur_normal_matvec(X, offsets, factor, beta,
                                                                   device, **keep),
            "woodbury_solve": lambda: kernels.woodbury_solve(factor, W, device, **keep),
        }[kernel], device)
        self.nbytes = 2 * W.nbytes if kernel == "woodbury_solve" else X.nbytes
        self.fn()

    def time_kernel(self, kernel, rows, device, mode):
        self.fn()

    def peakmem_kernel(self, kernel, rows, device, mode):
        self.fn()

    def track_gbps(self, kernel, rows, device, mode):
        return timed_gbps(self.fn, self.nbytes)

    track_gbps.unit = "GB/s"

    def track_fraction_of_read_bandwidth(self, kernel, rows, device, mode):
        return timed_gbps(self.fn, self.nbytes) / machine_read_bandwidth()

    track_fraction_of_read_bandwidth.unit = "fraction"


class LinearAlgebraNumPy:
    """NumPy/BLAS equivalents: A @ x, A.T @ y, einsum, the dense-free Woodbury expression."""

    params = (["gemv", "gemv_t", "sur_matvec", "sur_rmatvec", "woodbury_solve"], ROWS)
    param_names = ["kernel", "rows"]

    def setup(self, kernel, rows):
        X, _, beta, W, F, d = _problem(rows)
        self.fn = _numpy_equivalents(X, beta, W, F, d)[kernel]
        self.nbytes = 2 * W.nbytes if kernel == "woodbury_solve" else X.nbytes

    def time_numpy(self, kernel, rows):
        self.fn()

    def track_gbps(self, kernel, rows):
        return timed_gbps(self.fn, self.nbytes)

    track_gbps.unit = "GB/s"


class Speedups:
    """The kernels issue's ratio targets as tracked numbers, on the CPU: each kernel's best
    time against its baseline's, timed alternately in one process (a ratio, unlike two
    ``time_*`` results from different processes, is comparable across the noisy test
    VMs). Above 1 the kernel is faster. Baselines: NumPy/BLAS (``A @ x``, ``A.T @ y``,
    ``einsum``, the dense-free Woodbury expression ``R / d - (R G) C^-1 G^T``), and for
    the fused operator the three kernels it replaces, ``sur_rmatvec(woodbury_solve(
    sur_matvec(v)))``, in the same mode (the issue asks >= 1.6x). X of 128 MB
    (N = 8000, K = 200, p = 10, k = 5); ``profiling/kernel_bandwidth.py`` has the issue's
    400 MB sizes. Each call follows a 0.3 s pause: OpenBLAS's workers spin for ~0.1 s
    after a call and take the cores from the next one (``profiling/README.md``)."""

    params = (["gemv", "gemv_t", "sur_matvec", "sur_rmatvec", "woodbury_solve",
               "sur_normal_matvec"], MODES)
    param_names = ["kernel", "mode"]
    timeout = 300
    #: timed pairs (kernel, baseline) per result, and the pause before each call (not
    #: asv's own ``repeat``: a track_ result is one number); the smoke pass only checks
    #: that it runs
    pairs = 2 if SMOKE else 7
    pause_s = 0.01 if SMOKE else 0.3

    def setup(self, kernel, mode):
        X, offsets, beta, W, F, d = _problem(ROWS[-1])
        factor = kernels.woodbury_factor(F, d, mode)
        y = np.ascontiguousarray(W[:, 0])
        cpu = {"device": "cpu"}
        self.fn = {
            "gemv": lambda: kernels.gemv(X, beta, mode, **cpu),
            "gemv_t": lambda: kernels.gemv_t(X, y, mode, **cpu),
            "sur_matvec": lambda: kernels.sur_matvec(X, offsets, beta, mode, **cpu),
            "sur_rmatvec": lambda: kernels.sur_rmatvec(X, offsets, W, mode, **cpu),
            "woodbury_solve": lambda: kernels.woodbury_solve(factor, W, **cpu),
            "sur_normal_matvec": lambda: kernels.sur_normal_matvec(X, offsets, factor, beta,
                                                                   **cpu),
        }[kernel]
        if kernel == "sur_normal_matvec":  # the three kernels it replaces, in its mode
            self.baseline = lambda: kernels.sur_rmatvec(X, offsets, kernels.woodbury_solve(
                factor, kernels.sur_matvec(X, offsets, beta, mode, **cpu), **cpu), mode,
                **cpu)
        else:
            self.baseline = _numpy_equivalents(X, beta, W, F, d)[kernel]
        self.fn()
        self.baseline()

    def _timed_after_pause(self, fn) -> float:
        time.sleep(self.pause_s)
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    def track_speedup(self, kernel, mode):
        best_kernel = best_baseline = np.inf
        for _ in range(self.pairs):
            best_kernel = min(best_kernel, self._timed_after_pause(self.fn))
            best_baseline = min(best_baseline, self._timed_after_pause(self.baseline))
        return best_baseline / best_kernel

    track_speedup.unit = "x"


class SeveralRightHandSides:
    """``E V`` and ``E^T Z`` with k = 10 columns from one pass over E (N = 5000, K = 2000:
    the Sigma-step from residuals at the scale target), CPU kernels against NumPy/BLAS."""

    params = (["rows_times", "rows_transposed_times", "numpy E @ V", "numpy E.T @ Z"], MODES)
    param_names = ["kernel", "mode"]
    timeout = 300

    def setup(self, kernel, mode):
        from reprogls.kernels.cpu import multi

        rng = np.random.default_rng(0)
        E = rng.standard_normal((5000, 2000))
        VT = rng.standard_normal((10, 2000))
        Z = rng.standard_normal((5000, 10))
        compensated = mode == "compensated"
        self.fn = {
            "rows_times": lambda: multi.rows_times(E, VT, compensated),
            "rows_transposed_times": lambda: multi.rows_transposed_times(E, Z, compensated),
            "numpy E @ V": lambda: E @ VT.T,
            "numpy E.T @ Z": lambda: E.T @ Z,
        }[kernel]
        self.nbytes = E.nbytes
        self.fn()

    def time_kernel(self, kernel, mode):
        self.fn()

    def track_gbps(self, kernel, mode):
        return timed_gbps(self.fn, self.nbytes)

    track_gbps.unit = "GB/s"


class SquareProducts:
    """The robust sandwich's products of order P (``A^-1 (B A^-1)`` at the M layout's P
    = 2000; smoke: 500): ``_dense.matmul`` (``multi.rows_times``, in blocks of rows
    taken right-hand side by right-hand side) and ``_dense.symmetric_matmul`` (the
    lower triangle only, mirrored), against BLAS ``A @ B``. 2-core Zen 4, forty-ninth
    session, P = 2000, plain / compensated: matmul 0.61 / 0.82-0.86 s (1.36-1.54 /
    1.95-2.10 s row by row before), symmetric 0.29 / 0.40 s; BLAS 0.15 s."""

    params = (["matmul", "symmetric_matmul", "numpy A @ B"], MODES)
    param_names = ["product", "mode"]
    timeout = 300
    number = 1
    repeat = (1, 3, 30.0)

    def setup(self, product, mode):
        from reprogls.gls import _dense

        if product == "numpy A @ B" and mode != MODES[0]:
            raise NotImplementedError("BLAS has no reduction mode")
        P = 500 if SMOKE else 2000
        rng = np.random.default_rng(0)
        A, C = rng.standard_normal((P, P)), rng.standard_normal((P, P))
        A, C = A + A.T, C + C.T
        B = _dense.matmul(C, A, "plain")  # A (C A) is symmetric, as the sandwich is
        self.fn = {"matmul": lambda: _dense.matmul(A, B, mode),
                   "symmetric_matmul": lambda: _dense.symmetric_matmul(A, B, mode),
                   "numpy A @ B": lambda: A @ B}[product]
        self.fn()

    def time_product(self, product, mode):
        self.fn()


class SmallCalls:
    """The cost of one call on small inputs (CPU, compensated): validation, dispatch and
    the thread decision, with next to no arithmetic (64 rows, K = 5 equations of 4
    regressors, rank 2). Calls below ``kernels.cpu.tasks.SERIAL_BYTES`` of work run on
    the calling thread; before that cutoff (twenty-sixth session) two threads cost
    70-160 us more per call on the 2-core test VM."""

    params = ["gemv", "gemv_t", "sur_matvec", "sur_rmatvec", "sur_normal_matvec",
              "woodbury_solve", "dot"]
    param_names = ["kernel"]

    def setup(self, kernel):
        rng = np.random.default_rng(0)
        n, k_eq, p = 64, 5, 4
        X = rng.standard_normal((n, k_eq * p))
        offsets = np.arange(0, k_eq * p + 1, p)
        beta = rng.standard_normal(k_eq * p)
        W = rng.standard_normal((n, k_eq))
        factor = kernels.woodbury_factor(rng.standard_normal((k_eq, 2)),
                                         0.1 + rng.uniform(size=k_eq))
        self.fn = {
            "gemv": lambda: kernels.gemv(X, beta, device="cpu"),
            "gemv_t": lambda: kernels.gemv_t(X, W[:, 0].copy(), device="cpu"),
            "sur_matvec": lambda: kernels.sur_matvec(X, offsets, beta, device="cpu"),
            "sur_rmatvec": lambda: kernels.sur_rmatvec(X, offsets, W, device="cpu"),
            "sur_normal_matvec": lambda: kernels.sur_normal_matvec(X, offsets, factor, beta,
                                                                   "cpu"),
            "woodbury_solve": lambda: kernels.woodbury_solve(factor, W, "cpu"),
            "dot": lambda: kernels.dot(beta, beta, device="cpu"),
        }[kernel]
        self.fn()

    def time_call(self, kernel):
        self.fn()
