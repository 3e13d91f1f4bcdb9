"""``sur_matvec`` along the rows of X: each short dot's lane tree inside one row, in
vector registers.

In CRO-1 a dot of ``n <= 32`` terms is a lane tree over ``n`` lanes holding one product
each (:mod:`.segments`, :mod:`.register_trees`). The ``n`` terms of ``U[i, j]`` are
``n`` consecutive values of row ``i`` of X, so lanes ``4 q .. 4 q + 3`` are one
four-wide vector load: :func:`row_dots` walks the rows of X in place, loads each
equation's segment as ``ceil(n / 4)`` vectors (the last one masked: lanes past ``n``
are not read and hold ``-0.0``) and runs the tree with whole vectors for ``w = 16, 8,
4`` (vector ``q`` merges vector ``q + w / 4``), then the two halves of the first vector
(``w = 2``) and its two lanes (``w = 1``). Rows go four at a time: the last two levels
and ``finalize`` run once for four rows, with two rows' first vectors shuffled into one
(``w = 2``) and the four rows' lanes 0 against their lanes 1 (``w = 1``). In cache on
the Zen 3 box, one core, 10-term dots: 2.0 / 4.7 ns per dot (plain / compensated)
against 2.9 / 7.6 ns row by row.

Where the reference tree merges only live lanes (``l < live - w``), a vector merge also
merges up to three lanes with the ``-0.0`` padding. That changes no result bit: ``s +
-0.0`` is ``s``; the compensation becomes ``+0.0`` (or NaN next to a non-finite ``s``)
where the reference keeps a leaf's 0, which changes at most the sign of a zero
compensation, ignored by ``finalize``, or a compensation ``finalize`` does not use
because ``s`` is not finite. The same argument covers the live-lane tree of
:func:`.segments.dot_tree`, and the oracle tests check the bits.

:func:`row_dots8` (the fused normal operator's) takes eight rows at once the other way
round: it forms the terms along the rows eight columns at a time, transposes each 8 x 8
tile of terms into a small ring of columns on the stack, and runs each equation's tree
on whole vectors of eight rows -- the reference's live-lane merges, vertically, with no
padding lanes and no shuffles in the tree. In cache on the 2-core Emerald Rapids VM
(twenty-second session; one core, K = 200, p = 10, eight rows per call): 393 / 636 ns
per row (plain / compensated) against 441 / 1009 for :func:`row_dots`; K = 1000, p = 5:
1255 / 1644 against 1296 / 3115. Its output is one vector per equation (eight rows),
which is the fused operator's block layout; ``sur_matvec`` writes rows of U and keeps
:func:`row_dots` (:func:`.streamed._row_dots_tasks` for why).

The tree depends on ``n``, so the intrinsic emits one specialised block per ``n = 0 ..
MAX_ROW_TERMS`` behind a ``switch`` on each equation's width (an equal-width layout
takes the same branch every time). Only ``fmul``/``fadd``/``fsub`` without fast-math
flags, shuffles, masked loads and selects.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ..reference.cro import CANONICAL_NAN
from ._cro import DBL_MAX, LANES
from .simd import _counted_loop, _join, _masked_load, _splat, _transpose8, _two_sum

__all__ = ["MAX_ROW_TERMS", "RING", "row_dots", "row_dots8"]

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
    as in :func:`.register_trees._tree`. (Issuing three of the additions as exact FMAs,
    as :func:`.simd.gram_block` does on Zen, measured no faster here: 5.1 against 4.7 ns
    per four-row dot of 10 terms in cache.)"""
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
    """``finalize(s, c)`` of :mod:`reprogls.kernels.reference.cro`, for scalars or
    vectors."""
    def const(value):
        if isinstance(s.type, ir.VectorType):
            return ir.Constant(s.type, [value] * s.type.count)
        return ir.Constant(_F64, value)

    if c is not None:
        finite = builder.and_(builder.fcmp_ordered("<=", s, const(DBL_MAX)),
                              builder.fcmp_ordered(">=", s, const(-DBL_MAX)))
        use_c = builder.and_(finite, builder.fcmp_unordered("!=", c, const(0.0)))
        s = builder.select(use_c, builder.fadd(s, c), s)
    return builder.select(builder.fcmp_ordered("==", s, s), s, const(CANONICAL_NAN))


