"""The L1-penalised and box-constrained beta-step: accelerated proximal gradient (FISTA).

With Sigma fixed, the beta-step of a fit with ``l1`` and/or ``bounds`` minimises

.. math:: \\tfrac12 \\beta^T A \\beta - b^T \\beta + \\sum_m \\lambda_m |\\beta_m|
          \\quad \\text{subject to} \\quad lo_m \\le \\beta_m \\le hi_m,

with the GLS normal matrix ``A = X^T (Sigma^-1 (x) I_N) X + ridge I`` and
``b = X^T vec(Y Sigma^-1)``: the negative log-likelihood in beta (up to a constant),
plus the penalty (``ridge`` is the elastic net's L2 part). No closed form; the solver
is FISTA (Beck and Teboulle 2009) on the Jacobi-scaled problem, ``gamma = s beta`` with
``s_m = sqrt(A_mm)``:

.. math:: \\tilde A = S^{-1} A S^{-1}, \\quad \\tilde b = S^{-1} b, \\quad
          \\tilde\\lambda_m = \\lambda_m / s_m, \\quad [lo_m s_m, hi_m s_m],

whose unit diagonal makes one step length fit every equation's units. Each iteration

* ``x+ = prox(z - grad / L)`` and the extrapolated ``z = x+ + mu (x+ - x)`` in one pass
  (:func:`reprogls.kernels.fista_step`: soft-threshold, then clip to the box);
* one product ``A~ x+`` (the fused normal operator, or ``gemv`` with the dense ``A``);
  ``A~ z`` follows by linearity, so the gradient at ``z`` costs no second product;
* backtracking: while ``d^T A~ d > L d^T d`` for a step ``d = x+ - z`` larger than
  ``sqrt(eps) ||x+||`` (smaller ones measure the rounding of ``A~ x+ - A~ z``),
  ``L *= 1.5``, at most to ``P`` (the trace of ``A~``, a bound on its largest
  eigenvalue), and the step is redone (``L`` starts from a
  power-iteration estimate of the largest eigenvalue of ``A~``);
* adaptive restart (O'Donoghue and Candes 2015): the momentum is reset when the step
  ``x+ - x`` points back against the last move ``z - x+`` (``(z - x+)^T (x+ - x) > 0``),
  which gives linear convergence on these strongly convex problems;
* every ``POLISH_EVERY`` iterations, active-set Newton steps on the coefficients that
  are neither zero nor at a bound (:func:`_newton_on_free_set`): FISTA's rate depends on
  the conditioning of ``A~``, which the Jacobi scaling does not fix within an equation
  (regressors around 100 beside a constant: 500 iterations per step without reaching
  ``tol``); once FISTA has found the signs and the active bounds, a Newton step with
  the free block's Cholesky factor (dense ``A``) or block-preconditioned CG (fused
  operator) solves the step, and FISTA's next iteration confirms it.

It stops when the gradient mapping ``L (z - x+)`` (the residual ``b~ - A~ x`` when
nothing is thresholded or clipped) has CRO-1 norm ``<= tol ||b~||`` -- the CG's rule in
the scaled coordinates, though on the true residual, not a recurrence -- after
``max_iter`` iterations, or when it has stalled at the operator's rounding level
(``STALL``). Every scalar is a CRO-1
dot and every vector step one IEEE operation per element, so the iterates and the
iteration count are the same bits on every thread count and device.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..kernels import dot, fista_step
from . import beta as beta_step

__all__ = ["PenalisedSolve", "Penalty", "describe", "free_coefficients", "free_set_solver_cg",
           "free_set_solver_dense", "make_penalty", "penalty_value", "solve_penalised"]

#: Power-iteration steps for the first estimate of the largest eigenvalue of ``A~``.
POWER_STEPS = 12
#: Backtracking: the factor by which ``L`` grows when a step fails the descent test.
BACKTRACK = 1.5
#: The descent test checks steps with ``||d||^2 > SIGNIFICANT_STEP ||x+||^2`` only
#: (``||d|| > sqrt(eps) ||x+||``): below that, rounding decides it.
SIGNIFICANT_STEP = float(np.finfo(np.float64).eps)
#: Stop after this many iterations without a new smallest gradient mapping: the
#: iteration has reached the rounding level of the operator (the fused operator
#: recomputes ``Sigma^-1`` products each call, inexact by about ``eps / min(d)``
#: relative when a uniqueness ``d_j`` is near zero), below which ``tol`` is unreachable.
STALL = 50
#: With a ``solve_free``, a Newton step on the free set after every this many
#: iterations (a well-conditioned step converges before the first).
POLISH_EVERY = 25
#: At most this many Newton steps per polish (each cut step fixes a coefficient).
NEWTON_STEPS = 10


@dataclass(frozen=True)
class Penalty:
    """Per-coefficient L1 weights ``l1`` (P,) ``>= 0`` and box ``lo <= beta <= hi``
    (P,) each (``-inf``/``inf`` for none)."""

    l1: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def _per_coefficient(name: str, value: Any, P: int, default_mask: np.ndarray,
                     fill: float) -> np.ndarray:
    """``value`` as a float64 (P,) array: a scalar goes to every coefficient where
    ``default_mask`` is true (``fill`` elsewhere); an array must have shape (P,)."""
    if isinstance(value, bool | np.bool_) or isinstance(value, str | bytes):
        raise TypeError(f"{name} must be a real number or an array of P = {P} reals, got "
                        f"{type(value).__name__}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a real number or an array of P = {P} reals, got "
                        f"{type(value).__name__}") from exc
    if arr.ndim == 0:
        return np.where(default_mask, arr, fill)
    if arr.shape != (P,):
        raise ValueError(f"{name} must be a scalar or have shape (P,) = ({P},), one value per "
                         f"coefficient in the order of params; got shape {arr.shape}")
    return arr.copy()


def make_penalty(l1: Any, bounds: Any, P: int, constant_columns: np.ndarray) -> Penalty | None:
    """Validate ``fit``'s ``l1`` and ``bounds`` for ``P`` coefficients; ``None`` when
    neither restricts anything (``l1 == 0`` everywhere and no finite bound).

    A scalar applies to every coefficient except the ``const`` columns that
    ``add_constant=True`` added (``constant_columns``, a (P,) bool mask), which stay
    unpenalised and unbounded, as scikit-learn's ``fit_intercept`` leaves the intercept;
    an array (P,) sets each coefficient, constants included.

    Raises
    ------
    TypeError
        ``l1`` or a bound is not real, ``bounds`` is not a pair.
    ValueError
        Negative or non-finite ``l1``; NaN bounds, ``lo > hi``, ``lo = inf`` or
        ``hi = -inf`` (an empty box); a wrong array shape.
    """
    penalised = ~np.asarray(constant_columns, dtype=bool)
    weights = _per_coefficient("l1", l1, P, penalised, 0.0)
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        bad = int(np.flatnonzero(~(np.isfinite(weights) & (weights >= 0)))[0])
        raise ValueError(f"l1 must be >= 0 and finite, got l1[{bad}] = {weights[bad]}")
    if bounds is None:
        lo, hi = np.full(P, -np.inf), np.full(P, np.inf)
    else:
        if isinstance(bounds, str | bytes) or not isinstance(bounds, Sequence | np.ndarray) \
                or len(bounds) != 2:
            raise TypeError("bounds must be a pair (lo, hi) of scalars or arrays of P = "
                            f"{P} values (None or +-inf for no bound), got "
                            f"{type(bounds).__name__}")
        lo, hi = (_per_coefficient(f"bounds[{i}]", none if v is None else v, P, penalised,
                                   none)
                  for i, (v, none) in enumerate(zip(bounds, (-np.inf, np.inf), strict=True)))
        for name, arr in (("lo", lo), ("hi", hi)):
            if np.any(np.isnan(arr)):
                raise ValueError(f"bounds: {name} holds NaN at coefficient "
                                 f"{int(np.flatnonzero(np.isnan(arr))[0])}; use -inf/inf "
                                 "for no bound")
        empty = (lo > hi) | (lo == np.inf) | (hi == -np.inf)
        if np.any(empty):
            m = int(np.flatnonzero(empty)[0])
            raise ValueError(f"bounds: coefficient {m} has lo = {lo[m]} > hi = {hi[m]} (or "
                             "an infinite bound on the wrong side): no feasible value")
    if not np.any(weights) and np.all(lo == -np.inf) and np.all(hi == np.inf):
        return None
    return Penalty(l1=weights, lo=lo, hi=hi)


def describe(penalty: Penalty | None, ridge: float) -> str:
    """The penalty in a few words for the summary: ``"l1=50, ridge=10, bounds"``; a
    per-coefficient ``l1`` is ``"l1 (per coefficient)"``; ``""`` for none."""
    parts = []
    if penalty is not None and np.any(penalty.l1):
        weights = np.unique(penalty.l1[penalty.l1 != 0])
        parts.append(f"l1={weights[0]:g}" if weights.size == 1 else "l1 (per coefficient)")
    if ridge:
        parts.append(f"ridge={ridge:g}")
    if penalty is not None and (np.any(penalty.lo > -np.inf) or np.any(penalty.hi < np.inf)):
        parts.append("bounds")
    return ", ".join(parts)


def _free(x: np.ndarray, weights: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The coefficients that are neither an L1 zero (``x_m = 0`` with ``weights_m > 0``)
    nor at a bound (a (P,) bool mask)."""
    return ((x != 0) | (weights == 0)) & (x > lo) & (x < hi)


