"""Correctly rounded division by a divisor known in advance: one multiply and two FMAs.

The Woodbury solve divides every row of ``U`` by the same ``d``. A hardware divide
occupies the divider for two cycles per double on recent x86 cores, so at K = 200 the
``fl(U / d)`` of one row was ~100 of the ~370 ns of the fused operator's Woodbury block
(one core, twenty-third session). With ``y = RN(1/d)`` computed once per factor, the
quotient

.. math::

    q = \\mathrm{RN}(a y), \\qquad r = d q - a \\ \\text{(exact, one FMA)}, \\qquad
    q' = \\mathrm{RN}(q - r y) \\ \\text{(one FMA)}

is ``RN(a / d)`` itself, bit for bit, when nothing underflows or overflows (Markstein's
theorem; J.-M. Muller, S. K. Raina and N. Brisebarre, "Accelerating correctly rounded
floating-point division when the divisor is known in advance", IEEE Trans. Computers
53(8), 2004, give this as the known one-multiply-two-FMA case): ``r`` is exact, and one
correction by the correctly rounded reciprocal rounds correctly. The FMAs are not a
contraction of the reference's formula -- the reference divides, and these three
operations give that division's bits. The residual is taken as ``d q - a`` (not
``a - d q``) so that ``a = -0`` gives ``-0``, as division does, and ``+0`` gives ``+0``.

Where the theorem's conditions could fail the quotient is recomputed by division:

* ``d`` outside :data:`DIVISOR_RANGE` (``2^-500 .. 2^500``): its reciprocal is stored
  as 0, so every nonzero ``a`` fails the range check below;
* ``q'`` outside ``[2^-400, 2^500]`` in magnitude unless ``a`` is zero: with ``d`` in
  range, ``|a| >= 2^-900`` then, so ``r`` is representable (no underflow), and nothing
  overflows; infinities and NaN fail the comparisons (``inf / d`` would otherwise give
  the default NaN of ``inf - inf``).

The tests compare this with division on random and near-midpoint quotients (the hard
cases of rounding) and on the special values. :data:`RECIPROCAL_DIVISION` is on where
the compile target has FMA (x86-64 with FMA3, aarch64); elsewhere ``llvm.fma`` would be
a library call, and the kernels divide. The CUDA kernels divide: the same bits.
"""

from __future__ import annotations

import os

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from .simd import _host_target

__all__ = ["DIVISOR_RANGE", "LARGEST", "RECIPROCAL_DIVISION", "SMALLEST", "fma", "reciprocals",
           "subtract_from_quotients"]

#: ``d`` whose reciprocal is used (:func:`reciprocals`); others divide.
DIVISOR_RANGE = (2.0 ** -500, 2.0 ** 500)
#: Smallest nonzero ``|q'|`` taken from the reciprocal (smaller ones divide).
SMALLEST = 2.0 ** -400
#: Largest ``|q'|`` taken from the reciprocal (larger ones divide).
LARGEST = 2.0 ** 500


def _reciprocal_division() -> bool:
    """Whether the kernels divide by reciprocals (``REPROGLS_RECIPROCAL_DIVISION=0|1``
    overrides; use a fresh ``NUMBA_CACHE_DIR``, Numba's cache does not key on it)."""
    override = os.environ.get("REPROGLS_RECIPROCAL_DIVISION", "")
    if override in ("0", "1"):
        return override == "1"
    import platform

    return "+fma" in _host_target()[1] or platform.machine() in ("aarch64", "arm64")


#: Divide by reciprocals in :func:`.woodbury_rows.woodbury_block` (fixed at import).
RECIPROCAL_DIVISION = _reciprocal_division()


def reciprocals(d: np.ndarray) -> np.ndarray:
    """``RN(1 / d)`` where ``d`` is in :data:`DIVISOR_RANGE`, else 0 (divide there)."""
    d = np.asarray(d, dtype=np.float64)
    lo, hi = DIVISOR_RANGE
    inside = (d >= lo) & (d <= hi)
    return np.where(inside, 1.0 / np.where(inside, d, 1.0), 0.0)


@intrinsic
def fma(typingctx, a, b, c):
    """``RN(a * b + c)``, one rounding (``llvm.fma.f64``)."""
    if not all(isinstance(t, types.Float) for t in (a, b, c)):
        return None
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        f64 = ir.DoubleType()
        fn = builder.module.declare_intrinsic("llvm.fma.f64",
                                              fnty=ir.FunctionType(f64, [f64, f64, f64]))
        return builder.call(fn, args)

    return sig, codegen


@njit(inline="always", error_model="numpy")
def subtract_from_quotients(a, d, y, b, out, n) -> bool:
    """``out[x] = fl(a[x] / d[x]) - b[x]`` for ``x < n``, the quotient from ``y = RN(1/d)``
    (:func:`reciprocals`) by one multiply and two FMAs. Returns False when some ``x``
    is outside the range where that is proven equal to division; the caller then
    recomputes all ``n`` by division (``out`` holds unusable values)."""
    good = 0
    for x in range(n):
        q = a[x] * y[x]
        q = fma(-fma(d[x], q, -a[x]), y[x], q)
        size = abs(q)
        good += ((size >= SMALLEST) & (size <= LARGEST)) | (a[x] == 0.0)
        out[x] = q - b[x]
    return good == n
