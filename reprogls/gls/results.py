"""``GLSResult``: estimates, inference and a statsmodels-style summary."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from .. import __version__
from ..kernels.reference import CRO_VERSION
from .summary import EquationTable, Summary

__all__ = ["GLSResult"]


@dataclass
class GLSResult:
    """Result of :func:`reprogls.gls.fit`.

    Attributes follow statsmodels/linearmodels: ``params`` (P,), ``bse``, ``tvalues``,
    ``pvalues`` (normal reference distribution), ``llf``, ``aic``, ``bic``, ``nobs``,
    ``resid`` and ``fittedvalues`` (N, K), the covariance factors ``F`` (K, k) and ``d``
    (K,), ``n_iter``, ``converged``, ``device``, ``fingerprint``, and ``llf_history``:
    the log-likelihood after each sweep, in order (the convergence path; with ``sigma``
    fixed, the one GLS step's). ``llf`` is the last entry, except where the last sweep's
    CG had stopped early and was finished at the final Sigma before the fit returned.
    ``llf`` is the log-likelihood without the penalty; ``penalty`` names the penalty
    (``"l1=50, ridge=10, bounds"``; ``""`` for none).
    """

    params: np.ndarray
    cov: np.ndarray | None  # None with cov_type="none"
    F: np.ndarray
    d: np.ndarray
    llf: float
    nobs: int
    resid: np.ndarray
    fittedvalues: np.ndarray
    n_iter: int
    converged: bool
    device: str
    mode: str
    offsets: np.ndarray
    equation_names: list[str]
    regressor_names: list[list[str]]
    cov_type: str = "plugin"
    added_constant: tuple[bool, ...] = ()  # per equation: add_constant prepended 'const'
    llf_history: tuple[float, ...] = ()
    penalty: str = ""  # e.g. "l1=50, ridge=10, bounds" ("" for none); in the summary
    # with l1 / bounds: the coefficients not set to zero by the L1 term nor held at a
    # bound (the degrees of freedom they count in aic / bic); None: all P
    free_coefficients: int | None = None
    # sigma=(F, d) given by the caller: Sigma was not estimated, so its parameters are
    # not counted in df_model (aic / bic)
    sigma_fixed: bool = False
    # per equation, whether it has an intercept (given or added): R^2 centred, else
    # uncentred, as statsmodels and linearmodels; empty (unknown): centred
    has_constant: tuple[bool, ...] = ()
    # per equation, whether the regressor names came with the data (pandas columns):
    # predict / score then refuse a pandas design whose columns are other names
    named_regressors: tuple[bool, ...] = ()
    # whether the equation names came with the data (dict keys, a Y frame's columns):
    # score then refuses a Y frame whose columns are other names
    named_equations: bool = False
    # the fit's ridge (its normal matrix A = X^T (Sigma^-1 kron I) X + ridge I)
    ridge: float = 0.0
    versions: dict = field(default_factory=lambda: {"reprogls": __version__,
                                                    "cro": CRO_VERSION})

    @property
    def bse(self) -> np.ndarray:
        if self.cov is None:
            return np.full(self.params.shape[0], np.nan)
        return np.sqrt(np.diag(self.cov))

    @property
    def tvalues(self) -> np.ndarray:
        return self.params / self.bse

    @property
    def pvalues(self) -> np.ndarray:
        # scipy.special's ndtr is what scipy.stats.norm.sf evaluates (the same values),
        # without importing scipy.stats: 0.66 s against 0.2 s, on the demo's first summary
        from scipy.special import ndtr

        return 2.0 * ndtr(-np.abs(self.tvalues))

    def conf_int(self, alpha: float = 0.05) -> np.ndarray:
        """(P, 2) Wald intervals ``params -+ z_{1-alpha/2} bse``."""
        from scipy.special import ndtri  # scipy.stats.norm.ppf's function (see pvalues)

        from .data import check_real

        alpha = check_real("alpha", alpha, low=0.0, low_open=True, high=1.0, rule="in (0, 1)")
        z = ndtri(1.0 - alpha / 2.0)
        return np.column_stack([self.params - z * self.bse, self.params + z * self.bse])

    def cov_params(self) -> np.ndarray:
        if self.cov is None:
            raise ValueError("this fit skipped the covariance (cov_type='none'); "
                             "with_covariance(Xs, Y) computes it without fitting again "
                             "(or refit with cov_type='plugin' or 'robust')")
        return self.cov.copy()

    def with_covariance(self, Xs, Y=None, cov_type: str = "plugin") -> GLSResult:
        """This fit with the covariance of its coefficients, without fitting again.

        ``"plugin"``: ``A^-1``, the inverse GLS normal matrix
        ``A = X^T (Sigma^-1 kron I_N) X + ridge I`` at the estimated Sigma; ``"robust"``:
        the sandwich ``A^-1 B A^-1`` clustered by observation (:mod:`.covariance`). The
        result is the bits of fitting with ``cov_type`` (the sweeps do not depend on it):
        for a fit made with ``cov_type="none"`` to be fast (e.g. the candidates of
        :func:`.select_rank`), then given standard errors. ``O(N P^2 + P^3)``: one pass
        over X for ``X^T X`` and the ``O(P^3)`` inverse (robust: the scores' Gram and
        two products of order P more); where every equation has the same design and
        there is no ridge, plug-in ``O(N p^2 + K^2 p^2)`` (the Kronecker form,
        :func:`.covariance.kronecker_inverse_normal_matrix`) and robust ``O(N P^2)`` (one
        Gram, :func:`.covariance.kronecker_robust_covariance`).

        Parameters
        ----------
        Xs, Y
            The data given to :func:`.fit` (its designs and responses; ``add_constant``
            and ``ridge`` are this result's). Checked: the residuals at ``params`` must
            equal ``resid`` bit for bit.
        cov_type : {"plugin", "robust"}

        Returns
        -------
        GLSResult
            A new result; this one is not changed.

        Raises
        ------
        ValueError
            ``cov_type`` not one of those; a fit with ``l1`` or ``bounds`` (neither
            covariance is valid there); other data than the fit's.
        """
        from .fit import with_covariance

        return with_covariance(self, Xs, Y, cov_type)

    def wald_test(self, R, q=None):
        """Wald test of the linear restrictions ``R beta = q`` (e.g. a coefficient equal
        across equations): ``W = (R beta - q)^T (R V R^T)^-1 (R beta - q)``, asymptotically
        chi-squared with ``r`` degrees of freedom under the restrictions, ``V`` this fit's
        covariance (plug-in or robust; :mod:`.wald`).

        Parameters
        ----------
        R : array_like (r, P) or (P,), or dict, or list of dicts
            The restrictions as rows over ``params``; or each as ``{(equation,
            regressor): weight}``, keyed as :meth:`to_frame`'s index (coefficients not
            named weigh 0), e.g. ``{("y0", "x1"): 1, ("y1", "x1"): -1}`` for
            ``beta_{y0,x1} = beta_{y1,x1}``.
        q : array_like (r,), optional
            The restricted values (zeros by default).

        Returns
        -------
        WaldTest
            ``statistic``, ``df`` (= r), ``pvalue``, and ``R``, ``q`` as used.

        Raises
        ------
        ValueError
            A fit without a covariance (``cov_type="none"``), ``R`` or ``q`` of the wrong
            shape, names not in the fit, dependent restrictions.
        """
        from .wald import restriction_matrix, wald_test

        if self.cov is None:
            raise ValueError("wald_test needs the coefficients' covariance, which this fit "
                             "skipped (cov_type='none'); refit with cov_type='plugin' or "
                             "'robust'")
        names = [(eq, reg) for eq, regs in zip(self.equation_names, self.regressor_names,
                                               strict=True) for reg in regs]
        return wald_test(self.params, self.cov, restriction_matrix(R, names), q, self.mode)

    @property
    def rank(self) -> int:
        return int(self.F.shape[1])

    @property
    def df_model(self) -> int:
        """Free parameters: P coefficients, K variances and K k - k (k - 1) / 2 loadings;
        the coefficients alone where ``sigma`` was fixed (Sigma not estimated, as
        statsmodels' GLS with a given ``sigma`` counts).

        With ``l1`` or ``bounds``, the coefficients count only where neither the L1 term
        set them to zero nor a bound holds them (the lasso's degrees of freedom, Zou,
        Hastie and Tibshirani 2007; with ``ridge`` as well, an upper bound)."""
        K, k = self.F.shape
        P = self.params.shape[0] if self.free_coefficients is None else self.free_coefficients
        return int(P) if self.sigma_fixed else int(P + K + K * k - k * (k - 1) // 2)

    @property
    def aic(self) -> float:
        return -2.0 * self.llf + 2.0 * self.df_model

    @property
    def bic(self) -> float:
        from ..kernels.reference.elementary import log_scalar

        return -2.0 * self.llf + log_scalar(float(self.nobs)) * self.df_model

    def _named_designs(self, Xs_new) -> tuple[object, list | None]:
        """``Xs_new`` as the fit's designs in the fit's equation order, and the ``y``s
        when it is a dict of ``(y, X)`` pairs (fit's format; else None). A dict is
        matched by equation name (its keys as str, as fit stores them); a pandas design
        whose columns are the fit's regressor names in another order (with or without the
        added constant) is reordered to the fit's order (by position it would pair each
        coefficient with another column)."""
        from collections.abc import Mapping

        ys = None
        if isinstance(Xs_new, Mapping):
            # keyed as fit was: fit keeps the names as str ({2020: ...} is '2020')
            by_name = {str(key): value for key, value in Xs_new.items()}
            if len(by_name) < len(Xs_new):
                raise ValueError("Xs_new has two keys that are one equation name as str (1 "
                                 "and '1', say); give each equation once")
            missing = [n for n in self.equation_names if n not in by_name]
            if missing or len(by_name) != len(self.equation_names):
                extra = [key for key in Xs_new if str(key) not in self.equation_names]
                raise ValueError(f"Xs_new must have one design per equation of the fit, "
                                 f"{self.equation_names}; missing {missing}"
                                 + (f", not in the fit {extra}" if extra else ""))
            values = [by_name[n] for n in self.equation_names]
            pairs = [isinstance(v, tuple) and len(v) == 2 for v in values]
            if any(pairs) and not all(pairs):
                raise ValueError("Xs_new must give every equation as a design X_j, or every "
                                 "one as a pair (y_j, X_j) as fit takes them, not a mix")
            if all(pairs):
                ys, Xs_new = [v[0] for v in values], [v[1] for v in values]
            else:
                Xs_new = values
        if isinstance(Xs_new, list | tuple) and len(Xs_new) == len(self.equation_names):
            Xs_new = [self._in_fit_column_order(j, X) for j, X in enumerate(Xs_new)]
        return Xs_new, ys

    def _in_fit_column_order(self, j: int, X):
        """A pandas design of equation ``j`` reordered to the fit's regressor order when
        its columns are those names (all of them, or all but the added constant) in
        another order; anything else unchanged (used by position). Where the fit's names
        came with its data (pandas columns) and this design names as many columns
        otherwise, a ValueError: by position each coefficient would meet another
        regressor."""
        if not self.regressor_names:
            return X
        full = list(self.regressor_names[j])
        added = bool(self.added_constant) and self.added_constant[j]
        return _by_column_name(X, [full, full[1:]] if added else [full],
                               bool(self.named_regressors) and self.named_regressors[j],
                               f"the design of equation {self.equation_names[j]!r}",
                               "regressors", "X")

    def predict(self, Xs_new) -> np.ndarray:
        """Fitted values ``U[i, j] = x_ij^T beta_j`` (N_new, K) for new designs.

        ``Xs_new``: a list of K designs (N_new, p_j), or a dict keyed by the fit's
        equation names of designs ``{name: X_j}`` or of pairs ``{name: (y_j, X_j)}`` (the
        dict ``fit`` takes; the ``y_j`` are not used; keys compare as str, as ``fit``
        stores the names: ``{2020: ...}`` finds ``'2020'``). Each design has the fit's columns,
        or (after ``add_constant=True``) the columns before the constant, which is then
        prepended again. Pandas designs whose columns are the fit's regressor names in
        another order are reordered to the fit's; where the fit's names came from pandas
        columns, a pandas design with other names is a ``ValueError`` (pass
        ``X.to_numpy()`` to use its columns by position); other designs are read by
        position.
        """
        return self._fitted_values(self._named_designs(Xs_new)[0])

    def _fitted_values(self, Xs_new) -> np.ndarray:
        """:meth:`predict` of designs already in the fit's equation and column order."""
        from ..kernels import pack_sur, sur_matvec

        X, offsets = pack_sur(Xs_new)
        widths, fit_widths = np.diff(offsets), np.diff(self.offsets)
        added = np.array(self.added_constant or [False] * fit_widths.shape[0], dtype=bool)
        if widths.shape == fit_widths.shape and added.any() and np.array_equal(
                widths + added, fit_widths):
            X, offsets = pack_sur([np.column_stack([np.ones(X.shape[0]), X[:, o0:o1]])
                                   if a else X[:, o0:o1] for o0, o1, a in
                                   zip(offsets[:-1], offsets[1:], added, strict=True)])
        if not np.array_equal(offsets, self.offsets):
            without = (f" ({(fit_widths - added).tolist()} before the added constants)"
                       if added.any() else "")
            raise ValueError(f"Xs_new has equation widths {widths.tolist()}, the fit had "
                             f"{fit_widths.tolist()}{without}")
        return sur_matvec(X, offsets, self.params, self.mode, "cpu")

    def score(self, Xs, Y=None) -> float:
        """Mean held-out negative log-likelihood per row under the fitted model,
        ``-(1/N) sum_i log N(y_i - x_i beta; 0, Sigma)``.

        ``Xs`` as for :meth:`predict`; ``Y`` (N_new, K), one column per equation, finite
        (a DataFrame whose columns are the equation names in another order is
        reordered; where the fit's equation names came with its data -- dict keys, a
        ``Y`` frame's columns -- a frame with other names is a ``ValueError``); or
        ``Xs`` a dict ``{name: (y_j, X_j)}`` (as ``fit`` takes) and no ``Y``.

        Raises
        ------
        TypeError
            Non-numeric ``Y``.
        ValueError
            ``Y`` of the wrong shape, or a NaN/inf in ``Y`` or in the new designs (the
            message names the equation and how many rows).
        """
        from ..kernels import woodbury_factor
        from ..kernels.devices import to_host
        from .data import _as_array
        from .fit import loglik

        Xs, ys = self._named_designs(Xs)
        if (Y is None) == (ys is None):
            raise TypeError("score needs Y (N, K), unless Xs is a dict {name: (y, X)} as "
                            "fit takes" if Y is None else
                            "Y is given twice: in the dict's (y, X) pairs and as Y; "
                            "pass one")
        if Y is None:
            Y = np.column_stack([_one_column(to_host(_as_array(y, f"y of equation {n!r}")),
                                             n)
                                 for n, y in zip(self.equation_names, ys, strict=True)])
        # a frame named by equation
        Y = _by_column_name(Y, [self.equation_names], self.named_equations, "Y", "equations",
                            "Y")
        Y = to_host(_as_array(Y, "Y"))  # the fit's conversion and dtype check; on the host
        U = self._fitted_values(Xs)
        if Y.shape != U.shape:
            raise ValueError(f"Y must have shape {U.shape} (the rows of Xs, one column per "
                             f"equation), got {Y.shape}")
        E = np.subtract(Y, U, dtype=np.float64)
        finite = np.isfinite(E)
        if not finite.all():
            j = int(np.argmin(finite.all(axis=0)))
            raise ValueError(f"Y or Xs holds NaN or inf for equation {j} "
                             f"({self.equation_names[j]!r}) in {int((~finite[:, j]).sum())} "
                             "rows; drop or impute them before scoring")
        return -loglik(E, woodbury_factor(self.F, self.d, self.mode), "cpu") / E.shape[0]

    def sigma(self) -> np.ndarray:
        """The dense ``Sigma = F F^T + diag(d)`` (K x K), on request only.

        ``Sigma[a, b]`` = CRO-1 dot of ``F[a]`` and ``F[b]`` (+ ``d[a]`` on the diagonal).
        """
        from .covariance import dense_sigma

        return dense_sigma(self.F, self.d, self.mode)

    def equation(self, j: int | str) -> dict:
        """Per-equation view: names, params, bse and R^2 of equation ``j`` (index or name),
        and ``rsquared_centred`` (whether that R^2 is the centred one).

        ``R^2 = 1 - e^T e / (y - ybar)^T (y - ybar)`` for an equation with an intercept,
        ``1 - e^T e / y^T y`` without one (statsmodels' and linearmodels' convention: the
        centred form can be negative there and says nothing)."""
        K = len(self.equation_names)
        if isinstance(j, str):
            if j not in self.equation_names:
                raise ValueError(f"no equation named {j!r}; the equations are "
                                 f"{self.equation_names}")
            j = self.equation_names.index(j)
        elif isinstance(j, bool) or not isinstance(j, int | np.integer):
            raise TypeError(f"j must be an equation's index or name, got {type(j).__name__}")
        elif not -K <= j < K:
            named = (f"; the equation named {str(j)!r} is equation({str(j)!r})"
                     if str(j) in self.equation_names else "")
            raise IndexError(f"equation index {j} is out of range for K = {K} "
                             f"equations{named}")
        j = int(j) % K
        o0, o1 = self.offsets[j], self.offsets[j + 1]
        from ..kernels import dot
        from ..kernels import sum as cro_sum

        y = self.fittedvalues[:, j] + self.resid[:, j]
        r = np.ascontiguousarray(self.resid[:, j])
        centred = not self.has_constant or self.has_constant[j]
        if centred:
            y = y - cro_sum(y, self.mode, "cpu") / y.shape[0]
        ss_res = dot(r, r, self.mode, "cpu")
        ss_tot = dot(y, y, self.mode, "cpu")
        return {"name": self.equation_names[j], "regressors": self.regressor_names[j],
                "params": self.params[o0:o1], "bse": self.bse[o0:o1],
                "rsquared": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
                "rsquared_centred": centred}

    @property
    def fingerprint(self) -> str:
        """SHA-256 over the little-endian bytes of params, F, d, llf and bse."""
        h = hashlib.sha256()
        for a in (self.params, self.F, self.d, np.array([self.llf]), self.bse):
            h.update(np.ascontiguousarray(a, dtype="<f8").tobytes())
        return h.hexdigest()

    def summary(self) -> Summary:
        """Header, then one coefficient table per equation.

        Returns a :class:`~reprogls.gls.summary.Summary`: a ``str`` (the text table) with
        ``as_html()`` and ``as_latex()`` renderings of the same numbers.
        """
        header = [("Equations", str(len(self.equation_names))),
                  ("Observations", str(self.nobs)), ("Rank", str(self.rank)),
                  ("Log-likelihood", f"{self.llf:.6f}"), ("AIC", f"{self.aic:.4f}"),
                  ("BIC", f"{self.bic:.4f}"), ("Converged", str(self.converged)),
                  ("Iterations", str(self.n_iter)), ("Device", self.device),
                  ("Mode", self.mode), ("Covariance", self.cov_type),
                  ("Fingerprint", self.fingerprint[:16])]
        if self.penalty:
            header.append(("Penalty", self.penalty))
        views = [self.equation(j) for j in range(len(self.equation_names))]
        tables = [EquationTable(view["name"], float(view["rsquared"]), rows,
                                view["rsquared_centred"])
                  for view, rows in zip(views, self._coefficient_rows(0.05), strict=True)]
        return Summary(header, tables)

    def _coefficient_rows(self, alpha: float) -> list[list[tuple]]:
        """Per equation, ``(regressor, coef, se, z, p, lo, hi)`` for each coefficient:
        the numbers of :meth:`summary` and :meth:`to_frame`."""
        ci, bse, z, pv = self.conf_int(alpha), self.bse, self.tvalues, self.pvalues
        return [[(reg, float(self.params[o0 + q]), float(bse[o0 + q]), float(z[o0 + q]),
                  float(pv[o0 + q]), float(ci[o0 + q, 0]), float(ci[o0 + q, 1]))
                 for q, reg in enumerate(names)]
                for o0, names in zip(self.offsets[:-1].tolist(), self.regressor_names,
                                     strict=True)]

    def to_frame(self, alpha: float = 0.05):
        """The coefficient tables of :meth:`summary` as one pandas ``DataFrame``.

        One row per coefficient, indexed by ``(equation, regressor)`` (the names given to
        :func:`~reprogls.gls.fit`, or ``y0``/``x0``-style defaults), in the order of
        ``params``; columns ``coef``, ``std err``, ``z``, ``P>|z|`` and the Wald interval
        ``params -+ z_{1-alpha/2} bse`` as ``[alpha/2`` and ``1-alpha/2]`` (statsmodels'
        labels, e.g. ``[0.025`` and ``0.975]``). The values are the result's own floats
        (``params``, ``bse``, ``tvalues``, ``pvalues``, ``conf_int(alpha)``), not rounded;
        with ``cov_type="none"`` every column but ``coef`` is NaN.

        Raises
        ------
        ImportError
            pandas is not installed (it is optional: ``pip install pandas``).
        ValueError
            ``alpha`` outside (0, 1).
        """
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError("GLSResult.to_frame needs pandas, an optional dependency: "
                              "pip install pandas") from exc
        rows = [(eq, *row) for eq, eq_rows in zip(self.equation_names,
                                                   self._coefficient_rows(alpha), strict=True)
                for row in eq_rows]
        index = pd.MultiIndex.from_arrays([[r[0] for r in rows], [r[1] for r in rows]],
                                          names=["equation", "regressor"])
        columns = ["coef", "std err", "z", "P>|z|", f"[{alpha / 2:g}", f"{1 - alpha / 2:g}]"]
        return pd.DataFrame([r[2:] for r in rows], index=index, columns=columns)

    def __repr__(self) -> str:
        return (f"GLSResult(K={len(self.equation_names)}, P={self.params.shape[0]}, "
                f"rank={self.rank}, llf={self.llf:.6f}, converged={self.converged}, "
                f"device={self.device!r})")


def _columns_in_order(frame, expected: list[str]):
    """``frame`` (a pandas object with ``columns``) with its columns in the order of
    ``expected`` when they are those names, each once, in another order; else None (not
    a frame, other names, or already in order)."""
    columns = getattr(frame, "columns", None)
    if columns is None:
        return None
    names = [str(c) for c in columns]
    if names == expected or sorted(names) != sorted(expected) or len(set(names)) < len(names):
        return None
    return frame.iloc[:, [names.index(name) for name in expected]]


def _by_column_name(frame, choices: list[list[str]], names_given: bool, owner: str,
                    kind: str, array: str):
    """``frame`` (new data for a fit) with its columns in the order of the first name
    list in ``choices`` that they are, in another order (:func:`_columns_in_order`);
    otherwise unchanged, and read by position later. Where the fit's names came with its
    data (``names_given``), a pandas frame with as many columns as a name list but other
    names is a ValueError: by position each column would meet another's coefficient.
    ``owner``, ``kind`` and ``array`` word the message ("Y", "equations", "Y")."""
    for expected in choices:
        reordered = _columns_in_order(frame, expected)
        if reordered is not None:
            return reordered
    columns = getattr(frame, "columns", None)
    if columns is None or not names_given:
        return frame
    names = [str(c) for c in columns]
    if any(len(names) == len(expected) and sorted(names) != sorted(expected)
           for expected in choices):
        raise ValueError(f"{owner} has columns {names}, but the fit's {kind} are "
                         f"{choices[-1]}: rename the columns to those names (any order), or "
                         f"pass {array}.to_numpy() to use the columns by position")
    return frame


def _one_column(y: np.ndarray, name: str) -> np.ndarray:
    """A held-out ``y_j`` (N,) or (N, 1) as a vector."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"y of equation {name!r} must be one column, got shape {y.shape}")
    return y
