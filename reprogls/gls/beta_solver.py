"""The beta-step of one fit: GLS given Sigma, or its L1 / box-penalised form.

:func:`.fit` alternates a Sigma-step and this step; :class:`BetaSolver` holds what the
step keeps between sweeps (the design on its device, the per-equation Gram blocks and
their Cholesky factors, the CG's coupling) and what the fit reports after the last one
(whether the last iterative solve reached ``cg_tol``, and the last dense Cholesky factor,
which the plug-in covariance reuses). The arithmetic is :mod:`.beta`'s (the normal
matrix or the fused normal operator, both CRO-1) and :mod:`.penalty`'s.
"""

from __future__ import annotations

import numpy as np

from ..kernels import gemv
from . import beta as beta_step
from .penalty import free_set_solver_cg, free_set_solver_dense, solve_penalised

__all__ = ["BetaSolver"]


class BetaSolver:
    """Solve for beta at a given Sigma, sweep after sweep of one fit.

    With ``A = X^T (Sigma^-1 kron I_N) X + ridge I`` (the GLS normal matrix: block
    ``(j, l)`` is ``(Sigma^-1)_{jl} X_j^T X_l``) and ``b = X^T vec(Y Sigma^-1)``, the step
    solves ``A beta = b``: with ``solver="gram"`` by the fixed-order Cholesky factor of
    ``A`` formed from ``X^T X`` (:func:`.beta.normal_matrix`, :func:`.beta.cholesky`),
    with ``"cg"`` by preconditioned conjugate gradients on the fused normal operator
    (:func:`.beta.solve_cg`; ``block_factors`` and ``coupling`` its preconditioner). With
    a ``penalty`` (L1 weights and / or box bounds, :func:`.penalty.make_penalty`) it
    minimises ``beta^T A beta / 2 - b^T beta`` plus the penalty instead
    (:func:`.penalty.solve_penalised`).

    Parameters
    ----------
    solver : {"gram", "cg"}
    X, offsets, Y
        The packed design and the responses, where the kernels read them (on a GPU, the
        copies there).
    XtX : ndarray or None
        ``X^T X`` (``solver="gram"``).
    grams, block_factors
        The per-equation Gram blocks ``X_j^T X_j`` and their Cholesky factors.
    coupling : float
        How far the CG's preconditioner couples the blocks (:mod:`.precondition`).
    penalty
        :func:`.penalty.make_penalty`'s description, or ``None``.
    ridge, mode, device, cg_tol, cg_max_iter
        As for :func:`.fit`.
    """

    def __init__(self, solver: str, X, offsets: np.ndarray, Y, XtX, grams, block_factors,
                 coupling: float, penalty, ridge: float, mode: str, device: str,
                 cg_tol: float, cg_max_iter: int):
        self.solver, self.X, self.offsets, self.Y, self.XtX = solver, X, offsets, Y, XtX
        self.grams, self.block_factors, self.coupling = grams, block_factors, coupling
        self.penalty, self.ridge, self.mode, self.device = penalty, ridge, mode, device
        self.cg_tol, self.cg_max_iter = cg_tol, cg_max_iter
        # the last dense Cholesky factor of A and the Sigma (its Woodbury factor) it was
        # formed at: the plug-in covariance at that Sigma inverts the same A
        self._cholesky: tuple | None = None
        #: the last penalised solve: its step bound ``lipschitz`` (the next starts from
        #: it), ``reached_tol``, ``stalled`` and ``residual``
        self.penalised: dict = {}
        #: the last CG solve (``solver="cg"``, no penalty): ``reached_tol``, ``residual``
        self.last_cg: dict = {}
        if penalty is not None:
            K = len(offsets) - 1
            self._eq_of_column = np.repeat(np.arange(K), np.diff(offsets))
            self._gram_diagonal = np.concatenate([np.diag(g) for g in grams])

    def __call__(self, factor, beta0: np.ndarray, b: np.ndarray | None = None,
                 reduction: float = 0.0, r0: np.ndarray | None = None):
        """GLS beta at the Sigma of the Woodbury ``factor``, from ``beta0``.

        ``b``: the right-hand side if already formed; ``r0``: the CG's residual at
        ``beta0``, likewise; ``reduction``: with CG, stop once the residual has fallen
        by this factor (0: solve to ``cg_tol``). Returns ``(beta, b, finished)``;
        ``finished`` is false when the CG stopped early by ``reduction`` (always true
        for the direct solver)."""
        b = (beta_step.rhs(self.X, self.offsets, self.Y, factor, self.device)
             if b is None else b)
        if self.penalty is not None:
            return self._penalised(factor, beta0, b, reduction)
        if self.solver == "gram":
            L = beta_step.cholesky(beta_step.normal_matrix(self.XtX, self.offsets, factor,
                                                           self.ridge), self.mode)
            self._cholesky = (factor, L)
            return beta_step.solve_dense(L, b, self.mode), b, True
        Sinv_diag = np.diag(beta_step.sigma_inverse(factor)).copy()
        solved = beta_step.solve_cg(self.X, self.offsets, factor, b, beta0,
                                    self.block_factors, Sinv_diag, self.ridge, self.cg_tol,
                                    self.cg_max_iter, self.device, reduction, r0,
                                    self.coupling)
        self.last_cg.update(reached_tol=solved.reached_tol, residual=solved.residual)
        return solved.beta, b, solved.finished

    def _penalised(self, factor, beta0, b, reduction):
        """The L1/box beta-step (:mod:`.penalty`) on the dense normal matrix (gram) or
        the fused operator (cg); the diagonal of A has the same bits either way."""
        mode, ridge = self.mode, self.ridge
        if self.solver == "gram":
            A = beta_step.normal_matrix(self.XtX, self.offsets, factor, ridge)
            diag_A = np.diag(A).copy()
            apply_A = lambda v: gemv(A, v, mode, "cpu")  # noqa: E731
            solve_free = free_set_solver_dense(A, mode)
        else:
            Sinv_diag = np.diag(beta_step.sigma_inverse(factor))
            with np.errstate(over="ignore"):  # (solve_penalised reports an overflow)
                diag_A = self._gram_diagonal * Sinv_diag[self._eq_of_column]
            diag_A = diag_A + ridge if ridge else diag_A
            apply_A = beta_step.normal_operator(self.X, self.offsets, factor, ridge,
                                                self.device)
            solve_free = free_set_solver_cg(apply_A, self.grams, self.offsets, Sinv_diag,
                                            ridge, mode, self.cg_tol, self.cg_max_iter)
        solved = solve_penalised(apply_A, b, diag_A, self.penalty, beta0, mode, self.cg_tol,
                                 self.cg_max_iter, reduction, self.penalised.get("lipschitz"),
                                 solve_free)
        self.penalised.update(lipschitz=solved.lipschitz, reached_tol=solved.reached_tol,
                              stalled=solved.stalled, residual=solved.residual)
        return solved.beta, b, solved.finished

    def cholesky_at(self, factor):
        """The Cholesky factor of ``A`` from the last dense solve if it was at the Sigma of
        ``factor`` (the same object), else ``None``."""
        if self._cholesky is not None and self._cholesky[0] is factor:
            return self._cholesky[1]
        return None

    def shortfalls(self, factor) -> list[str]:
        """Why the last solve (at the Sigma of ``factor``) falls short of ``cg_tol``, one
        sentence each for :func:`.fit`'s ``ConvergenceWarning`` (none when it reached
        it)."""
        notes = []
        cg_tol, cg_max_iter = self.cg_tol, self.cg_max_iter
        if self.last_cg and not self.last_cg["reached_tol"]:
            notes.append(f"the last beta-step's conjugate gradients stopped after "
                         f"cg_max_iter={cg_max_iter} iterations at a residual "
                         f"{self.last_cg['residual']:.2e} relative to ||b|| "
                         f"(cg_tol={cg_tol}); raise cg_max_iter, or pass "
                         "beta_solver='gram' (a direct solve)")
        if self.penalised and self.penalised["stalled"]:
            notes.append("the penalised beta-step stalled at a gradient-mapping norm "
                         f"{self.penalised['residual']:.2e} relative to ||b||, above "
                         f"cg_tol={cg_tol}: the rounding level of the fused normal operator "
                         "at this Sigma (a uniqueness near zero: min d = "
                         f"{float(np.min(factor.d)):.2e}); beta_solver='gram' (a fixed "
                         "normal matrix) solves it further")
        elif self.penalised and not self.penalised["reached_tol"]:
            notes.append(f"the penalised beta-step stopped after cg_max_iter={cg_max_iter} "
                         f"iterations at a gradient-mapping norm "
                         f"{self.penalised['residual']:.2e} relative to ||b|| "
                         f"(cg_tol={cg_tol}); raise cg_max_iter")
        return notes
