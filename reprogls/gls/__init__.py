"""Low-rank GLS / SUR estimator (in progress).

Available now: input validation and packing (:func:`prepare`), rank checks, per-equation
Gram blocks and OLS on the audited path (:mod:`.ols`). The fit itself (alternating GLS
and factor-analysis steps, results, standard errors) is the next step: :func:`fit`
raises ``NotImplementedError`` until it exists.
"""

from __future__ import annotations

from .data import IdentificationWarning, SURData, check_rank, prepare
from .ols import CollinearityError, block_grams, ols

__all__ = ["CollinearityError", "IdentificationWarning", "SURData", "block_grams",
           "check_rank", "fit", "ols", "prepare"]


def fit(*args, **kwargs):
    """``gls.fit(Xs, Y, rank=k, ...)``: not implemented yet (see the package docstring)."""
    raise NotImplementedError("reprogls.gls.fit is not implemented yet: the kernels and the "
                              "input layer exist, the alternating GLS / factor-analysis fit "
                              "does not (issue 4)")