def free_coefficients(penalty: Penalty, beta: np.ndarray) -> int:
    """How many coefficients are free (:func:`_free`): the penalised fit's degrees of
    freedom in ``beta``."""
    return int(np.count_nonzero(_free(beta, penalty.l1, penalty.lo, penalty.hi)))


def penalty_value(penalty: Penalty, beta: np.ndarray, ridge: float, mode: str) -> float:
    """``sum_m l1_m |beta_m| + ridge / 2 ||beta||^2`` (CRO-1 dots): what the penalised
    fit adds to the negative log-likelihood (``beta`` is inside the box)."""
    value = dot(penalty.l1, np.abs(beta), mode, "cpu")
    return float(value + 0.5 * ridge * dot(beta, beta, mode, "cpu") if ridge else value)


@dataclass
class PenalisedSolve:
    """What :func:`solve_penalised` returns: ``beta``; the iterations taken; ``finished``,
    False only when ``reduction`` stopped it before ``tol`` (as the CG's flag: running
    out of ``max_iter`` counts as finished); ``reached_tol``; ``stalled`` (``STALL``
    iterations without a new smallest gradient mapping); the gradient-mapping norm
    at the end relative to ``||b~||``; and the step bound ``L`` it ended with (to start
    the next sweep's solve from)."""

    beta: np.ndarray
    iters: int
    finished: bool
    reached_tol: bool
    stalled: bool
    residual: float
    lipschitz: float


