"""Row-block building blocks: SIMD across 32 rows at a time.

The SUR dots are short (p = 10 terms) and the Woodbury solves work on short rows too, so
vectorising *inside* one reduction does not pay. These helpers take a block of up to 32
rows, transpose it (``XT[m, b] = X[i0 + b, m]``) and run every reduction of the block
with the row index ``b`` innermost, where AVX lanes process 4 rows at once. The bits
are those of the per-row reductions (the oracle tests compare against the reference).

When the reduction runs *over* rows (``sur_rmatvec``), a block of 32 consecutive rows of
a chunk is exactly one row per CRO-1 lane (chunks start at multiples of 8192), so the
accumulators ``ST[m, b]`` are lane ``b`` of column ``m``.

Loops over ``b`` run to a runtime ``nb`` (not the constant 32) on purpose: with a
constant trip count LLVM unrolls them and its SLP vectoriser, unable to prove that the
arrays do not alias, leaves scalar code; the loop vectoriser versions them instead.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..reference.cro import CANONICAL_NAN
from ._cro import CHUNK, LANES, merge, two_sum

_DBL_MAX = 1.7976931348623157e308

#: Rows per block (one CRO-1 lane each when reducing over rows).
BLOCK = LANES


@njit(cache=True)
def runtime_int(value):
    """``value`` as a plain int64. Numba compiles a separate specialisation of a jitted
    callee for every *literal* constant argument (about a second of LLVM time each, on
    the first run of a fresh install); passing constants such as ``0`` through this
    keeps one specialisation per helper. (``return value`` would keep the literal type;
    the addition gives a plain int64.)"""
    return value + 0


@njit(cache=True)
def transpose_rows(X, i0, nb, c0, c1, XT):
    """``XT[m - c0, b] = X[i0 + b, m]`` for ``b < nb`` and ``c0 <= m < c1``."""
    if nb == BLOCK:  # 4 x 4 tiles: measured 1.7x faster than the plain double loop
        m_end = c0 + (c1 - c0) - (c1 - c0) % 4
        for b0 in range(0, BLOCK, 4):
            r0, r1, r2, r3 = X[i0 + b0], X[i0 + b0 + 1], X[i0 + b0 + 2], X[i0 + b0 + 3]
            for m in range(c0, m_end, 4):
                for q in range(4):
                    o = XT[m - c0 + q]
                    o[b0] = r0[m + q]
                    o[b0 + 1] = r1[m + q]
                    o[b0 + 2] = r2[m + q]
                    o[b0 + 3] = r3[m + q]
        start = m_end
    else:
        start = c0
    for b in range(nb):
        row = X[i0 + b]
        for m in range(start, c1):
            XT[m - c0, b] = row[m]


@njit(cache=True)
def untranspose_rows(OT, i0, nb, out):
    """``out[i0 + b, m] = OT[m, b]`` for ``b < nb`` (all columns)."""
    for b in range(nb):
        row = out[i0 + b]
        for m in range(OT.shape[0]):
            row[m] = OT[m, b]


@njit(cache=True)
def finalize_cols(s, c, nb, compensated, out):
    """``out[b] = finalize(s[b], c[b])`` for ``b < nb``, written with selects, not branches,
    so that it vectorises (it runs once per output of every short reduction)."""
    if compensated:
        for b in range(nb):
            sb, cb = s[b], c[b]
            r = sb + cb
            r = r if (abs(sb) <= _DBL_MAX) & (cb != 0.0) else sb
            out[b] = r if r == r else CANONICAL_NAN
    else:
        for b in range(nb):
            r = s[b]
            out[b] = r if r == r else CANONICAL_NAN


@njit(cache=True)
def merge_rows(S, E, dst, src, nb, compensated):
    """CRO-1 merge of partial row ``src`` into row ``dst`` of ``S``/``E``, for ``b < nb``."""
    sd, ed, ss, es = S[dst], E[dst], S[src], E[src]
    if compensated:
        for b in range(nb):
            t, e = two_sum(sd[b], ss[b])
            ed[b] = (ed[b] + es[b]) + e
            sd[b] = t
    else:
        for b in range(nb):
            sd[b] = sd[b] + ss[b]


@njit(cache=True)
def tree_live_rows(S, E, live, nb, compensated):
    """CRO-1 lane tree over rows ``0..live-1`` of ``S``/``E`` (lanes), every column b."""
    w = LANES // 2
    while w >= 1:
        for lane in range(min(w, live - w)):
            merge_rows(S, E, lane, lane + w, nb, compensated)
        live = min(live, w)
        w //= 2


@njit(cache=True)
def copy_rows(S, E, dst, src, nb):
    """``S[dst, :nb] = S[src, :nb]`` and the same for ``E``, as loops: a slice assignment
    compiles Numba's shape-mismatch error path with its string formatting (~6 s of LLVM
    time per process on a fresh install)."""
    for b in range(nb):
        S[dst, b] = S[src, b]
        E[dst, b] = E[src, b]


@njit(cache=True)
def chunk_tree_rows(PS, PC, n, nb, compensated):
    """CRO-1 chunk tree over rows ``0..n-1`` of ``PS``/``PC``, in place, every column b."""
    while n > 1:
        pairs = n // 2
        for i in range(pairs):
            if i != 2 * i:
                copy_rows(PS, PC, i, 2 * i, nb)
            merge_rows(PS, PC, i, 2 * i + 1, nb, compensated)
        if n % 2:
            copy_rows(PS, PC, pairs, n - 1, nb)
        n = pairs + n % 2


@njit(cache=True)
def dot_rows(XT, r0, n, coef, nb, compensated, S, E, PS, PC, out):
    """``out[b]`` = CRO-1 reduction over ``t < n`` of ``fl(XT[r0 + t, b] * coef[t])``.

    Scratch: ``S``/``E`` (32, >= nb); ``PS``/``PC`` (ceil(n / CHUNK), >= nb).
    """
    if n == 0:
        for b in range(nb):
            out[b] = 0.0
        return
    if n <= LANES:  # one term per lane; empty lanes are skipped (see _cro.tree_live)
        for t in range(n):
            src, st, et, ct = XT[r0 + t], S[t], E[t], coef[t]
            for b in range(nb):
                st[b] = src[b] * ct
                et[b] = 0.0
        tree_live_rows(S, E, n, nb, compensated)
        finalize_cols(S[0], E[0], nb, compensated, out)
        return
    n_ch = (n + CHUNK - 1) // CHUNK
    for ch in range(n_ch):
        S[:, :nb] = -0.0
        E[:, :nb] = -0.0
        t0, t1 = ch * CHUNK, min(n, (ch + 1) * CHUNK)
        # the mode test stays outside the loop over terms (inside it costs 2-3x)
        if compensated:
            _lanes_compensated(XT, r0, t0, t1, coef, nb, S, E)
        else:
            _lanes_plain(XT, r0, t0, t1, coef, nb, S)
        tree_live_rows(S, E, S.shape[0], nb, compensated)
        for b in range(nb):
            PS[ch, b] = S[0, b]
            PC[ch, b] = E[0, b]
    chunk_tree_rows(PS, PC, n_ch, nb, compensated)
    finalize_cols(PS[0], PC[0], nb, compensated, out)


@njit(cache=True)
def _lanes_plain(XT, r0, t0, t1, coef, nb, S):
    for t in range(t0, t1):
        src, ct, st = XT[r0 + t], coef[t], S[t % LANES]
        for b in range(nb):
            st[b] += src[b] * ct


@njit(cache=True)
def _lanes_compensated(XT, r0, t0, t1, coef, nb, S, E):
    for t in range(t0, t1):
        src, ct, st, et = XT[r0 + t], coef[t], S[t % LANES], E[t % LANES]
        for b in range(nb):
            st[b], e = two_sum(st[b], src[b] * ct)
            et[b] += e


@njit(cache=True)
def scratch(n_terms):
    """``(S, E, PS, PC)`` scratch for :func:`dot_rows` over up to ``n_terms`` terms."""
    slots = max(1, (n_terms + CHUNK - 1) // CHUNK)
    return (np.empty((LANES, BLOCK)), np.empty((LANES, BLOCK)), np.empty((slots, BLOCK)),
            np.empty((slots, BLOCK)))


@njit(cache=True)
def sur_dots_block(XT, offsets, beta, nb, compensated, work, UT):
    """``UT[j, b]`` = CRO-1 dot of equation ``j``'s columns of row ``b`` with ``beta``."""
    S, E, PS, PC = work
    for j in range(offsets.shape[0] - 1):
        o0 = offsets[j]
        dot_rows(XT, o0, offsets[j + 1] - o0, beta[o0:], nb, compensated, S, E, PS, PC,
                 UT[j])


