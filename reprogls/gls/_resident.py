"""The estimator's N x K arrays where the kernels run: in GPU memory for a GPU fit.

The public kernels (:mod:`reprogls.kernels`) return NumPy arrays on every device, so a
GPU fit built from them alone copied every N x K matrix it made across the bus and back:
``Y`` into each Woodbury solve, ``Y Sigma^-1`` and ``E Sigma^-1`` out of it and into
``sur_rmatvec``, the fitted values out of ``sur_matvec``, the residuals into ``E^T E``
and into the log-likelihood's solve -- 35 N x K transfers in a three-sweep CG fit
(counted on the host emulator; 1.1 GB at the size M of the estimator issue, against
0.3 GB for X, which stays there). Here the same CUDA kernels are called with the
validated device arrays the fit already holds and their results stay on the GPU; the
fit copies ``Y`` there once and the fitted values and residuals back once, for its
result. On the CPU these are the CPU kernels. The kernels and their order are the same
either way, so are the bits.
"""

from __future__ import annotations

import numpy as np

from ..kernels.devices import resolve_device, to_host
from ..kernels.dispatch import cuda_context
from ..kernels.linalg import WoodburyFactor, sur_matvec, woodbury_solve
from ._dense import matmul, on_device

__all__ = ["on_host", "resident_fitted_and_residuals", "resident_matmul", "resident_matvec",
           "resident_moment_times", "resident_solve"]


def on_host(device: str) -> bool:
    """Whether ``device`` is the CPU (whose arrays are NumPy's)."""
    return str(device) == "cpu"


def resident_matvec(X, offsets: np.ndarray, beta: np.ndarray, mode: str, device: str):
    """``U = sur_matvec(X, offsets, beta)`` (N x K) left on ``device``: a CuPy array on a
    GPU (``X`` there already, as the fit keeps it), a NumPy array on the CPU."""
    if on_host(device):
        return sur_matvec(X, offsets, beta, mode, "cpu")
    from ..kernels.cuda import linalg as cuda_linalg

    dev = resolve_device(device)
    with cuda_context(dev):
        return cuda_linalg.sur_matvec(
            on_device(X, dev), np.ascontiguousarray(offsets, dtype=np.int64),
            on_device(beta, dev), mode == "compensated")


def resident_matmul(A, B: np.ndarray, mode: str, device: str):
    """``A @ B`` for ``A`` (n x m, where the fit holds it) and a small host ``B`` (m x c),
    left on ``device``: entry ``[i, c]`` is the CRO-1 dot of row ``i`` of ``A`` and
    column ``c`` of ``B`` -- the bits of ``gemv(A, B[:, c])[i]`` -- by
    :func:`._dense.matmul` on the CPU and by one ``gemv`` per column on a GPU."""
    if on_host(device):
        return matmul(A, B, mode)
    import cupy

    from ..kernels.cuda import linalg as cuda_linalg

    compensated = mode == "compensated"
    dev = resolve_device(device)
    with cuda_context(dev):
        A = cupy.ascontiguousarray(A)
        product = cupy.empty((A.shape[0], B.shape[1]), dtype=np.float64)
        for c in range(B.shape[1]):
            product[:, c] = cuda_linalg.gemv(A, on_device(np.ascontiguousarray(B[:, c]), dev),
                                             compensated)
        return product


def resident_fitted_and_residuals(X, offsets: np.ndarray, Y, beta: np.ndarray, mode: str,
                                  device: str):
    """``(U, Y - U)`` with ``U = sur_matvec(X, offsets, beta)``, both left in the memory of
    the GPU ``device`` (``X`` and ``Y`` there already); the subtraction runs there too,
    under that device (CuPy refuses arrays of another GPU than the current one)."""
    U = resident_matvec(X, offsets, beta, mode, device)
    with cuda_context(resolve_device(device)):
        return U, Y - U


def resident_solve(factor: WoodburyFactor, R, device: str):
    """``R Sigma^-1`` (``woodbury_solve``) left on ``device``, like
    :func:`resident_matvec`; ``R`` is read where it is (copied to the GPU only if it is a
    NumPy array)."""
    if on_host(device):
        return woodbury_solve(factor, R, "cpu")
    from ..kernels.cuda import linalg as cuda_linalg

    dev = resolve_device(device)
    with cuda_context(dev):
        return cuda_linalg.woodbury_solve(on_device(R, dev), factor.G, factor.d, factor.L,
                                          factor.mode == "compensated")


def resident_moment_times(E, V: np.ndarray, mode: str, device: str) -> np.ndarray:
    """``E^T (E V)`` (K x k, on the host) for ``E`` (N x K) in GPU memory: per column
    ``v`` of ``V``, ``u = gemv(E, v)`` and then ``gemv_t(E, u)`` there -- the bits of the
    public kernels' ``gemv_t(E, gemv(E, v))``, without taking the N-vector ``u`` to the
    host and back (two transfers per column of every product of the large-K
    Sigma-step)."""
    from ..kernels.cuda import linalg as cuda_linalg

    compensated = mode == "compensated"
    dev = resolve_device(device)
    with cuda_context(dev):
        columns = []
        for q in range(V.shape[1]):
            u = cuda_linalg.gemv(E, on_device(V[:, q], dev), compensated)
            columns.append(to_host(cuda_linalg.gemv_t(E, u, compensated)))
    return np.stack(columns, axis=1) if columns else np.zeros((E.shape[1], 0))
