"""Per-equation Gram blocks and ordinary least squares, on the audited path.

Gram blocks ``X_j^T X_j``: every entry is a CRO-1 reduction over the rows of
``fl(X[i, o_j + c] * X[i, o_j + a])``, computed on the CPU in one pass over X by the
column-pair kernel (:mod:`reprogls.kernels.cpu.gram`). Solves use the fixed-order
Cholesky of the kernels.
"""

from __future__ import annotations

import itertools

import numpy as np

from ..kernels.cpu.gram import block_pair_plan, column_pair_grams
from ..kernels.cpu.linalg import cholesky_kernel, cholesky_solve_kernel
from ..kernels.devices import to_host
from ..kernels.linalg import sur_rmatvec
from ._dense import on_device
from .data import SURData, check_real

__all__ = ["CollinearityError", "block_grams", "diagonal_blocks", "factor_blocks", "ols"]

#: A column whose Cholesky pivot falls below this fraction of its own sum of squares is
#: treated as a linear combination of the previous columns (condition ~1e12).
COLLINEAR_RTOL = 1e-12


class CollinearityError(ValueError):
    """A design X_j has (nearly) linearly dependent columns and no ridge was given."""


def block_grams(data: SURData, mode: str = "compensated", device: str = "cpu",
                X_device=None) -> list[np.ndarray]:
    """``[X_j^T X_j for j]``, each (p_j, p_j); entry ``[c, a]`` is the CRO-1 reduction over
    rows of ``fl(X[i, o_j + c] * X[i, o_j + a])``, the lower triangle mirrored.

    On the CPU one pass over X computes every block
    (:func:`reprogls.kernels.cpu.gram.column_pair_grams`); elsewhere ``max p_j`` calls of
    :func:`sur_rmatvec` with ``W[:, j] = X[:, o_j + a]`` give column ``a`` of every block,
    ``W`` gathered in GPU memory from ``X_device`` (the fit's copy of X there; copied
    now when None). Both give the same bits.
    """
    X, offsets = data.X, data.offsets
    widths = np.diff(offsets)
    K = widths.shape[0]
    if device == "cpu":
        plan = block_pair_plan(offsets)
        values = column_pair_grams(X, plan, mode == "compensated")
        # every block is a view of one buffer; pair (m, a) of equation j lands at
        # [m - o_j, a - o_j] and, mirrored, at [a - o_j, m - o_j]
        starts = np.concatenate([[0], np.cumsum(widths * widths)])
        buffer = np.empty(starts[-1])
        eq = np.repeat(np.arange(K), widths)
        m, a = plan.targets[:, 0].astype(np.int64), plan.targets[:, 1].astype(np.int64)
        j = eq[m]
        row, col, p = m - offsets[j], a - offsets[j], widths[j]
        buffer[starts[j] + row * p + col] = values
        buffer[starts[j] + col * p + row] = values
        return [buffer[starts[i]:starts[i + 1]].reshape(widths[i], widths[i])
                for i in range(K)]
    import cupy

    from ..kernels.devices import resolve_device
    from ..kernels.dispatch import cuda_context

    grams = [np.empty((p, p)) for p in widths]
    # X crosses to the GPU once (if not there already), not once per column, and the
    # N x K weights are gathered there
    Xd = on_device(X, device) if X_device is None else X_device
    dev = resolve_device(device)
    for a in range(int(widths.max(initial=0))):
        has = widths > a
        with cuda_context(dev):
            W = cupy.zeros((X.shape[0], K))
            W[:, cupy.asarray(np.flatnonzero(has))] = \
                Xd[:, cupy.asarray(offsets[:-1][has] + a)]
        g = sur_rmatvec(Xd, offsets, W, mode, device)
        for j in np.flatnonzero(has):
            grams[j][:, a] = g[offsets[j]:offsets[j + 1]]
    return grams


