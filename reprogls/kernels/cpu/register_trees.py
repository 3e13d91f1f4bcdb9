"""CRO-1 short dot products with the whole lane tree in vector registers.

A dot product of ``n <= 32`` terms is, in CRO-1, a lane tree over ``n`` lanes that hold
one product each (:mod:`.segments`). :func:`tree_dots` computes eight such dot products
at once -- eight consecutive sequences ``x``, one per vector slot -- and keeps every
partial of the tree in registers: ``n`` vector loads, ``n`` multiplies, ``n - 1``
merges and one store per eight results. The flat-loop form in :mod:`.segments` makes
one pass over the partials in memory per merge, which on the SUR block kernels costs
more than the arithmetic.

The tree has to be known when the code is generated, so the intrinsic emits one
specialised loop per ``n = 1 .. MAX_TERMS`` behind a ``switch`` on the runtime ``n``.
Each loop is the reference order exactly (the live-lane tree of
:func:`.segments.dot_tree`):

* lane ``t`` starts as the *leaf* ``fl(A[t sa + x] * B[t sb + (x >> 5)])``;
* for ``w = 16, 8, 4, 2, 1`` while ``live > w``: lane ``l < live - w`` merges lane
  ``l + w``, ``(s, e) = TwoSum(s_l, s_{l+w})`` and the compensation ``e`` (two
  leaves), ``c_l + e`` (a partial and a leaf) or ``(c_l + c_{l+w}) + e`` (two partials),
  as :func:`.segments.dot_tree` does; plain mode ``s = s_l + s_{l+w}``;
* the result is ``finalize(s, c)`` (``s + c`` unless ``s`` is not finite or ``c`` is 0,
  the canonical NaN for a NaN).

Only ``fmul``/``fadd``/``fsub`` without fast-math flags (no FMA contraction) and
compares/selects -- where :data:`.simd.TREE_ADDS_ON_FMA` holds, three additions of each
compensated merge as exact ``fma(x, +-1, y)`` -- so the bits are those of
:mod:`.segments` (oracle tests).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ..reference.cro import CANONICAL_NAN
from ._cro import DBL_MAX, LANES
from .simd import TREE_ADDS_ON_FMA, _counted_loop, _exact_add, _fma_signs, _splat, _two_sum

__all__ = ["MAX_TERMS", "tree_dots"]

#: Largest number of terms with a register tree (longer dots use :mod:`.segments`).
MAX_TERMS = 16

_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_F64 = ir.DoubleType()
_VEC8 = ir.VectorType(_F64, 8)


def _tree(builder, leaves, compensated):
    """The CRO-1 live-lane tree over the leaf vectors; returns ``(s, c)`` of lane 0
    (``c`` is None while lane 0 is a leaf or in plain mode). Where
    :data:`.simd.TREE_ADDS_ON_FMA` holds, three additions of each compensated merge are
    exact FMAs (``fma(x, +-1, y)``: the same bits, on the other pipes)."""
    signs = _fma_signs(builder, TREE_ADDS_ON_FMA) if compensated else None

    def add_to_compensation(c, err):
        return builder.fadd(c, err) if signs is None else _exact_add(builder, c, err, signs[0])

    s = list(leaves)
    c = [None] * len(leaves)  # None: a leaf (compensation 0, never materialised)
    live = len(leaves)
    w = LANES // 2
    while w >= 1:
        if live > w:
            for lane in range(live - w):
                hi = lane + w
                if not compensated:
                    s[lane] = builder.fadd(s[lane], s[hi])
                    continue
                total, err = _two_sum(builder, s[lane], s[hi], signs)
                if c[lane] is None:
                    assert c[hi] is None  # partials are a prefix of the lanes
                    c[lane] = err
                elif c[hi] is None:
                    c[lane] = add_to_compensation(c[lane], err)
                else:
                    c[lane] = add_to_compensation(builder.fadd(c[lane], c[hi]), err)
                s[lane] = total
            live = w
        w //= 2
    return s[0], c[0]


def _finalize(builder, s, c):
    """``finalize(s, c)`` of :mod:`reprogls.kernels.reference.cro`, elementwise."""
    nan = ir.Constant(_VEC8, [CANONICAL_NAN] * 8)
    if c is not None:
        big = ir.Constant(_VEC8, [DBL_MAX] * 8)
        zero = ir.Constant(_VEC8, [0.0] * 8)
        finite = builder.and_(builder.fcmp_ordered("<=", s, big),
                              builder.fcmp_ordered(">=", s, builder.fneg(big)))
        use_c = builder.and_(finite, builder.fcmp_unordered("!=", c, zero))
        s = builder.select(use_c, builder.fadd(s, c), s)
    return builder.select(builder.fcmp_ordered("==", s, s), s, nan)


def _emit_loop(builder, n, arrays, sa, sb, length, compensated, exit_block):
    """The loop ``x0 = 0, 8, .. < length`` of the ``n``-term trees; ends at ``exit_block``."""
    A, B, out = arrays
    j, _, close = _counted_loop(builder, builder.ashr(length, ir.Constant(_I64, 3)),
                                f"tree{n}")
    x0 = builder.mul(j, ir.Constant(_I64, 8))
    b_at = builder.ashr(x0, ir.Constant(_I64, 5))
    a_at = x0
    leaves = []
    for t in range(n):
        a_ptr = builder.gep(A.data, [builder.add(a_at, builder.mul(sa, ir.Constant(_I64, t)))])
        a_vec = builder.load(builder.bitcast(a_ptr, _VEC8.as_pointer()), align=8)
        b_val = builder.load(builder.gep(B.data, [builder.add(b_at, builder.mul(
            sb, ir.Constant(_I64, t)))]))
        leaves.append(builder.fmul(a_vec, _splat(builder, b_val)))
    s, c = _tree(builder, leaves, compensated)
    out_ptr = builder.bitcast(builder.gep(out.data, [x0]), _VEC8.as_pointer())
    builder.store(_finalize(builder, s, c), out_ptr, align=8)
    close()
    builder.branch(exit_block)


@intrinsic
def tree_dots(typingctx, A, sa, B, sb, n, length, compensated, out):
    """``out[x]`` for ``x < length`` (a multiple of 8; the eight ``x`` of a vector share
    ``x >> 5``): the finalized CRO-1 reduction over ``t < n`` of
    ``fl(A[t * sa + x] * B[t * sb + (x >> 5)])``, for ``1 <= n <=
    MAX_TERMS`` (other ``n``: nothing is written). ``compensated`` must be a literal
    bool; 1-D C-contiguous float64 arrays; no bounds checks."""
    if not isinstance(compensated, types.BooleanLiteral):
        return None
    comp = compensated.literal_value
    sig = types.void(A, sa, B, sb, n, length, compensated, out)

    def codegen(context, builder, signature, args):
        a_val, sa_val, b_val, sb_val, n_val, len_val, _, out_val = args
        arrays = tuple(context.make_array(signature.args[i])(context, builder, v)
                       for i, v in ((0, a_val), (2, b_val), (7, out_val)))
        exit_block = builder.append_basic_block("tree_exit")
        switch = builder.switch(n_val, exit_block)
        for n_terms in range(1, MAX_TERMS + 1):
            case = builder.append_basic_block(f"tree{n_terms}")
            switch.add_case(ir.Constant(_I64, n_terms), case)
            builder.position_at_end(case)
            _emit_loop(builder, n_terms, arrays, sa_val, sb_val, len_val, comp, exit_block)
        builder.position_at_end(exit_block)
        return context.get_dummy_value()

    return sig, codegen
