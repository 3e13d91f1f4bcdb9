"""``LowRankGLS``: a scikit-learn style estimator around :func:`reprogls.gls.fit`.

It follows the scikit-learn estimator conventions without depending on scikit-learn:
hyper-parameters are stored unchanged by ``__init__`` (so :func:`sklearn.base.clone`,
``get_params`` and ``set_params`` work), ``fit`` returns ``self`` and sets attributes with
a trailing underscore, ``score`` is "higher is better".

The data layout is the estimator's own (K per-equation designs, not one 2-D ``X``), so the
estimator composes with ``clone``, parameter grids and hand-written cross-validation
loops, not with scikit-learn's ``Pipeline``/``cross_val_score`` (which slice one ``X``).
The numbers are exactly those of :func:`reprogls.gls.fit` with the same arguments (the
fit is the function itself), so the fingerprint is the same.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from .fit import fit as _fit
from .results import GLSResult
from .start import StartMismatchError

__all__ = ["LowRankGLS", "NotFittedError"]


class NotFittedError(ValueError, AttributeError):
    """``predict``/``score`` called before ``fit`` (like scikit-learn's exception of the
    same name, a ``ValueError`` and an ``AttributeError``)."""


class LowRankGLS:
    """Low-rank GLS / SUR: ``y_ij = x_ij^T beta_j + e_ij``, ``e_i ~ N(0, F F^T + diag(d))``.

    Parameters are those of :func:`reprogls.gls.fit` (see there for the algorithm):

    Parameters
    ----------
    rank : int, optional
        Number of factors k, ``0 <= k <= K - 1`` (1 when left out; 0: ``Sigma =
        diag(d)``, independent equations; with ``sigma``, ``F``'s column count).
    add_constant : bool
        Prepend an intercept to every equation without one.
    sigma : tuple (F, d), optional
        Fix ``Sigma = F F^T + diag(d)``: one GLS step.
    ridge : float
        L2 penalty on the coefficients.
    l1 : float or array_like (P,)
        L1 penalty on the coefficients (with ``ridge``: the elastic net).
    bounds : tuple (lo, hi), optional
        Box constraints on the coefficients.
    tol, max_iter, beta_solver, cg_tol, cg_max_iter, sigma_step, min_uniqueness, cov_type,
    mode, device
        As in :func:`reprogls.gls.fit`.
    warm_start : bool
        When true, each ``fit`` after the first starts from the previous fit's result
        (``start=result_`` of :func:`reprogls.gls.fit`: its coefficients and Sigma), as
        scikit-learn's ``warm_start``: e.g. going on, with a larger ``max_iter``, from
        a fit that did not converge. The data must be those of the same system (same
        equations, regressors and rank).

    Attributes
    ----------
    result_ : GLSResult
        The full result (summary, standard errors, fingerprint, ...).
    coef_ : list of ndarray
        ``coef_[j]`` is ``beta_j`` (p_j,), the coefficients of equation j.
    components_ : ndarray (k, K)
        Factor loadings ``F^T`` (scikit-learn ``FactorAnalysis`` layout).
    noise_variance_ : ndarray (K,)
        The specific variances ``d``.
    n_iter_ : int
        Alternating sweeps run.
    converged_ : bool
    loglike_ : float
        Log-likelihood of the training data at the estimate.
    n_equations_ : int
        K.

    Examples
    --------
    >>> from reprogls.gls import LowRankGLS, simulate_sur
    >>> Xs, Y, *_ = simulate_sur(400, 5, 3, 2, seed=0)
    >>> model = LowRankGLS(rank=2).fit(Xs, Y)
    >>> model.components_.shape
    (2, 5)
    """

    def __init__(self, rank: int | None = None, *, add_constant: bool = False, sigma=None,
                 ridge: float = 0.0, l1=0.0, bounds=None, tol: float = 1e-8,
                 max_iter: int = 200, beta_solver: str = "auto", cg_tol: float = 1e-10,
                 cg_max_iter: int = 500, sigma_step: str = "auto",
                 min_uniqueness: float = 1e-8, cov_type: str | None = None,
                 mode: str = "compensated", device: str = "auto", warm_start: bool = False):
        self.rank = rank
        self.add_constant = add_constant
        self.sigma = sigma
        self.ridge = ridge
        self.l1 = l1
        self.bounds = bounds
        self.tol = tol
        self.max_iter = max_iter
        self.beta_solver = beta_solver
        self.cg_tol = cg_tol
        self.cg_max_iter = cg_max_iter
        self.sigma_step = sigma_step
        self.min_uniqueness = min_uniqueness
        self.cov_type = cov_type
        self.mode = mode
        self.device = device
        self.warm_start = warm_start

    # --- scikit-learn parameter protocol ------------------------------------------------

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The hyper-parameters as a dict (``deep`` is accepted for compatibility; there
        are no nested estimators)."""
        return {name: getattr(self, name) for name in self._PARAM_NAMES}

    def set_params(self, **params: Any) -> LowRankGLS:
        """Set hyper-parameters by name; an unknown name raises ``ValueError``. Returns
        ``self``. Validation happens in :meth:`fit`, as in scikit-learn."""
        for name, value in params.items():
            if name not in self._PARAM_NAMES:
                raise ValueError(f"invalid parameter {name!r} for LowRankGLS; valid "
                                 f"parameters: {', '.join(self._PARAM_NAMES)}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = LowRankGLS().get_params()
        changed = [f"{k}={v!r}" for k, v in self.get_params().items()
                   if not _same(v, defaults[k])]
        return f"LowRankGLS({', '.join(changed)})"

    # --- fitting and prediction ----------------------------------------------------------

    def fit(self, Xs, Y=None) -> LowRankGLS:
        """Fit to K designs ``Xs`` (list of (N, p_j), or dict ``{name: (y, X_j)}``) and
        ``Y`` (N, K). Returns ``self``. With ``warm_start=True`` and an earlier fit, it
        starts from that fit's result."""
        params = self.get_params()
        start = getattr(self, "result_", None) if params.pop("warm_start") else None
        try:  # (the fit's warnings name the line that called this method: _caller.py)
            res = _fit(Xs, Y, **params, start=start)
        except StartMismatchError as err:
            if start is None:
                raise
            raise StartMismatchError(
                f"warm_start=True starts from the previous fit, which is not of this system "
                f"({err}); set warm_start=False to fit a new one") from None
        self.result_ = res
        self.coef_ = [res.params[o0:o1].copy()
                      for o0, o1 in zip(res.offsets[:-1], res.offsets[1:], strict=True)]
        self.components_ = np.ascontiguousarray(res.F.T)
        self.noise_variance_ = res.d.copy()
        self.n_iter_ = res.n_iter
        self.converged_ = res.converged
        self.loglike_ = res.llf
        self.n_equations_ = len(res.equation_names)
        return self

    def _fitted(self) -> GLSResult:
        res = getattr(self, "result_", None)
        if res is None:
            raise NotFittedError("this LowRankGLS instance is not fitted yet; call "
                                 "fit(Xs, Y) first")
        return res

    def predict(self, Xs) -> np.ndarray:
        """Fitted values ``U[i, j] = x_ij^T beta_j`` (N_new, K) for new designs with the
        fit's layout (with or without the added constant columns), as a list or as a
        dict by equation name (:meth:`.GLSResult.predict`)."""
        return self._fitted().predict(Xs)

    def score(self, Xs, Y=None) -> float:
        """Mean log-likelihood per row of ``(Xs, Y)`` (or of a dict ``{name: (y, X)}``)
        under the fitted model (higher is better, as scikit-learn
        ``FactorAnalysis.score``):

        .. math:: \\frac{1}{N} \\sum_i \\log \\mathcal{N}(y_i - \\hat y_i; 0, \\Sigma)

        It is ``-result_.score(Xs, Y)``."""
        return -self._fitted().score(Xs, Y)


#: The hyper-parameters, in the order of ``__init__`` (its signature is the one list).
LowRankGLS._PARAM_NAMES = tuple(inspect.signature(LowRankGLS.__init__).parameters)[1:]


def _same(a: Any, b: Any) -> bool:
    """Parameter equality for ``__repr__`` (arrays in ``sigma`` compare by identity)."""
    if a is b:
        return True
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False
