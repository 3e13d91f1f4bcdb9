"""Wald tests of linear restrictions ``R beta = q`` on a fit's coefficients.

The classical use of a SUR system: testing restrictions *across* equations (the same
price elasticity in every demand equation, say), which separate OLS fits cannot test
since they ignore the coefficients' covariance across equations. With the fit's
covariance ``V`` (plug-in or robust) and ``r`` restrictions,

.. math::

    W = (R \\hat\\beta - q)^T \\, (R V R^T)^{-1} \\, (R \\hat\\beta - q)
    \\;\\sim\\; \\chi^2_r \\quad \\text{asymptotically under } R\\beta = q,

the same normal-theory reference as :attr:`.results.GLSResult.pvalues` (for one
restriction ``beta_m = 0``, ``W`` is ``tvalues[m]**2`` and the p-values agree).

Arithmetic: ``R beta`` and ``R V R^T`` are CRO-1 dots (:func:`._dense.matmul`; the lower
triangle of ``R V R^T``, mirrored), ``R V R^T = L L^T`` the fixed-order Cholesky,
``z = L^{-1} (R beta - q)`` from its inverse factor, and ``W = z^T z`` one CRO-1 dot
(never negative, as a difference of two rounded quadratic forms could be): the
statistic's bits depend on the inputs only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..kernels import dot
from ..kernels.cpu import spd
from ._dense import matmul, matmul_t, symmetric_matmul

__all__ = ["WaldTest", "restriction_matrix", "wald_test"]


@dataclass(frozen=True)
class WaldTest:
    """The result of :meth:`.results.GLSResult.wald_test`.

    Attributes
    ----------
    statistic : float
        ``W = (R beta - q)^T (R V R^T)^-1 (R beta - q)``.
    df : int
        ``r``, the number of restrictions (rows of ``R``).
    pvalue : float
        ``P(chi2_r > W)``.
    R : ndarray (r, P)
        The restrictions, as a matrix over ``params``.
    q : ndarray (r,)
        Their values.
    """

    statistic: float
    df: int
    pvalue: float
    R: np.ndarray
    q: np.ndarray

    def __str__(self) -> str:
        return (f"Wald test of {self.df} restriction{'s' if self.df != 1 else ''}: "
                f"chi2({self.df}) = {self.statistic:.6g}, p-value = {self.pvalue:.4g}")


def _named_row(restriction: Mapping, names: list[tuple[str, str]],
               where: dict[tuple[str, str], list[int]]) -> np.ndarray:
    """One restriction given as ``{(equation, regressor): weight}`` as a row over the
    coefficients ``names``; ``where[name]``: the positions of that name."""
    row = np.zeros(len(names))
    seen: set[tuple[str, str]] = set()
    for key, weight in restriction.items():
        if not (isinstance(key, tuple) and len(key) == 2):
            raise ValueError(f"R: a restriction given as a dict is keyed by (equation, "
                             f"regressor) pairs, as to_frame()'s index; got the key {key!r}")
        key = (str(key[0]), str(key[1]))  # the fit keeps names as str (2020 -> '2020')
        if key not in where:
            regressors = [r for e, r in names if e == key[0]]
            hint = (f"equation {key[0]!r} has the regressors {regressors}" if regressors
                    else f"the equations are {list(dict.fromkeys(e for e, _ in names))}")
            raise ValueError(f"R: no coefficient {key!r} in this fit; {hint}")
        if isinstance(weight, bool) or not isinstance(weight, int | float | np.integer |
                                                      np.floating):
            raise TypeError(f"R: the weight of {key!r} must be a real number, got "
                            f"{type(weight).__name__}")
        if not np.isfinite(weight):
            raise ValueError(f"R: the weight of {key!r} must be finite, got {weight}")
        if key in seen:
            raise ValueError(f"R: the coefficient {key!r} is named twice in one restriction "
                             "(names compare as str); give it one weight")
        seen.add(key)
        if len(where[key]) > 1:
            raise ValueError(f"R: {key!r} names {len(where[key])} coefficients (the columns "
                             f"of equation {key[0]!r} repeat a name); give R as a matrix, or "
                             "fit with distinct column names")
        row[where[key][0]] = float(weight)
    return row


def restriction_matrix(R: Any, names: list[tuple[str, str]]) -> np.ndarray:
    """``R`` as an (r, P) float64 matrix over the ``P`` coefficients named ``names``.

    ``R``: an array_like (r, P), or (P,) for one restriction; or one restriction, or a
    list of them, each a dict ``{(equation, regressor): weight}`` keyed as
    :meth:`.results.GLSResult.to_frame`'s index (coefficients not named weigh 0; the
    names compare as ``str``, as the fit stores them: ``(2020, 1)`` is ``('2020',
    '1')``). A coefficient named twice in one restriction is an error.

    Raises
    ------
    TypeError
        Non-numeric entries or weights.
    ValueError
        A shape other than (r, P), non-finite entries, a name not in the fit, a row of
        zeros (it restricts nothing).
    """
    P = len(names)
    if isinstance(R, Mapping):
        R = [R]
    if isinstance(R, Sequence) and not isinstance(R, str | bytes) and len(R) and all(
            isinstance(row, Mapping) for row in R):
        where: dict[tuple[str, str], list[int]] = {}
        for m, name in enumerate(names):
            where.setdefault(name, []).append(m)
        matrix = np.array([_named_row(row, names, where) for row in R])
    else:
        try:
            matrix = np.array(R, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError("R must be a real matrix (r, P) over params, or dicts "
                            "{(equation, regressor): weight}") from None
        if matrix.ndim == 1:
            matrix = matrix[None, :]
        if matrix.ndim != 2 or matrix.shape[1] != P or matrix.shape[0] == 0:
            raise ValueError(f"R must have shape (r, P) = (r, {P}), one row per restriction "
                             f"over the {P} coefficients, got {np.shape(R)}")
        if not np.isfinite(matrix).all():
            raise ValueError("R must be finite")
    empty = np.flatnonzero(~matrix.any(axis=1))
    if empty.size:
        raise ValueError(f"R: restriction {int(empty[0])} has every weight 0 (it restricts "
                         "nothing); drop it")
    return matrix


def wald_test(params: np.ndarray, cov: np.ndarray, R: np.ndarray, q: Any,
              mode: str) -> WaldTest:
    """The Wald test of ``R beta = q`` (module docstring) for a validated (r, P) ``R``.

    Raises
    ------
    ValueError
        ``q`` not of shape (r,) or not finite; ``R V R^T`` not positive definite (the
        restrictions are linearly dependent, or restrict coefficients whose variance is
        zero).
    """
    from scipy.special import chdtrc  # scipy.stats.chi2.sf's function, without scipy.stats

    r = R.shape[0]
    try:
        q = np.zeros(r) if q is None else np.array(q, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise TypeError(f"q must be real numbers, one per restriction, got {q!r}") from None
    if q.shape != (r,):
        raise ValueError(f"q must hold one value per restriction, shape ({r},), got "
                         f"{q.shape}")
    if not np.isfinite(q).all():
        raise ValueError("q must be finite")
    compensated = mode == "compensated"
    gap = matmul(R, params[:, None], mode)[:, 0] - q
    M = symmetric_matmul(matmul(R, cov, mode), R.T, mode)
    L = np.empty_like(M)
    if spd.cholesky(M, compensated, L) >= 0:
        raise ValueError("R V R^T is not positive definite: the restrictions are linearly "
                         "dependent (drop the redundant ones) or restrict coefficients "
                         "whose variance is zero")
    Z = np.empty_like(L)
    spd.inverse_factor(L, compensated, Z)  # Z = (L^-1)^T
    whitened = matmul_t(Z, gap[:, None], mode)[:, 0]  # L^-1 (R beta - q)
    statistic = float(dot(whitened, whitened, mode, "cpu"))  # >= 0 by construction
    return WaldTest(statistic=statistic, df=r, pvalue=float(chdtrc(r, statistic)), R=R,
                    q=q)
