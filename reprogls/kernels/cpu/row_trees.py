"""``sur_matvec`` along the rows of X: each short dot's lane tree inside one row, in
vector registers.

In CRO-1 a dot of ``n <= 32`` terms is a lane tree over ``n`` lanes holding one product
each (:mod:`.segments`, :mod:`.register_trees`). The ``n`` terms of ``U[i, j]`` are
``n`` consecutive values of row ``i`` of X, so lanes ``4 q .. 4 q + 3`` are one
four-wide vector load: :func:`row_dots` walks the rows of X in place, loads each
equation's segment as ``ceil(n / 4)`` vectors (the last one masked: lanes past ``n``
are not read and hold ``-0.0``) and runs the tree with whole vectors for ``w = 16, 8,
4`` (vector ``q`` merges vector ``q + w / 4``), then the two halves of the first vector
(``w = 2``) and its two lanes (``w = 1``).

Where the reference tree merges only live lanes (``l < live - w``), a vector merge also
merges up to three lanes with the ``-0.0`` padding. That changes no result bit: ``s +
-0.0`` is ``s``; the compensation becomes ``+0.0`` (or NaN next to a non-finite ``s``)
where the reference keeps a leaf's 0, which changes at most the sign of a zero
compensation, ignored by ``finalize``, or a compensation ``finalize`` does not use
because ``s`` is not finite. The same argument covers the live-lane tree of
:func:`.segments.dot_tree`, and the oracle tests check the bits.

The tree depends on ``n``, so the intrinsic emits one specialised block per ``n = 0 ..
MAX_ROW_TERMS`` behind a ``switch`` on each equation's width (an equal-width layout
takes the same branch every time). Only ``fmul``/``fadd``/``fsub`` without fast-math
flags, shuffles, masked loads and selects.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ..reference.cro import CANONICAL_NAN
from ._cro import DBL_MAX, LANES
from .register_trees import _two_sum
from .simd import _counted_loop

__all__ = ["MAX_ROW_TERMS", "row_dots"]

#: Widest equation :func:`row_dots` handles (one CRO-1 lane per term).
MAX_ROW_TERMS = LANES

_I1 = ir.IntType(1)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_F64 = ir.DoubleType()
_VEC4 = ir.VectorType(_F64, 4)
_VEC2 = ir.VectorType(_F64, 2)


def _load4(builder, ptr, live):
    """Four doubles at ``ptr``; with ``live < 4`` only the first ``live`` are read
    (``llvm.masked.load``) and the others are ``-0.0``."""
    vptr = builder.bitcast(ptr, _VEC4.as_pointer())
    if live >= 4:
        return builder.load(vptr, align=8)
    mask = ir.Constant(ir.VectorType(_I1, 4), [int(b < live) for b in range(4)])
    fnty = ir.FunctionType(_VEC4, [vptr.type, _I32, mask.type, _VEC4])
    fn = builder.module.declare_intrinsic("llvm.masked.load.v4f64.p0v4f64", fnty=fnty)
    return builder.call(fn, [vptr, ir.Constant(_I32, 8), mask,
                             ir.Constant(_VEC4, [-0.0] * 4)])


def _merge(builder, a, b, compensated):
    """CRO-1 merge of two partials ``(s, c)``; ``c`` is None for a leaf (compensation 0),
    as in :func:`.register_trees._tree`."""
    (sa, ca), (sb, cb) = a, b
    if not compensated:
        return builder.fadd(sa, sb), None
    total, err = _two_sum(builder, sa, sb)
    if ca is None:
        assert cb is None  # partials are a prefix of the lanes
        return total, err
    if cb is None:
        return total, builder.fadd(ca, err)
    return total, builder.fadd(builder.fadd(ca, cb), err)


def _halves(builder, pair, lanes):
    """Lanes ``lanes`` of each vector of ``pair = (s, c)`` (``c`` may be None)."""
    mask = ir.Constant(ir.VectorType(_I32, len(lanes)), list(lanes))

    def pick(v):
        return None if v is None else builder.shuffle_vector(v, ir.Constant(v.type,
                                                                            ir.Undefined), mask)

    return pick(pair[0]), pick(pair[1])


def _finalize(builder, s, c):
    """``finalize(s, c)`` of :mod:`reprogls.kernels.reference.cro` for scalars."""
    if c is not None:
        finite = builder.fcmp_ordered("<=", builder.call(builder.module.declare_intrinsic(
            "llvm.fabs", [_F64]), [s]), ir.Constant(_F64, DBL_MAX))
        use_c = builder.and_(finite, builder.fcmp_unordered("!=", c, ir.Constant(_F64, 0.0)))
        s = builder.select(use_c, builder.fadd(s, c), s)
    return builder.select(builder.fcmp_ordered("==", s, s), s,
                          ir.Constant(_F64, CANONICAL_NAN))


def _tree_dot(builder, x_ptr, b_ptr, n, compensated):
    """The finalized CRO-1 dot of the ``n`` values at ``x_ptr`` and ``b_ptr``."""
    parts = []
    for q in range(-(-n // 4)):
        live = min(4, n - 4 * q)
        x = _load4(builder, builder.gep(x_ptr, [ir.Constant(_I64, 4 * q)]), live)
        b = _load4(builder, builder.gep(b_ptr, [ir.Constant(_I64, 4 * q)]), live)
        parts.append((builder.fmul(x, b), None))  # padding: -0.0 * -0.0 is +0.0
    # the padded lanes must hold -0.0 (the identity), not +0.0
    if n % 4:
        keep = ir.Constant(ir.VectorType(_I1, 4), [int(b < n % 4) for b in range(4)])
        s_last, _ = parts[-1]
        parts[-1] = (builder.select(keep, s_last, ir.Constant(_VEC4, [-0.0] * 4)), None)
    live = n
    w = LANES // 2
    while w >= 4:
        if live > w:
            d = w // 4
            for q in range(-(-(live - w) // 4)):
                parts[q] = _merge(builder, parts[q], parts[q + d], compensated)
            live = w
        w //= 2
    pair = _halves(builder, parts[0], (0, 1))
    if live > 2:
        pair = _merge(builder, pair, _halves(builder, parts[0], (2, 3)), compensated)
    lane0 = tuple(None if v is None else builder.extract_element(v, ir.Constant(_I32, 0))
                  for v in pair)
    if live > 1:
        lane1 = tuple(None if v is None else builder.extract_element(v, ir.Constant(_I32, 1))
                      for v in pair)
        lane0 = _merge(builder, lane0, lane1, compensated)
    return _finalize(builder, *lane0)


@intrinsic
def row_dots(typingctx, X, offsets, beta, i0, i1, compensated, U):
    """``U[i, j]`` = finalized CRO-1 dot of ``X[i, o_j:o_{j+1}]`` with ``beta[o_j:o_{j+1}]``
    for rows ``i0 <= i < i1`` and every equation ``j`` with ``o_{j+1} - o_j <=
    MAX_ROW_TERMS`` (``+0.0`` for an empty one; wider ones are left untouched). ``X``,
    ``U``: 2-D C-contiguous float64; ``offsets``: 1-D int64 (K + 1); ``beta``: 1-D
    C-contiguous float64; ``compensated`` a literal bool; no bounds checks."""
    if not isinstance(compensated, types.BooleanLiteral):
        return None
    comp = compensated.literal_value
    sig = types.void(X, offsets, beta, i0, i1, compensated, U)

    def codegen(context, builder, signature, args):
        x_val, off_val, b_val, i0_val, i1_val, _, u_val = args
        x_arr, off_arr, b_arr, u_arr = (
            context.make_array(signature.args[k])(context, builder, v)
            for k, v in ((0, x_val), (1, off_val), (2, b_val), (6, u_val)))
        P = builder.extract_value(x_arr.shape, 1)
        K = builder.extract_value(u_arr.shape, 1)
        row, _, close_rows = _counted_loop(builder, builder.sub(i1_val, i0_val), "rows")
        i = builder.add(i0_val, row)
        x_row = builder.gep(x_arr.data, [builder.mul(i, P)])
        u_row = builder.gep(u_arr.data, [builder.mul(i, K)])
        j, _, close_eqs = _counted_loop(builder, K, "equations")
        start = builder.load(builder.gep(off_arr.data, [j]))
        width = builder.sub(builder.load(builder.gep(off_arr.data, [builder.add(
            j, ir.Constant(_I64, 1))])), start)
        x_ptr, b_ptr = builder.gep(x_row, [start]), builder.gep(b_arr.data, [start])
        u_ptr = builder.gep(u_row, [j])
        after = builder.append_basic_block("equation_done")
        switch = builder.switch(width, after)
        for n in range(MAX_ROW_TERMS + 1):
            case = builder.append_basic_block(f"width{n}")
            switch.add_case(ir.Constant(_I64, n), case)
            builder.position_at_end(case)
            value = (ir.Constant(_F64, 0.0) if n == 0
                     else _tree_dot(builder, x_ptr, b_ptr, n, comp))
            builder.store(value, u_ptr)
            builder.branch(after)
        builder.position_at_end(after)
        close_eqs()
        close_rows()
        return context.get_dummy_value()

    return sig, codegen
