"""CRO-1 reductions of many sequences at once, laid out as flat runs of terms.

Term ``t`` of sequence ``x`` (``x < L``) is a product ``fl(A[t * sa + x] * B[t * sb +
(x >> bshift)])``: A holds one run of ``L`` values per term, B either one run per term
(``bshift = 0``) or one value per 32 consecutive sequences (``bshift = 5``, e.g. a
coefficient shared by the 32 rows of a block). :func:`dot_tree` and :func:`dot_segments`
reduce every sequence in CRO-1 order with each step of the order -- lane accumulation,
lane tree, chunk tree -- done as one flat loop over the ``L`` sequences. The caller
chooses what the sequences are (32 rows times the equations of a tile, the 32 rows of a
Woodbury block), so the loops are long and vectorise well, whatever the number of terms.

The order is the reference's (:mod:`reprogls.kernels.reference.cro`) step by step:

* ``n <= 32`` (:func:`dot_tree`): term ``t`` is lane ``t``'s only term, ``(v, 0)``; the
  lane tree merges live lanes only (merging an empty ``-0.0`` lane changes no result
  bit: ``s + -0.0`` is ``s``, and the compensation only changes the sign of a zero, which
  finalize ignores, or turns NaN next to a non-finite ``s``, where finalize returns
  ``s``), and a lane's product is formed
  where the tree first reads it. For ``n <= register_trees.MAX_TERMS`` with one B value
  per 32 sequences (``bshift = 5``, every SUR block kernel) the same tree runs with all
  partials in vector registers (:mod:`.register_trees`), which is ~1.5x faster than the
  flat merge passes below;
* ``n > 32`` (:func:`dot_segments`): lane ``l`` of chunk ``c`` accumulates terms
  ``c*8192 + l + 32 j`` in order (TwoSum in compensated mode), then the lane tree of the
  chunk, then the chunk tree. With one B value per 32 sequences a lane runs all its
  terms with the partials in registers (:func:`.simd.lane_sums`); otherwise one flat
  pass over the lane partials per block of 32 terms;
* the result of each sequence is ``finalize(s, comp)``. With one chunk and all 32
  lanes live, the lane tree and finalize run with each sequence's 32 lane partials in
  vector registers, eight sequences at a time (:func:`lane_tree_rows`); as flat passes
  (:func:`merge_segments`) they were 31 Numba calls per reduction and cost more than
  the lane sums themselves at K = 200 (twenty-third session: the Woodbury block's ``t =
  G^T u``, K = 200, k = 5, one core in cache, lane sums 76 / 159 ns per row plain /
  compensated, lane tree 48 / 113, finalize 11 / 13).

Only ``+ - *`` of IEEE binary64 (no FMA; Numba's default ``fastmath=False``).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ..reference.cro import CANONICAL_NAN
from ._cro import CHUNK, DBL_MAX, LANES, two_sum
from .blocked import runtime_flag, runtime_int
from .jit import njit
from .register_trees import MAX_TERMS, tree_dots
from .row_trees import _finalize
from .simd import (
    _I64,
    _VEC8,
    LANE_SUM_RANKS_PLAIN,
    LANE_SUM_WIDTH_COMPENSATED,
    LANE_SUM_WIDTH_PLAIN,
    _counted_loop,
    _merge8,
    axpy_run,
    lane_sums,
)
from .views import unmanaged

__all__ = ["dot_segments", "dot_tree", "finalize_segment", "lane_tree_rows", "merge_segments"]


@njit(cache=True)
def merge_segments(S, E, dst, src, L, compensated):
    """CRO-1 merge of the partials in segment ``src`` into segment ``dst`` (both of length
    ``L``, offsets in elements): ``(S, E)[dst + x] <- merge((S, E)[dst + x], (S, E)[src + x])``."""
    sd, ss = S[dst:dst + L], S[src:src + L]
    if compensated:
        ed, es = E[dst:dst + L], E[src:src + L]
        for x in range(L):
            t, e = two_sum(sd[x], ss[x])
            ed[x] = (ed[x] + es[x]) + e
            sd[x] = t
    else:
        for x in range(L):
            sd[x] = sd[x] + ss[x]


@njit(cache=True)
def _lane_tree(S, E, base, live, L, compensated):
    """CRO-1 lane tree over the ``live`` lane segments starting at segment ``base``: at
    width ``w``, lanes ``0 .. min(w, live - w) - 1`` merge lanes ``w ..``, which is one
    flat merge of two contiguous runs of segments."""
    w = LANES // 2
    while w >= 1:
        if live > w:
            merge_segments(S, E, base * L, (base + w) * L, (live - w) * L, compensated)
            live = w
        w //= 2


@njit(cache=True)
def _chunk_tree(S, E, n_ch, spacing, L, compensated):
    """CRO-1 chunk tree over the partials at ``S[c * spacing:][:L]``, ``c < n_ch``: pairs
    ``(2i, 2i + 1)`` level by level, an odd last one passing up; the root ends at 0."""
    stride = 1
    while stride < n_ch:
        for c in range(0, n_ch - stride, 2 * stride):
            merge_segments(S, E, c * spacing, (c + stride) * spacing, L, compensated)
        stride *= 2


@njit(cache=True)
def finalize_segment(S, E, src, L, compensated, out):
    """``out[x] = finalize(S[src + x], E[src + x])`` with selects (it vectorises)."""
    ss, o = S[src:src + L], out[:L]
    if compensated:
        es = E[src:src + L]
        for x in range(L):
            s, c = ss[x], es[x]
            r = s + c
            r = r if (abs(s) <= DBL_MAX) & (c != 0.0) else s
            o[x] = r if r == r else CANONICAL_NAN
    else:
        for x in range(L):
            r = ss[x]
            o[x] = r if r == r else CANONICAL_NAN


@intrinsic
def lane_tree_rows(typingctx, S, E, L, compensated, out):
    """``out[x] = finalize(root)`` for ``x < L`` (a multiple of 8), ``root`` the CRO-1
    lane tree over the 32 lane partials ``(S, E)[l * L + x]`` (all 32 lanes live):
    :func:`_lane_tree` over 32 lanes and :func:`finalize_segment` of
    :func:`dot_segments` for one chunk, with a sequence's lanes in registers, eight
    sequences per vector. ``S``, ``E``, ``out``: 1-D C-contiguous float64;
    ``compensated`` a literal bool; no bounds checks."""
    if not isinstance(compensated, types.BooleanLiteral):
        return None
    comp = compensated.literal_value
    sig = types.void(S, E, L, compensated, out)

    def codegen(context, builder, signature, args):
        s_arr, e_arr, o_arr = (context.make_array(signature.args[k])(context, builder, v)
                               for k, v in ((0, args[0]), (1, args[1]), (4, args[4])))
        L_val = args[2]
        v, _, close = _counted_loop(builder, builder.ashr(L_val, ir.Constant(_I64, 3)),
                                    "lane_tree_rows")
        x = builder.shl(v, ir.Constant(_I64, 3))

        def load(arr, lane):
            at = builder.add(builder.mul(ir.Constant(_I64, lane), L_val), x)
            return builder.load(builder.bitcast(builder.gep(arr.data, [at]),
                                                _VEC8.as_pointer()), align=8)

        lanes = [(load(s_arr, lane), load(e_arr, lane) if comp else None)
                 for lane in range(LANES)]
        w = LANES // 2
        while w >= 1:
            for lane in range(w):
                (sa, ca), (sb, cb) = lanes[lane], lanes[lane + w]
                lanes[lane] = _merge8(builder, sa, ca, sb, cb, comp)
            w //= 2
        root = _finalize(builder, *lanes[0])
        builder.store(root, builder.bitcast(builder.gep(o_arr.data, [x]), _VEC8.as_pointer()),
                      align=8)
        close()
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True)
def _products_into(S, E, dst, A, a0, B, b0, bshift, L, compensated, accumulate):
    """``S[dst + x] = fl(A[a0 + x] * B[b0 + (x >> bshift)])`` (a lane's first term,
    ``E = 0``), or, with ``accumulate``, one CRO-1 lane step with that term. ``bshift``
    is 0 (B elementwise) or 5 (one B value per 32 consecutive x)."""
    sd, a = S[dst:dst + L], A[a0:a0 + L]
    ed = E[dst:dst + L]
    if bshift == 0:
        b = B[b0:b0 + L]
        if not accumulate:
            for x in range(L):
                sd[x] = a[x] * b[x]
        elif compensated:
            for x in range(L):
                t, e = two_sum(sd[x], a[x] * b[x])
                ed[x] = ed[x] + e
                sd[x] = t
        else:
            for x in range(L):
                sd[x] = sd[x] + a[x] * b[x]
    else:  # L is a multiple of 32 here: one B value per run of 32
        for blk in range(L // 32):
            bv = B[b0 + blk]
            o = blk * 32
            if not accumulate:
                for y in range(32):
                    sd[o + y] = a[o + y] * bv
                continue
            if compensated:  # (LLVM vectorises this loop)
                for y in range(32):
                    t, e = two_sum(sd[o + y], a[o + y] * bv)
                    ed[o + y] = ed[o + y] + e
                    sd[o + y] = t
            else:  # the plain step stays scalar as a loop (0.6 GMAC/s): an intrinsic
                axpy_run(unmanaged(sd)[o:o + 32], unmanaged(ed)[o:o + 32],
                         unmanaged(a)[o:o + 32], bv, False)
    if compensated and not accumulate:
        for x in range(L):
            ed[x] = 0.0


@njit(cache=True)
def _lane_sums(S, E, lanes, A, sa, B, sb, t0, t1, L, compensated):
    """CRO-1 lane accumulation of the chunk of terms ``t0 .. t1 - 1`` into the lane
    segments at ``lanes`` (:func:`dot_segments` with ``bshift = 5``, L a multiple of 32):
    lane ``l`` takes terms ``t0 + l + 32 r`` in order, with its partials for 16 or 32
    sequences at a time in registers (:func:`.simd.lane_sums`)."""
    S, E, A, B = unmanaged(S), unmanaged(E), unmanaged(A), unmanaged(B)
    for lane in range(min(LANES, t1 - t0)):
        t = t0 + lane
        count = (t1 - 1 - t) // LANES + 1
        if compensated:
            for x0 in range(0, L, LANE_SUM_WIDTH_COMPENSATED):
                lane_sums(S, E, lanes + lane * L + x0, 0, A, t * sa + x0, LANES * sa, B,
                          t * sb + (x0 >> 5), LANES * sb, 0, count,
                          LANE_SUM_WIDTH_COMPENSATED, 1, True)
        else:
            for x0 in range(0, L, LANE_SUM_WIDTH_PLAIN):
                lane_sums(S, E, lanes + lane * L + x0, 0, A, t * sa + x0, LANES * sa, B,
                          t * sb + (x0 >> 5), LANES * sb, 0, count, LANE_SUM_WIDTH_PLAIN,
                          1, False)


@njit(cache=True)
def dot_segments(A, sa, B, sb, bshift, n, L, compensated, S, E, out):
    """``out[x]`` = finalized CRO-1 reduction over ``t < n`` of
    ``fl(A[t * sa + x] * B[t * sb + (x >> bshift)])``, ``x < L``.

    ``bshift`` is 0 (B elementwise) or 5 (B holds one value per 32 consecutive x; L is a
    multiple of 32). The products are formed on the fly; the scratch ``S``, ``E`` holds
    the 32 lane segments of every chunk (``32 L ceil(n / 8192)``). With ``bshift = 5``
    each lane runs all its terms with the partials in registers (:func:`_lane_sums`);
    with ``bshift = 0`` a block of 32 terms is one flat pass over the lane segments
    (one loop when A and B are dense in the layout, ``sa == sb == L``).
    """
    if n == 0:
        for x in range(L):
            out[x] = 0.0
        return
    flat = sa == L and sb == L
    n_ch = (n + CHUNK - 1) // CHUNK
    registers = n_ch == 1 and n >= LANES and L % 8 == 0  # lane tree: lane_tree_rows
    for c in range(n_ch):
        t0, t1 = c * CHUNK, min(n, (c + 1) * CHUNK)
        lanes = c * LANES * L  # this chunk's 32 lane segments
        if bshift == 5:
            _lane_sums(S, E, lanes, A, sa, B, sb, t0, t1, L, compensated)
        else:
            for first in range(t0, t1, LANES):
                count = min(LANES, t1 - first)
                if flat:
                    _products_into(S, E, lanes, A, first * L, B, first * sb, bshift,
                                   count * L, compensated, first > t0)
                else:
                    for lane in range(count):
                        t = first + lane
                        _products_into(S, E, lanes + lane * L, A, t * sa, B, t * sb, bshift,
                                       L, compensated, first > t0)
        if registers:
            if compensated:
                lane_tree_rows(S, E, L, True, out)
            else:
                lane_tree_rows(S, E, L, False, out)
            return
        _lane_tree(S, E, c * LANES, min(LANES, t1 - t0), L, compensated)
    _chunk_tree(S, E, n_ch, LANES * L, L, compensated)
    finalize_segment(S, E, runtime_int(0), L, compensated, out)


@njit(cache=True)
def dot_segments_ranks(A, sa, BT, n, L, compensated, S, E, out):
    """``out[q * L + x]`` = :func:`dot_segments` ``(A, sa, BT[q], 1, 5, n, L, ...)`` for
    every row ``q`` of ``BT`` (k, n), C-contiguous: the Woodbury block's ``t = G^T u``,
    one reduction per rank over the same ``A``.

    In plain mode with one chunk of at least 32 terms, the lanes of up to
    :data:`.simd.LANE_SUM_RANKS_PLAIN` ranks (as many as ``S`` holds, ``32 L`` values
    each) run in one :func:`.simd.lane_sums` call, then each rank's register lane
    tree: every rank's lanes, terms and tree are :func:`dot_segments`' (the same bits),
    with the loads of ``A`` shared. Otherwise rank by rank. Twenty-fourth session, one
    core of the Emerald Rapids VM, block in cache, K = 200, k = 5: ~98 -> ~61 ns per row
    (plain; K = 1000, k = 10: ~711 -> ~468); ``LANES`` calls of six terms each per rank
    had been mostly loop overhead.
    """
    k = BT.shape[0]
    group = LANES * L
    most = min(LANE_SUM_RANKS_PLAIN, S.shape[0] // group)
    if compensated or most < 2 or not LANES <= n <= CHUNK or L % LANE_SUM_WIDTH_PLAIN:
        one, b5 = runtime_int(1), runtime_int(5)
        for q in range(k):
            dot_segments(A, sa, BT[q], one, b5, n, L, compensated, S, E, out[q * L:])
        return
    B = BT.reshape(k * n)
    q = 0
    while q < k:
        r = min(most, k - q)
        r = 4 if r >= 4 else 2 if r >= 2 else 1
        _lane_sums_ranks(S, A, sa, B, q * n, n, L, r)
        for rank in range(r):
            lane_tree_rows(S[rank * group:], E, L, False, out[(q + rank) * L:])
        q += r


@njit(cache=True)
def _lane_sums_ranks(S, A, sa, B, b0, n, L, ranks):
    """The plain lane sums of :func:`dot_segments_ranks` for the ``ranks`` (4, 2 or 1)
    coefficient rows at ``B[b0 + q n]``, into ``S[q 32 L + l L + x]``: lane ``l`` takes
    terms ``l + 32 r`` (:func:`_lane_sums` with ``bshift = 5``, all 32 lanes live). A
    loop of its own rather than a ``ranks`` argument of :func:`_lane_sums`: every kernel
    that reaches :func:`dot_segments` would then compile the four- and two-rank loops
    too (Numba re-optimises a helper inside each caller)."""
    S, A, B = unmanaged(S), unmanaged(A), unmanaged(B)
    group = LANES * L
    for lane in range(LANES):
        count = (n - 1 - lane) // LANES + 1
        for x0 in range(0, L, LANE_SUM_WIDTH_PLAIN):
            b = b0 + lane + (x0 >> 5)
            if ranks == 4:
                lane_sums(S, S, lane * L + x0, group, A, lane * sa + x0, LANES * sa, B, b,
                          LANES, n, count, LANE_SUM_WIDTH_PLAIN, 4, False)
            elif ranks == 2:
                lane_sums(S, S, lane * L + x0, group, A, lane * sa + x0, LANES * sa, B, b,
                          LANES, n, count, LANE_SUM_WIDTH_PLAIN, 2, False)
            else:
                lane_sums(S, S, lane * L + x0, group, A, lane * sa + x0, LANES * sa, B, b,
                          LANES, n, count, LANE_SUM_WIDTH_PLAIN, 1, False)


# --- short dot products: the lane tree over products formed where they are read -------
# For n <= 32 terms every lane holds one term, a product fl(A * B) with compensation 0.
# A lane is a *leaf* until a merge writes its partial to S/E; the lanes that hold
# partials are always a prefix 0..m-1 (merges write to lanes 0..live-w-1). A merge with
# a leaf reads its product directly from A and B and takes its compensation as 0, which
# changes at most the sign of a zero compensation (never a result bit: finalize ignores a
# zero compensation, and zero signs only ever reach zero sums).


@njit(cache=True)
def _merge_partial_leaf(S, E, dst, A, a0, B, b0, bshift, L, compensated):
    """Partial ``(S, E)[dst + x]`` merges the leaf ``fl(A[a0 + x] * B[b0 + (x >> bshift)])``."""
    _products_into(S, E, dst, A, a0, B, b0, bshift, L, compensated, runtime_flag(True))


@njit(cache=True)
def _merge_leaves(S, E, dst, A, a0, a1, B, b0, b1, bshift, L, compensated):
    """``(S, E)[dst + x]`` = merge of the leaves ``fl(A[a0 + x] B[b0 + (x >> bshift)])``
    and ``fl(A[a1 + x] B[b1 + (x >> bshift)])``."""
    sd, ed = S[dst:dst + L], E[dst:dst + L]
    pa, qa = A[a0:a0 + L], A[a1:a1 + L]
    if bshift == 0:
        pb, qb = B[b0:b0 + L], B[b1:b1 + L]
        if compensated:
            for x in range(L):
                t, e = two_sum(pa[x] * pb[x], qa[x] * qb[x])
                ed[x] = e
                sd[x] = t
        else:
            for x in range(L):
                sd[x] = pa[x] * pb[x] + qa[x] * qb[x]
        return
    for blk in range(L // 32):
        pv, qv = B[b0 + blk], B[b1 + blk]
        o = blk * 32
        if compensated:
            for y in range(32):
                t, e = two_sum(pa[o + y] * pv, qa[o + y] * qv)
                ed[o + y] = e
                sd[o + y] = t
        else:
            for y in range(32):
                sd[o + y] = pa[o + y] * pv + qa[o + y] * qv


@njit(cache=True)
def _finalize_products(A, B, bshift, L, out):
    """``out[x]`` for a single term: the product itself (compensation 0)."""
    for x in range(L):
        r = A[x] * B[x >> bshift]
        out[x] = r if r == r else CANONICAL_NAN


@njit(cache=True)
def dot_tree(A, sa, B, sb, bshift, n, L, compensated, S, E, out):
    """``out[x]`` = finalized CRO-1 reduction over ``t < n`` of
    ``fl(A[t * sa + x] * B[t * sb + (x >> bshift)])`` (as :func:`dot_segments`); for
    ``n <= 32`` without materialising the products (scratch ``S``, ``E``: ``16 L``;
    larger ``n``: as :func:`dot_segments`)."""
    if n > LANES:
        dot_segments(A, sa, B, sb, bshift, n, L, compensated, S, E, out)
        return
    if bshift == 5 and 1 <= n <= MAX_TERMS and L % 8 == 0:  # the tree in registers
        if compensated:
            tree_dots(A, sa, B, sb, n, L, True, out)
        else:
            tree_dots(A, sa, B, sb, n, L, False, out)
        return
    if n <= 1:
        if n == 0:
            for x in range(L):
                out[x] = 0.0
        else:
            _finalize_products(A, B, bshift, L, out)
        return
    live = n
    m = 0  # lanes 0..m-1 hold partials in S/E, lanes m..live-1 are leaves
    w = LANES // 2
    while w >= 1:
        if live > w:
            a = live - w  # lanes l < a merge lane l + w
            both = max(0, min(a, m - w))  # l < m - w: partial with partial
            if both > 0:
                merge_segments(S, E, runtime_int(0), w * L, both * L, compensated)
            for lane in range(both, min(a, m)):  # partial with leaf
                _merge_partial_leaf(S, E, lane * L, A, (lane + w) * sa, B, (lane + w) * sb,
                                    bshift, L, compensated)
            for lane in range(max(both, min(a, m)), a):  # leaf with leaf
                _merge_leaves(S, E, lane * L, A, lane * sa, (lane + w) * sa, B, lane * sb,
                              (lane + w) * sb, bshift, L, compensated)
            m = min(max(m, a), w)
            live = w
        w //= 2
    finalize_segment(S, E, runtime_int(0), L, compensated, out)
