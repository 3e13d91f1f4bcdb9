"""One pass of the fused normal operator that reads new rows and steps old ones.

The fused operator (:func:`.streamed._normal_task`) handles a block of 32 rows in three
phases: the eight-row dots ``U = X v`` (:func:`.row_trees.row_dots8`, which reads the
block from memory), the Woodbury block, and the weighted lane steps of ``X^T W`` over
the same rows, read again from cache. Run one after the other, the first phase waits on
memory while the core has little to compute, and the third computes while memory is
idle. :func:`dots8_with_steps` interleaves them: while it walks the equations of a
new row group for the dots, it steps two lanes of the *previous* block (whose weights
``W`` are ready) over the columns the walk has passed, so the out-of-order core has the
lane steps' arithmetic to do while the new rows' loads are outstanding.

The bits cannot change: the dots are :func:`.row_trees.row_dots8`'s code, and the lane
steps are :func:`.simd.weighted_lane_axpy`'s per-vector code; each lane still takes its
four terms of a block for every column in row order, and all of a block's steps happen
before the next block's (the caller steps lanes ``2 s, 2 s + 1`` of block ``t - 1``
during row group ``s`` of block ``t``, and the last block after the loop). Only the
interleaving of independent columns and lanes differs.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._cro import LANES
from .row_trees import emit_row_dots8
from .rowgroups import BLOCK, GROUP, ROWS
from .simd import _counted_loop, _fma_signs, weighted_vector_steps

__all__ = ["dots8_with_steps"]

_I64 = ir.IntType(64)

#: Lanes of the previous block stepped per row group: a block's ``GROUP`` lanes over its
#: ``BLOCK`` row groups (2).
LANES_PER_GROUP = GROUP // BLOCK


def _step_vectors(builder, lo, hi, lanes):
    """The whole vectors ``lo .. hi - 1`` of every lane in ``lanes`` (each a closure
    emitting one vector's steps)."""
    j, _, close = _counted_loop(builder, builder.sub(hi, lo), "fused_steps")
    vector = builder.add(lo, j)
    for lane in lanes:
        lane(vector)
    close()


@intrinsic
def dots8_with_steps(typingctx, X, offsets, beta, i0, n_rows, UT, u0, SA, EA, W, prev, b0,
                     eqv, pick, span, compensated):
    """:func:`.row_trees.row_dots8` of rows ``i0 .. i0 + n_rows - 1`` into ``UT[u0 + 32 j
    + b]``, and, if ``prev >= 0``, the lane steps of lanes ``b0`` and ``b0 + 1`` of the
    previous block -- rows ``prev + b + 32 r`` (``r < 4``), weights ``W[b + 8 r + 32
    eq(c)]`` (the Woodbury block's layout), accumulators ``SA[b]``, ``EA[b]`` -- for all
    whole vectors of columns ``0 .. 8 floor(P / 8) - 1``, issued equation by equation as
    the dots pass them. Columns past the last whole vector are the caller's.

    ``X``: 2-D C-contiguous float64 (N, P); ``offsets``: int64 (K + 1); ``beta``, ``UT``,
    ``W``: 1-D C-contiguous float64; ``SA``, ``EA``: 2-D C-contiguous float64 (8, P);
    ``eqv``, ``pick``: the layout's :class:`.streamed.WeightPlan` arrays; ``span`` a
    literal int (2 or 4); ``compensated`` a literal bool; no bounds checks."""
    if not isinstance(compensated, types.BooleanLiteral) or not isinstance(
            span, types.IntegerLiteral):
        return None
    comp, n_span = compensated.literal_value, span.literal_value
    sig = types.void(X, offsets, beta, i0, n_rows, UT, u0, SA, EA, W, prev, b0, eqv, pick,
                     span, compensated)

    def codegen(context, builder, signature, args):
        (x_val, off_val, b_val, i0_val, n_rows_val, u_val, u0_val, sa_val, ea_val, w_val,
         prev_val, b0_val, eqv_val, pick_val) = args[:14]
        x_arr, off_arr, b_arr, u_arr, sa_arr, ea_arr, w_arr, eqv_arr, pick_arr = (
            context.make_array(signature.args[k])(context, builder, v)
            for k, v in ((0, x_val), (1, off_val), (2, b_val), (5, u_val), (7, sa_val),
                         (8, ea_val), (9, w_val), (12, eqv_val), (13, pick_val)))
        P = builder.extract_value(x_arr.shape, 1)
        signs = _fma_signs(builder) if comp else None
        stepping = builder.icmp_signed(">=", prev_val, ir.Constant(_I64, 0))
        done = cgutils.alloca_once_value(builder, ir.Constant(_I64, 0))
        zero = ir.Constant(_I64, 0)
        lanes = []
        for q in range(LANES_PER_GROUP):
            b = builder.add(b0_val, ir.Constant(_I64, q))
            first = builder.add(prev_val, b)
            a_rows = [builder.gep(x_arr.data, [builder.mul(builder.add(
                first, ir.Constant(_I64, LANES * r)), P)]) for r in range(BLOCK)]
            w_rows = [builder.gep(w_arr.data, [builder.add(b, ir.Constant(_I64, GROUP * r))])
                      for r in range(BLOCK)]
            s_ptr = builder.gep(sa_arr.data, [builder.mul(b, P)])
            e_ptr = builder.gep(ea_arr.data, [builder.mul(b, P)])

            def lane(vector, a_rows=a_rows, w_rows=w_rows, s_ptr=s_ptr, e_ptr=e_ptr):
                weighted_vector_steps(builder, vector, zero, s_ptr, e_ptr, a_rows, P,
                                      w_rows, ir.Constant(_I64, ROWS), eqv_arr.data,
                                      pick_arr.data, n_span, comp, signs)

            lanes.append(lane)

        def steps_up_to(end):
            """Step the vectors wholly before column ``end`` not stepped yet."""
            with builder.if_then(stepping):
                lo = builder.load(done)
                hi = builder.ashr(end, ir.Constant(_I64, 3))
                with builder.if_then(builder.icmp_signed("<", lo, hi)):
                    _step_vectors(builder, lo, hi, lanes)
                    builder.store(hi, done)

        emit_row_dots8(builder, x_arr, off_arr, b_arr.data, i0_val, n_rows_val, u_arr.data,
                       u0_val, ir.Constant(_I64, ROWS), comp, steps_up_to)
        steps_up_to(P)
        return context.get_dummy_value()

    return sig, codegen
