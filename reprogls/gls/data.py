"""Input handling for the SUR/GLS estimator: validation, names, packing.

Accepted forms
--------------
* ``prepare(Xs, Y)``: a list of K designs ``X_j`` (N, p_j) and ``Y`` (N, K) (or (N,) when
  K = 1). NumPy arrays, pandas DataFrames/Series (their column names become regressor
  names) or CuPy arrays (validated and packed on their GPU: only the per-column
  finiteness flags and the per-column "constant" flags cross to the host, plus a failing
  column for its message).
* ``prepare({name: (y, X_j), ...})``: named equations; names flow into summaries.

Checks (``ValueError``/``TypeError`` naming the equation, the column and the fix): non-
numeric data, NaN/inf (with the number of affected rows), differing N, ``len(Xs) !=
Y.shape[1]``, ``N <= p_j``, arrays on different devices, a ``y`` of more than one
column, pandas inputs whose row indexes differ (rows are paired by position; as
statsmodels, refuse rather than pair differently labelled rows). With ``add_constant=True`` each
equation gets a leading column of ones named ``const`` unless it already has a constant
column (a nonzero column with one value throughout, as statsmodels'
``add_constant(has_constant="skip")``); whether each equation has an intercept, given or
added, decides its R^2 (centred, or uncentred without one). The caller's arrays are
never modified: everything is copied into the packed ``X`` (N, P) and ``Y`` (N, K).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any

import numpy as np

from ..kernels._validate import design_list
from ..kernels.cpu.pages import fresh
from ..kernels.devices import is_cupy_array, to_host
from ._caller import user_stacklevel
from ._pack import pack_columns_on_device, pack_designs, pack_designs_on_device

__all__ = ["IdentificationWarning", "SURData", "check_rank", "prepare"]


class IdentificationWarning(UserWarning):
    """The factor loadings are not identified (Sigma itself still is)."""


@dataclass(frozen=True)
class SURData:
    """A validated SUR system, packed for the kernels.

    Attributes
    ----------
    X : ndarray (N, P)
        C-contiguous float64; equation ``j`` owns columns ``offsets[j]:offsets[j+1]``.
        A CuPy array on the inputs' GPU when they were CuPy arrays (``on_gpu``).
    offsets : ndarray of int64 (K+1,)
        Always a NumPy array.
    Y : ndarray (N, K)
        C-contiguous float64, where ``X`` is.
    equation_names : list of str
    regressor_names : list of list of str
        One list per equation (``"x0", "x1", ...`` when the input had no names).
    on_gpu : bool
        Whether the inputs were CuPy arrays (``device="auto"`` then runs on their GPU).
    added_constant : tuple of bool
        Per equation, whether ``add_constant=True`` prepended a ``const`` column (so that
        predictions on new designs can add it too).
    has_constant : tuple of bool
        Per equation, whether it has an intercept (a nonzero constant column, given or
        added): its R^2 is centred, else uncentred. Empty: not known (centred).
    named_regressors : tuple of bool
        Per equation, whether the regressor names came with the input (the columns of a
        pandas design) rather than being made up (``x0, x1, ...``). Empty: not known.
    named_equations : bool
        Whether the equation names came with the input (the dict's keys, or the columns
        of a pandas ``Y``) rather than being made up (``y0, y1, ...``).
    """

    X: np.ndarray
    offsets: np.ndarray
    Y: np.ndarray
    equation_names: list[str]
    regressor_names: list[list[str]]
    on_gpu: bool = False
    added_constant: tuple[bool, ...] = ()
    has_constant: tuple[bool, ...] = ()
    named_regressors: tuple[bool, ...] = ()
    named_equations: bool = False

    def __post_init__(self):
        """The kernels read ``X`` and ``Y`` through raw pointers and trust their shapes,
        so a hand-built SURData is checked here (:func:`prepare` builds valid ones)."""
        from ..kernels._validate import as_offsets

        fix = "build it with reprogls.gls.prepare(Xs, Y)"
        for name in ("X", "Y"):
            a = getattr(self, name)
            if not ((isinstance(a, np.ndarray) or (self.on_gpu and is_cupy_array(a)))
                    and a.ndim == 2 and a.dtype == np.float64 and a.flags.c_contiguous):
                raise ValueError(f"SURData.{name} must be a C-contiguous 2-D float64 NumPy "
                                 f"array (or CuPy, with on_gpu=True); {fix}")
        if _location(self.X) != _location(self.Y):
            raise ValueError(f"SURData.X is on {_location(self.X)} but Y on "
                             f"{_location(self.Y)}; {fix}")
        N, P = self.X.shape
        offsets = as_offsets(self.offsets, P)
        if not (isinstance(self.offsets, np.ndarray) and self.offsets.dtype == np.int64):
            raise ValueError(f"SURData.offsets must be an int64 NumPy array; {fix}")
        K = offsets.shape[0] - 1
        if self.Y.shape != (N, K):
            raise ValueError(f"SURData.Y must have shape (N, K) = ({N}, {K}) for its X and "
                             f"offsets, got {self.Y.shape}; {fix}")
        if len(self.equation_names) != K or len(self.regressor_names) != K or any(
                len(names) != w for names, w in zip(self.regressor_names,
                                                    np.diff(offsets).tolist(), strict=True)):
            raise ValueError(f"SURData needs K = {K} equation names and one regressor name "
                             f"per column of each equation; {fix}")
        for name in ("added_constant", "has_constant", "named_regressors"):
            flags = getattr(self, name)
            if flags and len(flags) != K:
                raise ValueError(f"SURData.{name} needs one flag per equation (K = {K}); "
                                 f"{fix}")

    @property
    def nobs(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_equations(self) -> int:
        return int(self.Y.shape[1])

    @property
    def widths(self) -> np.ndarray:
        """``p_j``, the number of regressors of every equation."""
        return np.diff(self.offsets)

    @property
    def location(self) -> str:
        """Where ``X`` and ``Y`` are: ``"cpu"`` or ``"cuda:N"``."""
        return _location(self.X)

    def to_host(self) -> SURData:
        """The same system with ``X`` and ``Y`` in host memory (itself when they are)."""
        if self.location == "cpu":
            return self
        return replace(self, X=to_host(self.X), Y=to_host(self.Y))


def _location(a: Any) -> str:
    """``"cuda:N"`` for a CuPy array on GPU N, else ``"cpu"``."""
    return f"cuda:{int(a.device.id)}" if is_cupy_array(a) else "cpu"


def _check_distinct_names(names: list[str], source: str) -> None:
    """Equation names must be distinct: results, ``predict``/``score`` dicts and Wald
    restrictions find an equation by its name.

    Raises
    ------
    ValueError
        A name that occurs twice (``source`` says where the names came from; they compare
        as ``str``, so ``1`` and ``"1"`` are one name).
    """
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise ValueError(f"the equations must have distinct names, but {source} give "
                         f"{repeated} more than once (names compare as str: 1 and '1' are "
                         "one name); rename them")


def _has_column_names(obj: Any, count: int) -> bool:
    """Whether ``obj`` names its ``count`` columns (a pandas DataFrame does)."""
    columns = getattr(obj, "columns", None)
    return columns is not None and len(columns) == count


def _names_of(obj: Any, count: int, prefix: str) -> list[str]:
    if _has_column_names(obj, count):
        return [str(c) for c in obj.columns]
    name = getattr(obj, "name", None)
    if count == 1 and name is not None:
        return [str(name)]
    return [f"{prefix}{i}" for i in range(count)]


def _as_array(obj: Any, what: str) -> Any:
    """``obj`` as an array of real numbers where it is: a CuPy array as it is (on its
    GPU), pandas objects as their values, anything else through ``np.asarray``."""
    if is_cupy_array(obj):
        if obj.dtype.kind not in "fiub":
            raise TypeError(f"{what} has dtype {obj.dtype}; the estimator needs real "
                            "numbers (float64, or integer/bool, which are converted)")
        return obj
    values = getattr(obj, "to_numpy", None)
    arr = np.asarray(values() if callable(values) else obj)
    if arr.dtype == object and callable(values):
        # pandas' nullable dtypes (Float64, Int64, boolean) give objects where a value is
        # pd.NA: as NaN, the missing values are reported with their rows, not as text
        try:
            arr = np.asarray(values(dtype=np.float64, na_value=np.nan))
        except (TypeError, ValueError):
            pass
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{what} holds non-numeric values ({exc}); convert it to "
                            "numbers first") from None
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{what} has dtype {arr.dtype}; the estimator needs real numbers "
                        "(float64, or integer/bool, which are converted)")
    return arr


def _check_finite(arr: np.ndarray, names: list[str], where: str) -> None:
    if np.isfinite(arr).all():
        return
    bad = ~np.isfinite(arr)
    if bad.any():
        col = int(np.argmax(bad.any(axis=0)))
        rows = int(bad[:, col].sum())
        raise ValueError(f"{where}, column {names[col]!r}: {rows} row(s) hold NaN or inf; "
                         "drop or impute those rows before fitting")


def _pandas_index(obj: Any) -> Any:
    """The row index of a pandas Series/DataFrame, else None."""
    if type(obj).__module__.split(".")[0] != "pandas":
        return None
    return getattr(obj, "index", None)


def _check_aligned(*groups: list[tuple[str, Any]]) -> None:
    """The estimator pairs rows by position. Like statsmodels, refuse pandas inputs whose
    row indexes differ (a ``ValueError`` naming two of them): rows with different labels
    would otherwise be paired silently."""
    labelled = [(what, index) for group in groups for what, obj in group
                if (index := _pandas_index(obj)) is not None]
    for what, index in labelled[1:]:
        first, first_index = labelled[0]
        if not index.equals(first_index):
            raise ValueError(f"the pandas row indexes of {first} and {what} differ; rows are "
                             "paired by position, so align them first (e.g. X = "
                             "X.loc[y.index]) or pass NumPy arrays")


def _constant_column_flags(arrays: list[Any], on_gpu: bool) -> list[bool]:
    """Per 2-D float64 design, whether one of its columns is constant and nonzero (an
    intercept: statsmodels' test, ``ptp == 0`` and no zero; ``add_constant``'s "already
    has a constant", as ``has_constant="skip"``, and the R^2's centring).

    On the host only the columns whose first two values are equal and nonzero are read
    in full: testing every column read all of ``X`` once more, 85 ms at N = 20000,
    K = 200, p = 10, about as long as packing it. On a GPU every design's column flags
    are written into one device array, and that array is the one transfer (a transfer
    per design would wait for the GPU once per equation).
    """
    if on_gpu:
        import cupy

        widths = [a.shape[1] for a in arrays]
        starts = np.concatenate([[0], np.cumsum(widths)]).astype(int).tolist()
        with arrays[0].device:
            flags = cupy.zeros(starts[-1], dtype=bool)
            for a, (o0, o1) in zip(arrays, pairwise(starts), strict=True):
                if a.shape[0] and o1 > o0:
                    flags[o0:o1] = (a == a[0]).all(axis=0) & (a[0] != 0.0)
            flags = flags.get()
        return [bool(flags[o0:o1].any()) for o0, o1 in pairwise(starts)]
    return [any(bool((a[:, c] == a[0, c]).all()) for c in _constant_candidates(a))
            for a in arrays]


def _constant_candidates(a: np.ndarray) -> np.ndarray:
    """The columns of a host design whose first two values (or only value) are equal and
    nonzero: the only ones that can be nonzero constants."""
    if a.shape[0] == 0:
        return np.empty(0, dtype=np.int64)
    first = a[0]
    same = first != 0.0
    if a.shape[0] > 1:
        same &= a[1] == first
    return np.flatnonzero(same)


def _row_count_message(names: list[str], arrays: list, y_cols: list, one_Y: bool) -> str:
    """Which inputs have another number of rows than the rest: ``Y`` as a whole when it is
    one matrix and the designs agree, else the first five designs or ``y``s off the most
    common count (and how many in all: with K = 2000 equations the message listed every
    one of them)."""
    design_rows = {a.shape[0] for a in arrays}
    if one_Y and len(design_rows) == 1:
        return (f"Y has {y_cols[0].shape[0]} rows but the designs have {design_rows.pop()}; "
                "every equation needs the same N rows, one row of Y per observation")
    counts = [a.shape[0] for a in arrays] + [y.shape[0] for y in y_cols]
    common = max(set(counts), key=counts.count)
    off = [f"the design of {n!r} has {a.shape[0]}" for n, a in zip(names, arrays, strict=True)
           if a.shape[0] != common]
    off += [f"y of {n!r} has {y.shape[0]}" for n, y in zip(names, y_cols, strict=True)
            if y.shape[0] != common]
    more = f", ... ({len(off)} inputs in all)" if len(off) > 5 else ""
    return (f"every equation needs the same number of rows N; most inputs have {common}, "
            f"but {', '.join(off[:5])}{more}")


def prepare(Xs: Sequence[Any] | Mapping[str, tuple[Any, Any]], Y: Any = None, *,
            add_constant: bool = False) -> SURData:
    """Validate and pack a SUR system (see the module docstring for the accepted forms).

    Parameters
    ----------
    Xs : list of array_like (N, p_j), or dict ``{name: (y, X_j)}``
    Y : array_like (N, K), optional
        Required with a list; must be omitted with a dict.
    add_constant : bool
        Prepend an intercept column ``const`` to every equation that has none.

    Returns
    -------
    SURData
    """
    if isinstance(Xs, Mapping):
        if Y is not None:
            raise ValueError("pass Y inside the dict ({name: (y, X)}), not as a second "
                             "argument")
        if not Xs:
            raise ValueError("the dict of equations is empty")
        eq_names = [str(k) for k in Xs]
        named_equations = True
        pairs = list(Xs.values())
        for name, pair in zip(eq_names, pairs, strict=True):
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise TypeError(f"equation {name!r} must map to a (y, X) pair")
        ys = [p[0] for p in pairs]
        designs = [p[1] for p in pairs]
    else:
        if Y is None:
            raise ValueError("Y is required when Xs is a list: fit(Xs, Y) with Y of shape "
                             "(N, K)")
        designs = design_list(Xs, " or a dict {name: (y, X)}")
        Y_arr = _as_array(Y, "Y")
        if Y_arr.ndim == 1:
            Y_arr = Y_arr[:, None]
        if Y_arr.ndim != 2:
            raise ValueError(f"Y must have shape (N, K), got {Y_arr.shape}")
        if Y_arr.shape[1] != len(designs):
            transposed = (Y_arr.shape[0] == len(designs) and
                          Y_arr.shape[1] == (getattr(designs[0], "shape", ()) or (None,))[0])
            hint = (" (Y looks transposed, one row per equation: pass Y.T, or "
                    "np.column_stack of the columns)" if transposed else "")
            raise ValueError(f"len(Xs) = {len(designs)} equations but Y has "
                             f"{Y_arr.shape[1]} columns; pass one design per column of "
                             f"Y{hint}")
        eq_names = _names_of(Y, Y_arr.shape[1], "y")
        named_equations = _has_column_names(Y, Y_arr.shape[1])
        ys = None  # Y_arr is already one validated array

    _check_distinct_names(eq_names, "the dict's keys" if ys is not None else "Y's columns")
    _check_aligned([(f"y of equation {n!r}", y) for n, y in zip(eq_names, ys, strict=True)]
                   if ys is not None else [("Y", Y)],
                   [(f"the design of equation {n!r}", d)
                    for n, d in zip(eq_names, designs, strict=True)])
    arrays = [_as_array(Xj, f"equation {name!r} (Xs[{j}])")
              for j, (name, Xj) in enumerate(zip(eq_names, designs, strict=True))]
    y_arrays = ([Y_arr] if ys is None else
                [_as_array(y, f"y of equation {name!r}")
                 for name, y in zip(eq_names, ys, strict=True)])
    locations = sorted({_location(a) for a in arrays + y_arrays})
    if len(locations) > 1:  # before any work on a GPU
        raise ValueError(f"the inputs are on different devices ({', '.join(locations)}); "
                         "put them all on one device (CuPy arrays on one GPU, or NumPy / "
                         "pandas on the host)")
    on_gpu = locations[0] != "cpu"
    reg_names, named, wheres = [], [], []
    for j, name in enumerate(eq_names):
        where = f"equation {name!r} (Xs[{j}])"
        arr = arrays[j]
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise ValueError(f"{where}: the design must be 2-D (N, p_j), got {arr.shape}")
        arrays[j] = arr.astype(np.float64, copy=False)
        wheres.append(where)
    intercepts = _constant_column_flags(arrays, on_gpu)
    constants = [not has for has in intercepts] if add_constant else [False] * len(arrays)
    for Xj, arr, add_const in zip(designs, arrays, constants, strict=True):
        names = _names_of(Xj, arr.shape[1], "x")
        reg_names.append(["const", *names] if add_const else names)
        named.append(_has_column_names(Xj, arr.shape[1]))
    if ys is None:
        y_cols = [Y_arr[:, j] for j in range(Y_arr.shape[1])]
    else:
        y_cols = []
        for name, y_arr in zip(eq_names, y_arrays, strict=True):
            if y_arr.ndim == 2 and y_arr.shape[1] == 1:
                y_arr = y_arr[:, 0]
            if y_arr.ndim != 1:
                raise ValueError(f"y of equation {name!r} must be one column (N,), got "
                                 f"shape {y_arr.shape}; give each column its own equation")
            y_cols.append(y_arr.astype(np.float64, copy=False))
    n_rows = {a.shape[0] for a in arrays} | {y.shape[0] for y in y_cols}
    if len(n_rows) != 1:
        raise ValueError(_row_count_message(eq_names, arrays, y_cols, ys is None))
    N = n_rows.pop()
    widths = [a.shape[1] + c for a, c in zip(arrays, constants, strict=True)]
    for name, p in zip(eq_names, widths, strict=True):
        if N <= p:
            raise ValueError(f"equation {name!r} has N = {N} rows for p = {p} regressors; "
                             "it needs N > p_j")
    offsets = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
    # one copy of the data, written straight into the packed layout (peak memory), with
    # the NaN/inf test on the way; a failing equation is then examined for the message
    # (on the host: a CuPy input's failing design or y is copied there only then)
    if on_gpu:
        X, x_bad = pack_designs_on_device(arrays, constants, offsets)
        Yp, y_bad = pack_columns_on_device(Y_arr if ys is None else y_cols)
    else:
        X, x_bad = pack_designs(arrays, constants, offsets)
        Yp = fresh((N, len(eq_names)))  # (small pages where huge ones are slow)
        if ys is None:
            np.copyto(Yp, Y_arr, casting="unsafe")
        else:
            for j, y in enumerate(y_cols):
                Yp[:, j] = y
        y_bad = ~np.isfinite(Yp).all(axis=0)
    bad = np.flatnonzero(x_bad | y_bad)
    if bad.size:  # the first equation with a NaN/inf: its design first, then its y
        j = int(bad[0])
        if x_bad[j]:
            _check_finite(to_host(arrays[j]), reg_names[j][int(constants[j]):], wheres[j])
        _check_finite(to_host(Yp[:, j:j + 1]), [eq_names[j]],
                      f"y of equation {eq_names[j]!r}")
    return SURData(X=X, offsets=offsets, Y=Yp,
                   equation_names=eq_names, regressor_names=reg_names,
                   on_gpu=on_gpu,
                   added_constant=tuple(bool(c) for c in constants),
                   has_constant=tuple(bool(c or i) for c, i in zip(constants, intercepts,
                                                                   strict=True)),
                   named_regressors=tuple(named), named_equations=named_equations)


def check_real(name: str, value: Any, *, low: float, high: float = np.inf,
               low_open: bool = False, rule: str) -> float:
    """A real-valued option ``value`` in ``[low, high)`` (``(low, high)`` with
    ``low_open``), as a float; ``rule`` (e.g. ``">= 0 and finite"``) completes the
    message ``"{name} must be {rule}"``.

    Raises
    ------
    TypeError
        ``value`` is not a real number (``None``, a string, a bool, an array).
    ValueError
        NaN, or outside the range.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer
                                                            | np.floating):
        raise TypeError(f"{name} must be a real number ({rule}), got "
                        f"{type(value).__name__}")
    v = float(value)
    if not ((low < v) if low_open else (low <= v)) or not v < high:
        raise ValueError(f"{name} must be {rule}, got {value}")
    return v


