"""The Sigma-step: maximum-likelihood factor analysis of the residuals, on the audited path.

``Sigma = F F^T + diag(d)`` maximising the Gaussian likelihood for a residual second-moment
matrix ``S = E^T E / N``. For given uniquenesses ``d`` the optimal loadings have a closed
form (Lawley): with ``M = D^-1/2 S D^-1/2`` and its top-k eigenpairs
``(lambda_q, u_q)``,

.. math:: F = D^{1/2} U_k \\operatorname{diag}(\\sqrt{\\max(\\lambda_q - 1, 0)}),

so the likelihood is maximised over ``log d`` alone (:func:`profile` gives its value and
gradient, :func:`factor_analysis` runs a projected quasi-Newton method on it, as R's
``factanal`` and alsgls do). Iterating scikit-learn's closed-form update
``d <- diag(S - F F^T)`` instead is a fixed-length gradient step in ``log d`` and crawls
for thousands of steps in Heywood cases (a ``d_j`` heading for zero), which are common
with few equations.

The eigenpairs come from own deterministic solvers, in :mod:`.eigen`
(:func:`.eigen.eigensolver_for` picks one): subspace iteration warm-started from the
previous subspace (:func:`.eigen.top_eigenpairs`), a thick-restarted block Krylov method
likewise warm-started (:func:`.eigen.krylov_eigenpairs`: where a rank beyond the data's
factors crowds the top eigenvalues and K is large), or all K eigenpairs
(:func:`.eigen.full_space_eigenpairs`); modified Gram-Schmidt with CRO-1 dot products,
and Rayleigh-Ritz steps solved by a cyclic Jacobi method with a fixed sweep order or, in
the Krylov method, by Householder tridiagonalisation and implicit QL (plain IEEE
operations and CRO-1 dots).

The Sigma-step only needs ``diag(S)`` and products ``M Q`` with K x k blocks, so ``S``
can be given two ways (:class:`MomentMatrix`, :class:`ResidualMoment`):

* the K x K matrix ``S = E^T E / N`` (``O(N K^2)`` once per sweep, then ``O(K^2 k)`` per
  product): moderate K;
* the N x K residuals themselves, ``M Q = D^-1/2 E^T (E D^-1/2 Q) / N`` (``O(N K k)`` per
  product, no K x K matrix): large K, where forming S costs more than the products and
  its K^2 doubles more than the residuals.

The two give different bits (different reductions); each is deterministic on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..kernels.cpu import reductions as _cpu_red
from ..kernels.reference.elementary import log_scalar
from . import eigen
from ._dense import dot, gram, matmul, matmul_t, on_device
from ._resident import resident_moment_times
from ._subspace import profile_moment
from .eigen import EIGENSOLVERS, eigensolver_for

__all__ = ["MomentMatrix", "Profile", "ResidualMoment", "SigmaStep", "factor_analysis",
           "profile", "residual_moment", "uniqueness_bounds"]

#: Floor of the specific variances relative to the modelled variables' mean squares:
#: ``d_j >= D_FLOOR * V_j`` (scikit-learn's SMALL, made relative; :func:`uniqueness_bounds`).
D_FLOOR = 1e-12
#: log(2 pi) by the portable log (same bits everywhere).
LOG_2PI = log_scalar(2.0 * math.pi)


def residual_moment(E: np.ndarray, mode: str, device: str = "cpu") -> np.ndarray:
    """``S = E^T E / N`` (K x K), symmetric bitwise.

    Entry ``[b, a]`` is the CRO-1 reduction over rows of ``fl(E[i, b] * E[i, a])`` (the
    bits of ``gemv_t(E, E[:, a])[b]``), then one division by N: :func:`._dense.gram`,
    one pass over E on the CPU.
    """
    return gram(E, mode, device) / E.shape[0]


class MomentMatrix:
    """``S`` given as the K x K matrix (e.g. :func:`residual_moment`)."""

    def __init__(self, S: np.ndarray, mode: str):
        self.S, self.mode = np.asarray(S, dtype=np.float64), mode
        self.size = self.S.shape[0]

    def diagonal(self) -> np.ndarray:
        """``diag(S)``."""
        return np.ascontiguousarray(np.diag(self.S))

    def scaled(self, sqrt_d: np.ndarray) -> np.ndarray:
        """``M = D^-1/2 S D^-1/2`` itself, formed entry by entry as
        ``(S[a, b] / sqrt_d[a]) / sqrt_d[b]`` (:func:`.eigen.top_eigenpairs` takes one CRO-1 dot
        per entry of ``M Q``)."""
        return (self.S / sqrt_d[:, None]) / sqrt_d[None, :]


class ResidualMoment:
    """``S = E^T E / N`` given by the N x K residuals ``E`` (never formed).

    On a GPU (``device`` other than ``"cpu"``) E is read there (copied once if it is a
    NumPy array; a GPU fit's residuals are there already) and every product is a
    ``gemv``/``gemv_t`` per column of Q: the bits of the CPU's one-pass
    :func:`._dense.matmul`/:func:`._dense.matmul_t` (their columns are those calls).
    """

    def __init__(self, E, mode: str, device: str = "cpu"):
        self.device, self.mode = str(device), mode
        # the E the kernels read: C-contiguous float64, on the device
        self.E = (np.ascontiguousarray(E, dtype=np.float64) if self.device == "cpu"
                  else on_device(E, self.device))
        self.nobs, self.size = self.E.shape
        self._diagonal = None
        #: vectors multiplied so far (the columns of every ``Q`` given to a product)
        self.vectors = 0

    def diagonal(self) -> np.ndarray:
        """``diag(S)[j]`` = CRO-1 sum over rows of ``E[i, j]^2``, divided by N (the bits of
        ``residual_moment(E)``'s diagonal)."""
        from ..kernels import sur_rmatvec

        if self._diagonal is None:
            one_per_column = np.arange(self.size + 1, dtype=np.int64)
            self._diagonal = sur_rmatvec(self.E, one_per_column, self.E,
                                         self.mode, self.device) / self.nobs
        return self._diagonal

    def scaled(self, sqrt_d: np.ndarray):
        """``M = D^-1/2 S D^-1/2`` as the function
        ``Q -> M Q = ((E^T (E (Q / sqrt_d))) / N) / sqrt_d``: two passes over E, each a
        CRO-1 ``gemv``/``gemv_t`` per column of Q, ``O(N K k)`` (on a GPU ``E V`` stays
        there: :func:`._resident.resident_moment_times`)."""
        def product(Q):
            self.vectors += Q.shape[1]
            V = Q / sqrt_d[:, None]
            if self.device == "cpu":
                EtEV = matmul_t(self.E, matmul(self.E, V, self.mode), self.mode)
            else:
                EtEV = resident_moment_times(self.E, V, self.mode, self.device)
            return (EtEV / self.nobs) / sqrt_d[:, None]
        return product


@dataclass
class Profile:
    """The likelihood profiled over ``F`` at the uniquenesses ``d`` (module docstring).

    ``F`` is the closed-form optimum for this ``d``; ``Q`` its eigenvectors (the warm start
    of the next eigen-solve; unused where the whole eigenproblem is solved,
    :func:`.eigen.uses_full_space`); ``ll`` the log-likelihood of ``(F, d)``; ``grad`` the
    gradient of the negative log-likelihood per row in ``z = log d``; ``update`` the
    closed-form update ``diag(S - F F^T)`` (``grad = (1 - update / d) / 2``);
    ``converged`` false where the subspace iteration stopped at its iteration cap
    (inexact eigenpairs; the Sigma-step then turns to the whole space).
    """

    d: np.ndarray
    F: np.ndarray
    Q: np.ndarray
    ll: float
    grad: np.ndarray
    update: np.ndarray
    converged: bool = True


def profile(S, N: int, mode: str, d: np.ndarray, Q: np.ndarray | None,
            rank: int | None = None, krylov: bool = False) -> Profile:
    """Profile the likelihood at ``d`` (module docstring).

    With the top-k eigenpairs ``(lambda_q, u_q)`` of ``M = D^-1/2 S D^-1/2`` (``k =
    rank``, by default ``Q``'s columns; by subspace iteration warm-started from ``Q``
    (:func:`.eigen.top_eigenpairs`; with ``krylov``, the restarted block Krylov
    method, :func:`.eigen.krylov_eigenpairs`), or, with ``Q=None`` for a moment matrix,
    from the whole eigenproblem, :func:`.eigen.full_space_eigenpairs`) and
    ``F = D^1/2 U diag(sqrt(max(lambda - 1, 0)))``:

    .. math:: t_j = S_{jj} - (F F^T)_{jj}, \\qquad
              \\frac{\\partial\\, \\mathrm{nll}/N}{\\partial \\log d_j}
              = \\tfrac12 (1 - t_j / d_j),

    .. math:: \\log L = -\\tfrac N2 \\Big(K \\log 2\\pi + \\sum_j \\log d_j
              + \\sum_{\\lambda_q > 1} \\log \\lambda_q + \\sum_j t_j / d_j\\Big)

    (the gradient by the envelope theorem, ``F`` being optimal for ``d``; the trace
    ``tr(Sigma^-1 S) = sum_j S_jj / d_j - sum_q (lambda_q - 1)`` written as
    ``sum_j t_j / d_j``, which has no cancellation between two large sums when a ``d_j`` is
    small). CRO-1 sums, the portable ``log``; ``(F F^T)_jj`` is the CRO-1 dot of row j
    with itself.

    A moment matrix with ``K^2 k <= eigen.COMPILED_MAX_WORK`` (for the whole eigenproblem
    ``K^3``, and ``K < eigen.LARGE_JACOBI_MIN``) is profiled in one compiled call
    (:func:`._subspace.profile_moment`, the same steps and bits); the factor analysis
    of an S-size fit makes ~27 of these evaluations.
    """
    from ..kernels.cpu import elementwise as _cpu_ew

    full = Q is None
    if full and (rank is None or not isinstance(S, MomentMatrix)):
        raise ValueError("Q=None (the whole eigenproblem) needs a MomentMatrix S and the "
                         "rank")
    rank = Q.shape[1] if rank is None else int(rank)
    work = S.size ** 3 if full else S.size ** 2 * Q.shape[1]
    compiled = (work <= eigen.COMPILED_MAX_WORK
                and not (full and S.size >= eigen.LARGE_JACOBI_MIN))
    if isinstance(S, MomentMatrix) and compiled and not krylov:
        Q0 = np.eye(S.size, rank) if full else np.ascontiguousarray(Q, dtype=np.float64)
        F, Q, ll, grad, update, converged = profile_moment(
            np.ascontiguousarray(S.S), S.diagonal(), float(N),
            np.ascontiguousarray(d, dtype=np.float64), Q0, rank, full,
            mode == "compensated", eigen.EIGEN_MAX_ITER, eigen.EIGEN_TOL, eigen.JACOBI_SWEEPS,
            eigen.NEGLIGIBLE, LOG_2PI)
        return Profile(d=d, F=F, Q=Q, ll=ll, grad=grad, update=update,
                       converged=bool(converged))
    sqrt_d = np.sqrt(d)
    if full:
        lam, Q = eigen.full_space_eigenpairs(S.scaled(sqrt_d))
        lam_k, Q_k = lam[:rank], np.ascontiguousarray(Q[:, :rank])
        converged = True
    else:
        solve = eigen.krylov_eigenpairs if krylov else eigen.top_eigenpairs
        lam, Q, converged = solve(S.scaled(sqrt_d), Q, mode)
        lam_k, Q_k = lam, Q
    gain = np.maximum(lam_k - 1.0, 0.0)
    F = (sqrt_d[:, None] * Q_k) * np.sqrt(gain)[None, :]
    update = S.diagonal() - matmul(F * F, np.ones((F.shape[1], 1)), mode)[:, 0]
    ratio = update / d
    compensated = mode == "compensated"
    log_terms = (_cpu_red.cro_sum(_cpu_ew.log(d), compensated)
                 + _cpu_red.cro_sum(_cpu_ew.log(lam_k[lam_k > 1.0]), compensated))
    nll2 = (S.size * LOG_2PI + log_terms) + _cpu_red.cro_sum(ratio, compensated)
    return Profile(d=d, F=F, Q=Q_k, ll=-0.5 * N * nll2, grad=0.5 * (1.0 - ratio),
                   update=update, converged=converged)


#: Projected-gradient size (in ``log d``, dimensionless) at which the Sigma-step stops.
GRAD_TOL = 1e-9
#: Curvature pairs kept by the quasi-Newton Sigma-step.
MEMORY = 8
#: Sufficient-decrease constant (Armijo) and most step halvings of the line search.
ARMIJO, MAX_HALVINGS = 1e-4, 30
#: The Sigma-step takes closed-form steps while each gains at most this fraction of the
#: log-likelihood the previous one gained, quasi-Newton steps after the first that gains
#: more.
FIXED_POINT_RATE = 0.25


def _direction(grad, scale, free, pairs, mode):
    """L-BFGS direction ``-H g`` on the free coordinates (two-loop recursion with CRO-1
    dots), zero on the bound ones. The initial matrix is the diagonal ``scale``: the
    closed-form update's own step per unit of gradient, so that without curvature pairs
    the direction is that update (``log(update / d) = -scale g``)."""
    q = np.where(free, grad, 0.0)
    alphas = []
    for s, y, rho in reversed(pairs):
        a = rho * dot(s, q, mode)
        q = q - a * y
        alphas.append(a)
    q = scale * q
    for (s, y, rho), a in zip(pairs, reversed(alphas), strict=True):
        q = q + s * (a - rho * dot(y, q, mode))
    return np.where(free, -q, 0.0)


def _update_scale(at: Profile, lower: np.ndarray) -> np.ndarray:
    """``-log(update / d) / g`` per coordinate (2 where ``g`` is 0): how far the
    closed-form update ``d <- max(diag(S - F F^T), lower)`` moves ``log d`` per unit of
    gradient (with ``g = (1 - update / d) / 2`` it is ``-log(1 - 2 g) / g > 0``)."""
    from ..kernels.cpu import elementwise as _cpu_ew

    step = _cpu_ew.log(np.maximum(at.update, lower) / at.d)
    moving = (at.grad != 0.0) & (step * at.grad < 0.0)
    return np.where(moving, -step / np.where(moving, at.grad, 1.0), 2.0)


def uniqueness_bounds(diag_S: np.ndarray, min_uniqueness: float,
                      y_moments: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, hi)``: the box ``lower_j <= d_j <= hi_j`` of the uniquenesses,

    ``lower_j = max(min_uniqueness S_jj, D_FLOOR V_j)``, ``hi_j = max(S_jj, D_FLOOR V_j)``,

    with ``V = y_moments``, the mean squares of the ``y_j`` (``diag(S)`` by default).
    Both bounds scale with each equation's units, so the fit is equivariant to them
    (``y_j -> c y_j`` gives ``d_j -> c^2 d_j``). An absolute floor of ``1e-12``
    (scikit-learn's) held every ``d_j`` of data in small units (residual variances near
    1e-13) above its maximum-likelihood value: 5% off in beta and 10x in ``d`` for
    ``1e-6 Y``. Measured against ``y_j`` rather than its residuals, the floor still
    stops an equation that its regressors fit exactly (``S_jj`` at rounding level) from
    driving ``d_j`` down sweep after sweep (the likelihood is unbounded there):
    ``d_j`` stays at ``D_FLOOR V_j``. Where ``V_j`` is 0 too (``y_j`` all zeros) the
    floor is ``D_FLOOR`` times the largest ``V`` (``D_FLOOR`` when all are 0).
    """
    V = diag_S if y_moments is None else np.asarray(y_moments, dtype=np.float64)
    largest = float(np.max(V)) if V.size else 0.0
    floor = np.where(V > 0.0, D_FLOOR * V, D_FLOOR * largest if largest > 0.0 else D_FLOOR)
    return np.maximum(min_uniqueness * diag_S, floor), np.maximum(diag_S, floor)


class SigmaStep(NamedTuple):
    """What :func:`factor_analysis` returns: the loadings ``F`` (K x k), uniquenesses
    ``d``, the log-likelihood, the likelihood evaluations made, and the eigen-solver it
    ended on, one of :data:`.eigen.EIGENSOLVERS` (:func:`.eigen.eigensolver_for`; the
    next sweep of a fit starts on it where it is not the subspace iteration)."""

    F: np.ndarray
    d: np.ndarray
    loglik: float
    evaluations: int
    eigensolver: str


def _as_moment_matrix(S, mode: str):
    """``S`` as a :class:`MomentMatrix`: a :class:`ResidualMoment` formed once, as
    :func:`residual_moment` forms it (the whole eigenproblem needs ``M`` itself, not its
    products with the K unit vectors in every evaluation, two passes over E each)."""
    if isinstance(S, ResidualMoment):
        return MomentMatrix(residual_moment(S.E, mode, S.device), mode)
    return S



def factor_analysis(S, N: int, rank: int, mode: str, F0=None, d0=None,
                    max_iter: int = 1000, tol: float = 1e-10,
                    min_uniqueness: float = 1e-8, y_moments: np.ndarray | None = None,
                    eigensolver: str | None = None) -> SigmaStep:
    """ML factor analysis of ``S``: ``Sigma = F F^T + diag(d)`` maximising the likelihood.

    ``F`` has a closed form for given ``d`` (:func:`profile`), so the likelihood is
    maximised over ``z = log d`` alone, inside the box
    ``max(min_uniqueness S_jj, 1e-12 V_j) <= d_j <= S_jj`` (:func:`uniqueness_bounds`), by
    a projected quasi-Newton
    method (L-BFGS with the bound coordinates held, a backtracking Armijo line search along
    the projected path) -- R's ``factanal`` and alsgls take the same route with L-BFGS-B.
    Iterating the closed-form update ``d <- diag(S - F F^T)`` alone (scikit-learn's
    ``FactorAnalysis``) is a scaled gradient step in ``z`` and crawls for thousands of
    steps when a uniqueness heads for its bound (a Heywood case) or the likelihood is flat
    (a rank near Ledermann's bound). Where it converges fast it beats the line-searched
    quasi-Newton steps, so the method starts with closed-form steps (the quasi-Newton
    direction with no curvature pairs is that step) and switches to quasi-Newton for the
    rest of the call at the first step that gains more than a quarter of what the previous
    one gained; the initial inverse Hessian is the closed-form step's own diagonal scaling.
    (Evaluations, well-conditioned S, M and K = 2000 fits: as many as the closed-form
    iteration, +-1; Heywood cases: 20-130 instead of thousands.)

    Each evaluation needs the top ``k`` eigenpairs of ``D^-1/2 S D^-1/2``
    (:func:`.eigen.eigensolver_for`: a rank beyond the data's factors crowds the top
    eigenvalues and stalls the subspace iteration): with ``16 k >= K`` (below K = 250 or
    ``K = 10 k``: :func:`.eigen.uses_full_space`) all K of them by Jacobi rotations on ``M`` itself
    (:func:`.eigen.full_space_eigenpairs`; given the residuals, ``S`` is then formed
    once, as :func:`residual_moment` forms it, the same bits as a moment matrix); with
    ``K > 32 k``, or ``K > 16 k`` and ``K >= 100``, or ``K >= 10 k`` and ``K >= 250``,
    by the thick-restarted block Krylov
    method warm-started from the previous evaluation's vectors
    (:func:`.eigen.krylov_eigenpairs`); otherwise (``16 k < K <= 32 k`` below K = 100) by
    subspace iteration warm-started likewise, until one stops at its cap: that
    evaluation is made again on the whole space, which every later one uses.

    Every number is computed with CRO-1 dots and sums, the portable ``log``/``exp`` and
    elementwise IEEE operations, so the path and the bits are the same everywhere.

    Parameters
    ----------
    S : ndarray (K, K), MomentMatrix or ResidualMoment
        The residual second moments ``E^T E / N``, as a matrix or through the residuals.
    N : int
        Observations behind ``S``.
    rank : int
        Factors k.
    mode : {"compensated", "plain"}
    F0, d0 : ndarray, optional
        Warm start (the previous sweep of the fit); else ``d = diag(S)`` and the leading
        unit vectors.
    max_iter : int
        Most likelihood evaluations (each one eigen-solve; the one whose subspace
        iteration stalls and is made again on the whole space counts once).
    tol : float
        Stop when an accepted step changes the log-likelihood by at most ``tol``
        relative (to ``max(|ll|, 1e-3 N K)``: ``ll`` is 0 at some units of the data), or
        the projected gradient is at most ``1e-9`` in every coordinate.
    min_uniqueness : float
        Lower bound of ``d_j / S_jj`` (R's ``factanal`` uses 0.005).
    y_moments : ndarray (K,), optional
        The mean squares ``V_j`` of the modelled variables, for the floor
        ``d_j >= 1e-12 V_j`` (:func:`uniqueness_bounds`; ``diag(S)`` by default).
    eigensolver : {"subspace", "krylov", "whole"}, optional
        The eigen-solver of every evaluation (:data:`.eigen.EIGENSOLVERS`); ``None``
        (default): by :func:`.eigen.eigensolver_for`, as above.

    Returns
    -------
    SigmaStep
        ``(F, d, loglik, evaluations, eigensolver)``.
    """
    from ..kernels.cpu import elementwise as _cpu_ew

    if not 0.0 <= min_uniqueness < 1.0:
        raise ValueError(f"min_uniqueness must be in [0, 1), got {min_uniqueness}")
    if eigensolver is not None and eigensolver not in EIGENSOLVERS:
        raise ValueError(f"eigensolver must be one of {EIGENSOLVERS} or None, got "
                         f"{eigensolver!r}")
    if isinstance(S, np.ndarray):
        S = MomentMatrix(S, mode)
    K = S.size
    solver = eigensolver or eigensolver_for(K, rank)
    may_switch = eigensolver is None and solver == "subspace"
    if solver == "whole":
        S = _as_moment_matrix(S, mode)
    lower, hi = uniqueness_bounds(S.diagonal(), min_uniqueness, y_moments)
    z_lo = _cpu_ew.log(lower / hi)

    def at(z, Q):
        nonlocal solver, S
        d = hi * _cpu_ew.exp(z)
        if solver == "subspace":
            sub = profile(S, N, mode, d, Q, rank)
            if sub.converged or not may_switch:
                return sub
            solver, S = "whole", _as_moment_matrix(S, mode)  # stalled: the whole space
        if solver == "whole":
            return profile(S, N, mode, d, None, rank)
        return profile(S, N, mode, d, Q, rank, krylov=True)

    d = np.array(d0, dtype=np.float64) if d0 is not None else hi
    z = np.clip(_cpu_ew.log(np.maximum(d, lower) / hi), z_lo, 0.0)
    if F0 is not None:
        Q = np.array(F0, dtype=np.float64) / np.sqrt(hi * _cpu_ew.exp(z))[:, None]
    else:
        Q = np.eye(K, rank)
    cur = at(z, Q)
    evaluations = 1
    pairs: list[tuple[np.ndarray, np.ndarray, float]] = []
    quasi_newton, last_change = False, np.inf
    while evaluations < max_iter:
        g = cur.grad
        free = ~(((z <= z_lo) & (g > 0.0)) | ((z >= 0.0) & (g < 0.0)))
        if not np.any(np.abs(np.where(free, g, 0.0)) > GRAD_TOL):
            break
        scale = _update_scale(cur, lower)
        p = _direction(g, scale, free, pairs if quasi_newton else [], mode)
        if not dot(g, p, mode) < 0.0:  # not a descent direction: restart the memory
            pairs = []
            p = _direction(g, scale, free, pairs, mode)
        step, new = 1.0, None
        for _ in range(MAX_HALVINGS):
            z_new = np.clip(z + step * p, z_lo, 0.0)
            trial = at(z_new, cur.Q)
            evaluations += 1
            # Armijo on -ll / N along the projected path
            if -trial.ll / N <= -cur.ll / N + ARMIJO * dot(g, z_new - z, mode):
                new = trial
                break
            if evaluations >= max_iter:
                break
            step *= 0.5
        if new is None:
            if quasi_newton and pairs:  # a stale curvature model: retry without it
                pairs = []
                continue
            break
        s, y = z_new - z, new.grad - g
        sy = dot(s, y, mode)
        if sy > 1e-12 * dot(y, y, mode):
            pairs = [*pairs[-(MEMORY - 1):], (s, y, 1.0 / sy)]
        change = abs(new.ll - cur.ll)
        # closed-form steps while each gains at most a quarter of the previous gain (fast
        # linear convergence, where they need fewer evaluations than the line-searched
        # quasi-Newton steps); quasi-Newton from the first slower one on
        quasi_newton = quasi_newton or change > FIXED_POINT_RATE * last_change
        last_change = change
        z, cur = z_new, new
        # (relative to |ll|, floored at 1e-3 N K: the zero of ll depends on the units of
        # the data, and relative to |ll| alone the steps within |ll| < 1e-4 N K of it
        # took 2-15x the evaluations, 14 -> 214 at ll = 0 (nineteenth session, N = 2000,
        # K = 20; now 16 throughout). The fit's rule is floored at N K; that floor here
        # changes the wide-cg golden fingerprint, 1e-3 N K changes no golden bits.)
        if change <= tol * max(abs(cur.ll), 1e-3 * N * K):
            break
    return SigmaStep(cur.F, cur.d, cur.ll, evaluations, solver)