#: Equations per tile of the flat Woodbury output step.
TILE = 64


@njit(cache=True)
def woodbury_plan(G, d, L):
    """Per-call constants of :func:`woodbury_block`: ``(G, G^T, d, L, L^T, GE, DE)`` with
    ``GE[q, 32 j + b] = G[j, q]`` and ``DE[32 j + b] = d[j]`` (the expanded forms let the
    output step run as flat loops over (equation, row) pairs)."""
    K, k = G.shape
    GE = np.empty((k, K * BLOCK))
    DE = np.empty(K * BLOCK)
    for j in range(K):
        for b in range(BLOCK):
            DE[j * BLOCK + b] = d[j]
            for q in range(k):
                GE[q, j * BLOCK + b] = G[j, q]
    return (G, np.ascontiguousarray(G.T), d, L, np.ascontiguousarray(L.T), GE, DE)


@njit(cache=True)
def woodbury_scratch(k):
    """``(TT, ZT, UT, UE, P3, E3, acc)`` scratch of :func:`woodbury_block` for rank k."""
    w = TILE * BLOCK
    return (np.empty((k, BLOCK)), np.empty((k, BLOCK)), np.empty((k, BLOCK)),
            np.empty((k, w)), np.empty((max(k, 1), w)), np.empty((max(k, 1), w)),
            np.empty(w))


