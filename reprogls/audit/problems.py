"""The canonical audit problems: small GLS fits whose fingerprints are committed.

``golden_fingerprints.json`` (beside this module, installed with the package) holds the
fingerprint (SHA-256 of params, F, d, llf and bse; :attr:`reprogls.gls.GLSResult
.fingerprint`) of each problem below, as computed when the file was written. Every
machine, thread count and device must reproduce them (DESIGN.md section 7): CI checks them
on a fresh machine, ``reprogls audit`` checks them wherever the package is installed, and
a kernel rewrite that changes one bit of a fit fails there. Regenerate only for a
deliberate change of the bits (a new CRO version or a changed algorithm), and say so in
the commit::

    python -m tests.golden --write

Together the problems take every branch that decides bits: the Gram and CG beta-steps,
both reduction modes, a diagonal Sigma (rank 0), the moment and residual Sigma-steps
(each by the whole eigenproblem, by subspace iteration and by the block Krylov method,
:func:`reprogls.gls.eigen.eigensolver_for`; and the turn from a stalled subspace
iteration to the whole space), plug-in and robust standard errors (for one design shared
by every equation too, in its Kronecker form), ridge, added constants, equations of
different widths, the L1-penalised and box-constrained beta-step on either operator
(:mod:`reprogls.gls.penalty`) and a design large enough (17000 x 160) for the kernels to
split their work across threads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from ..gls.simulate import simulate_sur

#: Where the committed fingerprints live.
GOLDEN_PATH = Path(__file__).with_name("golden_fingerprints.json")


def golden() -> dict[str, str]:
    """The committed fingerprint of every problem, by name."""
    return json.loads(GOLDEN_PATH.read_text())


def _named_unequal():
    """Named equations of different widths (1-3 regressors) with added constants."""
    Xs, Y, *_ = simulate_sur(500, 5, 3, 2, 21, False)
    return {f"eq{j}": (Y[:, j], Xs[j][:, : 1 + j % 3]) for j in range(5)}


def _unequal_shared():
    """Equations of 1-3 regressors from shared designs (a common base plus noise): the CG
    path's coupled preconditioner with zero-padded widths, plus constants."""
    Xs, Y, *_ = simulate_sur(900, 6, 3, 2, 23, True)
    return [X[:, : 1 + j % 3] for j, X in enumerate(Xs)], Y


def _small():
    return simulate_sur(700, 6, 3, 2, 11, True)[:2]


def _one_design():
    """One design for every equation (a VAR's layout): the plug-in covariance as
    ``Sigma (x) (X_0^T X_0)^-1`` (:func:`reprogls.gls.covariance
    .kronecker_inverse_normal_matrix`)."""
    Xs, Y, *_ = simulate_sur(700, 6, 3, 2, 29, True)
    return [Xs[0]] * len(Xs), Y


#: name -> (data builder returning ``(Xs, Y)``, fit keyword arguments)
PROBLEMS: dict[str, tuple[Callable[[], tuple], dict]] = {
    "gram-compensated": (_small, {"rank": 2, "beta_solver": "gram"}),
    "gram-plain": (_small, {"rank": 2, "beta_solver": "gram", "mode": "plain"}),
    "cg-compensated": (_small, {"rank": 2, "beta_solver": "cg"}),
    "cg-plain-residuals": (_small, {"rank": 2, "beta_solver": "cg",
                                    "sigma_step": "residuals", "mode": "plain"}),
    # K > 16 k: the Sigma-step's subspace iteration, on the moment matrix and on the
    # residuals (the other problems solve the whole eigenproblem, eigen.uses_full_space)
    "gram-subspace": (lambda: simulate_sur(1500, 24, 2, 1, 13, True)[:2],
                      {"rank": 1, "beta_solver": "gram"}),
    "residuals-subspace": (lambda: simulate_sur(1500, 24, 2, 1, 13, True)[:2],
                           {"rank": 1, "beta_solver": "gram", "sigma_step": "residuals",
                            "mode": "plain"}),
    # 16 k < K <= 32 k and K < 100, one factor in the data: the subspace iteration stalls
    # at its cap in the first sweep and the fit turns to the whole space
    # (eigen.eigensolver_for)
    "gram-stall-whole-space": (lambda: simulate_sur(1500, 40, 2, 1, 13, True)[:2],
                               {"rank": 2, "beta_solver": "gram"}),
    # K > 32 k: the thick-restarted block Krylov method (eigen.krylov_eigenpairs), at a
    # rank beyond the data's one factor, on the moment matrix and on the residuals
    "gram-krylov": (lambda: simulate_sur(1500, 70, 2, 1, 13, True)[:2],
                    {"rank": 2, "beta_solver": "gram"}),
    "residuals-krylov": (lambda: simulate_sur(1500, 70, 2, 1, 13, True)[:2],
                         {"rank": 2, "beta_solver": "gram", "sigma_step": "residuals",
                          "mode": "plain"}),
    "robust": (_small, {"rank": 2, "cov_type": "robust"}),
    "one-design": (_one_design, {"rank": 2, "beta_solver": "gram"}),
    "one-design-cg-robust": (_one_design, {"rank": 2, "beta_solver": "cg",
                                           "cov_type": "robust", "mode": "plain"}),
    "named-unequal-constant": (lambda: (_named_unequal(), None),
                               {"rank": 1, "add_constant": True, "ridge": 0.25}),
    "wide-cg": (lambda: simulate_sur(17000, 40, 4, 3, 5, True)[:2],
                {"rank": 3, "beta_solver": "cg", "cov_type": "none"}),
    "unequal-cg-constant": (_unequal_shared,
                            {"rank": 2, "beta_solver": "cg", "add_constant": True}),
    # rank 0: Sigma = diag(d), least squares equation by equation, robust SEs
    "diagonal-sigma": (_unequal_shared, {"rank": 0, "beta_solver": "cg",
                                         "cov_type": "robust", "add_constant": True}),
    # (exact zeros and coefficients at a bound in both)
    "penalised-gram": (_small, {"rank": 2, "beta_solver": "gram", "l1": 150.0,
                                "bounds": (-0.8, 0.8)}),
    "penalised-cg-plain": (_unequal_shared,
                           {"rank": 2, "beta_solver": "cg", "add_constant": True,
                            "l1": 150.0, "ridge": 5.0, "bounds": (-0.8, None),
                            "mode": "plain"}),
}


def check_names(names: Iterable[str] | None) -> list[str]:
    """``names`` (all problems when None) as a list; an unknown name is a ValueError."""
    chosen = list(PROBLEMS) if names is None else list(names)
    unknown = [n for n in chosen if n not in PROBLEMS]
    if unknown:
        raise ValueError(f"unknown audit problem(s) {unknown}; choose from {list(PROBLEMS)}")
    return chosen


def fit_problem(name: str, device: str = "cpu"):
    """Fit one problem on ``device`` and return its :class:`~reprogls.gls.GLSResult`."""
    from .. import gls

    build, kwargs = PROBLEMS[check_names([name])[0]]
    Xs, Y = build()
    return gls.fit(Xs, Y, **kwargs, device=device)


def fingerprints(names: Iterable[str] | None = None, device: str = "cpu") -> dict[str, str]:
    """Fit every problem (or those in ``names``) on ``device``; name -> fingerprint."""
    return {name: fit_problem(name, device).fingerprint for name in check_names(names)}