def check_int(name: str, value: Any, *, low: int | None = None) -> int:
    """An integer option ``value`` (``>= low`` when given), as an ``int``.

    Raises
    ------
    TypeError
        ``value`` is not an integer (a float, a bool, ``None``, a string).
    ValueError
        ``value < low``.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def check_rank(rank: Any, K: int) -> int:
    """Validate the factor rank ``k``: an integer in ``0..K-1``.

    ``k = 0`` is the model without common factors, ``Sigma = diag(d)``: the equations'
    errors are independent, the GLS beta-step weighs equation j by ``1 / d_j`` alone
    (without a penalty: least squares equation by equation) and the ML uniquenesses are
    ``d_j = e_j^T e_j / N`` (the baseline :func:`.select.select_rank` compares factor
    models against). It is the only rank for
    a single equation (K = 1). Warns (:class:`IdentificationWarning`) beyond Ledermann's
    bound, where ``(K - k)**2 < K + k``: the loadings ``F`` are then not identified, Sigma
    still is. The warning names the first line outside the package that led here
    (:func:`._caller.user_stacklevel`): the line that called this function, or
    ``gls.fit``, or ``LowRankGLS.fit``.
    """
    rank = check_int("rank", rank)
    if K < 2 and rank != 0:
        raise ValueError(f"a low-rank error covariance needs K >= 2 equations; with K = {K} "
                         f"only rank=0 (Sigma = diag(d): least squares) fits, got rank={rank}")
    if not 0 <= rank <= K - 1:
        raise ValueError(f"rank must be in 0..K-1 = 0..{K - 1} for K = {K} equations, "
                         f"got {rank}")
    if (K - rank) ** 2 < K + rank:
        warnings.warn(f"rank {rank} exceeds Ledermann's bound for K = {K}: the loadings F "
                      "are not identified (Sigma = F F^T + diag(d) still is)",
                      IdentificationWarning, stacklevel=user_stacklevel())
    return rank


def check_sigma_rank(rank: Any, sigma_rank: int) -> None:
    """A ``rank`` passed with a fixed ``sigma = (F, d)`` must be ``F``'s column count.

    Raises
    ------
    ValueError
        Another count: ``rank`` would otherwise be ignored without a word.
    """
    rank = check_int("rank", rank)
    if rank != sigma_rank:
        raise ValueError(f"rank={rank} does not match sigma=(F, d): its F has {sigma_rank} "
                         f"column(s), so Sigma's rank is {sigma_rank}; with a fixed sigma "
                         "leave rank out (or pass F's column count)")


def fixed_sigma(sigma: Any, K: int, mode: str):
    """The Woodbury factor of a caller's fixed ``sigma = (F, d)``, ``Sigma = F F^T +
    diag(d)``: ``F`` (K, k) with ``0 <= k <= K`` (``k = 0``, an empty ``(K, 0)``, is a
    diagonal Sigma) and ``d`` (K,) positive, for a system of ``K`` equations.

    Raises
    ------
    TypeError
        ``sigma`` is not a pair.
    ValueError
        Shapes that do not fit ``K`` equations, non-finite ``F``, ``d`` not positive
        and finite (the message names ``sigma``).
    """
    from ..kernels import woodbury_factor

    if isinstance(sigma, str | bytes) or not isinstance(sigma, Sequence) or len(sigma) != 2:
        got = type(sigma).__name__
        if isinstance(sigma, Sequence) and not isinstance(sigma, str | bytes):
            got += f" of length {len(sigma)}"
        raise TypeError("sigma must be a pair (F, d) with Sigma = F F^T + diag(d): F of "
                        f"shape (K, k), d of shape (K,); got a {got}")
    F, d = sigma
    F_shape, d_shape = np.shape(F), np.shape(d)
    if len(F_shape) != 2 or F_shape[0] != K:
        raise ValueError(f"sigma's F must have shape (K, k) = ({K}, k) for the K = {K} "
                         f"equations, got {F_shape} (a one-factor F of shape ({K},) is "
                         f"F.reshape({K}, 1))")
    if d_shape != (K,):
        raise ValueError(f"sigma's d must have shape ({K},), one variance per equation, got "
                         f"{d_shape}")
    try:
        return woodbury_factor(F, d, mode)
    except ValueError as err:
        raise ValueError(f"sigma=(F, d): {err}") from None
