"""Public linear-algebra kernels with ``device=`` and ``mode=`` (bitwise equal everywhere).

Results come back on the host as NumPy arrays; ``result="device"`` keeps a GPU's result
there as a CuPy array. The exact definitions (term formulas,
reduction order) are in :mod:`reprogls.kernels.reference.linalg`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import reference
from ._validate import (
    as_matrix,
    as_offsets,
    as_output,
    as_vector,
    check_shape,
    design_list,
    host_vector,
)
from .devices import Device, check_result, deliver, resolve_device, to_host
from .dispatch import cuda_context
from .reference import NotPositiveDefiniteError, WoodburyFactor

__all__ = [
    "NotPositiveDefiniteError",
    "WoodburyFactor",
    "gemv",
    "gemv_t",
    "pack_sur",
    "sur_matvec",
    "sur_normal_matvec",
    "sur_rmatvec",
    "woodbury_factor",
    "woodbury_logdet",
    "woodbury_solve",
]


def _backend(device: Device):
    return importlib.import_module(
        "reprogls.kernels.cpu.linalg" if device.kind == "cpu" else "reprogls.kernels.cuda.linalg")


def _into(computed: Any, out: np.ndarray | None, result: str) -> Any:
    """The result where ``result`` asks (:func:`~reprogls.kernels.devices.deliver`), or
    written into ``out`` when the caller gave one (the CPU kernels write there directly;
    a GPU result is copied in)."""
    if out is None:
        return deliver(computed, result)
    host = to_host(computed)
    if host is not out:
        out[...] = host
    return out


def _check_out_result(out: Any, result: Any) -> None:
    """``out=`` is a NumPy array, so it goes with ``result="host"`` only."""
    check_result(result)
    if out is not None and result == "device":
        raise ValueError("out= is a NumPy array on the host, so result='device' cannot "
                         "fill it: leave out=None to get the device array, or use "
                         "result='host' (the default) with out")


def gemv(A: Any, x: Any, mode: str = "compensated", device: str | Device = "auto", *,
         result: str = "host") -> Any:
    """``y = A x`` with one CRO-1 dot product per row.

    .. math:: y_i = \\sum_j \\operatorname{fl}(A_{ij} x_j)

    Parameters
    ----------
    A : array_like (m, n)
        float64 matrix (copied to C order if it is not).
    x : array_like (n,)
    mode : {"compensated", "plain"}
    device : {"auto", "cpu", "cuda", "cuda:N"}
    result : {"host", "device"}
        ``"host"`` (default): a NumPy array. ``"device"``: the array where it was computed,
        a CuPy array on a GPU (no copy to the host), NumPy on the CPU.

    Returns
    -------
    ndarray (m,)
    """
    check_result(result)
    compensated = reference.check_mode(mode)
    dev = resolve_device(device, A, x)
    with cuda_context(dev):
        Ad = as_matrix(A, "A", dev)
        xd = as_vector(x, "x", dev)
        check_shape(xd, (Ad.shape[1],), "x", "one entry per column of A")
        return deliver(_backend(dev).gemv(Ad, xd, compensated), result)


def gemv_t(A: Any, y: Any, mode: str = "compensated", device: str | Device = "auto", *,
           result: str = "host") -> Any:
    """``g = A^T y``: for every column, one CRO-1 reduction over the rows.

    .. math:: g_j = \\sum_i \\operatorname{fl}(A_{ij} y_i)

    Parameters as :func:`gemv`, with ``y`` of length m. Returns ndarray (n,).
    """
    check_result(result)
    compensated = reference.check_mode(mode)
    dev = resolve_device(device, A, y)
    with cuda_context(dev):
        Ad = as_matrix(A, "A", dev)
        yd = as_vector(y, "y", dev)
        check_shape(yd, (Ad.shape[0],), "y", "one entry per row of A")
        return deliver(_backend(dev).gemv_t(Ad, yd, compensated), result)


def pack_sur(Xs: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Pack K per-equation designs (N, p_j) into one C-contiguous ``X`` (N, P) + ``offsets``.

    Equation ``j`` owns columns ``offsets[j]:offsets[j+1]`` of ``X``; ``p_j`` may be 0 and
    a 1-D array counts as one regressor column. Inputs are copied, never modified.

    Raises
    ------
    ValueError
        No equations, or designs with different numbers of rows (N), or a design with
        more than two dimensions.
    TypeError
        A dict instead of a list, or a non-real dtype (see the dtype policy of
        :mod:`reprogls.kernels`).
    """
    if isinstance(Xs, Mapping):
        raise TypeError("Xs must be a list of per-equation designs (N, p_j), not a dict; "
                        "pass list(Xs.values()) to take the designs in the dict's order")
    Xs = design_list(Xs)
    blocks = []
    for j, Xj in enumerate(Xs):
        arr = np.asarray(to_host(Xj))
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise ValueError(f"Xs[{j}] must be 2-D (N, p_{j}), got shape {arr.shape}")
        blocks.append(as_matrix(arr, f"Xs[{j}]", Device("cpu")))
    n_rows = {b.shape[0] for b in blocks}
    if len(n_rows) != 1:
        sizes = ", ".join(f"Xs[{j}]: {b.shape[0]}" for j, b in enumerate(blocks))
        raise ValueError(f"every equation needs the same number of rows N; got {sizes}")
    offsets = np.concatenate([[0], np.cumsum([b.shape[1] for b in blocks])]).astype(np.int64)
    return np.ascontiguousarray(np.hstack(blocks)), offsets


