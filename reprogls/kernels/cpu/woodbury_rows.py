"""The Woodbury solve of one block of 32 rows, compiled once and called by address.

:func:`woodbury_block` computes ``W = U Sigma^-1`` for 32 rows in the order of
``reference.woodbury_solve``. Numba links every helper's LLVM IR into each top-level
kernel that calls it and optimises it again there, so each kernel that calls the block
directly pays for compiling its short-dot trees once more. Three kernels that only
large problems or unusual layouts reach -- the fused normal operator with the rows in
place (:mod:`.streamed`) and from blocks, and the block kernels' single-pass
``X^T vec(R Sigma^-1)`` (:mod:`.rowgroups`) -- call it instead through one C entry
point, :func:`woodbury_block_entry` (a Numba ``cfunc``, compiled once and cached on
disk like the kernels), with :func:`call_woodbury_block`: an indirect call LLVM cannot
inline, so the block is optimised once, in its own module. The address is a run-time
argument of the kernels, never a constant in their code, so they stay cacheable. The
arithmetic is the same function's: the same bits (tests compare every caller with the
reference, and the codegen test checks the entry point's machine code for FMA).

The plain Woodbury solve (``rowgroups._woodbury_tasks``, which the demo's fit needs)
keeps the direct, inlined call: routed through the entry point it made the demo's
warm-up 2-4 s slower (three alternating pairs of fresh-cache runs on a 2-core Zen 4,
tenth session: ``FIT_TASKS`` 25.5-29.5 s before, 28.9-30.0 s with it).

Since the thirty-third session :func:`woodbury_block` is ``inline="always"``: Numba
inlines its typed IR into its two callers (``_woodbury_tasks`` and the entry point),
so it is no longer compiled, optimised and cached as a function of its own and then
optimised again inside each caller. Both callers therefore compile with NumPy's error
model, as the block did (its divisions are lowered with the caller's flags). The
``woodbury`` warm-up task, one process, fresh cache, three alternating runs on the
2-core Zen 3 box: 19.3-21.2 -> 15.7-18.2 s (CPU seconds); ``woodbury_solve``'s speed and
bits unchanged.

Measured compile times (same box, one process, fresh cache, seconds; the tasks of
:mod:`reprogls.kernels.warm`): before, ``woodbury`` 17.8, ``fused`` 15.9 after it,
``blocks`` 16.7 after both; now ``fused`` 10.8 and ``blocks`` 13.7 after it (20.3
without: it then compiles the entry point, ~8 s); every task in parallel workers 52.6 ->
41.3-44.5 s. One call per 32 rows costs nothing measurable against the block's
``~2 K k`` compensated terms (the fused operator at M measured the same within the
box's noise).

The entry takes one ``int64`` *frame* on the caller's stack: the sizes ``k``, ``K`` and
the addresses and lengths of the block's arrays (:data:`FRAME`).
"""

from __future__ import annotations

import functools

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .blocked import runtime_int
from .jit import cfunc, njit
from .reciprocal import RECIPROCAL_DIVISION, subtract_from_quotients
from .register_trees import MAX_TERMS, woodbury_output_rows
from .segments import dot_segments_ranks, dot_tree
from .views import borrowed_vector, unmanaged

__all__ = ["BROADCAST32", "ROWS", "TILE_EQUATIONS", "call_woodbury_block", "woodbury_block",
           "woodbury_block_address", "woodbury_block_entry"]

#: Rows per block.
ROWS = 32
#: Equations per tile of the Woodbury output step.
TILE_EQUATIONS = 8
#: ``bshift`` of :mod:`.segments` for one coefficient per 32 block rows.
BROADCAST32 = 5


