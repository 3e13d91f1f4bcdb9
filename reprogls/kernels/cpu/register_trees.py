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
from numba.core import cgutils
from numba.extending import intrinsic

from ..reference.cro import CANONICAL_NAN
from ._cro import DBL_MAX, LANES
from .reciprocal import any_unproven, mark_unproven, quotient_ir
from .simd import TREE_ADDS_ON_FMA, _counted_loop, _exact_add, _fma_signs, _splat, _two_sum

__all__ = ["MAX_TERMS", "tree_dots", "woodbury_output_rows"]

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


def _switch_on_terms(builder, n_val, name, emit_case):
    """A ``switch`` on the runtime term count ``n_val``: one block per ``n = 1 ..
    MAX_TERMS`` in which ``emit_case(n, exit_block)`` emits that count's specialised
    loop and branches to ``exit_block``; other counts go straight there. The builder is
    left at ``exit_block``."""
    exit_block = builder.append_basic_block(f"{name}_exit")
    switch = builder.switch(n_val, exit_block)
    for n_terms in range(1, MAX_TERMS + 1):
        case = builder.append_basic_block(f"{name}{n_terms}")
        switch.add_case(ir.Constant(_I64, n_terms), case)
        builder.position_at_end(case)
        emit_case(n_terms, exit_block)
    builder.position_at_end(exit_block)


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
        _switch_on_terms(builder, n_val, "tree", lambda n_terms, exit_block: _emit_loop(
            builder, n_terms, arrays, sa_val, sb_val, len_val, comp, exit_block))
        return context.get_dummy_value()

    return sig, codegen


def _emit_output_loop(builder, n, arrays, K, compensated, exit_block, flag):
    """The loop of :func:`woodbury_output_rows` for ``n`` terms; ORs into ``*flag`` (i8)
    whether a quotient needs division, and ends at ``exit_block``."""
    T, GT, U, D, Y, W = arrays
    length = builder.mul(K, ir.Constant(_I64, LANES))
    j, (unproven,), close = _counted_loop(
        builder, builder.ashr(length, ir.Constant(_I64, 3)), f"output{n}",
        carried=[ir.Constant(_VEC8, [0.0] * 8)])
    x0 = builder.mul(j, ir.Constant(_I64, 8))
    eq = builder.ashr(x0, ir.Constant(_I64, 5))
    row = builder.and_(x0, ir.Constant(_I64, LANES - 1))

    def vector(arr, at):
        return builder.load(builder.bitcast(builder.gep(arr.data, [at]), _VEC8.as_pointer()),
                            align=8)

    leaves = []
    for t in range(n):  # fl(u[t, row] * G[eq, t])
        u = vector(T, builder.add(row, ir.Constant(_I64, LANES * t)))
        g = builder.load(builder.gep(GT.data, [builder.add(eq, builder.mul(
            K, ir.Constant(_I64, t)))]))
        leaves.append(builder.fmul(u, _splat(builder, g)))
    s, c = _tree(builder, leaves, compensated)
    dv = _splat(builder, builder.load(builder.gep(D.data, [eq])))
    yv = _splat(builder, builder.load(builder.gep(Y.data, [eq])))
    q, good = quotient_ir(builder, vector(U, x0), dv, yv)
    out_ptr = builder.bitcast(builder.gep(W.data, [x0]), _VEC8.as_pointer())
    builder.store(builder.fsub(q, _finalize(builder, s, c)), out_ptr, align=8)
    close([mark_unproven(builder, good, unproven)])
    builder.store(builder.or_(builder.load(flag), any_unproven(builder, unproven)), flag)
    builder.branch(exit_block)


@intrinsic
def woodbury_output_rows(typingctx, T, GT, K, n, U, D, Y, W, compensated):
    """The Woodbury block's output for all ``K`` equations of its 32 rows in one pass:
    ``W[32 j + y] = fl(U[32 j + y] / D[j]) - finalize(CRO-1_{t < n} fl(T[32 t + y]
    GT[t K + j]))`` -- :func:`tree_dots` of the ``n`` terms ``u[t, y] G[j, t]`` (the
    reference's ``fl(G[j, t] u[t])``, the same product), with the quotient from ``Y =
    RN(1/D)`` by one multiply and two FMAs (:func:`.reciprocal.quotient_ir`). Returns
    False when some quotient is outside the range proven equal to division; ``W`` then
    holds unusable values and the caller recomputes it by division. ``1 <= n <=
    MAX_TERMS`` (other ``n``: nothing is written, returns True); ``compensated`` a
    literal bool; 1-D C-contiguous float64 arrays; no bounds checks.

    Twenty-fourth session: the block's tile loop did this in three passes per tile of
    eight equations -- ``u`` copied eight times into a tile-wide array, :func:`tree_dots`
    into scratch, then the quotients -- with a call per tile."""
    if not isinstance(compensated, types.BooleanLiteral):
        return None
    comp = compensated.literal_value
    sig = types.boolean(T, GT, K, n, U, D, Y, W, compensated)

    def codegen(context, builder, signature, args):
        arrays = tuple(context.make_array(signature.args[i])(context, builder, args[i])
                       for i in (0, 1, 4, 5, 6, 7))
        K_val, n_val = args[2], args[3]
        flag = cgutils.alloca_once_value(builder, ir.Constant(ir.IntType(8), 0))
        _switch_on_terms(builder, n_val, "output", lambda n_terms, exit_block: (
            _emit_output_loop(builder, n_terms, arrays, K_val, comp, exit_block, flag)))
        return builder.icmp_unsigned("==", builder.load(flag), ir.Constant(ir.IntType(8), 0))

    return sig, codegen
