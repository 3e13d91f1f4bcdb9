"""The executable specification: pure NumPy, canonical order, slow, the test oracle.

Every CPU (Numba) and CUDA kernel equals these functions bit for bit.

* :mod:`.cro` — the canonical reduction order CRO-1 and the reductions ``sum``, ``dot``,
  ``nrm2``.
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

__all__ = [
    "CANONICAL_NAN",
    "CHUNK",
    "CRO_VERSION",
    "LANES",
    "check_mode",
    "cro_dot",
    "cro_nrm2",
    "cro_sum",
    "finalize",
    "finalize_rows",
    "nrm2_finish",
    "nrm2_plan",
    "nrm2_scaling",
    "reduce_rows",
]
