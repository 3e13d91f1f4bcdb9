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

Two users, both eight quotients per vector with ``d`` and ``y`` broadcast per equation:
:func:`subtract_from_quotients` (the Woodbury block's tiles of equations) and
:func:`.register_trees.woodbury_output_rows` (the block's whole output in one pass for
``k <= 16``), through :func:`quotient_ir`. Either reports when any quotient of its range
failed the check, and the block then divides (a tile, or the whole block by tiles).

The tests compare this with division on random and near-midpoint quotients (the hard
cases of rounding) and on the special values. :data:`RECIPROCAL_DIVISION` is on where
the compile target has FMA (x86-64 with FMA3, aarch64); elsewhere ``llvm.fma`` would be
a library call, and the kernels divide. The CUDA kernels divide: the same bits.
"""

from __future__ import annotations

import os

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .simd import _VEC8, _counted_loop, _host_target, _splat

__all__ = ["DIVISOR_RANGE", "GROUP", "LARGEST", "RECIPROCAL_DIVISION", "SMALLEST",
           "any_unproven", "mark_unproven", "quotient_ir", "reciprocals",
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


def quotient_ir(builder, a, d, y):
    """``(q', good)`` for vectors ``a``, ``d``, ``y = RN(1/d)`` (``<8 x double>``):
    ``q = RN(a y)``, ``r = fma(d, q, -a)`` (exact), ``q' = fma(-r, y, q)``, and the mask
    of the slots where ``q'`` is proven to be ``RN(a / d)`` (``|q'|`` in ``[SMALLEST,
    LARGEST]``, or ``a`` zero; NaN fails every comparison)."""
    fma8 = builder.module.declare_intrinsic("llvm.fma.v8f64",
                                            fnty=ir.FunctionType(_VEC8, [_VEC8] * 3))
    fabs8 = builder.module.declare_intrinsic("llvm.fabs.v8f64",
                                             fnty=ir.FunctionType(_VEC8, [_VEC8]))
    q = builder.fmul(a, y)
    r = builder.call(fma8, [d, q, builder.fneg(a)])  # d q - a, exact
    q = builder.call(fma8, [builder.fneg(r), y, q])
    size = builder.call(fabs8, [q])
    good = builder.or_(
        builder.and_(builder.fcmp_ordered(">=", size, ir.Constant(_VEC8, [SMALLEST] * 8)),
                     builder.fcmp_ordered("<=", size, ir.Constant(_VEC8, [LARGEST] * 8))),
        builder.fcmp_ordered("==", a, ir.Constant(_VEC8, [0.0] * 8)))
    return q, good


def mark_unproven(builder, good, unproven):
    """The loop-carried vector ``unproven`` (1.0 in each slot where some quotient so far
    needs division, else 0.0) updated with a vector's ``good`` mask (:func:`quotient_ir`)."""
    return builder.select(good, unproven, ir.Constant(_VEC8, [1.0] * 8))


def any_unproven(builder, unproven):
    """An ``i8``, nonzero when some slot of ``unproven`` (:func:`mark_unproven`) is set."""
    return builder.bitcast(builder.fcmp_ordered("!=", unproven, ir.Constant(_VEC8, [0.0] * 8)),
                           ir.IntType(8))


#: Values that share one divisor in :func:`subtract_from_quotients`: the 32 rows of a
#: Woodbury block (one equation).
GROUP = 32


@intrinsic
def subtract_from_quotients(typingctx, a, d, y, b, out, j0, n_eq):
    """``out[g] = fl(a[g] / d[j0 + g // 32]) - b[g]`` for ``g < 32 n_eq``, the quotient
    from ``y = RN(1/d)`` (:func:`reciprocals`) by one multiply and two FMAs, eight values
    per vector with ``d[j]`` and ``y[j]`` broadcast (the Woodbury block's layout: an
    equation's 32 rows are consecutive). Returns False when some value is outside the
    range where that is proven equal to division (``|q'|`` outside ``[SMALLEST,
    LARGEST]`` and ``a`` not zero; NaN fails every comparison); the caller then
    recomputes all of them by division (``out`` holds unusable values).

    ``a``, ``b``, ``out``, ``d``, ``y``: 1-D C-contiguous float64 (``a``, ``b``, ``out``
    from their first element; ``d``, ``y`` indexed from ``j0``); no bounds checks.

    Twenty-fourth session: the same arithmetic ran as a Numba loop over ``d`` and ``y``
    repeated for every row (``DE`` was 64 K values); LLVM vectorised it four-wide, and it
    cost ~105 of the plain Woodbury block's ~295 ns per row (K = 200, k = 5, one core, in
    cache)."""
    arrays = (a, d, y, b, out)
    if not all(isinstance(x, types.Array) and x.ndim == 1 and x.layout == "C"
               and x.dtype == types.float64 for x in arrays):
        return None
    if not all(isinstance(x, types.Integer) for x in (j0, n_eq)):
        return None
    sig = types.boolean(a, d, y, b, out, j0, n_eq)

    def codegen(context, builder, signature, args):
        a_ptr, d_ptr, y_ptr, b_ptr, o_ptr = (
            context.make_array(signature.args[k])(context, builder, args[k]).data
            for k in range(5))
        i64 = ir.IntType(64)
        j, (unproven,), close = _counted_loop(builder, args[6], "quotients",
                                              carried=[ir.Constant(_VEC8, [0.0] * 8)])
        updated = unproven  # (after the loop the phi holds the final flags)
        eq = builder.add(args[5], j)
        dv = _splat(builder, builder.load(builder.gep(d_ptr, [eq])))
        yv = _splat(builder, builder.load(builder.gep(y_ptr, [eq])))
        for v in range(GROUP // 8):
            at = builder.add(builder.mul(j, ir.Constant(i64, GROUP)), ir.Constant(i64, 8 * v))

            def vptr(ptr, at=at):
                return builder.bitcast(builder.gep(ptr, [at]), _VEC8.as_pointer())

            q, good = quotient_ir(builder, builder.load(vptr(a_ptr), align=8), dv, yv)
            updated = mark_unproven(builder, good, updated)
            builder.store(builder.fsub(q, builder.load(vptr(b_ptr), align=8)), vptr(o_ptr),
                          align=8)
        close([updated])
        return builder.icmp_unsigned("==", any_unproven(builder, unproven),
                                     ir.Constant(ir.IntType(8), 0))

    return sig, codegen