@njit(cache=True, error_model="numpy", inline="always")
def woodbury_block(U, GT, L, LT, DE, compensated, S, E, T, Z, UQ, acc, W):
    """``W[j * 32 + y] = (U Sigma^-1)`` for the 32 rows of a block, in the order of
    ``reference.woodbury_solve``::

        t[q] = CRO-1_j fl(U[j] G[j, q]);  L L^T u = t (fixed order);
        W[j] = fl(U[j] / d[j]) - CRO-1_q fl(G[j, q] u[q])

    ``GT`` is ``G^T`` (k, K) C-contiguous; ``L``, ``LT = L^T``; ``DE[j] = d[j]`` and
    ``DE[K + j] = RN(1 / d[j])`` (:func:`.reciprocal.reciprocals`): where the target has
    FMA, ``fl(U / d)`` is computed from the reciprocal by one multiply and two FMAs,
    which is division's result bit for bit. ``t`` runs several ranks per lane-sum call
    in plain mode (:func:`.segments.dot_segments_ranks`). For ``1 <= k <= 16`` with
    reciprocals the output is one pass over all equations
    (:func:`.register_trees.woodbury_output_rows`); otherwise, or when a quotient leaves
    the proven range, it runs by tiles of :data:`TILE_EQUATIONS` equations, where a tile
    that leaves the range is divided (:func:`.reciprocal.subtract_from_quotients`).
    Compiled with NumPy's error model: IEEE division without Numba's zero-divisor branch,
    which kept the ``U / d`` loop from vectorising (``d > 0`` is validated by the caller).
    Scratch: ``S``, ``E`` of ``1024 ceil(K / 8192)`` and ``16 * 32 TILE_EQUATIONS`` (the
    latter holds four ranks' lane partials for ``dot_segments_ranks``); ``T``, ``Z`` of
    ``32 k``; ``UQ`` of ``32 TILE_EQUATIONS k``; ``acc`` of ``32 TILE_EQUATIONS``.
    """
    k, K = GT.shape
    U, GT, L, LT, DE = unmanaged(U), unmanaged(GT), unmanaged(L), unmanaged(LT), unmanaged(DE)
    S, E, T, Z = unmanaged(S), unmanaged(E), unmanaged(T), unmanaged(Z)
    UQ, acc, W = unmanaged(UQ), unmanaged(acc), unmanaged(W)
    R, one, b5 = runtime_int(ROWS), runtime_int(1), runtime_int(BROADCAST32)
    GTf = GT.reshape(k * K)
    dot_segments_ranks(U, R, GT, K, R, compensated, S, E, T)  # t = G^T u: terms j, rows y
    for i in range(k):  # forward: z[i] = (t[i] - CRO-1_{l<i} fl(L[i, l] z[l])) / L[i, i]
        dot_tree(Z, R, L[i], one, b5, i, R, compensated, S, E, acc)
        lii = L[i, i]
        z, t, a = Z[i * R:(i + 1) * R], T[i * R:(i + 1) * R], acc[:R]
        for y in range(R):
            z[y] = (t[y] - a[y]) / lii
    for i in range(k - 1, -1, -1):  # backward, u overwrites T:
        # u[i] = (z[i] - CRO-1_{l>i} fl(L[l, i] u[l])) / L[i, i]
        dot_tree(T[(i + 1) * R:], R, LT[i, i + 1:], one, b5, k - 1 - i, R, compensated, S,
                 E, acc)
        lii = L[i, i]
        z, u, a = Z[i * R:(i + 1) * R], T[i * R:(i + 1) * R], acc[:R]
        for y in range(R):
            u[y] = (z[y] - a[y]) / lii
    D, Y = DE[:K], DE[K:]
    if RECIPROCAL_DIVISION and 1 <= k <= MAX_TERMS:  # W = U / d - G u in one pass
        if compensated:
            done = woodbury_output_rows(T, GTf, K, k, U, D, Y, W, True)
        else:
            done = woodbury_output_rows(T, GTf, K, k, U, D, Y, W, False)
        if done:
            return
    # else (or a quotient outside the reciprocals' proven range): by tiles of equations
    width = TILE_EQUATIONS * R
    for q in range(k):  # UQ[q * width + e * 32 + y] = u[q, y]
        for e in range(TILE_EQUATIONS):
            for y in range(R):
                UQ[q * width + e * R + y] = T[q * R + y]
    for j0 in range(0, K, TILE_EQUATIONS):  # W = U / d - G u, one tile of equations
        n_eq = min(TILE_EQUATIONS, K - j0)
        Lt = n_eq * R
        # term q: fl(G[j0 + x // 32, q] * u[q, x % 32])
        dot_tree(UQ, width, GTf[j0:], K, b5, k, Lt, compensated, S, E, acc)
        o = j0 * R
        u, w, a = U[o:o + Lt], W[o:o + Lt], acc[:Lt]
        if RECIPROCAL_DIVISION and subtract_from_quotients(u, D, Y, a, w, j0, n_eq):
            continue
        for e in range(n_eq):
            dj = D[j0 + e]
            for y in range(R):
                w[e * R + y] = u[e * R + y] / dj - a[e * R + y]