@njit(cache=True)
def woodbury_block(RT, plan, nb, compensated, work, wscratch, OUT):
    """``OUT[:, b] = Sigma^-1 RT[:, b]`` for every row ``b`` of a block (reference order).

    ``RT`` and ``OUT`` are (K, 32); ``plan`` from :func:`woodbury_plan`, ``wscratch`` from
    :func:`woodbury_scratch`.
    """
    G, GT, d, L, LT, GE, DE = plan
    TT, ZT, UT, UE, P3, E3, accf = wscratch
    S, E, PS, PC = work
    K, k = G.shape
    zero = runtime_int(0)
    for q in range(k):  # t = G^T r
        dot_rows(RT, zero, K, GT[q], nb, compensated, S, E, PS, PC, TT[q])
    acc = accf[:BLOCK]
    for i in range(k):  # forward: L z = t
        dot_rows(ZT, zero, i, L[i], nb, compensated, S, E, PS, PC, acc)
        for b in range(nb):
            ZT[i, b] = (TT[i, b] - acc[b]) / L[i, i]
    for i in range(k - 1, -1, -1):  # backward: L^T u = z
        dot_rows(UT, i + 1, k - 1 - i, LT[i, i + 1:], nb, compensated, S, E, PS, PC, acc)
        for b in range(nb):
            UT[i, b] = (ZT[i, b] - acc[b]) / L[i, i]
    if k == 0 or k > LANES:  # general path: one short reduction per equation
        for j in range(K):  # out = r / d - G u
            dot_rows(UT, zero, k, G[j], nb, compensated, S, E, PS, PC, acc)
            rj, oj, dj = RT[j], OUT[j], d[j]
            for b in range(nb):
                oj[b] = rj[b] / dj - acc[b]
        return
    # Flat path (k <= 32): for a tile of equations, the terms G[j, q] * u[q, b] of every
    # (j, b) sit in row q of P3 at column 32 (j - j0) + b; the lane tree over q and the
    # final step then run as long flat loops. Same terms, same tree, same bits.
    for q in range(k):
        uq, ue = UT[q], UE[q]
        for jj in range(TILE):
            for b in range(BLOCK):
                ue[jj * BLOCK + b] = uq[b]
    RTf = RT.reshape(K * BLOCK)
    OUTf = OUT.reshape(K * BLOCK)
    for j0 in range(0, K, TILE):
        width = min(TILE, K - j0) * BLOCK
        base = j0 * BLOCK
        for q in range(k):
            p3, e3, ge, ue = P3[q], E3[q], GE[q], UE[q]
            for idx in range(width):
                p3[idx] = ge[base + idx] * ue[idx]
                e3[idx] = 0.0
        tree_live_rows(P3, E3, k, width, compensated)
        finalize_cols(P3[0], E3[0], width, compensated, accf)
        for idx in range(width):
            OUTf[base + idx] = RTf[base + idx] / DE[base + idx] - accf[idx]


@njit(cache=True)
def accumulate_lanes(XT, WT, eq, c0, width, nb, compensated, ST, ET):
    """Lane ``b`` of column ``c0 + m`` accumulates ``XT[m, b] * WT[eq[c0 + m], b]``."""
    for m in range(width):
        x, w, st = XT[m], WT[eq[c0 + m]], ST[m]
        if compensated:
            et = ET[m]
            for b in range(nb):
                st[b], e = two_sum(st[b], x[b] * w[b])
                et[b] += e
        else:
            for b in range(nb):
                st[b] += x[b] * w[b]


@njit(cache=True)
def lane_tree_columns_t(ST, ET, width, compensated, ps, pc):
    """CRO-1 lane tree along axis 1 (the 32 lanes) of ``ST``/``ET``; roots into ps/pc."""
    for m in range(width):
        s, c = ST[m], ET[m]
        w = LANES // 2
        while w >= 1:
            for lane in range(w):
                s[lane], c[lane] = merge(s[lane], c[lane], s[lane + w], c[lane + w],
                                         compensated)
            w //= 2
        ps[m] = s[0]
        pc[m] = c[0]
