"""Warm starts of :func:`reprogls.gls.fit`: the ``start=`` argument.

A fit alternates a beta-step and a Sigma-step from the OLS coefficients. Given a start
``(params, F, d)`` -- the result of a fit of the same system -- it begins instead at
``params``: the first sweep's residuals are ``Y - X params`` and its factor analysis
starts from ``(F, d)``, as every later sweep starts from the one before. Uses: going on
from a fit that ran out of ``max_iter`` sweeps (or stopped at a loose ``tol``), and
scikit-learn's ``warm_start`` (:class:`.estimator.LowRankGLS`). The result is
deterministic in the start's bits as in the data's; it reaches the same optimum to
``tol`` (in other bits than a fit from OLS).

A start does not make a coarse regularisation path cheaper (thirtieth session, S
data, ``l1`` = 1000, 300, 100, 30, 10): each ``l1`` from the previous one's result took
44, 9, 3, 3, 3 sweeps, from OLS 44, 4, 4, 3, 3 (in increasing order 3, 3, 3, 4, 44
against 3, 3, 4, 4, 44). A strong penalty leaves the residuals, and so Sigma, far from
those of a weaker one, and the OLS start is as close.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..kernels.devices import is_cupy_array, to_host

__all__ = ["Start", "StartMismatchError", "check_start"]


class StartMismatchError(ValueError):
    """A warm start whose shapes (coefficients, equations or rank) are not those of the
    system being fitted."""


@dataclass(frozen=True)
class Start:
    """A validated warm start: ``params`` (P,); ``F`` (K, k) and ``d`` (K,), or both
    None (coefficients only)."""

    params: np.ndarray
    F: np.ndarray | None
    d: np.ndarray | None


def _finite_array(name: str, value: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``value`` as a new float64 host array (CuPy arrays are copied to the host)."""
    if is_cupy_array(value):
        value = to_host(value)
    try:
        array = np.array(value, dtype=np.float64)  # a copy: the caller's is never touched
    except (TypeError, ValueError):
        raise TypeError(f"start's {name} must be a real array of shape {shape} ({what}), "
                        f"got {type(value).__name__}") from None
    if array.shape != shape:
        raise StartMismatchError(f"start's {name} must have shape {shape} ({what}), got "
                         f"{array.shape}; a start must come from a fit of the same system "
                         "(the same equations, regressors and add_constant)")
    if not np.isfinite(array).all():
        raise ValueError(f"start's {name} has non-finite values")
    return array


def check_start(start: Any, P: int, K: int, rank: int | None) -> Start | None:
    """Validate ``start``: a :class:`.results.GLSResult` or a tuple ``(params, F, d)``
    (``F`` and ``d`` may both be None: coefficients only), for ``P`` coefficients, ``K``
    equations and ``rank`` factors (None: Sigma is fixed by ``sigma=``, and the start's
    ``F`` and ``d`` are not used).

    Raises
    ------
    TypeError
        ``start`` is neither a result nor a triple, or holds non-numeric arrays.
    ValueError
        Shapes that do not fit the system, non-finite values, ``d`` not positive, or
        ``F`` with another rank than the fit's.
    """
    if start is None:
        return None
    from .results import GLSResult

    if isinstance(start, GLSResult):
        params, F, d = start.params, start.F, start.d
    elif isinstance(start, tuple | list) and len(start) == 3:
        params, F, d = start
    else:
        raise TypeError("start must be a GLSResult (a fit of the same system) or a triple "
                        f"(params, F, d), got {type(start).__name__}")
    params = _finite_array("params", params, (P,), "one value per coefficient")
    if rank is None or (F is None and d is None):
        return Start(params, None, None)
    if F is None or d is None:
        raise ValueError("start's F and d go together: give both, or neither (None, None) "
                         "to start the coefficients only")
    F_shape = np.shape(F)
    if len(F_shape) == 2 and F_shape[0] == K and F_shape[1] != rank:
        raise StartMismatchError(f"start's F has {F_shape[1]} factors, the fit rank={rank}: "
                                 "start from a fit of the same rank, or give (params, "
                                 "None, None)")
    F = _finite_array("F", F, (K, rank), "the loadings, K x rank")
    d = _finite_array("d", d, (K,), "one uniqueness per equation")
    if not (d > 0).all():
        raise ValueError("start's d must be positive (the diagonal of Sigma - F F^T)")
    return Start(params, F, d)