def diagonal_blocks(XtX: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """``[X_j^T X_j for j]`` cut from a full ``X^T X`` (from :func:`._dense.gram`): the
    same entries, so the same bits as :func:`block_grams`, without another pass over X."""
    return [XtX[o0:o1, o0:o1].copy() for o0, o1 in itertools.pairwise(offsets.tolist())]


def factor_blocks(grams: list[np.ndarray], ridge: float, data: SURData,
                  mode: str = "compensated") -> list[np.ndarray]:
    """Fixed-order Cholesky factors of ``X_j^T X_j + ridge I``.

    Raises
    ------
    CollinearityError
        With ``ridge == 0``, naming the equation and the first column that is (nearly) a
        linear combination of the previous ones.
    """
    factors = []
    for j, G in enumerate(grams):
        A = G + ridge * np.eye(G.shape[0]) if ridge else G
        L = np.empty_like(A)
        failed = cholesky_kernel(A, mode == "compensated", L)
        bad = failed
        if failed < 0 and ridge == 0:
            pivots = np.diag(L) ** 2
            weak = np.flatnonzero(pivots <= COLLINEAR_RTOL * np.maximum(np.diag(A), 1e-300))
            bad = int(weak[0]) if weak.size else -1
        if bad >= 0:
            raise CollinearityError(_singular_block_message(data, j, bad, A))
        factors.append(L)
    return factors


def _singular_block_message(data: SURData, j: int, c: int, A: np.ndarray) -> str:
    """Why column ``c`` of equation ``j`` stopped the Cholesky of ``A = X_j^T X_j (+ ridge
    I)``: its squares overflow or underflow float64 (a scale problem, fixed by
    rescaling), or it is zero or (nearly) a combination of the previous columns."""
    eq, col = data.equation_names[j], data.regressor_names[j][c]
    column = to_host(data.X[:, data.offsets[j] + c])
    largest = float(np.max(np.abs(column))) if column.size else 0.0
    where = f"equation {eq!r}: column {col!r} (index {c})"
    if not np.isfinite(A[c, c]) or (A[c, c] == 0 and largest > 0):
        what = "overflow" if not np.isfinite(A[c, c]) else "underflow to zero"
        return (f"{where} holds values of magnitude up to {largest:.3g}, whose squares "
                f"{what} in float64; rescale it (e.g. divide it by its standard deviation)")
    return (f"{where} is zero or (nearly) a linear combination of the previous columns; "
            "drop it, or pass ridge > 0")


def ols(data: SURData, ridge: float = 0.0, mode: str = "compensated",
        device: str = "cpu", factors: list[np.ndarray] | None = None,
        X_device=None, Y_device=None) -> np.ndarray:
    """Equation-by-equation (ridge) least squares, stacked: ``beta`` (P,).

    .. math:: \\hat\\beta_j = (X_j^T X_j + \\lambda I)^{-1} X_j^T y_j

    ``X_j^T y_j`` for all j is one :func:`sur_rmatvec` with ``W = Y``; each system is solved
    with the fixed-order Cholesky solve of the reference, so the result is identical on
    every device and thread count. ``factors`` (from :func:`factor_blocks`) may be passed
    when the caller has them already, and ``X_device``/``Y_device``: the fit's copies of
    ``X`` and ``Y`` where the kernels read them (on a GPU, so that neither crosses
    again; as :func:`block_grams`).
    """
    ridge = check_real("ridge", ridge, low=0.0, rule=">= 0 and finite")
    if factors is None:
        factors = factor_blocks(block_grams(data, mode, device, X_device), ridge, data,
                                mode)
    rhs = sur_rmatvec(data.X if X_device is None else X_device, data.offsets,
                      data.Y if Y_device is None else Y_device, mode, device)
    beta = np.empty(data.X.shape[1])
    for j, L in enumerate(factors):
        o0, o1 = data.offsets[j], data.offsets[j + 1]
        if o1 > o0:
            cholesky_solve_kernel(L, np.ascontiguousarray(rhs[o0:o1]), mode == "compensated",
                                  beta[o0:o1])
    return beta
