"""Small dense helpers of the estimator, on the audited path (CRO-1 dots, no BLAS)."""

from __future__ import annotations

import numpy as np

from ..kernels.cpu import gram as _cpu_gram
from ..kernels.cpu import multi as _cpu_multi
from ..kernels.cpu import reductions as _cpu_red
from ..kernels.cpu.jit import njit

__all__ = ["dot", "gram", "matmul", "matmul_t", "mirror_lower", "on_device",
           "symmetric_matmul"]


@njit(cache=True)
def _copy_lower_to_upper(S):
    n = S.shape[0]
    for i in range(n):
        for j in range(i):
            S[j, i] = S[i, j]


def mirror_lower(S: np.ndarray) -> np.ndarray:
    """Copy the strict lower triangle of the square ``S`` onto the upper one, in place, so
    that ``S`` is symmetric bitwise (a compiled loop: NumPy's ``tril_indices`` indexing
    took ~20 us at K = 50 and a P x P index pair at P = 2000). Returns ``S``."""
    _copy_lower_to_upper(S)
    return S


def on_device(X: np.ndarray, device: str):
    """``X`` where the kernels of ``device`` read it: itself on the CPU, else one copy in
    GPU memory. A host array passed to a CUDA kernel is copied to the GPU on every call;
    the estimator's loops over X (every CG step, every column of ``X^T X``) keep this
    copy instead."""
    if str(device) == "cpu":
        return X
    from ..kernels._validate import to_device
    from ..kernels.devices import resolve_device

    return to_device(X, resolve_device(device))


def dot(x: np.ndarray, y: np.ndarray, mode: str) -> float:
    """The CRO-1 dot ``x . y`` of two host vectors (the ``dot`` kernel's bits, without
    its argument checks: for the estimator's many short dots)."""
    return _cpu_red.cro_dot(np.ascontiguousarray(x), np.ascontiguousarray(y),
                            mode == "compensated")


def matmul(A: np.ndarray, B: np.ndarray, mode: str) -> np.ndarray:
    """``A @ B`` with entry ``[i, c]`` the CRO-1 dot of row ``i`` of A and column ``c`` of
    B -- the bits of ``gemv(A, B[:, c])[i]`` -- in one pass over A on the CPU."""
    A = np.ascontiguousarray(A, dtype=np.float64)
    BT = np.ascontiguousarray(np.asarray(B, dtype=np.float64).T)
    return _cpu_multi.rows_times(A, BT, mode == "compensated")


def symmetric_matmul(A: np.ndarray, B: np.ndarray, mode: str) -> np.ndarray:
    """``A @ B`` for a product known to be symmetric (e.g. ``M (B M)`` with ``M``, ``B``
    symmetric), symmetric bitwise: the lower triangle by CRO-1 dots as :func:`matmul`
    forms it (the same bits), mirrored onto the upper one -- the bits of
    ``mirror_lower(matmul(A, B, mode))`` for half the dots."""
    A = np.ascontiguousarray(A, dtype=np.float64)
    if A.ndim != 2 or np.ndim(B) != 2 or (A.shape[1], A.shape[0]) != np.shape(B):
        raise ValueError(f"symmetric_matmul needs A (n x m) and B (m x n), a square "
                         f"product: A is {A.shape}, B is {np.shape(B)}")
    BT = np.ascontiguousarray(np.asarray(B, dtype=np.float64).T)
    return mirror_lower(_cpu_multi.lower_rows_times(A, BT, mode == "compensated"))


def matmul_t(A: np.ndarray, B: np.ndarray, mode: str) -> np.ndarray:
    """``A^T @ B`` with entry ``[m, c]`` the CRO-1 reduction over rows ``i`` of
    ``fl(A[i, m] * B[i, c])`` -- the bits of ``gemv_t(A, B[:, c])[m]`` -- in one pass
    over A on the CPU."""
    A = np.ascontiguousarray(A, dtype=np.float64)
    B = np.ascontiguousarray(B, dtype=np.float64)
    return _cpu_multi.rows_transposed_times(A, B, mode == "compensated")


def gram(X: np.ndarray, mode: str, device: str = "cpu") -> np.ndarray:
    """``X^T X`` (P x P), symmetric bitwise.

    Entry ``[m, a]`` (``m >= a``) is the CRO-1 reduction over rows of
    ``fl(X[i, m] * X[i, a])`` -- the bits of ``gemv_t(X, X[:, a])[m]`` -- mirrored onto
    ``[a, m]``. On the CPU one pass over X computes all ``P (P + 1) / 2`` entries in
    column tiles (:func:`reprogls.kernels.cpu.gram.lower_gram`); on a GPU one kernel
    computes the chunk partials of tile pairs of columns
    (:func:`reprogls.kernels.cuda.linalg.gram_lower`).
    """
    if device == "cpu":
        X = np.ascontiguousarray(X, dtype=np.float64)
        return mirror_lower(_cpu_gram.lower_gram(X, mode == "compensated"))
    from ..kernels.cuda import linalg as cuda_linalg
    from ..kernels.devices import resolve_device
    from ..kernels.dispatch import cuda_context

    dev = resolve_device(device)
    with cuda_context(dev):
        return mirror_lower(cuda_linalg.gram_lower(on_device(X, dev), mode == "compensated"))
