"""Choosing the rank k of ``Sigma = F F^T + diag(d)`` by an information criterion.

:func:`select_rank` fits the system at each candidate rank and keeps the one with the
smallest AIC or BIC,

.. math:: \\mathrm{AIC} = -2 \\log L + 2 q, \\qquad
          \\mathrm{BIC} = -2 \\log L + q \\log N,

with ``q`` the fit's free parameters (:attr:`.GLSResult.df_model`: P coefficients, K
variances and ``K k - k (k - 1) / 2`` loadings). The candidates are fitted without
standard errors (``cov_type="none"``), and the chosen one is then given the covariance
asked for (the bits of fitting it with that ``cov_type``, without the sweeps again);
every fit has the bits of the deterministic :func:`.fit` at its rank, so the table and
the choice are the same bits everywhere. The work of a fit that no rank changes
(validating and packing the data, the Gram blocks or ``X^T X``, their factors, the OLS
start) is done once for all the candidates (:class:`.fit.SharedFit`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .data import check_int, check_rank
from .fit import SharedFit, check_cov_type
from .results import GLSResult

__all__ = ["CRITERIA", "RankSelection", "select_rank"]

#: The criteria :func:`select_rank` minimises.
CRITERIA = ("aic", "bic")


@dataclass(frozen=True)
class RankSelection:
    """What :func:`select_rank` found.

    Attributes
    ----------
    criterion : {"aic", "bic"}
    ranks : tuple of int
        The candidates, ascending.
    llf, aic, bic : tuple of float
        Each candidate's log-likelihood and criteria (in the order of ``ranks``).
    df_model : tuple of int
        Each candidate's free parameters.
    converged : tuple of bool
    seconds : tuple of float
        Wall-clock time of each candidate's fit (not part of any bits), without the
        work the candidates share.
    setup_seconds : float
        Wall-clock time of the work the candidates share (:class:`.fit.SharedFit`).
    best_rank : int
        The candidate with the smallest criterion (the smallest rank among ties).
    result : GLSResult
        The fit at ``best_rank`` with the covariance asked for (``cov_type``).
    """

    criterion: str
    ranks: tuple[int, ...]
    llf: tuple[float, ...]
    aic: tuple[float, ...]
    bic: tuple[float, ...]
    df_model: tuple[int, ...]
    converged: tuple[bool, ...]
    seconds: tuple[float, ...] = field(compare=False)
    setup_seconds: float = field(compare=False)
    best_rank: int
    result: GLSResult = field(compare=False)

    def to_frame(self):
        """The table as a pandas ``DataFrame`` indexed by rank (pandas is optional)."""
        import pandas as pd

        return pd.DataFrame({"llf": self.llf, "df_model": self.df_model, "aic": self.aic,
                             "bic": self.bic, "converged": self.converged,
                             "seconds": self.seconds},
                            index=pd.Index(self.ranks, name="rank"))

    def __str__(self) -> str:
        lines = [f"Rank selection by {self.criterion.upper()}: best rank {self.best_rank}",
                 f"{'rank':>6} {'llf':>18} {'df':>7} {'AIC':>18} {'BIC':>18} "
                 f"{'converged':>9} {'seconds':>8}"]
        for i, k in enumerate(self.ranks):
            mark = " *" if k == self.best_rank else ""
            lines.append(f"{k:>6} {self.llf[i]:>18.6f} {self.df_model[i]:>7} "
                         f"{self.aic[i]:>18.6f} {self.bic[i]:>18.6f} "
                         f"{self.converged[i]!s:>9} {self.seconds[i]:>8.3f}{mark}")
        return "\n".join(lines)


def select_rank(Xs, Y=None, *, ranks, criterion: str = "bic", cov_type: str | None = None,
                **fit_kwargs: Any) -> RankSelection:
    """Fit the system at each rank in ``ranks`` and keep the one minimising ``criterion``.

    Parameters
    ----------
    Xs, Y
        As for :func:`.fit`.
    ranks : iterable of int
        The candidate ranks, each in ``0..K-1`` (duplicates are fitted once; ranks
        beyond Ledermann's bound warn as in :func:`.fit`). Rank 0, ``Sigma = diag(d)``
        (independent equations, least squares equation by equation), is the baseline:
        ``range(0, 6)`` asks whether common factors are there at all.
    criterion : {"bic", "aic"}
        ``-2 log L + q log N`` (consistent: picks the true rank as N grows) or
        ``-2 log L + 2 q``.
    cov_type : str, optional
        The chosen fit's covariance (:func:`.fit`'s default when left out); the
        candidates are fitted with ``cov_type="none"``.
    **fit_kwargs
        Passed to every :func:`.fit` (``add_constant``, ``tol``, ``mode``, ``device``,
        ...); not ``rank``, ``sigma``, ``l1``, ``bounds`` or ``start`` (a fixed Sigma
        has no rank to choose; the penalised fits count their degrees of freedom only
        approximately; a start belongs to one rank).

    Returns
    -------
    RankSelection
        The table, ``best_rank`` and ``result``, the fit at that rank.

    Raises
    ------
    ValueError
        An unknown ``criterion`` or ``cov_type``, an empty ``ranks``, or a keyword that
        does not apply (before any fit).
    TypeError
        A rank that is not an integer.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    check_cov_type(cov_type)
    refused = sorted({"rank", "sigma", "l1", "bounds", "start"} & fit_kwargs.keys())
    if refused:
        raise ValueError(f"select_rank chooses the rank of an estimated Sigma; drop "
                         f"{', '.join(refused)} (it does not apply here)")
    if isinstance(ranks, (str, bytes)) or not hasattr(ranks, "__iter__"):
        raise TypeError(f"ranks must be an iterable of integers, got {type(ranks).__name__}")
    candidates = sorted({check_int("ranks", k) for k in ranks})
    if not candidates:
        raise ValueError("ranks is empty; pass the candidate ranks, e.g. range(1, 6)")
    K = len(Xs)  # equations: the designs of a list, the entries of a dict
    outside = [k for k in candidates if not 0 <= k <= K - 1]
    if outside:  # before any fit, not after the candidates below them
        raise ValueError(f"ranks must be in 0..K-1 = 0..{K - 1} for K = {K} equations, "
                         f"got {outside}")
    started = time.perf_counter()
    system = SharedFit(Xs, Y, **fit_kwargs)
    cov_type = system.cov_type_for(cov_type)
    for k in candidates:  # (Ledermann's bound warns here, before any work)
        check_rank(k, system.K)
    system.set_up(candidates[-1])
    system.share_ols_moment = True
    setup_seconds = time.perf_counter() - started
    fits, seconds = [], []
    for k in candidates:
        started = time.perf_counter()
        fits.append(system.fit_rank(k, "none"))
        seconds.append(time.perf_counter() - started)
    scores = [getattr(r, criterion) for r in fits]
    best = min(range(len(candidates)), key=lambda i: (scores[i], candidates[i]))
    best_rank = candidates[best]
    # the covariance asked for, without fitting the chosen rank again: the bits of
    # fit(..., cov_type=cov_type) (the sweeps do not depend on it)
    chosen = (fits[best] if cov_type == "none" else
              system.with_covariance(fits[best], cov_type))
    return RankSelection(criterion=criterion, ranks=tuple(candidates),
                         llf=tuple(float(r.llf) for r in fits),
                         aic=tuple(float(r.aic) for r in fits),
                         bic=tuple(float(r.bic) for r in fits),
                         df_model=tuple(int(r.df_model) for r in fits),
                         converged=tuple(bool(r.converged) for r in fits),
                         seconds=tuple(seconds), setup_seconds=setup_seconds,
                         best_rank=best_rank, result=chosen)