def _largest_eigenvalue(apply: Callable[[np.ndarray], np.ndarray], P: int,
                        mode: str) -> float:
    """A power-iteration estimate (``POWER_STEPS`` steps from the ones vector) of the
    largest eigenvalue of the symmetric positive definite operator ``apply``: the last
    Rayleigh quotient, a lower bound that backtracking raises where needed."""
    v = np.full(P, 1.0 / np.sqrt(P))
    estimate = 1.0
    for _ in range(POWER_STEPS):
        w = apply(v)
        estimate = max(float(dot(v, w, mode, "cpu")), estimate)
        norm = np.sqrt(dot(w, w, mode, "cpu"))
        if not norm > 0:
            break
        v = w / norm
    return estimate


def free_set_solver_dense(A: np.ndarray, mode: str):
    """``solve_free`` for the dense normal matrix ``A``: the fixed-order Cholesky of
    ``A[free, free]`` and its triangular solves."""
    def solve_free(free: np.ndarray, g: np.ndarray) -> np.ndarray:
        idx = np.flatnonzero(free)
        L = beta_step.cholesky(np.ascontiguousarray(A[np.ix_(idx, idx)]), mode)
        out = np.zeros_like(g)
        out[idx] = beta_step.solve_dense(L, np.ascontiguousarray(g[idx]), mode)
        return out

    return solve_free