#: Entries of a frame: ``k, K``, then (address, length) of ``U, G^T, L, L^T, DE, S, E,
#: T, Z, UQ, acc, W``.
FRAME = 2 + 2 * 12


@intrinsic
def _int64_at(typingctx, address, index):
    """The ``int64`` at ``address + 8 index`` (bytes)."""
    if not all(isinstance(a, types.Integer) for a in (address, index)):
        return None

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.IntType(64).as_pointer())
        return builder.load(builder.gep(ptr, [args[1]]))

    return types.int64(types.int64, types.int64), codegen


@njit(inline="always")
def _vector(frame, i):
    """The float64 vector of frame slot ``i`` (its address and length)."""
    return borrowed_vector(_int64_at(frame, 2 + 2 * i), _int64_at(frame, 3 + 2 * i))


def _entry(frame, compensated):
    """The C entry point: :func:`woodbury_block` on the arrays of ``frame``."""
    k, K = _int64_at(frame, 0), _int64_at(frame, 1)
    woodbury_block(_vector(frame, 0), _vector(frame, 1).reshape((k, K)),
                   _vector(frame, 2).reshape((k, k)), _vector(frame, 3).reshape((k, k)),
                   _vector(frame, 4), compensated != 0, _vector(frame, 5), _vector(frame, 6),
                   _vector(frame, 7), _vector(frame, 8), _vector(frame, 9),
                   _vector(frame, 10), _vector(frame, 11))


@functools.cache
def woodbury_block_entry():
    """The compiled C entry point ``void(int64 frame, int64 compensated)`` (a Numba
    ``CFunc``; compiled, or loaded from Numba's cache, on first use)."""
    return cfunc(types.void(types.int64, types.int64), cache=True, error_model="numpy")(_entry)


def woodbury_block_address() -> int:
    """Address of :func:`woodbury_block_entry`, for :func:`call_woodbury_block`."""
    return woodbury_block_entry().address


@intrinsic
def call_woodbury_block(typingctx, address, U, GT, L, LT, DE, compensated, S, E, T, Z, UQ,
                        acc, W):
    """:func:`woodbury_block` with the same arguments, called through the entry point at
    ``address`` (:func:`woodbury_block_address`): an indirect call, which LLVM cannot
    inline. The frame is built on the caller's stack; the arrays are the caller's, used
    here, so Numba keeps them alive across the call (C-contiguous float64)."""
    arrays = (U, GT, L, LT, DE, S, E, T, Z, UQ, acc, W)
    if not isinstance(address, types.Integer) or not all(
            isinstance(a, types.Array) and a.dtype == types.float64 and a.layout == "C"
            for a in arrays):
        return None
    sig = types.void(address, U, GT, L, LT, DE, compensated, S, E, T, Z, UQ, acc, W)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        values = [*args[1:6], *args[7:]]
        views = [context.make_array(a)(context, builder, v)
                 for a, v in zip(arrays, values, strict=True)]
        frame = cgutils.alloca_once(builder, i64, size=FRAME)

        def put(slot, value):
            builder.store(value, builder.gep(frame, [ir.Constant(i64, slot)]))

        put(0, builder.extract_value(views[1].shape, 0))
        put(1, builder.extract_value(views[1].shape, 1))
        for slot, view in enumerate(views):
            put(2 + 2 * slot, builder.ptrtoint(view.data, i64))
            put(3 + 2 * slot, view.nitems)
        fnty = ir.FunctionType(ir.VoidType(), [i64, i64])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        flag = context.cast(builder, args[6], signature.args[6], types.boolean)
        builder.call(fn, [builder.ptrtoint(frame, i64), builder.zext(flag, i64)])
        return context.get_dummy_value()

    return sig, codegen