def _sur_inputs(X, offsets, dev):
    """``X`` on ``dev`` and the validated offsets, host int64 for every backend (the CUDA
    launchers keep their device copy per layout)."""
    Xd = as_matrix(X, "X", dev)
    return Xd, as_offsets(offsets, Xd.shape[1])


def sur_matvec(X: Any, offsets: Any, beta: Any, mode: str = "compensated",
               device: str | Device = "auto", *, out: np.ndarray | None = None,
               result: str = "host") -> Any:
    """Per-equation fitted values of a SUR system.

    .. math:: U_{ij} = x_{ij}^T \\beta_j
              = \\sum_{m \\in \\text{eq } j} \\operatorname{fl}(X_{im} \\beta_m)

    Parameters
    ----------
    X : array_like (N, P)
        Packed design (see :func:`pack_sur`).
    offsets : array_like of int (K+1,)
        Equation ``j`` owns columns ``offsets[j]:offsets[j+1]``.
    beta : array_like (P,)
    mode, device : as :func:`gemv`.
    out : ndarray (N, K), optional
        Where to write the result: a writeable C-contiguous float64 NumPy array (on every
        device) that overlaps neither ``X`` nor ``beta``. Reusing one saves the
        allocation and first touch of a fresh N x K array in every call (on the 2-core
        Zen 4 test box, 40 MB of fresh output cost 5-7 ms of a 23 ms call). The bits do
        not depend on its previous contents.
    result : {"host", "device"}
        As :func:`gemv` (``"device"`` only without ``out``).

    Returns
    -------
    ndarray (N, K)
        ``out`` when given.
    """
    _check_out_result(out, result)
    compensated = reference.check_mode(mode)
    dev = resolve_device(device, X, beta)
    with cuda_context(dev):
        Xd, off = _sur_inputs(X, offsets, dev)
        bd = as_vector(beta, "beta", dev)
        check_shape(bd, (Xd.shape[1],), "beta", "one coefficient per column of X")
        if out is not None:
            as_output(out, (Xd.shape[0], off.shape[0] - 1), {"X": X, "beta": beta})
        if dev.kind == "cpu":
            return _backend(dev).sur_matvec(Xd, off, bd, compensated, out)
        return _into(_backend(dev).sur_matvec(Xd, off, bd, compensated), out, result)


def sur_rmatvec(X: Any, offsets: Any, W: Any, mode: str = "compensated",
                device: str | Device = "auto", *, result: str = "host") -> Any:
    """Per-equation ``X_j^T w_j``, stacked.

    .. math:: g_m = \\sum_i \\operatorname{fl}(X_{im} W_{i, eq(m)})

    Parameters: ``W`` (N, K); others as :func:`sur_matvec`. Returns ndarray (P,).
    """
    check_result(result)
    compensated = reference.check_mode(mode)
    dev = resolve_device(device, X, W)
    with cuda_context(dev):
        Xd, off = _sur_inputs(X, offsets, dev)
        Wd = as_matrix(W, "W", dev)
        check_shape(Wd, (Xd.shape[0], off.shape[0] - 1), "W", "one column per equation")
        return deliver(_backend(dev).sur_rmatvec(Xd, off, Wd, compensated), result)


def woodbury_factor(F: Any, d: Any, mode: str = "compensated") -> WoodburyFactor:
    """Factor ``Sigma = diag(d) + F F^T`` for :func:`woodbury_solve` and friends.

    Computes ``G = D^-1 F`` and the fixed-order Cholesky factor ``L`` of the capacitance
    ``C = I + F^T D^-1 F`` (k x k). It is ``O(K k^2)`` work and always runs on the host
    (CPU kernels); GPU solves copy ``G`` and ``L`` to the device. Same bits either way.

    Parameters
    ----------
    F : array_like (K, k)
        Loadings, ``0 <= k <= K``, finite.
    d : array_like (K,)
        Positive, finite diagonal.
    mode : {"compensated", "plain"}
        Used for every reduction here and in the solves that use the factor.

    Raises
    ------
    ValueError
        Shapes, ``k > K``, non-finite ``F``, or ``d`` not positive and finite.
    NotPositiveDefiniteError
        The capacitance Cholesky met a non-positive pivot (cannot happen for finite F and
        positive d unless the values overflow).
    """
    reference.check_mode(mode)
    cpu = Device("cpu")
    Fh = as_matrix(F, "F", cpu)
    dh = host_vector(d, "d")
    K, k = Fh.shape
    if k > K:
        raise ValueError(f"F has rank k = {k} > K = {K} columns of Sigma; the low-rank part "
                         "needs k <= K (use F.T if you passed it transposed)")
    check_shape(dh, (K,), "d", "one variance per row of F")
    if not np.isfinite(Fh).all():
        raise ValueError("F must be finite (found NaN or inf)")
    if not (np.isfinite(dh).all() and (dh > 0).all()):
        bad = int(np.argmax(~(np.isfinite(dh) & (dh > 0))))
        raise ValueError(f"d must be positive and finite: d[{bad}] = {float(dh[bad])!r}")
    from .cpu import linalg as cpu_linalg

    G, L, failed, _ = cpu_linalg.woodbury_factor(Fh, dh, mode == "compensated")
    if failed >= 0:
        raise NotPositiveDefiniteError(
            f"the capacitance I + F^T D^-1 F is not positive definite or not finite at pivot "
            f"{failed} (F / d overflows? rescale the data)")
    return WoodburyFactor(F=Fh, d=dh, G=G, L=L, mode=mode)


