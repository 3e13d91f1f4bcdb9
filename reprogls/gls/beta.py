"""The beta-step: GLS coefficients given Sigma, on the audited path.

Normal equations ``A beta = b`` with ``A = X^T (Sigma^-1 (x) I_N) X + ridge I`` and
``b = X^T vec(Y Sigma^-1)``. Two strategies:

* ``"gram"``: ``X^T X`` (P x P) is formed once per fit (:func:`._dense.gram`, one pass);
  each sweep scales its blocks, ``A[m, m'] = fl(XtX[m, m'] * Sinv[eq(m), eq(m')])``, and
  solves with the fixed-order Cholesky. Also gives the plug-in covariance ``A^-1``.
* ``"cg"``: preconditioned conjugate gradients on the fused normal operator, with the
  block-Jacobi preconditioner ``Sinv_jj X_j^T X_j`` (one p_j x p_j Cholesky per
  equation) or its coupling across equations through ``Sigma^-1`` when the equations'
  designs are related (:mod:`.precondition`), warm-started from the previous beta;
  optionally stopped once the residual has fallen by a given factor (the alternating
  fit's early sweeps). Every scalar is a CRO-1 dot.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..kernels import dot, sur_normal_matvec, sur_rmatvec, woodbury_solve
from ..kernels.cpu import spd
from ..kernels.cpu.linalg import block_cholesky_solves, cholesky_solve_kernel, solved_rmatvecs
from ..kernels.linalg import NotPositiveDefiniteError, WoodburyFactor
from ._dense import mirror_lower
from ._resident import resident_solve
from .precondition import CoupledPreconditioner, pack_block_factors

__all__ = ["CGSolve", "check_normal_diagonal", "conjugate_gradients", "normal_matrix",
           "normal_operator", "rhs", "rhs_and_residual", "solve_cg", "solve_dense",
           "whitened_rmatvecs"]


def whitened_rmatvecs(X, offsets, Rs, factor: WoodburyFactor, device: str,
                      overwrite=()) -> list[np.ndarray]:
    """``[X^T vec(R Sigma^-1) for R in Rs]``, each bitwise
    ``sur_rmatvec(X, offsets, woodbury_solve(factor, R))``; on the CPU ``overwrite[q]``
    True lets ``R_q Sigma^-1`` be written over ``R_q`` (a buffer of the fit's own).

    On the CPU one or two right-hand sides share one pass over X
    (:func:`reprogls.kernels.cpu.linalg.solved_rmatvecs`); elsewhere the two kernels
    run in turn, ``R Sigma^-1`` left in GPU memory (:mod:`._resident`). ``Rs``:
    C-contiguous float64 (N, K), in GPU memory for a GPU fit.
    """
    if str(device) == "cpu" and 1 <= len(Rs) <= 2:
        return solved_rmatvecs(X, offsets, list(Rs), factor.G, factor.d, factor.L,
                               factor.mode == "compensated", overwrite)
    return [sur_rmatvec(X, offsets, resident_solve(factor, R, device), factor.mode, device)
            for R in Rs]


def rhs(X, offsets, Y, factor: WoodburyFactor, device: str) -> np.ndarray:
    """``b = X^T vec(Y Sigma^-1)``: ``sur_rmatvec(X, woodbury_solve(Y))``."""
    return whitened_rmatvecs(X, offsets, [Y], factor, device)[0]


def rhs_and_residual(X, offsets, Y, E, factor: WoodburyFactor, beta0, ridge: float,
                     device: str) -> tuple[np.ndarray, np.ndarray]:
    """``(b, r0)``: the right-hand side and the CG residual at ``beta0`` from the
    residuals ``E = Y - X beta0`` (one pass over X on the CPU):

    ``r0 = b - A beta0 = X^T vec(E Sigma^-1) - ridge beta0``

    (``fl(g - fl(ridge * beta0))`` elementwise when ``ridge > 0``). Mathematically the
    same as ``b - A beta0``; it rounds differently (and has no cancellation between
    ``b`` and ``A beta0``), and saves the fused operator's pass.

    ``E`` is the fit's residual buffer, dead after this call (the sweep writes its new
    residuals over it): on the CPU ``E Sigma^-1`` is written over it.
    """
    b, g = whitened_rmatvecs(X, offsets, [Y, E], factor, device, overwrite=(False, True))
    return b, (g - ridge * beta0 if ridge else g)


def sigma_inverse(factor: WoodburyFactor) -> np.ndarray:
    """``Sigma^-1`` (K x K) as ``woodbury_solve`` of the identity rows, symmetrised from
    the lower triangle."""
    return mirror_lower(woodbury_solve(factor, np.eye(factor.K), "cpu"))


def normal_matrix(XtX, offsets, factor: WoodburyFactor, ridge: float) -> np.ndarray:
    """``A = XtX o (Sinv expanded to the blocks) + ridge I``: ``A[m, a] = fl(XtX[m, a] *
    Sinv[eq(m), eq(a)])`` (one IEEE product per entry). The expansion repeats whole
    rows and columns (``np.repeat``), 4-5x faster than gathering it with ``np.ix_`` at
    P = 250-600; it moves values only, so the bits are the same."""
    widths = np.diff(offsets)
    Sinv = sigma_inverse(factor)
    with np.errstate(over="ignore"):  # (an overflow is reported by cholesky, by name)
        A = XtX * np.repeat(np.repeat(Sinv, widths, axis=0), widths, axis=1)
    if ridge:
        A[np.diag_indices_from(A)] += ridge
    return A


def scale_gap(what: str) -> str:
    """The message of a fit whose X and Y lie too many orders of magnitude apart for
    float64: the normal equations scale as ``x^2 / y^2`` (``A``) and ``x / y``
    (``b``), so ``|x / y|`` near ``1e150`` or ``1e-150`` overflows or underflows them."""
    return (f"{what}: the scales of X and Y are too far apart for float64 (the GLS normal "
            "equations scale as x^2 / y^2); rescale them, e.g. divide each column of X and "
            "each y_j by its standard deviation")


def check_normal_diagonal(diagonal: np.ndarray) -> None:
    """A ``ValueError`` (:func:`scale_gap`) when the GLS normal matrix's diagonal holds a
    value that is not finite or lies below the normal range. ``X^T X`` is finite and its
    diagonal positive (the OLS start checks each ``X_j``), so such a value is
    ``Sigma^-1``'s scale; and ``|A[m, a]| <= sqrt(A[m, m] A[a, a])``, so a diagonal in
    range leaves no entry out of it."""
    if not np.isfinite(diagonal).all():
        raise ValueError(scale_gap("the GLS normal matrix overflows"))
    if (diagonal < np.finfo(np.float64).tiny).any():
        raise ValueError(scale_gap("the GLS normal matrix underflows"))


def cholesky(A: np.ndarray, mode: str) -> np.ndarray:
    """The fixed-order Cholesky factor of the GLS normal matrix ``A``; a ``ValueError``
    when its diagonal overflowed or underflowed (:func:`check_normal_diagonal`), else
    :class:`NotPositiveDefiniteError` at the first pivot that is not positive."""
    L = np.empty_like(A)
    failed = spd.cholesky(np.ascontiguousarray(A), mode == "compensated", L)
    if failed >= 0:
        check_normal_diagonal(np.diag(A))
        raise NotPositiveDefiniteError(
            f"the GLS normal matrix is not positive definite (pivot {failed}): the designs "
            "are collinear across equations; pass ridge > 0")
    return L


def solve_dense(L: np.ndarray, b: np.ndarray, mode: str) -> np.ndarray:
    out = np.empty_like(b)
    cholesky_solve_kernel(L, np.ascontiguousarray(b), mode == "compensated", out)
    return out


def normal_operator(X, offsets, factor: WoodburyFactor, ridge: float, device: str):
    """``v -> A v = X^T vec((X v) Sigma^-1) + ridge v``: the fused normal operator (one
    pass over X), then ``fl(out + fl(ridge * v))`` elementwise when ``ridge > 0``."""

    def apply_A(v):
        out = sur_normal_matvec(X, offsets, factor, v, device)
        return out + ridge * v if ridge else out

    return apply_A


class CGSolve(NamedTuple):
    """What :func:`conjugate_gradients` returns."""

    beta: np.ndarray
    #: CG steps taken.
    iters: int
    #: False only when the ``reduction`` term stopped the iteration before ``||r|| <= tol
    #: ||b||`` (running out of ``max_iter`` steps counts as finished: the fit does not
    #: repeat such a solve).
    finished: bool
    #: ``||r|| <= tol ||b||`` at the end: False after ``max_iter`` steps short of it (or
    #: an early stop by ``reduction``).
    reached_tol: bool
    #: ``||r|| / ||b||`` at the end (``||r||`` where ``b = 0``).
    residual: float


def solve_cg(X, offsets, factor: WoodburyFactor, b, beta0, block_factors, Sinv_diag,
             ridge: float, tol: float, max_iter: int, device: str,
             reduction: float = 0.0, r0: np.ndarray | None = None,
             coupling: float = 0.0) -> CGSolve:
    """Preconditioned CG for ``A beta = b`` (module docstring).

    ``coupling``: 0 for the block-Jacobi preconditioner, else the ``rho`` of the coupled
    one (:mod:`.precondition`; block-Jacobi again if its ``k x k`` capacitance is not
    numerically positive definite).

    ``r0``: the residual ``b - A beta0`` if already known (:func:`rhs_and_residual`);
    otherwise it is computed with one fused-operator call.

    Stops when ``||r|| <= max(tol ||b||, reduction ||r_0||)`` (CRO-1 norms; ``r_0`` is
    the residual at ``beta0``) or after ``max_iter`` steps. ``reduction = 0`` solves to
    ``tol``; a positive ``reduction`` lets an outer iteration whose ``A`` and ``b``
    change between calls stop early (:func:`reprogls.gls.fit`).

    Returns
    -------
    CGSolve
        ``(beta, iters, finished, reached_tol, residual)``.
    """
    mode = factor.mode
    apply_A = normal_operator(X, offsets, factor, ridge, device)

    # the block-Jacobi preconditioner z_j = (Sinv_jj X_j^T X_j)^-1 r_j from the blocks'
    # Cholesky factors, packed once for the compiled per-block solves
    factors, factor_ptr = pack_block_factors(block_factors)
    offsets64 = np.asarray(offsets, dtype=np.int64)
    scale = np.ascontiguousarray(Sinv_diag, dtype=np.float64)

    def block_jacobi(r):
        z = np.empty_like(r)
        block_cholesky_solves(factors, factor_ptr, offsets64, r, scale,
                              mode == "compensated", z)
        return z

    precondition = block_jacobi
    if coupling > 0:
        coupled = CoupledPreconditioner(factors, factor_ptr, offsets64, factor, scale,
                                        coupling)
        precondition = coupled if coupled.ok else block_jacobi

    return conjugate_gradients(apply_A, precondition, b, beta0, mode, tol, max_iter,
                               reduction, r0)


def conjugate_gradients(apply_A, precondition, b, beta0, mode: str, tol: float,
                        max_iter: int, reduction: float = 0.0,
                        r0: np.ndarray | None = None) -> CGSolve:
    """Preconditioned CG for ``A beta = b`` with the operator ``apply_A`` and the
    preconditioner ``precondition`` (``z = M^-1 r``), from ``beta0``; the stopping rule
    and the return value of :func:`solve_cg`. Every scalar is a CRO-1 dot, every vector
    update one IEEE operation per element."""
    beta = np.array(beta0, dtype=np.float64)
    r = b - apply_A(beta) if r0 is None else np.array(r0, dtype=np.float64)
    z = precondition(r)
    p = z.copy()
    rz = dot(r, z, mode, "cpu")
    b_squared = dot(b, b, mode, "cpu")
    _check_norm(b_squared, b)
    floor = tol * np.sqrt(b_squared)
    r_norm = np.sqrt(dot(r, r, mode, "cpu"))
    threshold = max(floor, reduction * r_norm)
    it = 0
    for it in range(1, max_iter + 1):
        if r_norm <= threshold:
            it -= 1
            break
        Ap = apply_A(p)
        curvature = dot(p, Ap, mode, "cpu")
        if not curvature > 0.0:  # (0, negative or NaN: A is not numerically definite)
            raise ValueError(_BREAKDOWN.format(f"the curvature p^T A p = {curvature:.3g}"))
        alpha = rz / curvature
        beta = beta + alpha * p
        r = r - alpha * Ap
        z = precondition(r)
        rz_new = dot(r, z, mode, "cpu")
        p = z + (rz_new / rz) * p
        rz = rz_new
        r_norm = np.sqrt(dot(r, r, mode, "cpu"))
        if np.isinf(r_norm):
            raise ValueError(scale_gap("the conjugate gradients' residual overflowed"))
        if np.isnan(r_norm):
            raise ValueError(_BREAKDOWN.format("a NaN residual"))
    reached = bool(r_norm <= floor)
    b_norm = np.sqrt(b_squared)
    return CGSolve(beta, it, reached or it == max_iter, reached,
                   float(r_norm / b_norm) if b_norm > 0 else float(r_norm))


#: The message of a CG that cannot go on: A is not numerically positive definite.
_BREAKDOWN = ("the conjugate gradients broke down ({}): the GLS normal matrix is "
              "numerically singular at this Sigma, or the scales of X and Y are too far "
              "apart; try beta_solver='gram', ridge > 0, or rescale the data")


def _check_norm(b_squared: float, b: np.ndarray) -> None:
    """A ``ValueError`` when ``||b||^2`` (the CG's scale) is not a finite normal number
    while ``b`` is not zero: its stopping rule would compare against ``inf`` or ``0`` and
    return the starting point as the solution."""
    if np.isfinite(b_squared) and (b_squared >= np.finfo(np.float64).tiny or
                                   (b_squared == 0.0 and not np.any(b))):
        return
    what = "overflows" if not np.isfinite(b_squared) else "underflows"
    raise ValueError(scale_gap(f"the GLS right-hand side's squared norm {what}"))
