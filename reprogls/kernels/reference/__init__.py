"""The executable specification: pure NumPy, canonical order, slow, the test oracle.

Every CPU (Numba) and CUDA kernel equals these functions bit for bit.

* :mod:`.cro` — the canonical reduction order CRO-1 and the reductions ``sum``, ``dot``,
  ``nrm2``;
* :mod:`.linalg` — ``gemv``, ``gemv_t``, the SUR operators, Woodbury, fixed-order
  Cholesky;
* :mod:`.prox` — soft-thresholding, elastic net, box constraints, the FISTA step;
* :mod:`.elementary` — portable ``log`` and ``exp``.
"""

from .cro import (
    CANONICAL_NAN,
    CHUNK,
    CRO_VERSION,
    LANES,
    check_mode,
    cro_dot,
    cro_nrm2,
    cro_sum,
    finalize,
    finalize_rows,
    nrm2_finish,
    nrm2_plan,
    nrm2_scaling,
    reduce_rows,
)
from .elementary import exp, exp_scalar, log, log_scalar
from .linalg import (
    NotPositiveDefiniteError,
    WoodburyFactor,
    capacitance,
    cholesky,
    cholesky_inverse,
    cholesky_solve,
    equation_of_column,
    gemv,
    gemv_t,
    sur_matvec,
    sur_normal_matvec,
    sur_rmatvec,
    woodbury_factor,
    woodbury_logdet,
    woodbury_solve,
)
from .prox import fista_step, prox_elastic_net, soft_threshold, soft_threshold_box

__all__ = [
    "CANONICAL_NAN",
    "CHUNK",
    "CRO_VERSION",
    "LANES",
    "NotPositiveDefiniteError",
    "WoodburyFactor",
    "capacitance",
    "check_mode",
    "cholesky",
    "cholesky_inverse",
    "cholesky_solve",
    "cro_dot",
    "cro_nrm2",
    "cro_sum",
    "equation_of_column",
    "exp",
    "exp_scalar",
    "finalize",
    "finalize_rows",
    "fista_step",
    "gemv",
    "gemv_t",
    "log",
    "log_scalar",
    "nrm2_finish",
    "nrm2_plan",
    "nrm2_scaling",
    "prox_elastic_net",
    "reduce_rows",
    "soft_threshold",
    "soft_threshold_box",
    "sur_matvec",
    "sur_normal_matvec",
    "sur_rmatvec",
    "woodbury_factor",
    "woodbury_logdet",
    "woodbury_solve",
]