def free_set_solver_cg(apply_A, grams: list[np.ndarray], offsets: np.ndarray,
                       Sinv_diag: np.ndarray, ridge: float, mode: str, tol: float,
                       max_iter: int):
    """``solve_free`` for the fused operator: CG (:func:`.beta.conjugate_gradients`) on
    the free coordinates (``A`` applied to vectors that are zero elsewhere, the result
    cut to the free set), preconditioned by the blocks ``Sinv_jj X_jF^T X_jF (+ ridge
    I)`` of each equation's free columns, to ``tol`` relative."""
    from ..kernels.cpu.linalg import block_cholesky_solves
    from . import beta as beta_step
    from .precondition import pack_block_factors

    def solve_free(free: np.ndarray, g: np.ndarray) -> np.ndarray:
        blocks, counts = [], []
        for j, (o0, o1) in enumerate(itertools.pairwise(offsets.tolist())):
            cols = np.flatnonzero(free[o0:o1])
            G = grams[j][np.ix_(cols, cols)]
            blocks.append(beta_step.cholesky(G + ridge * np.eye(cols.size) if ridge else G,
                                             mode))
            counts.append(cols.size)
        factors, factor_ptr = pack_block_factors(blocks)
        free_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        scale = np.ascontiguousarray(Sinv_diag, dtype=np.float64)

        def precondition(r):
            z_free = np.empty(free_offsets[-1])
            block_cholesky_solves(factors, factor_ptr, free_offsets,
                                  np.ascontiguousarray(r[free]), scale,
                                  mode == "compensated", z_free)
            z = np.zeros_like(r)
            z[free] = z_free
            return z

        def apply_free(v):
            return np.where(free, apply_A(v), 0.0)

        return beta_step.conjugate_gradients(apply_free, precondition,
                                             np.where(free, g, 0.0), np.zeros_like(g), mode,
                                             tol, max_iter).beta

    return solve_free


def _newton_on_free_set(x, Ax, b_scaled, s, lam, lo, hi, apply_scaled, solve_free):
    """Newton steps for the scaled problem on the free set of ``x``: the coefficients
    that are neither an L1 zero nor at a bound, with their signs held.

    There the objective is the quadratic ``x^T A~ x / 2 - (b~ - lam sign(x))^T x``, so
    a step solves ``A~_FF delta_F = (b~ - A~ x - lam sign(x))_F`` -- in beta's units
    ``A_FF delta_F = s (...)``, which ``solve_free`` solves (Cholesky of ``A_FF``, or
    CG with the block preconditioner) -- and is cut where a coefficient first reaches
    zero or a bound, which it is then set to exactly and leaves the free set; then the
    next step, until one is taken whole (at most ``NEWTON_STEPS``). Along each step the
    quadratic decreases, so the objective does. FISTA's rate depends on the
    conditioning of ``A~`` (uncentred regressors beside a constant make it poor); once
    the signs and the active bounds are right, these steps solve the problem, and FISTA
    then frees any coefficient that should leave zero or a bound. Returns
    ``(x, A~ x)``; a step whose free set's matrix is not numerically positive definite
    is not taken.
    """
    from ..kernels.linalg import NotPositiveDefiniteError

    for _ in range(NEWTON_STEPS):
        free = _free(x, lam, lo, hi)
        if not free.any():
            break
        g = np.where(free, b_scaled - Ax - lam * np.sign(x), 0.0)
        try:
            delta = s * solve_free(free, s * g)
        except NotPositiveDefiniteError:
            break
        with np.errstate(divide="ignore", invalid="ignore"):
            to_zero = np.where(free & (lam > 0) & (x * delta < 0), -x / delta, np.inf)
            to_bound = np.where(free & (delta > 0), (hi - x) / delta,
                                np.where(free & (delta < 0), (lo - x) / delta, np.inf))
        t = min(1.0, float(np.min(to_zero, initial=np.inf)),
                float(np.min(to_bound, initial=np.inf)))
        x_new = x + t * delta
        # the coefficients that stopped the step sit exactly at zero or their bound
        x_new = np.where(to_zero == t, 0.0, x_new)
        x_new = np.where(to_bound == t, np.where(delta > 0, hi, lo), x_new)
        x = np.minimum(np.maximum(x_new, lo), hi)
        Ax = apply_scaled(x)
        if t == 1.0:
            break
    return x, Ax