def woodbury_solve(factor: WoodburyFactor, R: Any, device: str | Device = "auto", *,
                   out: np.ndarray | None = None, result: str = "host") -> Any:
    """``R Sigma^-1`` row by row (Sigma symmetric), never forming a K x K matrix.

    .. math:: r \\Sigma^{-1} = r D^{-1} - (r G) C^{-1} G^T

    with the term formulas of :func:`reprogls.kernels.reference.woodbury_solve`.

    Parameters
    ----------
    factor : WoodburyFactor
        From :func:`woodbury_factor` (its ``mode`` is used).
    R : array_like (N, K)
    device : {"auto", "cpu", "cuda", "cuda:N"}
    out : ndarray (N, K), optional
        Where to write the result: a writeable C-contiguous float64 NumPy array (on every
        device). It may be ``R`` itself (the solve then runs in place: each block of
        rows is read before it is written) but must not overlap ``R`` otherwise.
    result : {"host", "device"}
        As :func:`gemv` (``"device"`` only without ``out``).

    Returns
    -------
    ndarray (N, K)
        ``out`` when given.
    """
    _check_out_result(out, result)
    _check_factor(factor)
    compensated = factor.mode == "compensated"
    dev = resolve_device(device, R)
    with cuda_context(dev):
        Rd = as_matrix(R, "R", dev)
        check_shape(Rd, (Rd.shape[0], factor.K), "R", "one column per row of F")
        if out is not None:
            as_output(out, Rd.shape, {"R": R}, in_place="R")
        args = (Rd, factor.G, factor.d, factor.L, compensated)
        if dev.kind == "cpu":
            return _backend(dev).woodbury_solve(*args, out=out)
        return _into(_backend(dev).woodbury_solve(*args), out, result)


def woodbury_logdet(factor: WoodburyFactor) -> float:
    """``log|Sigma|`` by the determinant lemma: ``sum log d_j + 2 sum log L_qq``.

    Each sum is a CRO-1 reduction of portable logarithms
    (:func:`reprogls.kernels.exp`/``log``), so the value is the same on every machine.
    """
    _check_factor(factor)
    from . import elementary
    from .dispatch import sum as cro_sum

    a = cro_sum(elementary.log(factor.d, device="cpu"), factor.mode, "cpu")
    b = cro_sum(elementary.log(np.ascontiguousarray(np.diag(factor.L)), device="cpu"),
                factor.mode, "cpu")
    return float(a + 2.0 * b)


def sur_normal_matvec(X: Any, offsets: Any, factor: WoodburyFactor, v: Any,
                      device: str | Device = "auto", *, result: str = "host") -> Any:
    """The GLS normal operator ``v -> X^T [(X v) Sigma^-1]``, fused.

    Bitwise equal to ``sur_rmatvec(X, offsets, woodbury_solve(factor,
    sur_matvec(X, offsets, v)))`` (mode of the factor); on the CPU it reads each row of
    ``X`` once per call (on the GPU it composes the three kernels, which measured faster
    there: :data:`reprogls.kernels.cuda.linalg.NORMAL_OPERATOR`). ``result`` as
    :func:`gemv`.
    """
    check_result(result)
    _check_factor(factor)
    compensated = factor.mode == "compensated"
    dev = resolve_device(device, X, v)
    with cuda_context(dev):
        Xd, off = _sur_inputs(X, offsets, dev)
        if off.shape[0] - 1 != factor.K:
            raise ValueError(f"offsets define {off.shape[0] - 1} equations but the factor "
                             f"is for K = {factor.K}")
        vd = as_vector(v, "v", dev)
        check_shape(vd, (Xd.shape[1],), "v", "one entry per column of X")
        return deliver(_backend(dev).sur_normal_matvec(Xd, off, vd, factor.G, factor.d,
                                                        factor.L, compensated), result)


def _check_factor(factor: Any) -> None:
    if not isinstance(factor, WoodburyFactor):
        raise TypeError("factor must be a WoodburyFactor from reprogls.kernels."
                        f"woodbury_factor(F, d), got {type(factor).__name__}")
