"""Low-rank GLS / SUR estimator: ``from reprogls import gls; res = gls.fit(Xs, Y, rank=k)``.

Modules: :mod:`.data` (validation, packing), :mod:`.ols` (Gram blocks, OLS), :mod:`.beta`
(GLS given Sigma), :mod:`.penalty` (the L1 / box beta-step), :mod:`.sigma` (factor
analysis), :mod:`.fit`, :mod:`.start` (warm starts), :mod:`.results`, :mod:`.wald`
(Wald tests of linear restrictions), :mod:`.select` (the rank by AIC / BIC),
:mod:`.estimator` (the scikit-learn style :class:`LowRankGLS`).
"""

from __future__ import annotations

from .data import IdentificationWarning, SURData, check_rank, prepare
from .estimator import LowRankGLS, NotFittedError
from .fit import ConvergenceWarning, ExactFitWarning, fit
from .ols import CollinearityError, block_grams, ols
from .results import GLSResult
from .select import RankSelection, select_rank
from .simulate import simulate_sur
from .start import StartMismatchError
from .wald import WaldTest

__all__ = ["CollinearityError", "ConvergenceWarning", "ExactFitWarning", "GLSResult",
           "IdentificationWarning", "LowRankGLS", "NotFittedError", "RankSelection",
           "SURData", "StartMismatchError", "WaldTest", "block_grams", "check_rank", "fit",
           "ols", "prepare", "select_rank", "simulate_sur"]