def solve_penalised(apply_A: Callable[[np.ndarray], np.ndarray], b: np.ndarray,
                    diag_A: np.ndarray, penalty: Penalty, beta0: np.ndarray, mode: str,
                    tol: float, max_iter: int, reduction: float = 0.0,
                    lipschitz: float | None = None,
                    solve_free: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
                    ) -> PenalisedSolve:
    """Minimise ``beta^T A beta / 2 - b^T beta + sum l1 |beta|`` over the box (module
    docstring), from ``beta0`` (projected onto the box first).

    ``apply_A(v) = A v`` (host (P,) vectors); ``diag_A`` its diagonal (positive).
    ``reduction > 0`` also stops once the gradient mapping has fallen by that factor
    from its first value (the alternating fit's early sweeps, as the CG's). ``lipschitz``
    carries ``L`` over from the previous sweep's solve; None estimates it.
    ``solve_free(free, g)``: ``delta`` (P,) with ``A[free, free] delta[free] = g[free]``
    and zeros elsewhere; given, every ``POLISH_EVERY`` iterations the iterate takes a
    Newton step on its free set (:func:`_newton_on_free_set`).
    """
    beta_step.check_normal_diagonal(diag_A)
    s = np.sqrt(diag_A)
    lam = penalty.l1 / s
    lo, hi = penalty.lo * s, penalty.hi * s

    def apply_scaled(v):
        return apply_A(v / s) / s

    b_scaled = b / s
    b_norm = np.sqrt(dot(b_scaled, b_scaled, mode, "cpu"))
    L = _largest_eigenvalue(apply_scaled, b.shape[0], mode) if lipschitz is None else lipschitz
    # A~ is positive semi-definite with a unit diagonal: its largest eigenvalue is at
    # most its trace, P
    ceiling = float(max(b.shape[0], 1))
    x = np.minimum(np.maximum(np.asarray(beta0, dtype=np.float64) * s, lo), hi)
    Ax = apply_scaled(x)
    z, Az = x, Ax
    t_k = 1.0
    first = None
    residual = best = np.inf
    it = best_at = 0
    best_x = x
    for it in range(1, max_iter + 1):
        grad = Az - b_scaled
        t_next = (1.0 + np.sqrt(1.0 + 4.0 * t_k * t_k)) / 2.0
        mu = (t_k - 1.0) / t_next
        while True:
            x_new, z_next = fista_step(z, grad, 1.0 / L, x, mu, lam, 1.0, lo, hi, "cpu")
            Ax_new = apply_scaled(x_new)
            step = x_new - z
            curvature = dot(step, Ax_new - Az, mode, "cpu")
            step_sq = dot(step, step, mode, "cpu")
            # a step within sqrt(eps) of x+ is tested by the rounding of A~ x+ - A~ z (of
            # the order of eps |A~| |x+| per element), not by A~'s curvature: it would
            # raise L without bound near the solution, where a step of up to 2 / L_true
            # still contracts
            significant = step_sq > SIGNIFICANT_STEP * dot(x_new, x_new, mode, "cpu")
            if not significant or curvature <= L * step_sq or L >= ceiling:
                break
            L = min(L * BACKTRACK, ceiling)
        residual = L * np.sqrt(step_sq)
        first = residual if first is None else first
        if residual < best:
            best, best_at, best_x = residual, it, x_new
        moved_back = dot(z - x_new, x_new - x, mode, "cpu") > 0
        x, Ax, Ax_prev = x_new, Ax_new, Ax
        if residual <= max(tol * b_norm, reduction * first) or it - best_at >= STALL:
            break
        if solve_free is not None and it % POLISH_EVERY == 0:
            x, Ax = _newton_on_free_set(x, Ax, b_scaled, s, lam, lo, hi, apply_scaled,
                                        solve_free)
            z, Az, t_k = x, Ax, 1.0
            continue
        if moved_back:  # restart the momentum from x+
            z, Az, t_k = x, Ax, 1.0
        else:
            z, Az, t_k = z_next, Ax + mu * (Ax - Ax_prev), t_next
    reached = bool(residual <= tol * b_norm)
    stalled = not reached and it - best_at >= STALL
    if stalled:  # the iterate with the smallest gradient mapping
        x, residual = best_x, best
    relative = float(residual / b_norm) if b_norm > 0 else float(residual)
    # back to beta; the clip undoes the rounding of (lo s) / s at an active bound
    beta = np.minimum(np.maximum(x / s, penalty.lo), penalty.hi)
    return PenalisedSolve(beta=beta, iters=it, finished=reached or stalled or it == max_iter,
                          reached_tol=reached, stalled=stalled, residual=relative,
                          lipschitz=float(L))
