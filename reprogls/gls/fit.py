"""``fit``: deterministic low-rank GLS / SUR by alternating maximisation of the likelihood.

Model: ``y_ij = x_ij^T beta_j + e_ij``, ``e_i ~ N(0, Sigma)``, ``Sigma = F F^T + diag(d)``
(rank k). Algorithm (DESIGN.md section 6):

1. OLS per equation (own fixed-order Cholesky of each ``X_j^T X_j``).
2. Repeat: Sigma-step (ML factor analysis of ``S = E^T E / N`` by a projected
   quasi-Newton method over ``log d``, warm-started; S formed
   as a K x K matrix for moderate K, applied from the N x K residuals for large K), then
   beta-step (GLS given Sigma, :mod:`.beta`; with CG, solved only until the residual
   has fallen by ``CG_SWEEP_REDUCTION``), until the relative change of the negative
   log-likelihood is at most ``tol`` (relative to ``max(|nll|, N K)``: see ``fit``'s
   ``tol``) (``converged=True``) or ``max_iter`` sweeps
   (``ConvergenceWarning``, ``converged=False``); either way the last sweep's CG is then
   finished to ``cg_tol``.
3. Covariance of beta (:mod:`.covariance`): plug-in ``A^-1`` of the GLS normal matrix at
   the final Sigma, or the cluster-robust sandwich ``A^-1 B A^-1``.

Every value that steers the iteration is computed with the CRO-1 kernels, so the
iteration count and the result bits do not depend on thread counts or machines.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from ..kernels import dot, gemv_t, sur_rmatvec, woodbury_factor, woodbury_logdet
from ..kernels.cpu.pages import fresh
from ..kernels.devices import resolve_device, to_host
from ..kernels.reference import check_mode
from . import beta as beta_step
from ._caller import user_stacklevel
from ._dense import gram, on_device
from ._resident import (
    on_host,
    resident_fitted_and_residuals,
    resident_matvec,
    resident_solve,
)
from .beta_solver import BetaSolver
from .covariance import (
    inverse_normal_matrix,
    kronecker_inverse_normal_matrix,
    kronecker_robust_covariance,
    robust_covariance,
)
from .data import check_int, check_rank, check_real, check_sigma_rank, fixed_sigma, prepare
from .ols import block_grams, diagonal_blocks, factor_blocks, ols
from .penalty import describe, free_coefficients, make_penalty, penalty_value
from .precondition import design_coupling
from .results import GLSResult
from .sigma import (
    D_FLOOR,
    LOG_2PI,
    MomentMatrix,
    ResidualMoment,
    factor_analysis,
    residual_moment,
)
from .start import check_start

__all__ = ["ConvergenceWarning", "ExactFitWarning", "SharedFit", "covariance", "fit",
           "with_covariance"]

#: Above this many coefficients the "auto" beta solver uses CG instead of the dense Gram.
GRAM_MAX_P = 600
#: The "auto" Sigma-step works from the residuals when K > this many times the rank:
#: forming S costs N K^2 / 2 multiply-adds per sweep, each product from the residuals
#: 2 N K k, and a sweep needs about 20 products (measured, profiling/profile_fit.py).
#: At a rank beyond the data's factors a sweep needs far more (:func:`moment_pays`).
RESIDUAL_SIGMA_PER_RANK = 100


#: Time per multiply-add of a product from the residuals (two passes over E) relative to
#: the Gram that forms S and to a product by S (:func:`moment_pays`).
RESIDUAL_PRODUCT_COST = 1.3


def moment_pays(vectors: int, N: int, K: int) -> bool:
    """Whether a sweep that multiplies ``vectors`` vectors by ``S`` would have cost less
    with S formed (``N K^2 / 2`` multiply-adds, then ``K^2`` a vector) than from the
    N x K residuals (``2 N K`` a vector, each :data:`RESIDUAL_PRODUCT_COST` times as
    long): ``1.3 vectors 2 N K > N K^2 / 2 + vectors K^2``.

    The "auto" Sigma-step starts from the residuals where ``K > 100 k`` and forms S
    from the sweep after one of which this holds: a rank beyond the data's factors puts
    the k-th eigenvalue at the crowded edge of the noise, where each eigen-solve
    multiplies hundreds of vectors. Measured at N = 5000, K = 2000 (2-core Zen 4,
    compensated): S in 0.98-1.03 s, a vector 2.6-2.9 ms from the residuals and
    0.44-0.47 ms by S (0.13-0.14 / 0.10 / 0.11 ns a multiply-add); the break-even
    there is 455 vectors a sweep. Rank 10 with five factors multiplied 620, 1270, 620,
    340 vectors in its four sweeps (the second's Sigma-step 4.1 s from the residuals,
    1.5 s by S); rank 10 with ten factors 220, 160, 60 (the residuals stay). It never
    holds where ``K >= 2.6 N``, so the K x K matrix it brings is at most 2.6 times the
    bytes of the residuals the fit holds anyway.
    """
    residual_cost = RESIDUAL_PRODUCT_COST * vectors * 2 * N * K
    return residual_cost > N * K * K / 2 + vectors * K * K


#: Inside the alternating loop each sweep's CG stops once its residual has fallen by this
#: factor (or reached ``cg_tol``): Sigma changes in the next sweep anyway. The last
#: sweep's solve is finished to ``cg_tol`` before the fit returns, converged or not.
#: (M: 22 -> 13 CG steps, profiling/profile_fit.py.)
CG_SWEEP_REDUCTION = 1e-3


class ConvergenceWarning(UserWarning):
    """The alternating fit stopped at ``max_iter`` before reaching ``tol``."""


class ExactFitWarning(UserWarning):
    """An equation's regressors fit its ``y`` exactly (to rounding), so its variance
    ``d_j`` sits at its floor, where the likelihood is unbounded."""


#: Values of ``E Sigma^-1`` the log-likelihood forms at a time (a slab of whole CRO-1
#: chunks, 8 MB) instead of one more N x K array. At N = 20000, K = 200, 2 threads:
#: 32 / 64 / 128 / 256 chunks 15.1 / 13.8 / 12.0 / 11.6 ms per log-likelihood.
QUAD_SLAB_CHUNKS = 128


def quadratic_form(E, factor, device: str) -> float:
    """``tr(Sigma^-1 E^T E)`` as the CRO-1 ``dot(E.ravel(), (E Sigma^-1).ravel())``.

    On the CPU ``E Sigma^-1`` is formed ``QUAD_SLAB_CHUNKS`` chunks of the flat index at
    a time (the rows those chunks touch, by ``woodbury_solve``, whose rows do not depend
    on each other); each slab's chunk partials go into one array and the chunk tree runs
    once at the end: the bits of the dot over the whole matrices, without holding
    ``E Sigma^-1`` (N x K). ``E``: C-contiguous float64. On a GPU (``E`` in its memory)
    the whole solve and the dot run there: the same bits.
    """
    from ..kernels.cpu import rowgroups
    from ..kernels.cpu._cro import CHUNK
    from ..kernels.cpu.reductions import dot_chunk_partials, finish_partials

    if not on_host(device):
        W = resident_solve(factor, E, device)
        return dot(E.reshape(-1), W.reshape(-1), factor.mode, device)
    N, K = E.shape
    compensated = factor.mode == "compensated"
    n = N * K
    flat = E.reshape(-1)
    n_ch = -(-n // CHUNK)
    ps, pc = np.empty(n_ch), np.empty(n_ch)
    # every slab's E Sigma^-1 goes into one buffer: a fresh 8 MB array per slab came
    # from newly mapped pages after the fit's other allocations (12 -> 29 ms per
    # log-likelihood at M inside the fit, 12 ms alone)
    slab_rows = min(N, -(-QUAD_SLAB_CHUNKS * CHUNK // K) + 1)
    buffer = np.empty(slab_rows * K)
    for c0 in range(0, n_ch, QUAD_SLAB_CHUNKS):
        c1 = min(n_ch, c0 + QUAD_SLAB_CHUNKS)
        lo, hi = c0 * CHUNK, min(n, c1 * CHUNK)
        r0, r1 = lo // K, -(-hi // K)
        W = buffer[:(r1 - r0) * K]
        rowgroups.woodbury_solve(E[r0:r1], factor.G, factor.d, factor.L, compensated,
                                 W.reshape(r1 - r0, K))
        dot_chunk_partials(flat[lo:hi], W[lo - r0 * K:hi - r0 * K], compensated,
                           ps[c0:c1], pc[c0:c1])
    return finish_partials(ps, pc, compensated)


def mean_squares(Y, mode: str, device: str) -> np.ndarray:
    """The mean squares of the columns of ``Y`` (N x K), the units of the floor of
    ``d`` (:func:`.sigma.uniqueness_bounds`):

    .. math:: V_j = \\frac{1}{N} \\sum_i \\operatorname{fl}(Y_{ij}^2)

    with the sum in CRO-1 order over the rows: ``sur_rmatvec(Y, arange(K + 1), Y) / N``,
    each ``y_j`` its own one-column equation. On the CPU the sums come from ``gemv_t(Y
    * Y, 1)`` instead, whose terms ``fl(fl(Y_ij^2) * 1) = fl(Y_ij^2)`` are the same
    values in the same order, so the bits are the same: a layout of one column per
    equation takes ``sur_rmatvec``'s block kernels, which nothing else in a fit of wider
    equations needs, and compiling them was 2.4 s of the demo's first fit on a fresh
    install (twenty-fifth session; ``gemv_t`` is in :data:`.kernels.warm.FIT_TASKS`)."""
    N, K = Y.shape
    if not on_host(device):
        return sur_rmatvec(Y, np.arange(K + 1), Y, mode, device) / N
    with np.errstate(over="ignore"):  # an overflowing square is +inf, as in the kernel
        squares = np.multiply(Y, Y)
    return gemv_t(squares, np.ones(N), mode, "cpu") / N


def loglik(E: np.ndarray, factor, device: str) -> float:
    """``-N/2 (K log 2pi + log|Sigma| + tr(Sigma^-1 E^T E) / N)`` via Woodbury
    (:func:`quadratic_form`)."""
    N, K = E.shape
    quad = quadratic_form(np.ascontiguousarray(E) if on_host(device) else E, factor, device)
    return -0.5 * ((N * K) * LOG_2PI + N * woodbury_logdet(factor) + quad)


def residuals(X, offsets, Y, beta, mode: str, device: str) -> np.ndarray:
    """``E = Y - U`` with ``U = sur_matvec(X, beta)``, subtracting into U's buffer (one
    N x K array instead of two at the peak). On a GPU ``X`` and ``Y`` are there and so is
    ``E`` (:mod:`._resident`)."""
    if not on_host(device):
        return resident_fitted_and_residuals(X, offsets, Y, beta, mode, device)[1]
    U = resident_matvec(X, offsets, beta, mode, device)
    return np.subtract(Y, U, out=U)


def fitted_and_residuals(X, offsets, Y, beta, mode: str, device: str, buffers=(None, None)
                         ) -> tuple[np.ndarray, np.ndarray]:
    """``(U, E)``: the fitted values ``U = sur_matvec(X, beta)`` (bitwise
    ``predict``) and ``E = Y - U``, from one pass over X. Costs one N x K array more than
    :func:`residuals` while both are held; the fit keeps ``U`` only until the next sweep
    starts, so that the last one is the result's ``fittedvalues`` without another pass.

    ``buffers``: N x K C-contiguous float64 arrays (or None) to write ``U`` and ``E``
    into on the CPU, whatever they hold (:func:`fit` recycles the previous sweep's). On a
    GPU (``X`` and ``Y`` there) both stay there and ``buffers`` is not used.
    """
    if not on_host(device):
        return resident_fitted_and_residuals(X, offsets, Y, beta, mode, device)
    from ..kernels.cpu import linalg as cpu_linalg

    U_buffer, E_buffer = buffers
    U = cpu_linalg.sur_matvec(X, offsets, np.ascontiguousarray(beta, dtype=np.float64),
                              mode == "compensated",
                              U_buffer if U_buffer is not None else fresh(Y.shape))
    return U, np.subtract(Y, U, out=E_buffer if E_buffer is not None else fresh(Y.shape))


#: The covariances :func:`fit` computes (``None``: its default).
COV_TYPES = ("plugin", "robust", "none")


def check_cov_type(cov_type, allowed=(None, *COV_TYPES)) -> None:
    """A :class:`ValueError` naming ``cov_type`` unless it is one of ``allowed``."""
    if cov_type not in allowed:
        names = [repr(c) for c in allowed if c is not None]
        raise ValueError(f"cov_type must be {', '.join(names[:-1])} or {names[-1]}, got "
                         f"{cov_type!r}")


def _penalised_covariance_error(cov_type: str, fix: str) -> ValueError:
    """Neither covariance is valid for a fit with ``l1`` or ``bounds``; ``fix``: what to
    do instead."""
    return ValueError(f"cov_type={cov_type!r} is not valid for a fit with l1 or bounds: the "
                      "covariance of a penalised or constrained estimate is not the inverse "
                      f"normal matrix; {fix}")


#: Rows of X compared at a time by :func:`_same_first_design` (a 1024 x P slab: 16 MB at
#: P = 2000; a design that differs is found in the first slab).
DESIGN_COMPARE_ROWS = 1024


def _same_first_design(X, p: int, device: str):
    """The first equation's design ``X[:, :p]`` (a C-contiguous copy, where ``X`` is) if
    every equation's equals it value for value, else ``None``. ``X`` is the packed
    (N, K p) design, viewed as (N, K, p) and compared slab by slab of
    :data:`DESIGN_COMPARE_ROWS` rows, in memory order (one pass, stopping at the first
    slab that differs; comparing column block by column block took 0.17 s at N = 20000,
    K = 200, p = 10). CuPy's ``X`` (CuPy inputs, packed on their GPU) is compared and
    copied there, under that GPU's context."""
    N = X.shape[0]
    by_equation = X.reshape(N, -1, p)

    def compare():
        for r0 in range(0, N, DESIGN_COMPARE_ROWS):
            slab = by_equation[r0:r0 + DESIGN_COMPARE_ROWS]
            if not bool((slab == slab[:, :1]).all()):
                return None
        return X[:, :p].copy()

    if isinstance(X, np.ndarray):
        return compare()
    from ..kernels.dispatch import cuda_context

    with cuda_context(resolve_device(device)):
        return compare()


def shared_design_factor(data, ridge: float, mode: str, device: str,
                         block_factors: list[np.ndarray] | None = None) -> np.ndarray | None:
    """The Cholesky factor of ``G = X_0^T X_0`` where every equation has the same design
    ``X_0`` (equal values, column for column) and ``ridge == 0``, else ``None``: then
    ``A = Sigma^-1 (x) G`` and the plug-in covariance is ``Sigma (x) G^-1``
    (:func:`.covariance.kronecker_inverse_normal_matrix`). ``block_factors``: the fit's
    factors of the ``X_j^T X_j`` (the first is this one); else ``G`` is formed from
    ``X_0`` alone (:func:`._dense.gram`: the bits of :func:`.ols.block_grams`, a K-th of
    its work)."""
    X, offsets = data.X, data.offsets
    widths = np.diff(offsets)
    K, p = widths.shape[0], int(widths[0]) if widths.shape[0] else 0
    if ridge != 0.0 or K < 2 or p == 0 or (widths != p).any():
        return None
    X0 = _same_first_design(X, p, device)
    if X0 is None:
        return None
    if block_factors is None:
        block_factors = factor_blocks([gram(X0, mode, device)], 0.0, data, mode)
    return block_factors[0]


def covariance(cov_type: str, X, offsets: np.ndarray, factor, ridge: float, E, mode: str,
               device: str, XtX: np.ndarray | None = None, L: np.ndarray | None = None,
               design_factor: np.ndarray | None = None) -> np.ndarray:
    """The covariance of the GLS coefficients at the Sigma of the Woodbury ``factor``.

    ``"plugin"``: ``A^-1``, the inverse of the GLS normal matrix
    ``A = X^T (Sigma^-1 kron I_N) X + ridge I`` (:func:`.covariance.inverse_normal_matrix`);
    ``"robust"``: the sandwich ``A^-1 B A^-1`` with ``B = sum_i s_i s_i^T`` the scores
    ``s_i = X_i^T Sigma^-1 e_i`` of the residuals ``E`` (clustered by observation,
    :func:`.covariance.robust_covariance`). ``XtX``: ``X^T X`` if at hand (else one pass
    over X); ``L``: the Cholesky factor of this very ``A`` if at hand. The same bits
    either way: ``L`` is what :func:`.beta.cholesky` of ``A`` gives. ``design_factor``:
    where every equation has one design and no ridge, the Cholesky factor of its Gram
    (:func:`shared_design_factor`); then ``A^-1 = Sigma (x) G^-1``
    (:func:`.covariance.kronecker_inverse_normal_matrix`), without ``X^T X``, and the
    sandwich is the Gram of ``T[i, j p + a] = e_ij (G^-1 x_i)_a``
    (:func:`.covariance.kronecker_robust_covariance`), without ``A^-1``.
    """
    if design_factor is not None:
        if cov_type == "robust":
            p = int(offsets[1])
            return kronecker_robust_covariance(X[:, :p], E, design_factor, mode, device)
        cov = kronecker_inverse_normal_matrix(factor, design_factor)
    else:
        if XtX is None:
            XtX = gram(X, mode, device)
        cov = inverse_normal_matrix(XtX, offsets, factor, ridge, L)
    if cov_type == "robust":
        cov = robust_covariance(cov, X, offsets, E, factor, device)
    return cov


def with_covariance(result: GLSResult, Xs, Y=None, cov_type: str = "plugin") -> GLSResult:
    """``result`` with the covariance ``cov_type`` of its coefficients, without fitting
    again: the bits of ``fit(..., cov_type=cov_type)`` with the arguments that made
    ``result`` (:meth:`.GLSResult.with_covariance` has the details)."""
    check_cov_type(cov_type, ("plugin", "robust"))
    if result.free_coefficients is not None:
        raise _penalised_covariance_error(cov_type, "such a fit has no covariance to add")
    data = prepare(Xs, Y, add_constant=any(result.added_constant))
    dev, mode = result.device, result.mode
    if data.location != dev:
        data = data.to_host()
    if (data.nobs, data.n_equations) != result.resid.shape or not np.array_equal(
            data.offsets, result.offsets):
        raise ValueError(
            f"Xs, Y are not the system this result was fitted to: {data.nobs} observations "
            f"of {data.n_equations} equations with {data.X.shape[1]} coefficients, against "
            f"{result.resid.shape[0]} of {result.resid.shape[1]} with "
            f"{result.params.shape[0]}; pass the Xs, Y given to fit")
    Xk, Yk = on_device(data.X, dev), on_device(data.Y, dev)
    _, E = fitted_and_residuals(Xk, data.offsets, Yk, result.params, mode, dev)
    if not np.array_equal(to_host(E).view(np.uint64), result.resid.view(np.uint64)):
        raise ValueError("Xs, Y are not the data this result was fitted to: the residuals "
                         "at its params differ from its resid; pass the Xs, Y given to fit "
                         "(or fit again with cov_type)")
    return _covariance_added(result, cov_type, Xk, data.offsets, E,
                             design_factor=shared_design_factor(data, result.ridge, mode, dev))


def _covariance_added(result: GLSResult, cov_type: str, X, offsets: np.ndarray, E,
                      XtX: np.ndarray | None = None, design_factor=None) -> GLSResult:
    """``result`` with :func:`covariance` ``cov_type`` at its Sigma, from the design ``X``
    and the residuals ``E`` at its params where the kernels read them (``XtX`` and
    ``design_factor`` if at hand: the same bits)."""
    factor = woodbury_factor(result.F, result.d, result.mode)
    cov = covariance(cov_type, X, offsets, factor, result.ridge, E, result.mode,
                     result.device, XtX, design_factor=design_factor)
    return dataclasses.replace(result, cov=cov, cov_type=cov_type)


def _check_cuda_limits(rank: int, K: int) -> None:
    """The GPU Woodbury solve's limits (``rank <= 64``, ``K <= 8192``), checked before X
    goes to the GPU rather than at the first solve."""
    from ..kernels.cuda.linalg import MAX_RANK
    from ..kernels.reference.cro import CHUNK

    if rank > MAX_RANK or K > CHUNK:
        raise NotImplementedError(
            f"device='cuda' supports rank <= {MAX_RANK} and at most {CHUNK} equations (got "
            f"rank {rank}, K {K}); use device='cpu'")


def _check_y_scale(y_moments: np.ndarray, Y, names: list[str]) -> None:
    """A :class:`ValueError` naming the first ``y_j`` whose squares leave float64's normal
    range: its mean square ``mean(y_j^2)`` overflows (values near ``1e154`` and above,
    or a sum of squares past ``1.8e308``) or underflows below the smallest normal
    number ``2.2e-308`` while ``y_j`` is not all zeros. The fit works in the units of
    ``y^2`` (``Sigma``, ``E^T E``) and of their inverse (``Sigma^-1``), so such a ``y_j``
    has no representable likelihood: without this check it surfaced as a non-finite
    ``F`` or as a "collinear" normal matrix. An all-zero ``y_j`` passes (it is fitted
    exactly: :func:`_warn_exact_fits`)."""
    y_moments = np.asarray(y_moments, dtype=np.float64)
    suspect = ~(np.isfinite(y_moments) & (y_moments >= np.finfo(np.float64).tiny))
    for j in np.flatnonzero(suspect):
        column = to_host(Y[:, j])
        largest = float(np.max(np.abs(column))) if column.size else 0.0
        if y_moments[j] == 0.0 and largest == 0.0:
            continue  # all zeros
        what = "overflows" if not np.isfinite(y_moments[j]) else "underflows"
        raise ValueError(
            f"y of equation {names[j]!r} holds values of magnitude up to {largest:.3g}, "
            f"whose mean square {what} float64 (the fit works in the units of y^2 and "
            "their inverse); rescale it (e.g. divide it by its standard deviation)")


def _warn_exact_fits(d: np.ndarray, y_moments: np.ndarray, names: list[str]) -> None:
    """An :class:`ExactFitWarning` naming the equations whose ``d_j`` is held at its
    floor ``D_FLOOR * mean(y_j^2)`` (:func:`.sigma.uniqueness_bounds`): their regressors
    fit ``y_j`` exactly, to rounding (as when ``y_j`` is among them), or ``y_j`` is all
    zeros."""
    exact = [name for name, dj, vj in zip(names, d, y_moments, strict=True)
             if dj <= D_FLOOR * vj or vj == 0.0]
    if exact:
        shown = ", ".join(repr(n) for n in exact[:5]) + (", ..." if len(exact) > 5 else "")
        warnings.warn(f"{len(exact)} equation(s) ({shown}) are fitted exactly by their "
                      "regressors (residual variance below 1e-12 of mean(y^2); is y among "
                      "them?): their error variance d_j is held at that floor, where the "
                      "likelihood is unbounded, so llf, aic, bic and their standard errors "
                      "are not meaningful", ExactFitWarning, stacklevel=user_stacklevel())


def fit(Xs, Y=None, rank: int | None = None, *, add_constant: bool = False, sigma=None,
        ridge: float = 0.0, l1=0.0, bounds=None, tol: float = 1e-8, max_iter: int = 200,
        beta_solver: str = "auto", cg_tol: float = 1e-10, cg_max_iter: int = 500,
        sigma_step: str = "auto", min_uniqueness: float = 1e-8, cov_type: str | None = None,
        mode: str = "compensated", device: str = "auto", start=None) -> GLSResult:
    """Fit a SUR system with a low-rank-plus-diagonal error covariance.

    Parameters
    ----------
    Xs : list of array_like (N, p_j), or dict ``{name: (y, X_j)}``
        NumPy arrays, pandas objects or CuPy arrays (all on one device; CuPy inputs are
        validated and packed on their GPU, :func:`.data.prepare`).
    Y : array_like (N, K), optional (with a list)
    rank : int, optional
        Number of factors k, ``0 <= k <= K - 1`` (1 when left out; K = 1 allows only 0).
        ``k = 0`` fits ``Sigma = diag(d)``, independent equations: least squares equation
        by equation (beside a penalty, equation j's squares weighed by ``1 / d_j``),
        ``d_j = e_j^T e_j / N``, and that model's log-likelihood and criteria. With ``sigma`` the
        rank is ``F``'s column count: leave ``rank`` out, or pass that count (another
        value is a ``ValueError``).
    add_constant : bool
        Prepend an intercept to every equation without one.
    sigma : tuple (F, d), optional
        Fix ``Sigma = F F^T + diag(d)`` (``F`` (K, k), ``0 <= k <= K``; ``d`` (K,),
        positive): one GLS step, no Sigma-step.
    ridge : float
        L2 penalty on beta (0 by default): ``ridge / 2 ||beta||^2`` is added to the
        negative log-likelihood (every coefficient, constants included).
    l1 : float or array_like (P,)
        L1 penalty ``sum_m l1_m |beta_m|`` added to the negative log-likelihood (0 by
        default); with ``ridge`` the elastic net. A scalar applies to every coefficient
        except the constants ``add_constant=True`` added (unpenalised, as scikit-learn's
        ``fit_intercept``); an array gives each coefficient's weight in the order of
        ``params`` (0 leaves it unpenalised). Coefficients it sets to zero are exactly
        ``0.0``.
    bounds : tuple (lo, hi), optional
        Box constraints ``lo <= beta <= hi``, each a scalar or an array (P,); ``None`` or
        ``-inf``/``inf`` for no bound (``(0, None)``: non-negative coefficients). Scalars
        skip the added constants, as ``l1``.
        With ``l1`` or ``bounds`` the beta-step is the penalised GLS solved by an
        accelerated proximal gradient method (FISTA with restarts, :mod:`.penalty`) on
        the dense normal matrix or the fused operator (``beta_solver``), to ``cg_tol``
        within ``cg_max_iter`` iterations per step; the Sigma-step is unchanged, so the
        fit maximises the penalised likelihood.
    tol, max_iter : float, int
        Stop when the relative change of the negative log-likelihood is <= tol:
        ``|nll_prev - nll| <= tol * max(|nll|, N K)`` (with ``l1``/``bounds``, of the
        penalised objective ``nll + penalty``). (Changes of the likelihood do not
        depend on the units of Y, its value does, and it crosses 0 at some units: there
        the plain relative change took 19 sweeps instead of 3. The floor ``N K`` -- one
        per observed value -- keeps the test unit-free where ``|nll|`` is small.)
    beta_solver : {"auto", "gram", "cg"}
        ``"gram"``: dense normal matrix from ``X^T X`` (moderate P); ``"cg"``:
        preconditioned CG on the fused operator (large P; the preconditioner couples
        the per-equation blocks through ``Sigma^-1`` by how alike the designs are,
        :mod:`.precondition`). ``"auto"``: gram when ``P <= 600``.
    cg_tol, cg_max_iter : float, int
        CG stopping rule: ``||b - A beta|| <= cg_tol ||b||`` (CRO-1 norms). Inside the
        alternating loop a sweep's CG may stop earlier, once its residual has fallen by
        the factor ``CG_SWEEP_REDUCTION`` (1e-3), since the next Sigma-step changes
        ``A`` and ``b`` anyway; the returned beta is always solved to ``cg_tol`` (or for
        ``cg_max_iter`` steps, with a ``ConvergenceWarning``) at the returned Sigma: the
        last sweep's solve is finished first.
    sigma_step : {"auto", "moment", "residuals"}
        How the factor analysis sees ``S = E^T E / N``: ``"moment"`` forms the K x K
        matrix once per sweep (``O(N K^2)``); ``"residuals"`` applies it from the N x K
        residuals, ``M Q = D^-1/2 E^T (E D^-1/2 Q) / N`` (``O(N K k)`` per product, no
        K x K matrix). ``"auto"``: residuals when ``K > 100 * rank``, and the moment
        matrix from the sweep after one whose products would have cost more than
        forming it (:func:`moment_pays`: a rank beyond the data's factors). The two give
        different bits; each is deterministic, and so is the turn (it counts vectors).
        At ``16 * rank >= K`` (below K = 250 or ``K = 10 * rank``) the Sigma-step
        solves the whole eigenproblem of ``M`` (:func:`.eigen.uses_full_space`), which
        needs the K x K matrix: ``"residuals"`` then forms it as ``"moment"`` does (the
        same bits).
    cov_type : {"plugin", "robust", "none"}, optional
        Default (``None``): ``"plugin"``, or ``"none"`` for a fit with ``l1`` or
        ``bounds``, where neither covariance is valid (``"plugin"``/``"robust"`` are
        refused there). ``"plugin"``: inverse GLS normal matrix ``A^-1`` at the estimated Sigma;
        ``"robust"``: the sandwich ``A^-1 B A^-1`` clustered by observation across
        equations (:mod:`.covariance`); ``"none"``: skip standard errors (``bse`` is
        NaN). Both need the P x P matrix ``X^T X`` (one pass, ``O(N P^2)``) and an
        ``O(P^3)`` inverse: slow for P in the thousands.
    mode : {"compensated", "plain"}
    device : {"auto", "cpu", "cuda", "cuda:N"}
        ``"auto"``: the GPU when the data are CuPy arrays, else the CPU. On a GPU the
        rank is at most 64 and K at most 8192.
    start : GLSResult or tuple (params, F, d), optional
        A warm start (:mod:`.start`): the result of a fit of the same system, e.g. one
        that ran out of ``max_iter`` (going on from it). The sweeps begin at ``params``
        instead of the OLS coefficients, and the first Sigma-step's factor analysis at
        ``(F, d)`` (the same rank; ``(params, None, None)`` starts the coefficients
        only; with ``sigma`` fixed only ``params`` is used, as the iterative solvers'
        first point). Deterministic as any fit; it reaches the same optimum to ``tol``,
        in other bits than a fit from OLS.

    Returns
    -------
    GLSResult

    Raises
    ------
    ValueError, TypeError
        Bad arguments or data, naming the argument, equation and column: NaN/inf, shapes,
        non-numeric data, ``rank``, ``N <= p_j``; :class:`.ols.CollinearityError` (a
        ``ValueError``) for a collinear ``X_j`` without ``ridge`` or a column whose squares
        leave float64's range; a ``y_j`` whose mean square overflows or underflows; X and
        Y too many orders of magnitude apart for the normal equations (``x^2 / y^2``); a
        CG that breaks down on a numerically singular normal matrix.
    NotPositiveDefiniteError
        The GLS normal matrix is singular: designs collinear across equations (pass
        ``ridge > 0``).
    NotImplementedError
        On a GPU, a rank above 64 or more than 8192 equations (before any GPU work).

    Warns
    -----
    ConvergenceWarning
        ``max_iter`` sweeps ran out before ``tol`` was reached (``converged=False``); or
        the last beta-step (CG, or with ``l1``/``bounds`` the penalised one) ran out of
        ``cg_max_iter`` iterations before ``cg_tol``.
    ExactFitWarning
        An equation's regressors fit its ``y`` exactly (its residual variance is below
        ``1e-12 mean(y_j^2)``, e.g. ``y_j`` among them): ``d_j`` is held at that floor.
    IdentificationWarning
        ``rank`` beyond Ledermann's bound: ``F`` is not identified (``Sigma`` is).
    """
    check_cov_type(cov_type)  # (before the data, as every scalar argument)
    problem = SharedFit(Xs, Y, add_constant=add_constant, ridge=ridge, l1=l1, bounds=bounds,
                        tol=tol, max_iter=max_iter, beta_solver=beta_solver, cg_tol=cg_tol,
                        cg_max_iter=cg_max_iter, sigma_step=sigma_step,
                        min_uniqueness=min_uniqueness, mode=mode, device=device)
    cov_type = problem.cov_type_for(cov_type)
    # a fixed Sigma, validated against the K equations before any work (a mismatched F
    # once reached the kernels, which trust their inputs, and corrupted memory)
    fixed = None if sigma is None else fixed_sigma(sigma, problem.K, mode)
    if fixed is None:
        rank = check_rank(1 if rank is None else rank, problem.K)
    elif rank is not None:
        check_sigma_rank(rank, fixed.rank)
    warm = check_start(start, problem.P, problem.K, None if fixed is not None else rank)
    problem.set_up(rank if fixed is None else fixed.rank, ols_start=warm is None)
    return problem.fit_rank(rank, cov_type, fixed=fixed, warm=warm)


class SharedFit:
    """One system and the options of :func:`fit`, and the work of a fit that no rank
    changes, done once for fits at several ranks (:func:`.select.select_rank`).

    What a fit does before its sweeps does not depend on the rank: validating and packing
    the data, moving X and Y to the device, the mean squares of the ``y_j``, ``X^T X``
    (the gram beta solver) or the Gram blocks ``X_j^T X_j``, their Cholesky factors, the
    CG preconditioner's coupling and the OLS start -- at the S size (N = 2000, K = 50,
    p = 5) about a third of a fit, at M (N = 20000, K = 200, p = 10) a fifth; and with
    :attr:`share_ols_moment` the first sweep's ``S = E^T E / N`` of the OLS residuals
    (where S is formed: ``K <= 100 k``, :data:`RESIDUAL_SIGMA_PER_RANK`). Each
    :meth:`fit_rank` then runs the sweeps of :func:`fit` from that work, so its result
    has the bits of :func:`fit` at that rank (``tests/test_gls_select.py``): the same
    calls on the same arrays, none of which a fit writes to.

    Parameters
    ----------
    Xs, Y
        As for :func:`fit`.
    add_constant, ridge, l1, bounds, tol, max_iter, beta_solver, cg_tol, cg_max_iter,
    sigma_step, min_uniqueness, mode, device
        As for :func:`fit`; validated here, before the data.
    """

    def __init__(self, Xs, Y=None, *, add_constant: bool = False, ridge: float = 0.0,
                 l1=0.0, bounds=None, tol: float = 1e-8, max_iter: int = 200,
                 beta_solver: str = "auto", cg_tol: float = 1e-10, cg_max_iter: int = 500,
                 sigma_step: str = "auto", min_uniqueness: float = 1e-8,
                 mode: str = "compensated", device: str = "auto"):
        check_mode(mode)
        if beta_solver not in ("auto", "gram", "cg"):
            raise ValueError(f"beta_solver must be 'auto', 'gram' or 'cg', got {beta_solver!r}")
        if sigma_step not in ("auto", "moment", "residuals"):
            raise ValueError("sigma_step must be 'auto', 'moment' or 'residuals', got "
                             f"{sigma_step!r}")
        self.mode, self.sigma_step = mode, sigma_step
        self.ridge = check_real("ridge", ridge, low=0.0, rule=">= 0 and finite")
        self.min_uniqueness = check_real("min_uniqueness", min_uniqueness, low=0.0,
                                         high=1.0, rule="in [0, 1)")
        self.tol, self.cg_tol = (
            check_real(name, value, low=0.0, low_open=True, rule="> 0 and finite")
            for name, value in (("tol", tol), ("cg_tol", cg_tol)))
        self.max_iter = check_int("max_iter", max_iter, low=1)
        self.cg_max_iter = check_int("cg_max_iter", cg_max_iter, low=1)
        data = prepare(Xs, Y, add_constant=add_constant)
        # "auto" follows the data (CuPy inputs: their GPU, where prepare packed them)
        self.dev = dev = str(resolve_device(device, data.X))
        if data.location != dev:  # packed on one GPU, fitted on the CPU or another GPU
            data = data.to_host()
        self.data = data
        self.K, self.N, self.P = data.n_equations, data.nobs, data.X.shape[1]
        constant_columns = np.zeros(self.P, dtype=bool)
        constant_columns[data.offsets[:-1][np.asarray(data.added_constant,
                                                      dtype=bool)]] = True
        self.penalty = make_penalty(l1, bounds, self.P, constant_columns)
        self.solver = (beta_solver if beta_solver != "auto" else
                       ("gram" if self.P <= GRAM_MAX_P else "cg"))
        self._set_up = False
        #: keep the first sweep's moment matrix (K x K) for the next :meth:`fit_rank`
        #: (:meth:`_ols_moment`); off for a single fit, which would only hold it longer
        self.share_ols_moment = False
        self._ols_moment_matrix: MomentMatrix | None = None

    def cov_type_for(self, cov_type: str | None) -> str:
        """``cov_type`` (one :func:`check_cov_type` passed, as the callers check it before
        the data) with the default (``None``) made explicit: ``"plugin"``, or ``"none"``
        with a penalty, which refuses the others."""
        if cov_type is None:
            return "plugin" if self.penalty is None else "none"
        if self.penalty is not None and cov_type != "none":
            raise _penalised_covariance_error(cov_type, "pass cov_type='none' (or leave it out)")
        return cov_type

    def set_up(self, max_rank: int, ols_start: bool = True) -> None:
        """The rank-free work (class docstring), once; ``max_rank``: the largest rank to
        be fitted (a GPU's limits are checked before X goes there); ``ols_start``: the
        OLS coefficients are wanted (not where every fit has a warm start)."""
        if self._set_up:
            if ols_start and self.ols_beta is None:
                self.ols_beta = self._ols()
            return
        data, mode, dev = self.data, self.mode, self.dev
        if dev != "cpu":
            _check_cuda_limits(max_rank, self.K)
        # the X that the loops' kernel calls read: X itself on the CPU; on a GPU one copy
        # there, so that no CG step or sweep moves X to the GPU again
        self.Xk = on_device(data.X, dev)
        # likewise Y, and every N x K array the loops make stays where the kernels run
        # (:mod:`._resident`); the result gets host copies of the last fitted values and
        # residuals
        self.Yk = on_device(data.Y, dev)
        # the mean squares of the y_j: the units of d's floor, and whether Sigma (~ y^2)
        # and Sigma^-1 can be represented at all (checked before any other pass over the
        # data)
        self.y_moments = mean_squares(self.Yk, mode, dev)
        _check_y_scale(self.y_moments, self.Yk, data.equation_names)
        # the gram solver needs X^T X, which holds every X_j^T X_j: one pass over X, not two
        self.XtX = gram(self.Xk, mode, dev) if self.solver == "gram" else None
        self.grams = (block_grams(data, mode, dev, self.Xk) if self.XtX is None else
                      diagonal_blocks(self.XtX, data.offsets))
        self.block_factors = factor_blocks(self.grams, self.ridge, data, mode)
        # how alike the equations' designs are: the CG's preconditioner couples the blocks
        # by this much (0: block-Jacobi; :mod:`.precondition`)
        self.coupling = (design_coupling(data.X, data.offsets, self.block_factors, mode)
                         if self.solver == "cg" else 0.0)
        self._set_up = True
        self.ols_beta = self._ols() if ols_start else None

    def _ols_moment(self, E) -> MomentMatrix:
        """``S = E^T E / N`` of the OLS residuals ``E``, the first sweep's moment matrix
        at every rank: formed once where :attr:`share_ols_moment` (no fit writes to it)."""
        if self._ols_moment_matrix is not None:
            return self._ols_moment_matrix
        S = MomentMatrix(residual_moment(E, self.mode, self.dev), self.mode)
        if self.share_ols_moment:
            self._ols_moment_matrix = S
        return S

    def _ols(self) -> np.ndarray:
        return ols(self.data, self.ridge, self.mode, self.dev, factors=self.block_factors,
                   X_device=self.Xk, Y_device=self.Yk)

    def _beta_solver(self) -> BetaSolver:
        """A fresh beta-step (it keeps state from sweep to sweep of one fit)."""
        return BetaSolver(self.solver, self.Xk, self.data.offsets, self.Yk, self.XtX,
                          self.grams, self.block_factors, self.coupling, self.penalty,
                          self.ridge, self.mode, self.dev, self.cg_tol, self.cg_max_iter)

    def fit_rank(self, rank: int, cov_type: str, fixed=None, warm=None) -> GLSResult:
        """The fit at ``rank`` (checked by the caller, :func:`.data.check_rank`), or at
        the ``fixed`` Sigma, from the OLS start or the ``warm`` one: :func:`fit`'s sweeps
        and covariance (``cov_type`` as :meth:`cov_type_for` returns it)."""
        if not self._set_up:
            raise RuntimeError("SharedFit.set_up must run before fit_rank")
        data, mode, dev, ridge = self.data, self.mode, self.dev, self.ridge
        Xk, Yk, offsets, penalty = self.Xk, self.Yk, data.offsets, self.penalty
        K, N = self.K, self.N
        max_iter, tol, sigma_step = self.max_iter, self.tol, self.sigma_step
        from_residuals = fixed is None and (
            sigma_step == "residuals" or
            (sigma_step == "auto" and K > RESIDUAL_SIGMA_PER_RANK * rank))
        beta_solve = self._beta_solver()

        # 1. OLS start (or the caller's warm start); a copy, as the start is shared
        beta = warm.params if warm is not None else self.ols_beta.copy()
        converged, n_iter = False, 0
        if fixed is not None:
            factor, F, d = fixed, fixed.F, fixed.d
            beta = beta_solve(factor, beta)[0]
            fitted, E = fitted_and_residuals(Xk, offsets, Yk, beta, mode, dev)
            llf, converged, n_iter = loglik(E, factor, dev), True, 1
            history = [float(llf)]
        else:
            F, d = (warm.F, warm.d) if warm is not None else (None, None)
            objective_prev = np.inf
            E = residuals(Xk, offsets, Yk, beta, mode, dev)  # then once per sweep, below
            # the new residuals are written over the old ones once the right-hand side no
            # longer needs them (their buffer is recycled rather than freed: a fresh 32 MB
            # array comes from newly mapped pages, which cost about as much as the pass
            # that fills it). The old fitted values are freed as each sweep starts, as
            # before: held through the Sigma-step, whose E^T E copies E into strips, they
            # raised the peak at N = 5000, K = 1000 from 1.74x to 1.94x the bytes of X.
            spare = (None, None)
            eigensolver = None  # the Sigma-step's: by its rules (eigen.eigensolver_for),
            # and the whole space for the rest of the fit once a subspace iteration stalls
            history = []  # the log-likelihood after each sweep
            for n_iter in range(1, max_iter + 1):
                fitted = None  # (kept from the last sweep only: one N x K array less)
                if from_residuals:
                    S = ResidualMoment(E, mode, dev)
                elif n_iter == 1 and warm is None:  # the OLS residuals': every rank's
                    S = self._ols_moment(E)
                else:
                    S = MomentMatrix(residual_moment(E, mode, dev), mode)
                F, d, _, _, ended_on = factor_analysis(
                    S, N, rank, mode, F, d, min_uniqueness=self.min_uniqueness,
                    y_moments=self.y_moments, eigensolver=eigensolver)
                eigensolver = None if ended_on == "subspace" else ended_on
                if from_residuals and sigma_step == "auto" and moment_pays(S.vectors, N, K):
                    from_residuals = False  # S formed from the next sweep on
                S = None
                factor = woodbury_factor(F, d, mode)
                b = r0 = None
                if self.solver == "cg" and penalty is None:  # the CG starts from the
                    # residuals E at the current beta: b and r0 = X^T vec(E Sigma^-1) -
                    # ridge beta in one pass over X (the penalised step needs b only:
                    # gls_beta forms it)
                    b, r0 = beta_step.rhs_and_residual(Xk, offsets, Yk, E, factor, beta,
                                                       ridge, dev)
                spare, E = (None, E), None  # (the buffer of the new residuals)
                beta, b, finished = beta_solve(factor, beta, b, CG_SWEEP_REDUCTION, r0)
                fitted, E = fitted_and_residuals(Xk, offsets, Yk, beta, mode, dev, spare)
                spare = (None, None)
                nll = -loglik(E, factor, dev)
                history.append(float(-nll))
                # what the sweeps minimise: the nll, plus the penalty with l1 / bounds
                objective = (nll if penalty is None else
                             nll + penalty_value(penalty, beta, ridge, mode))
                # (relative to |nll|, floored at N K: the nll's zero depends on Y's units)
                converged = (abs(objective_prev - objective)
                             <= tol * max(abs(objective), N * K))
                if converged:
                    break
                objective_prev = objective
            if not finished:  # the last solve stopped early: finish it at the final Sigma
                spare, E, fitted = (fitted, E), None, None
                beta = beta_solve(factor, beta, b)[0]
                fitted, E = fitted_and_residuals(Xk, offsets, Yk, beta, mode, dev, spare)
                spare = (None, None)
                nll = -loglik(E, factor, dev)
            llf = -nll
            if not converged:
                warnings.warn(f"the fit did not converge in {max_iter} sweeps (tol={tol}); "
                              "raise max_iter or tol", ConvergenceWarning,
                              stacklevel=user_stacklevel())
            _warn_exact_fits(d, self.y_moments, data.equation_names)
        for shortfall in beta_solve.shortfalls(factor):
            warnings.warn(shortfall, ConvergenceWarning, stacklevel=user_stacklevel())

        # 3. covariance: A^-1 (plug-in), or A^-1 B A^-1 (robust); none: a P x P matrix of
        # NaN would be 800 MB at P = 10^4
        cov = (None if cov_type == "none" else
               covariance(cov_type, Xk, offsets, factor, ridge, E, mode, dev, self.XtX,
                          beta_solve.cholesky_at(factor), self._design_factor()))
        # fitted = X beta itself (kept from the last residuals), so that fittedvalues ==
        # predict(Xs) bitwise (Y - E rounds differently) and resid == Y - fittedvalues
        return GLSResult(params=beta, cov=cov, F=F, d=d, llf=float(llf), nobs=N, ridge=ridge,
                         resid=to_host(E), fittedvalues=to_host(fitted), n_iter=n_iter,
                         converged=converged, device=dev,
                         mode=mode, offsets=offsets, equation_names=data.equation_names,
                         regressor_names=data.regressor_names, cov_type=cov_type,
                         added_constant=data.added_constant, llf_history=tuple(history),
                         penalty=describe(penalty, ridge),
                         free_coefficients=(None if penalty is None
                                            else free_coefficients(penalty, beta)),
                         sigma_fixed=fixed is not None, has_constant=data.has_constant,
                         named_regressors=data.named_regressors,
                         named_equations=data.named_equations)

    def _design_factor(self):
        return shared_design_factor(self.data, self.ridge, self.mode, self.dev,
                                    self.block_factors)

    def with_covariance(self, result: GLSResult, cov_type: str) -> GLSResult:
        """``result``, a :meth:`fit_rank` of this system without a covariance, with the
        covariance ``cov_type``: the bits of :meth:`fit_rank` with it, from the work
        already done (``X^T X`` with the gram solver, the Gram blocks) and the
        residuals at ``result.params`` (which are ``result.resid``, bit for bit)."""
        if result.free_coefficients is not None:
            raise _penalised_covariance_error(cov_type, "such a fit has no covariance to add")
        _, E = fitted_and_residuals(self.Xk, self.data.offsets, self.Yk, result.params,
                                    self.mode, self.dev)
        return _covariance_added(result, cov_type, self.Xk, self.data.offsets, E, self.XtX,
                                 self._design_factor())