def _vector_levels(builder, x_ptr, b_ptr, n, compensated):
    """Leaves and the levels ``w = 16, 8, 4`` of the ``n``-term tree of the values at
    ``x_ptr`` and ``b_ptr``: returns the first vector ``(s, c)`` (lanes 0 .. 3) and the
    live lanes left (``min(n, 4)``)."""
    parts = []
    for q in range(-(-n // 4)):
        live = min(4, n - 4 * q)
        x = _load4(builder, builder.gep(x_ptr, [ir.Constant(_I64, 4 * q)]), live)
        b = _load4(builder, builder.gep(b_ptr, [ir.Constant(_I64, 4 * q)]), live)
        parts.append((builder.fmul(x, b), None))
    # the padded lanes must hold -0.0 (the identity), not -0.0 * -0.0 = +0.0
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
    return parts[0], live


def _tree_dot(builder, x_ptr, b_ptr, n, compensated):
    """The finalized CRO-1 dot of the ``n`` values at ``x_ptr`` and ``b_ptr``."""
    first, live = _vector_levels(builder, x_ptr, b_ptr, n, compensated)
    pair = _halves(builder, first, (0, 1))
    if live > 2:
        pair = _merge(builder, pair, _halves(builder, first, (2, 3)), compensated)
    lane0 = tuple(None if v is None else builder.extract_element(v, ir.Constant(_I32, 0))
                  for v in pair)
    if live > 1:
        lane1 = tuple(None if v is None else builder.extract_element(v, ir.Constant(_I32, 1))
                      for v in pair)
        lane0 = _merge(builder, lane0, lane1, compensated)
    return _finalize(builder, *lane0)


def _pair_shuffle(builder, a, b, mask):
    """``shufflevector`` of the partials ``a`` and ``b`` (``(s, c)``, ``c`` None or not in
    both) with one mask."""
    m = ir.Constant(ir.VectorType(_I32, 4), list(mask))
    return tuple(None if va is None else builder.shuffle_vector(va, vb, m)
                 for va, vb in zip(a, b, strict=True))


#: Where row ``r`` of four ends up in :func:`_four_tree_dots`' result vector.
FOUR_ROWS_SLOT = (0, 2, 1, 3)


def _four_tree_dots(builder, x_ptrs, b_ptr, n, compensated):
    """The finalized CRO-1 dots of four rows' ``n`` values (at ``x_ptrs``) with ``b_ptr``,
    in one vector, row ``r`` in slot ``FOUR_ROWS_SLOT[r]``: the levels ``w >= 4`` row by
    row, then ``w = 2`` for two rows per vector (their lanes 0, 1 against 2, 3) and
    ``w = 1`` for all four, and one vector finalize. Lanewise the same merges as
    :func:`_tree_dot`."""
    firsts = [_vector_levels(builder, x, b_ptr, n, compensated) for x in x_ptrs]
    live = firsts[0][1]
    rows = [first for first, _ in firsts]
    # (r.l0, r.l1, r'.l0, r'.l1) for the row pairs (0, 1) and (2, 3)
    pairs = []
    for r in (0, 2):
        low = _pair_shuffle(builder, rows[r], rows[r + 1], (0, 1, 4, 5))
        if live > 2:
            low = _merge(builder, low, _pair_shuffle(builder, rows[r], rows[r + 1],
                                                     (2, 3, 6, 7)), compensated)
        pairs.append(low)
    # lanes 0 of (row 0, row 2, row 1, row 3), then their lanes 1
    result = _pair_shuffle(builder, pairs[0], pairs[1], (0, 4, 2, 6))
    if live > 1:
        result = _merge(builder, result,
                        _pair_shuffle(builder, pairs[0], pairs[1], (1, 5, 3, 7)),
                        compensated)
    return _finalize(builder, *result)


def _width_switch(builder, width, case, name):
    """A ``switch`` on an equation's ``width``: ``case(n)`` emits the code of width ``n``
    for ``n = 0 .. MAX_ROW_TERMS`` (other widths do nothing); the builder is left after
    it."""
    after = builder.append_basic_block(f"{name}done")
    switch = builder.switch(width, after)
    for n in range(MAX_ROW_TERMS + 1):
        block = builder.append_basic_block(f"{name}{n}")
        switch.add_case(ir.Constant(_I64, n), block)
        builder.position_at_end(block)
        case(n)
        builder.branch(after)
    builder.position_at_end(after)


@intrinsic
def row_dots(typingctx, X, offsets, beta, i0, i1, U, u0, compensated):
    """``U[u0 + i - i0, j]`` = finalized CRO-1 dot of ``X[i, o_j:o_{j+1}]`` with
    ``beta[o_j:o_{j+1}]`` for rows ``i0 <= i < i1`` and every equation ``j`` with
    ``o_{j+1} - o_j <= MAX_ROW_TERMS`` (``+0.0`` for an empty one; wider ones are left
    untouched). ``X``,
    ``U``: 2-D C-contiguous float64; ``offsets``: 1-D int64 (K + 1); ``beta``: 1-D
    C-contiguous float64; ``compensated`` a literal bool; no bounds checks."""
    if not isinstance(compensated, types.BooleanLiteral):
        return None
    comp = compensated.literal_value
    sig = types.void(X, offsets, beta, i0, i1, U, u0, compensated)

    def codegen(context, builder, signature, args):
        x_val, off_val, b_val, i0_val, i1_val, u_val, u0_val, _ = args
        x_arr, off_arr, b_arr, u_arr = (
            context.make_array(signature.args[k])(context, builder, v)
            for k, v in ((0, x_val), (1, off_val), (2, b_val), (5, u_val)))
        P = builder.extract_value(x_arr.shape, 1)
        K = builder.extract_value(u_arr.shape, 1)
        n_rows = builder.sub(i1_val, i0_val)
        fours = builder.ashr(n_rows, ir.Constant(_I64, 2))

        def equations(first_row, n_rows_at_once):
            """The loop over the equations of rows ``first_row ..`` (1 or 4 of them)."""
            x_rows = [builder.gep(x_arr.data, [builder.mul(builder.add(
                first_row, ir.Constant(_I64, r)), P)]) for r in range(n_rows_at_once)]
            u_first = builder.add(u0_val, builder.sub(first_row, i0_val))
            u_rows = [builder.gep(u_arr.data, [builder.mul(builder.add(
                u_first, ir.Constant(_I64, r)), K)]) for r in range(n_rows_at_once)]
            j, _, close_eqs = _counted_loop(builder, K, "equations")
            start = builder.load(builder.gep(off_arr.data, [j]))
            width = builder.sub(builder.load(builder.gep(off_arr.data, [builder.add(
                j, ir.Constant(_I64, 1))])), start)
            x_ptrs = [builder.gep(x_row, [start]) for x_row in x_rows]
            b_ptr = builder.gep(b_arr.data, [start])
            u_ptrs = [builder.gep(u_row, [j]) for u_row in u_rows]

            def case(n):
                if n == 0:
                    for u_ptr in u_ptrs:
                        builder.store(ir.Constant(_F64, 0.0), u_ptr)
                elif n_rows_at_once == 1:
                    builder.store(_tree_dot(builder, x_ptrs[0], b_ptr, n, comp), u_ptrs[0])
                else:
                    values = _four_tree_dots(builder, x_ptrs, b_ptr, n, comp)
                    for r, u_ptr in enumerate(u_ptrs):
                        builder.store(builder.extract_element(
                            values, ir.Constant(_I32, FOUR_ROWS_SLOT[r])), u_ptr)

            _width_switch(builder, width, case, "width")
            close_eqs()

        group, _, close_groups = _counted_loop(builder, fours, "four_rows")
        equations(builder.add(i0_val, builder.shl(group, ir.Constant(_I64, 2))), 4)
        close_groups()
        rest = builder.sub(n_rows, builder.shl(fours, ir.Constant(_I64, 2)))
        row, _, close_rows = _counted_loop(builder, rest, "rows")
        equations(builder.add(builder.add(i0_val, builder.shl(fours, ir.Constant(_I64, 2))),
                              row), 1)
        close_rows()
        return context.get_dummy_value()

    return sig, codegen


#: Transposed columns :func:`row_dots8` keeps (a power of two, at least
#: ``MAX_ROW_TERMS + 8``): ``RING`` vectors of eight rows, 4 KiB on the stack.
RING = 64

_VEC8 = ir.VectorType(_F64, 8)
_VEC8_I64 = ir.VectorType(_I64, 8)


def _produce_tile(builder, rows, b_ptr, column, n_cols, ring):
    """Columns ``column .. column + 7`` of the eight ``rows`` times ``beta`` (the terms
    ``fl(X[i, c] * beta[c])``), transposed into ``ring`` slots ``column mod RING ..``:
    slot ``c`` then holds column ``c`` of the eight rows. Past ``n_cols`` nothing is read
    (masked loads); those slots hold values no equation uses."""
    live = builder.sub(n_cols, column)
    inside = builder.icmp_signed("<", ir.Constant(_VEC8_I64, list(range(8))),
                                 _splat(builder, live))
    whole = builder.icmp_signed(">=", live, ir.Constant(_I64, 8))

    def terms(load):
        beta = load(builder.gep(b_ptr, [column]))
        return [builder.fmul(load(builder.gep(row, [column])), beta) for row in rows]

    with builder.if_else(whole) as (then, otherwise):
        with then:
            full = terms(lambda ptr: builder.load(builder.bitcast(ptr, _VEC8.as_pointer()),
                                                  align=8))
            block_full = builder.block
        with otherwise:
            part = terms(lambda ptr: _masked_load(builder, ptr, inside))
            block_part = builder.block
    terms = _join(builder, full, block_full, part, block_part)
    slot = builder.and_(column, ir.Constant(_I64, RING - 1))
    for c, col in enumerate(_transpose8(builder, terms)):
        ptr = builder.gep(ring, [builder.add(slot, ir.Constant(_I64, c))])
        builder.store(col, ptr, align=8)


def _column_tree(builder, ring, start, n, compensated):
    """The finalized CRO-1 dots of the ``n`` transposed columns ``start ..`` in ``ring``
    (lane ``l`` holds column ``start + l``): the lane tree of the reference over the live
    lanes only, each merge eight rows wide."""
    lanes = []
    for lane in range(n):
        slot = builder.and_(builder.add(start, ir.Constant(_I64, lane)),
                            ir.Constant(_I64, RING - 1))
        lanes.append((builder.load(builder.gep(ring, [slot]), align=8), None))
    live, w = n, LANES // 2
    while w >= 1:
        if live > w:
            for lane in range(live - w):
                lanes[lane] = _merge(builder, lanes[lane], lanes[lane + w], compensated)
            live = w
        w //= 2
    return _finalize(builder, *lanes[0])


def emit_row_dots8(builder, x_arr, off_arr, beta_ptr, i0, n_rows, u_ptr, u0, u_stride, comp,
                   after_equation=None):
    """The IR of :func:`row_dots8` (its arrays as Numba array structs, ``beta_ptr`` and
    ``u_ptr`` data pointers). ``after_equation(end)``, if given, emits code that runs
    after each equation's dots are stored, with ``end`` its first column past the
    equation (:mod:`.fused_rows` steps lane accumulators there)."""
    P = builder.extract_value(x_arr.shape, 1)
    K = builder.sub(builder.extract_value(off_arr.shape, 0), ir.Constant(_I64, 1))
    last = builder.sub(n_rows, ir.Constant(_I64, 1))
    rows = []
    for b in range(8):
        row = builder.add(i0, builder.select(
            builder.icmp_signed("<=", ir.Constant(_I64, b), last),
            ir.Constant(_I64, b), ir.Constant(_I64, 0)))
        rows.append(builder.gep(x_arr.data, [builder.mul(row, P)]))
    ring = cgutils.alloca_once(builder, _VEC8, size=RING, name="ring")
    produced = cgutils.alloca_once_value(builder, ir.Constant(_I64, 0))

    j, _, close_eqs = _counted_loop(builder, K, "equations8")
    start = builder.load(builder.gep(off_arr.data, [j]))
    end = builder.load(builder.gep(off_arr.data, [builder.add(j, ir.Constant(_I64, 1))]))
    # transpose tiles of eight columns until the ring holds this equation's columns
    head = builder.append_basic_block("tiles_head")
    body = builder.append_basic_block("tiles_body")
    ready = builder.append_basic_block("tiles_ready")
    builder.branch(head)
    builder.position_at_end(head)
    column = builder.load(produced)
    builder.cbranch(builder.icmp_signed("<", column, end), body, ready)
    builder.position_at_end(body)
    _produce_tile(builder, rows, beta_ptr, column, P, ring)
    builder.store(builder.add(column, ir.Constant(_I64, 8)), produced)
    builder.branch(head)
    builder.position_at_end(ready)
    width = builder.sub(end, start)
    out = builder.bitcast(builder.gep(u_ptr, [builder.add(
        u0, builder.mul(j, u_stride))]), _VEC8.as_pointer())

    def case(n):
        value = (ir.Constant(_VEC8, [0.0] * 8) if n == 0
                 else _column_tree(builder, ring, start, n, comp))
        builder.store(value, out, align=8)

    _width_switch(builder, width, case, "width8_")
    if after_equation is not None:
        after_equation(end)
    close_eqs()


@intrinsic
def row_dots8(typingctx, X, offsets, beta, i0, n_rows, UT, u0, u_stride, compensated):
    """``UT[u0 + j u_stride + b]`` = finalized CRO-1 dot of ``X[i0 + b, o_j:o_{j+1}]``
    with ``beta[o_j:o_{j+1}]`` for ``b < 8`` and every equation ``j`` with ``o_{j+1} -
    o_j <= MAX_ROW_TERMS`` (``+0.0`` for an empty one; wider ones are left untouched):
    eight rows' dots of one equation in one vector, stored as eight consecutive doubles.
    With ``n_rows < 8`` (at least 1) the slots ``b >= n_rows`` get row ``i0``'s dots
    again (no row past ``i0 + n_rows - 1`` is read).

    The terms ``fl(X[i, c] * beta[c])`` are formed along the rows, eight columns at a
    time, and transposed (8 x 8 shuffles) into a ring of :data:`RING` columns on the
    stack; each equation's tree then runs on whole vectors, one row per slot -- the
    reference's live-lane merges, with no padding lanes and no horizontal steps.
    ``X``: 2-D C-contiguous float64; ``offsets``: 1-D int64 (K + 1); ``beta``, ``UT``:
    1-D C-contiguous float64; ``compensated`` a literal bool; no bounds checks."""
    if not isinstance(compensated, types.BooleanLiteral):
        return None
    comp = compensated.literal_value
    sig = types.void(X, offsets, beta, i0, n_rows, UT, u0, u_stride, compensated)

    def codegen(context, builder, signature, args):
        x_val, off_val, b_val, i0_val, n_rows_val, u_val, u0_val, stride_val, _ = args
        x_arr, off_arr, b_arr, u_arr = (
            context.make_array(signature.args[k])(context, builder, v)
            for k, v in ((0, x_val), (1, off_val), (2, b_val), (5, u_val)))
        emit_row_dots8(builder, x_arr, off_arr, b_arr.data, i0_val, n_rows_val, u_arr.data,
                       u0_val, stride_val, comp)
        return context.get_dummy_value()

    return sig, codegen
