"""LLVM vector intrinsics for the Numba kernels: an 8 x 8 transpose and CRO-1 lane steps
kept in vector registers.

The transposes move values without any arithmetic, so they cannot change a result bit.
The lane steps are the reference's (plain ``s + v`` or TwoSum) written as LLVM vector
instructions: ``fadd``/``fsub``/``fmul`` without fast-math flags, so each is one
correctly rounded IEEE operation and LLVM may not contract them into FMA (the codegen
test checks the machine code; the one deliberate FMA, ``fma(x, +-1, y)``, is an exact
addition, :func:`_exact_add`). They exist because Numba's loops
cannot express them efficiently:

* :func:`transpose8x8_scatter` loads an 8 x 8 tile of a C-contiguous matrix with eight
  vector loads, transposes it with ``shufflevector`` (three stages of eight shuffles,
  lowered to ``vunpck``/``vperm`` instructions) and stores the eight columns, each as one
  vector, at rows given by an index array. The scalar loop it replaces issues 64 loads
  and 64 stores per tile (measured 2x slower with the data in cache).
* :func:`lane_steps8` applies four consecutive CRO-1 lane steps (TwoSum or plain
  addition) to eight lanes kept in one vector register; as a loop, LLVM cannot prove the
  accumulators and the terms do not alias and leaves scalar code (measured 3x slower).
* :func:`gram_block` updates a 4 x 8 block of Gram lane sums over all rows of one lane
  with the accumulators in registers (a loop in the IR), reading the rows in place: the
  register blocking of a matrix-product micro-kernel, with the lane's rows in order.
  The compensated block runs one, two or four of its rows per loop
  (:data:`GRAM_ROW_GROUPS`), and on AMD Zen some TwoSum additions are exact FMAs
  (:data:`GRAM_ADDS_ON_FMA`): same bits.
* :func:`chunk_partial` runs CRO-1 steps 2 and 3 of one chunk (a whole long dot or sum)
  with the 32 lanes in four vector registers and the lane tree by vector halves and
  shuffles, with software prefetch 4 KiB ahead except on Zen 4 (measured:
  :func:`_chunk_prefetch_ahead`): the lane loops of
  :mod:`._cro` and ``gemv``'s rows (on Zen with AVX-512 some TwoSum additions are exact
  FMAs, :data:`CHUNK_ADDS_ON_FMA`).
* :func:`lane_axpy` / :func:`axpy_run` step runs of lane accumulators (one per column)
  with rows read in place (``A^T B``, ``gemv_t``; the plain steps of 17-32-term trees);
  :func:`lane_sums` runs all of one CRO-1 lane's terms for 16 or 32 sequences with the
  partials in registers (the long reductions of :mod:`.segments`: the Woodbury
  ``G^T u``); and
  :func:`prefetch_tile` asks for an 8 x 8 tile's cache lines ahead of the SUR gather.
"""

from __future__ import annotations

import os

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

__all__ = ["axpy_run", "chunk_partial", "gram_block", "lane_axpy", "lane_steps8",
           "lane_sums", "prefetch_tile", "transpose8x8", "transpose8x8_scatter",
           "weighted_lane_axpy"]

_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_F64 = ir.DoubleType()
_VEC8 = ir.VectorType(ir.DoubleType(), 8)
_VEC8_I64 = ir.VectorType(_I64, 8)


def _shuffle(builder, a, b, mask):
    return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(_I32, 8), mask))


def _transpose8(builder, rows):
    """Columns of the 8 x 8 tile whose rows are the ``<8 x double>`` values ``rows``."""
    t = []
    for i in range(0, 8, 2):  # interleave pairs of rows: 2 x 2 blocks
        t.append(_shuffle(builder, rows[i], rows[i + 1], [0, 8, 2, 10, 4, 12, 6, 14]))
        t.append(_shuffle(builder, rows[i], rows[i + 1], [1, 9, 3, 11, 5, 13, 7, 15]))
    u = [None] * 8
    for base in (0, 4):  # pairs of 2 x 2 blocks: 4 x 4 blocks
        lo_a, hi_a, lo_b, hi_b = t[base], t[base + 1], t[base + 2], t[base + 3]
        u[base] = _shuffle(builder, lo_a, lo_b, [0, 1, 8, 9, 4, 5, 12, 13])
        u[base + 2] = _shuffle(builder, lo_a, lo_b, [2, 3, 10, 11, 6, 7, 14, 15])
        u[base + 1] = _shuffle(builder, hi_a, hi_b, [0, 1, 8, 9, 4, 5, 12, 13])
        u[base + 3] = _shuffle(builder, hi_a, hi_b, [2, 3, 10, 11, 6, 7, 14, 15])
    cols = [None] * 8
    for c in range(4):  # halves of 4 x 4 blocks: the columns
        cols[c] = _shuffle(builder, u[c], u[c + 4], [0, 1, 2, 3, 8, 9, 10, 11])
        cols[c + 4] = _shuffle(builder, u[c], u[c + 4], [4, 5, 6, 7, 12, 13, 14, 15])
    return cols


def _load_rows8(builder, arr, row0, col0):
    """The eight ``<8 x double>`` values ``arr[row0 + i, col0:col0 + 8]``, ``i < 8``."""
    n_cols = builder.extract_value(arr.shape, 1)
    rows = []
    for i in range(8):
        row = builder.add(row0, ir.Constant(_I64, i))
        ptr = builder.gep(arr.data, [builder.add(builder.mul(row, n_cols), col0)])
        rows.append(builder.load(builder.bitcast(ptr, _VEC8.as_pointer()), align=8))
    return rows


@intrinsic
def transpose8x8_scatter(typingctx, X, i0, m, dest, out):
    """``out[dest[m + c] * 8 + b] = X[i0 + b, m + c]`` for ``b, c < 8``.

    ``X``: C-contiguous float64 matrix with rows ``i0 .. i0 + 7`` and columns
    ``m .. m + 7`` in range; ``dest``: int64 array; ``out``: float64 vector. No bounds
    checks (the caller guarantees them).
    """
    sig = types.void(X, i0, m, dest, out)

    def codegen(context, builder, signature, args):
        x_val, i0_val, m_val, dest_val, out_val = args
        x_arr = context.make_array(signature.args[0])(context, builder, x_val)
        dest_arr = context.make_array(signature.args[3])(context, builder, dest_val)
        out_arr = context.make_array(signature.args[4])(context, builder, out_val)
        rows = _load_rows8(builder, x_arr, i0_val, m_val)
        for c, col in enumerate(_transpose8(builder, rows)):
            slot = builder.load(builder.gep(dest_arr.data,
                                            [builder.add(m_val, ir.Constant(_I64, c))]))
            ptr = builder.gep(out_arr.data, [builder.mul(slot, ir.Constant(_I64, 8))])
            builder.store(col, builder.bitcast(ptr, _VEC8.as_pointer()), align=8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def transpose8x8(typingctx, A, a_row, a_col, B, b_row, b_col):
    """``B[b_row + c, b_col + b] = A[a_row + b, a_col + c]`` for ``b, c < 8`` (both
    C-contiguous float64 matrices; no bounds checks)."""
    sig = types.void(A, a_row, a_col, B, b_row, b_col)

    def codegen(context, builder, signature, args):
        a_val, a_row_val, a_col_val, b_val, b_row_val, b_col_val = args
        a_arr = context.make_array(signature.args[0])(context, builder, a_val)
        b_arr = context.make_array(signature.args[3])(context, builder, b_val)
        b_cols = builder.extract_value(b_arr.shape, 1)
        rows = _load_rows8(builder, a_arr, a_row_val, a_col_val)
        for c, col in enumerate(_transpose8(builder, rows)):
            row = builder.add(b_row_val, ir.Constant(_I64, c))
            ptr = builder.gep(b_arr.data, [builder.add(builder.mul(row, b_cols), b_col_val)])
            builder.store(col, builder.bitcast(ptr, _VEC8.as_pointer()), align=8)
        return context.get_dummy_value()

    return sig, codegen


def _prefetch(builder, ptr, locality=3):
    """``llvm.prefetch`` of the cache line holding ``*ptr`` (read, data; ``locality`` 3
    is x86's ``prefetcht0``, into L1, 2 is ``prefetcht1``, into L2): a hint, with no
    effect on values (an address past the end of an array does not fault)."""
    i8p = ir.IntType(8).as_pointer()
    fnty = ir.FunctionType(ir.VoidType(), [i8p, _I32, _I32, _I32])
    fn = builder.module.declare_intrinsic("llvm.prefetch", [i8p], fnty)
    builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(_I32, 0),
                      ir.Constant(_I32, locality), ir.Constant(_I32, 1)])


@intrinsic
def prefetch_tile(typingctx, X, row0, col):
    """Prefetch the cache lines holding ``X[row0 + b, col]`` for ``b < 8`` (C-contiguous
    2-D float64 ``X``): a hint, with no effect on values."""
    if not isinstance(X, types.Array) or X.ndim != 2 or X.layout != "C":
        return None
    sig = types.void(X, row0, col)

    def codegen(context, builder, signature, args):
        x_val, row_val, col_val = args
        x_arr = context.make_array(signature.args[0])(context, builder, x_val)
        ld = builder.extract_value(x_arr.shape, 1)
        for b in range(8):
            row = builder.add(row_val, ir.Constant(_I64, b))
            _prefetch(builder, builder.gep(x_arr.data, [builder.add(builder.mul(row, ld),
                                                                    col_val)]))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def lane_steps8(typingctx, st, et, o_acc, xt, wt, o_term, steps, compensated):
    """Eight CRO-1 lanes ``st[o_acc + b]`` (compensations ``et[o_acc + b]``) take the
    terms ``fl(xt[o_term + 8 s + b] * wt[o_term + 8 s + b])`` for ``s = 0 .. steps - 1``
    in order (``steps`` a compile-time constant): compensated, ``(st, e) = TwoSum(st,
    term); et = et + e``; plain, ``st = st + term``. ``compensated`` must be a literal
    bool; no bounds checks."""
    if not isinstance(steps, types.IntegerLiteral) or not isinstance(
            compensated, types.BooleanLiteral):
        return None
    n_steps, comp = steps.literal_value, compensated.literal_value
    sig = types.void(st, et, o_acc, xt, wt, o_term, steps, compensated)

    def codegen(context, builder, signature, args):
        st_val, et_val, o_acc_val, xt_val, wt_val, o_term_val = args[:6]
        arrays = [context.make_array(signature.args[i])(context, builder, v)
                  for i, v in ((0, st_val), (1, et_val), (3, xt_val), (4, wt_val))]
        st_arr, et_arr, xt_arr, wt_arr = arrays

        def vptr(arr, index):
            return builder.bitcast(builder.gep(arr.data, [index]), _VEC8.as_pointer())

        s_ptr, e_ptr = vptr(st_arr, o_acc_val), vptr(et_arr, o_acc_val)
        s = builder.load(s_ptr, align=8)
        e = builder.load(e_ptr, align=8) if comp else None
        for step in range(n_steps):
            index = builder.add(o_term_val, ir.Constant(_I64, 8 * step))
            term = builder.fmul(builder.load(vptr(xt_arr, index), align=8),
                                builder.load(vptr(wt_arr, index), align=8))
            if comp:
                s, e = _two_sum_step(builder, s, e, term)
            else:
                s = builder.fadd(s, term)
        builder.store(s, s_ptr, align=8)
        if comp:
            builder.store(e, e_ptr, align=8)
        return context.get_dummy_value()

    return sig, codegen


def _two_sum(builder, a, b, signs=None):
    """Knuth's TwoSum as in ``reference.cro._two_sum``: ``t = a + b; z = t - a;
    err = (a - (t - z)) + (b - z)``; returns ``(t, err)``. With ``signs`` (opaque splats
    of +1.0 and -1.0, :func:`_fma_signs`) ``t - a`` and ``b - z`` are issued as
    ``fma(x, -1, y)`` (:func:`_exact_add`): the same bits, on the FMA pipes."""
    t = builder.fadd(a, b)
    if signs is None:
        z = builder.fsub(t, a)
        return t, builder.fadd(builder.fsub(a, builder.fsub(t, z)), builder.fsub(b, z))
    minus_one = signs[1]
    z = _exact_add(builder, t, a, minus_one)
    return t, builder.fadd(builder.fsub(a, builder.fsub(t, z)),
                           _exact_add(builder, b, z, minus_one))


def _two_sum_step(builder, s, e, term, signs=None):
    """CRO-1 compensated lane step ``(s, e) <- (TwoSum(s, term).sum, e + TwoSum(...).err)``
    (:func:`_two_sum`). With ``signs`` three of the seven additions are exact FMAs (the
    last one ``e + err``): the same bits."""
    t, err = _two_sum(builder, s, term, signs)
    return t, (builder.fadd(e, err) if signs is None else _exact_add(builder, e, err, signs[0]))


def _host_target() -> tuple[str, list[str]]:
    """The LLVM CPU name and feature list Numba compiles for (``NUMBA_CPU_NAME`` /
    ``NUMBA_CPU_FEATURES`` if set, else the host's); Numba's cache is keyed on both.

    An empty ``NUMBA_CPU_FEATURES`` (Numba's default for ``NUMBA_CPU_NAME=generic``) is a
    set value, as in Numba's codegen: LLVM then gives the named CPU its own default
    features, which llvmlite cannot list, so none are reported here and every choice
    below takes its no-FMA, no-AVX-512 branch (the same bits; only speed could differ).
    It used to fall back to the host's features, so ``NUMBA_CPU_NAME=x86-64
    NUMBA_CPU_FEATURES=`` on an AVX-512 host chose the AVX-512 register blocking for
    SSE2 code."""
    import llvmlite.binding as llvm
    from numba.core import config

    name = config.CPU_NAME if config.CPU_NAME not in (None, "", "host") else \
        llvm.get_host_cpu_name()
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else \
        llvm.get_host_cpu_features().flatten()
    return str(name), [f for f in str(features).split(",") if f]


def _fma_override() -> bool | None:
    """``REPROGLS_ADDS_ON_FMA=0|1`` as a bool, None when unset."""
    override = os.environ.get("REPROGLS_ADDS_ON_FMA", "")
    return override == "1" if override in ("0", "1") else None


def _zen_target() -> tuple[bool, bool]:
    """``(zen, avx512)``: whether Numba compiles for AMD Zen (LLVM CPU names ``znver*``)
    with FMA3, and whether the target has AVX-512."""
    name, features = _host_target()
    return name.startswith("znver") and "+fma" in features, "+avx512f" in features


def _adds_on_fma() -> bool:
    """Whether the streamed lane steps (:func:`weighted_lane_axpy`, and since the
    thirty-first session :func:`lane_axpy` and :func:`axpy_run`)
    issue some TwoSum additions on the FMA units.

    On AMD Zen floating-point additions run on two pipes and multiplies/FMAs on two
    others, so a TwoSum step (seven additions, one multiply) is bound by the two adder
    pipes; ``fma(x, 1.0, y)`` is the exact sum ``x + y`` rounded once -- the same bits as
    ``fadd`` -- but runs on the other two. On by default only where it was measured
    faster: Zen without AVX-512 (Zen 3). On a Zen 4 (AVX-512), tenth session: the
    streamed ``X^T W`` at N = 20000, K = 200, p = 10 took 13.6 / 13.4 ms without / with
    (best of five alternating processes; 22.4 / 26.5 ms for two right-hand sides), so off
    there. Elsewhere (Intel runs both on the same ports; no FMA) off. Thirty-first
    session, Zen 3, compensated, three alternating rounds of one process per variant,
    GB/s without / with (ratio to BLAS in the same run): one thread, ``gemv_t`` 50000 x
    1000 0.95-0.99x / 0.99-1.03x BLAS ``A.T @ y``, ``A^T B`` with three columns (20000 x
    1000) 1.14-1.23x / 1.32-1.45x ``X.T @ B``; two threads 1.03-1.07x / 1.05-1.10x and
    1.19-1.24x / 1.15-1.35x.
    ``REPROGLS_ADDS_ON_FMA=0|1`` overrides this, :data:`GRAM_ADDS_ON_FMA`,
    :data:`CHUNK_ADDS_ON_FMA`, :data:`LANE_SUMS_ADDS_ON_FMA` and :data:`TREE_ADDS_ON_FMA`
    (x86-64 only; use a fresh ``NUMBA_CACHE_DIR``: Numba's cache keys on the CPU, not on
    this variable). The results are bitwise the same either way; only the speed
    differs.
    """
    override = _fma_override()
    if override is not None:
        return override
    zen, avx512 = _zen_target()
    return zen and not avx512


def _gram_adds_on_fma() -> bool:
    """Whether :func:`gram_block`'s compensated steps issue some TwoSum additions on the
    FMA units (:func:`_adds_on_fma` for why): on every Zen with FMA3. The Gram block is
    bound by the adder pipes on Zen 4 as on Zen 3. Tenth session, a 2-core Zen 4
    (AVX-512), compensated ``lower_gram``, alternating processes with separate caches:
    ``E^T E`` at N = 20000, K = 200 68-73 -> 44 ms, ``X^T X`` at N = 20000, P = 2000
    6.80-7.92 -> 4.69-5.07 s (four rows per loop without, two with:
    :data:`GRAM_ROW_GROUPS`)."""
    override = _fma_override()
    return _zen_target()[0] if override is None else override


#: Split the TwoSum additions of :func:`weighted_lane_axpy` with the FMA units
#: (:func:`_adds_on_fma`), fixed at import.
ADDS_ON_FMA = _adds_on_fma()

#: The same for :func:`gram_block` (:func:`_gram_adds_on_fma`), fixed at import.
GRAM_ADDS_ON_FMA = _gram_adds_on_fma()

def _gram_row_groups() -> tuple[tuple[int, ...], ...]:
    """Rows of :func:`gram_block`'s 4 x 8 register block that one compensated loop
    carries (``REPROGLS_GRAM_ROWS=1|2|4`` overrides, in a fresh Numba cache).

    Four rows hold eight ``<8 x double>`` sums and compensations. With 16 vector
    registers (AVX2) they fill every register and the spills sit on the loop-carried
    chains: two rows per loop, or one when the TwoSum additions are split with the FMA
    units (which needs two more registers for the +-1 splats). Measured on a 2-core Zen 3
    (AVX2), one core, a 32 x 32 tile over 8192 rows in cache, best / typical of six
    alternating runs: four rows 4.6 / 5.0 ms, two 3.3 / 4.0 ms, one with FMA additions
    3.4 / 3.7 ms. With 32 (AVX-512): four rows with plain additions, two with FMA
    additions (on a 2-core Zen 4, ``E^T E`` at N = 20000, K = 200: four rows without FMA
    additions 68-73 ms, four with 83 ms, one with 56-90 ms, two with 44 ms). The order of
    every lane sum's terms is the same either way.
    """
    rows = os.environ.get("REPROGLS_GRAM_ROWS", "")
    if not rows:
        avx512 = _zen_target()[1]
        rows = ("2" if GRAM_ADDS_ON_FMA else "4") if avx512 else \
            ("1" if GRAM_ADDS_ON_FMA else "2")
    if rows not in ("1", "2", "4"):
        raise ValueError(f"REPROGLS_GRAM_ROWS must be 1, 2 or 4, got {rows!r}")
    return tuple(tuple(range(g, g + int(rows))) for g in range(0, 4, int(rows)))


#: Row groups of :func:`gram_block`'s compensated loops (:func:`_gram_row_groups`),
#: fixed at import.
GRAM_ROW_GROUPS = _gram_row_groups()


def _fused_interleaved() -> bool:
    """Whether the fused normal operator (:func:`.streamed._normal_task`) steps a block's
    lanes of ``X^T W`` during the next block's dots (:mod:`.fused_rows`) or after its own
    Woodbury block (``REPROGLS_FUSED_INTERLEAVED=0|1`` overrides, in a fresh Numba cache).

    Interleaved where the target has AVX-512 (32 vector registers) and is not an AMD
    Zen: on the Emerald Rapids VM (twenty-second session, one thread, K = 200, p = 10,
    ns per row from memory) 1470-1606 interleaved against 1812-1925 for the three phases
    in sequence. Without AVX-512 (16 registers) the interleaved loop carries the dots'
    and the steps' vectors at once: on a 2-core Zen 3 VM (AVX2, thirtieth session,
    ``profiling/fused_phases.py``) the interleaved kernel took 2731 / 3698 ns per row,
    plain / compensated, against 1860 / 2829 for the phases in sequence. A Zen 4 has
    AVX-512 but splits each 512-bit operation in two 256-bit halves: on a 2-core Zen 4
    VM (thirty-eighth session) the interleaved kernel took 1824 / 2454 ns per row
    against 1316 / 1896 in sequence, and ``kernel_bandwidth.py`` (two threads, X of
    400 MB, alternating processes) 23.9-24.1 / 32.2-32.9 ms against 19.1 / 24.8-24.9 ms.
    Not the Zen 4's 1 MB L2 (two blocks of rows at P = 2000 do not fit): with P = 500
    or 1000, where they do, the interleaved kernel lost too (forty-second session,
    docs/performance.md). (A Zen 5, whose AVX-512 units are full width, takes the Zen
    rule too; unmeasured.)
    The bits are the same either way: each lane takes a block's terms in row order for
    every column, and every step of a block before the next block's.
    """
    override = os.environ.get("REPROGLS_FUSED_INTERLEAVED", "")
    if override not in ("", "0", "1"):
        raise ValueError(f"REPROGLS_FUSED_INTERLEAVED must be 0 or 1, got {override!r}")
    if override:
        return override == "1"
    zen, avx512 = _zen_target()
    return avx512 and not zen


#: The fused operator's schedule (:func:`_fused_interleaved`), fixed at import.
FUSED_INTERLEAVED = _fused_interleaved()


def _chunk_adds_on_fma() -> bool:
    """Whether :func:`chunk_partial`'s compensated steps issue some TwoSum additions on
    the FMA units (:func:`_adds_on_fma` for why): on Zen with AVX-512, whose 32 vector
    registers hold the 32 lanes' sums and compensations (four ``<8 x double>`` each) and
    the +-1 splats. On AVX2 the lanes already fill the 16 registers and it measured
    slower (the SPD inverse of order 2000 0.40-0.42 -> 0.47-0.50 s on a Zen 3). Tenth
    session, a 2-core Zen 4, order 2000, 2 threads, compensated, four alternating
    processes each way, best / median: Cholesky 285 / 306 -> 246 / 257 ms, the inverse
    factor 298 / 305 -> 248 / 277 ms, the Gram of its rows 345 / 358 -> 255 / 301 ms;
    ``gemv`` (bound by memory) unchanged."""
    override = _fma_override()
    return all(_zen_target()) if override is None else override


#: Split :func:`chunk_partial`'s TwoSum additions with the FMA units
#: (:func:`_chunk_adds_on_fma`), fixed at import.
CHUNK_ADDS_ON_FMA = _chunk_adds_on_fma()


def _lane_sums_adds_on_fma() -> bool:
    """Whether :func:`lane_sums` (the Woodbury solve's ``t = G^T u``) issues some TwoSum
    additions on the FMA units (:func:`_adds_on_fma` for why): on every Zen with FMA3.
    Zen 3: the measurement behind :data:`ADDS_ON_FMA`. Zen 4 (AVX-512), thirteenth
    session, one 32-row Woodbury block in cache, one core, compensated, best of five
    runs in each of two alternating rounds of fresh-cache processes, K = 1000, k = 10:
    181-183 us as before, 169-173 us with 32 sequences per call
    (:data:`LANE_SUM_WIDTH_COMPENSATED`), 147-154 us with 32 sequences and these
    additions (128-137 us with :data:`TREE_ADDS_ON_FMA` too)."""
    override = _fma_override()
    return _zen_target()[0] if override is None else override


#: Split :func:`lane_sums`' TwoSum additions with the FMA units
#: (:func:`_lane_sums_adds_on_fma`), fixed at import.
LANE_SUMS_ADDS_ON_FMA = _lane_sums_adds_on_fma()

#: Split the compensated merges of :func:`.register_trees.tree_dots` (the short dots of
#: the Woodbury solve's output step and of the block kernels' ``sur_matvec``) with the FMA
#: units: on Zen with AVX-512, like :data:`CHUNK_ADDS_ON_FMA` (32 registers hold the
#: tree's leaves and the +-1 splats). Zen 4, thirteenth session, the Woodbury block above
#: with 32 sequences and :data:`LANE_SUMS_ADDS_ON_FMA`: K = 1000, k = 10 157-163 ->
#: 128-137 us, K = 200, k = 5 16.9-20.3 -> 15.9-16.2 us.
TREE_ADDS_ON_FMA = _chunk_adds_on_fma()


def _fma_signs(builder, enabled: bool | None = None):
    """Opaque splats ``(+1.0, -1.0)`` for :func:`_two_sum_step` where ``enabled``
    (default :data:`ADDS_ON_FMA`) holds, else None (plain additions)."""
    if not (ADDS_ON_FMA if enabled is None else enabled):
        return None
    return _opaque_splat(builder, 1.0), _opaque_splat(builder, -1.0)


def _opaque_splat(builder, value: float):
    """``value`` in all eight slots, hidden from LLVM's constant folding by an empty
    inline-asm copy (otherwise ``fma(x, 1.0, y)`` is folded back to ``fadd``). The copy
    is emitted in the function's entry block (LLVM does not hoist inline asm out of
    loops), the splat where it is used."""
    with builder.goto_entry_block():
        scalar = builder.asm(ir.FunctionType(_F64, [_F64]), "", "=x,0",
                             [ir.Constant(_F64, value)], side_effect=False)
    return _splat(builder, scalar)


def _exact_add(builder, x, y, sign):
    """``fl(x + sign * y)`` for ``sign`` an opaque splat of +1.0 or -1.0, as one
    ``llvm.fma(y, sign, x)``: the product is exact, so the single rounding is that of the
    addition/subtraction (signed zeros and infinities included)."""
    fnty = ir.FunctionType(x.type, [x.type] * 3)
    fma = builder.module.declare_intrinsic(f"llvm.fma.v{x.type.count}f64", fnty=fnty)
    return builder.call(fma, [y, sign, x])


def _splat(builder, x):
    """The scalar ``x`` (a double or an i64) in all eight slots of a vector."""
    vec = ir.VectorType(x.type, 8)
    first = builder.insert_element(ir.Constant(vec, ir.Undefined), x, ir.Constant(_I32, 0))
    return builder.shuffle_vector(first, ir.Constant(vec, ir.Undefined),
                                  ir.Constant(ir.VectorType(_I32, 8), [0] * 8))


def _counted_loop(builder, limit, name, carried=()):
    """Open the loop ``j = 0, 1, .. < limit`` with loop-carried vectors (starting at
    ``carried``); the builder is left in the body. Returns ``(j, values, close)``:
    ``values`` are the carried phis (their values in the body, and after the loop);
    ``close(updates)`` ends the body with the updated carried values and leaves the builder
    after the loop."""
    entry = builder.block
    head = builder.append_basic_block(f"{name}_head")
    body = builder.append_basic_block(f"{name}_body")
    done = builder.append_basic_block(f"{name}_done")
    builder.branch(head)
    builder.position_at_end(head)
    j = builder.phi(_I64)
    j.add_incoming(ir.Constant(_I64, 0), entry)
    values = [builder.phi(_VEC8) for _ in carried]
    for phi, init in zip(values, carried, strict=True):
        phi.add_incoming(init, entry)
    builder.cbranch(builder.icmp_signed("<", j, limit), body, done)
    builder.position_at_end(body)

    def close(updates=()):
        latch = builder.block
        j.add_incoming(builder.add(j, ir.Constant(_I64, 1)), latch)
        for phi, val in zip(values, updates, strict=True):
            phi.add_incoming(val, latch)
        builder.branch(head)
        builder.position_at_end(done)

    return j, values, close


def _run_steps(builder, s_ptr, e_ptr, rows, weights, blocks, compensated):
    """The loop ``j < blocks`` of lane steps on slots ``8 j .. 8 j + 7``: the accumulators
    at ``s_ptr``/``e_ptr`` take the terms ``fl(rows[r][8 j + b] * weights[r])`` for
    ``r`` in order (``weights``: splatted vectors), loaded once and stored once; in
    compensated mode three TwoSum additions are exact FMAs where :data:`ADDS_ON_FMA`
    holds (the same bits)."""
    j, _, close = _counted_loop(builder, blocks, "steps")
    at = builder.mul(j, ir.Constant(_I64, 8))

    def vptr(ptr):
        return builder.bitcast(builder.gep(ptr, [at]), _VEC8.as_pointer())

    sv = builder.load(vptr(s_ptr), align=8)
    ev = builder.load(vptr(e_ptr), align=8) if compensated else None
    signs = _fma_signs(builder) if compensated else None
    for row, weight in zip(rows, weights, strict=True):
        term = builder.fmul(builder.load(vptr(row), align=8), weight)
        if compensated:
            sv, ev = _two_sum_step(builder, sv, ev, term, signs)
        else:
            sv = builder.fadd(sv, term)
    builder.store(sv, vptr(s_ptr), align=8)
    if compensated:
        builder.store(ev, vptr(e_ptr), align=8)
    close()


@intrinsic
def gram_block(typingctx, A, a_row, b_row, row_step, n_rows, a_col, b_col, acc, err, r0, q0,
               compensated):
    """For ``rr < 4`` and ``q < 8``, lane sum ``acc[r0 + rr, q0 + q]`` (compensation
    ``err[...]``) accumulates ``fl(A[a_row + j * row_step, a_col + rr] *
    A[b_row + j * row_step, b_col + q])`` for ``j = 0 .. n_rows - 1`` in order: CRO-1
    lane steps, TwoSum when ``compensated`` (a literal bool). ``A``, ``acc``, ``err``:
    C-contiguous 2-D float64; no bounds checks."""
    if not isinstance(compensated, types.BooleanLiteral):
        return None
    comp = compensated.literal_value
    sig = types.void(A, a_row, b_row, row_step, n_rows, a_col, b_col, acc, err, r0, q0,
                     compensated)

    def codegen(context, builder, signature, args):
        (a_val, a_row_val, b_row_val, step_val, n_val, a_col_val, b_col_val, acc_val,
         err_val, r0_val, q0_val) = args[:11]
        src, acc_arr, err_arr = (
            context.make_array(signature.args[i])(context, builder, v)
            for i, v in ((0, a_val), (7, acc_val), (8, err_val)))
        ld = builder.extract_value(src.shape, 1)
        ld_acc = builder.extract_value(acc_arr.shape, 1)
        stride = builder.mul(step_val, ld)

        def vptr(arr, index):
            return builder.bitcast(builder.gep(arr.data, [index]), _VEC8.as_pointer())

        def acc_index(rr):
            return builder.add(builder.mul(builder.add(r0_val, ir.Constant(_I64, rr)),
                                           ld_acc), q0_val)

        a_start = builder.add(builder.mul(a_row_val, ld), a_col_val)
        b_start = builder.add(builder.mul(b_row_val, ld), b_col_val)
        signs = _fma_signs(builder, GRAM_ADDS_ON_FMA) if comp else None
        for group in GRAM_ROW_GROUPS if comp else ((0, 1, 2, 3),):
            n = len(group)
            s0 = [builder.load(vptr(acc_arr, acc_index(rr)), align=8) for rr in group]
            e0 = [builder.load(vptr(err_arr, acc_index(rr)), align=8) for rr in group
                  ] if comp else []
            j, acc, close = _counted_loop(builder, n_val, "gram", s0 + e0)
            s, e = acc[:n], acc[n:]
            offset = builder.mul(j, stride)
            b_vec = builder.load(vptr(src, builder.add(b_start, offset)), align=8)
            a_at = builder.add(a_start, offset)
            s_new, e_new = [], []
            for g, rr in enumerate(group):
                x = builder.load(builder.gep(src.data, [builder.add(a_at,
                                                                    ir.Constant(_I64, rr))]))
                term = builder.fmul(_splat(builder, x), b_vec)
                if comp:
                    t, et = _two_sum_step(builder, s[g], e[g], term, signs)
                    s_new.append(t)
                    e_new.append(et)
                else:
                    s_new.append(builder.fadd(s[g], term))
            close(s_new + e_new)
            for g, rr in enumerate(group):
                builder.store(s[g], vptr(acc_arr, acc_index(rr)), align=8)
                if comp:
                    builder.store(e[g], vptr(err_arr, acc_index(rr)), align=8)
        return context.get_dummy_value()

    return sig, codegen


def _merge8(builder, sa, ca, sb, cb, compensated):
    """CRO-1 merge of partials, elementwise: plain ``(sa + sb, ca)``; compensated
    ``(TwoSum(sa, sb).sum, (ca + cb) + TwoSum(sa, sb).err)``."""
    if not compensated:
        return builder.fadd(sa, sb), ca
    t, err = _two_sum(builder, sa, sb)
    return t, builder.fadd(builder.fadd(ca, cb), err)


def _chunk_prefetch_ahead(compensated: bool) -> int:
    """How far ahead, in elements, :func:`chunk_partial` prefetches its input streams
    (``prefetcht1``, into L2) in the given mode: 512 (4 KiB), or 0 for no software
    prefetch. The compensated value also serves the streamed lane steps
    (:func:`weighted_lane_axpy`).

    Measured four ways, so it depends on the target and, on Zen 3, on the mode: on by
    default except on AMD Zen with AVX-512 (Zen 4) and for plain chunks on Zen without
    it (Zen 3); ``REPROGLS_PREFETCH=0|1`` overrides both modes (with a fresh
    ``NUMBA_CACHE_DIR``: Numba's cache keys on the CPU, not on this variable). The bits
    are the same either way.

    * 2-core Zen 3 (2026-12-02; ``prefetcht0``): gemv 50000 x 1000, 2 threads, plain /
      compensated 11.8 / 9.9 ms without, 8.0 / 7.5 ms with.
    * 2-core Zen 4 (fifteenth session, one process per variant, three alternating
      rounds, best of seven per process; ``prefetcht0``): one thread, gemv 18.5-30.5 /
      19.2-19.3 ms with it, 14.1-16.6 / 16.5-18.9 ms without (BLAS ``A @ x`` 21-25 ms),
      compensated dot of two 400 MB vectors 32.3-34.6 against 27.2-32.8 ms; two
      threads the same within the noise. Off there since then.
    * 2-core Intel Emerald Rapids VM (AVX-512; twenty-first session, one process per
      variant, fresh caches, best of seven, two rounds): one thread, gemv 27.7-28.6 /
      38.9-45.4 ms without, 23.5-23.6 / 26.7-27.2 ms with ``prefetcht1`` 4 KiB ahead
      (24.7-24.9 / 28.0-28.2 with ``prefetcht0``; BLAS ``A @ x`` 24.2-25.0 ms); two
      threads 14.7 / 20.3-25.1 ms without, 12.7-12.9 / 14.0-16.5 ms with (BLAS
      12.3-13.0 ms). 8 and 16 KiB ahead measured the same as 4.
    * 2-core Zen 3 again (thirty-first session, ``prefetcht1`` 4 KiB ahead; three
      alternating rounds of one process per variant with its own cache, best of nine,
      read GB/s without / with; 400 MB operands): one thread, plain ``dot`` 24.7-25.3 /
      19.9-20.5, ``sum`` 20.6-21.3 / 17.6-17.8, ``gemv`` 17.9-18.6 / 15.5-15.9 (BLAS
      ``A @ x`` 19.9-22.8); compensated ``sum`` 13.6-15.0 / 18.2-18.5 and ``gemv``
      11.1-14.0 / 17.8-18.5, ``dot`` 21.3-23.1 / 20.3-20.8. Two threads, plain
      ``gemv`` 27.7-31.3 / 25.1-26.4, ``dot`` 30.4-32.7 / 29.4-30.3; compensated
      ``gemv`` 22.7-25.0 / 25.0-27.8. The plain loop there keeps up with memory on the
      hardware prefetcher alone and the prefetch instructions only cost it; the
      compensated loop needs them. So Zen 3 prefetches in compensated mode only.
    """
    override = os.environ.get("REPROGLS_PREFETCH", "")
    if override in ("0", "1"):
        return 512 if override == "1" else 0
    zen, avx512 = _zen_target()
    if zen and (avx512 or not compensated):
        return 0
    return 512


#: Elements ahead of the current row of 32 terms that :func:`chunk_partial` prefetches
#: in compensated mode, and the streamed lane steps in either mode
#: (:func:`_chunk_prefetch_ahead`), fixed at import.
CHUNK_PREFETCH_AHEAD = _chunk_prefetch_ahead(True)
#: The same for :func:`chunk_partial` in plain mode.
CHUNK_PREFETCH_AHEAD_PLAIN = _chunk_prefetch_ahead(False)


def _chunk_lanes(builder, x_ptr, y_ptr, n_val, comp, stream):
    """CRO-1 step 2 of one chunk's terms ``x[i]`` (times ``y[i]`` unless ``y_ptr`` is
    None), ``i < n``, from pointers to the chunk's first terms: the 32 lane sums as four
    ``<8 x double>`` (then four compensations when ``comp``). The whole rows of 32 terms
    run as a loop (with ``stream``, software prefetch where :data:`CHUNK_PREFETCH_AHEAD`,
    or in plain mode :data:`CHUNK_PREFETCH_AHEAD_PLAIN`, is set); the partial last row,
    if any, gives lane ``l < n - 32 rows`` its term and the others -0.0, by masked vector
    loads (``vmaskmovpd``: the slots past ``n`` are never read). The scalar loads,
    selects and inserts it replaced were most of a short dot's instructions: compensated
    dots of 3 / 31 / 83 terms 73 / 72 / 90 -> 63 / 63 / 83 ns, plain ones of 31 terms 62
    -> 39 ns."""
    return _chunk_lanes_rows(builder, [x_ptr], y_ptr, n_val, comp, stream)[0]


def _chunk_lanes_rows(builder, x_ptrs, y_ptr, n_val, comp, stream):
    """:func:`_chunk_lanes` for several sequences ``x_ptrs`` of ``n`` terms sharing one
    ``y`` (the rows of ``A`` in ``A x``), in one loop: each sequence's lanes take exactly
    its own terms in its own order (its result is its one-sequence result, bit for bit);
    ``y`` is loaded once per vector for all of them, and the rows stream from memory side
    by side. Returns one list of lane vectors per sequence. With several sequences only
    the ``x`` streams are prefetched (``y`` is shared, in cache)."""
    ident = ir.Constant(_VEC8, [-0.0] * 8)
    has_y = y_ptr is not None
    n_acc = 8 if comp else 4

    def terms_at(index):
        xs = [builder.load(builder.bitcast(builder.gep(x_ptr, [index]), _VEC8.as_pointer()),
                           align=8) for x_ptr in x_ptrs]
        if not has_y:
            return xs
        yv = builder.load(builder.bitcast(builder.gep(y_ptr, [index]), _VEC8.as_pointer()),
                          align=8)
        return [builder.fmul(xv, yv) for xv in xs]

    signs = _fma_signs(builder, CHUNK_ADDS_ON_FMA) if comp else None

    def step(acc, v, term):
        if comp:
            t, e = _two_sum_step(builder, acc[v], acc[4 + v], term, signs)
            acc[v], acc[4 + v] = t, e
        else:
            acc[v] = builder.fadd(acc[v], term)

    rows = builder.sdiv(n_val, ir.Constant(_I64, 32))
    r, phis, close = _counted_loop(builder, rows, "chunk", [ident] * (n_acc * len(x_ptrs)))
    base = builder.mul(r, ir.Constant(_I64, 32))
    accs = [list(phis[q * n_acc:(q + 1) * n_acc]) for q in range(len(x_ptrs))]
    prefetch_ahead = CHUNK_PREFETCH_AHEAD if comp else CHUNK_PREFETCH_AHEAD_PLAIN
    if stream and prefetch_ahead:  # the 4 lines of each stream's row r + ahead / 32
        streams = list(x_ptrs) + ([y_ptr] if has_y and len(x_ptrs) == 1 else [])
        for ptr in streams:
            for line in range(4):
                ahead = ir.Constant(_I64, prefetch_ahead + 8 * line)
                _prefetch(builder, builder.gep(ptr, [builder.add(base, ahead)]), locality=2)
    for v in range(4):
        for acc, term in zip(accs, terms_at(builder.add(base, ir.Constant(_I64, 8 * v))),
                             strict=True):
            step(acc, v, term)
    close([value for acc in accs for value in acc])

    tail = builder.block
    base = builder.mul(rows, ir.Constant(_I64, 32))
    partial = builder.append_basic_block("chunk_partial_row")
    joined = builder.append_basic_block("chunk_lanes_done")
    builder.cbranch(builder.icmp_signed("<", base, n_val), partial, joined)
    builder.position_at_end(partial)
    accs = [list(phis[q * n_acc:(q + 1) * n_acc]) for q in range(len(x_ptrs))]
    remaining = _splat(builder, builder.sub(n_val, base))
    for v in range(4):
        lanes = ir.Constant(_VEC8_I64, [8 * v + j for j in range(8)])
        inside = builder.icmp_signed("<", lanes, remaining)
        at = builder.add(base, ir.Constant(_I64, 8 * v))
        yv = _masked_load(builder, builder.gep(y_ptr, [at]), inside) if has_y else None
        for acc, x_ptr in zip(accs, x_ptrs, strict=True):
            term = _masked_load(builder, builder.gep(x_ptr, [at]), inside)
            if has_y:
                term = builder.fmul(term, yv)
            step(acc, v, builder.select(inside, term, ident))
    partial_end = builder.block
    builder.branch(joined)
    builder.position_at_end(joined)
    merged = _join(builder, phis, tail, [value for acc in accs for value in acc],
                   partial_end)
    return [merged[q * n_acc:(q + 1) * n_acc] for q in range(len(x_ptrs))]


def _join(builder, a, block_a, b, block_b):
    """At the block where ``block_a`` and ``block_b`` meet: one ``<8 x double>`` phi per
    pair, ``a[q]`` if control came from ``block_a``, ``b[q]`` from ``block_b``."""
    merged = []
    for va, vb in zip(a, b, strict=True):
        phi = builder.phi(_VEC8)
        phi.add_incoming(va, block_a)
        phi.add_incoming(vb, block_b)
        merged.append(phi)
    return merged


def _masked_load(builder, ptr, mask):
    """``llvm.masked.load`` of eight doubles from ``ptr`` where ``mask`` holds, +0.0
    elsewhere; the masked-off slots are not read (they may lie past the array's end)."""
    vptr = builder.bitcast(ptr, _VEC8.as_pointer())
    fnty = ir.FunctionType(_VEC8, [vptr.type, _I32, mask.type, _VEC8])
    # the typed-pointer mangling (LLVM 14); newer LLVMs remangle it for opaque pointers
    fn = builder.module.declare_intrinsic("llvm.masked.load.v8f64.p0v8f64", fnty=fnty)
    return builder.call(fn, [vptr, ir.Constant(_I32, 8), mask,
                             ir.Constant(_VEC8, [0.0] * 8)])


def _lane_tree_root(builder, acc, comp):
    """CRO-1 step 3 of :func:`_chunk_lanes`'s sums: ``w = 16`` and ``8`` across the four
    vectors, then ``4, 2, 1`` by shuffles; returns the root ``(s, comp)`` as scalars."""
    ident = ir.Constant(_VEC8, [-0.0] * 8)
    s, c = acc[:4], (acc[4:] if comp else [ident] * 4)
    s0, c0 = _merge8(builder, s[0], c[0], s[2], c[2], comp)
    s1, c1 = _merge8(builder, s[1], c[1], s[3], c[3], comp)
    sv, cv = _merge8(builder, s0, c0, s1, c1, comp)
    for w in (4, 2, 1):
        mask = ir.Constant(ir.VectorType(_I32, 8), [(i + w) % 8 for i in range(8)])
        sv, cv = _merge8(builder, sv, cv, builder.shuffle_vector(sv, sv, mask),
                         builder.shuffle_vector(cv, cv, mask), comp)
    zero = ir.Constant(_I32, 0)
    return builder.extract_element(sv, zero), builder.extract_element(cv, zero)


def _contiguous_f64(*arrays) -> bool:
    return all(isinstance(a, types.Array) and a.layout == "C" and a.ndim == 1
               and a.dtype == types.float64 for a in arrays)


@intrinsic
def chunk_partial(typingctx, x, y, start, n, compensated, stream):
    """CRO-1 steps 2 and 3 for one chunk, with the 32 lanes in vector registers: the
    lane-tree root ``(s, comp)`` of the terms ``x[start + i]`` (times ``y[start + i]``,
    rounded once, when ``y`` is an array; ``y`` None: a sum) for ``i < n``.

    Lane ``l`` accumulates terms ``l, l + 32, ...`` in order from ``(-0.0, -0.0)``, plain
    ``s + v`` or compensated ``(s, e) = TwoSum(s, v); comp + e``; the last partial row is
    padded with ``-0.0`` (which adds nothing; the reference pads the same way). The lane
    tree ``w = 16, 8, 4, 2, 1`` merges lane ``l + w`` into lane ``l`` (vector halves, then
    shuffles). Plain mode returns ``comp = -0.0``. ``x``, ``y``: 1-D C-contiguous float64;
    ``compensated`` a literal bool; no bounds checks (``start + n`` must be in range).
    ``stream`` (a literal bool): the terms are read once, from memory (long sums and
    dots, ``gemv``'s rows), so the loop prefetches ahead where
    :data:`CHUNK_PREFETCH_AHEAD` (plain mode: :data:`CHUNK_PREFETCH_AHEAD_PLAIN`) says;
    else (rows already in cache: the Cholesky, the SPD inverse and the solves) it does
    not, which measured faster there (SPD inverse
    of order 2000 on the Emerald Rapids VM, plain / compensated: 398-411 / 574-591 ms
    without, 467-481 / 608-643 ms with). A hint only: the same bits.

    As Numba loops the plain lane step stayed scalar or needed an array temporary per
    row (LLVM cannot prove the accumulators and the terms do not alias), and the lane
    tree was 31 scalar merges per dot: long plain dots (gemv's rows) ran at half the speed
    of compensated ones.
    """
    if not all(isinstance(f, types.BooleanLiteral) for f in (compensated, stream)):
        return None
    has_y = not isinstance(y, types.NoneType)
    if not _contiguous_f64(*((x, y) if has_y else (x,))):
        return None
    comp, streamed = compensated.literal_value, stream.literal_value
    sig = types.UniTuple(types.float64, 2)(x, y, start, n, compensated, stream)

    def codegen(context, builder, signature, args):
        x_val, y_val, start_val, n_val = args[:4]

        def data(i, val):
            return context.make_array(signature.args[i])(context, builder, val).data

        x_ptr = builder.gep(data(0, x_val), [start_val])
        y_ptr = builder.gep(data(1, y_val), [start_val]) if has_y else None
        root = _lane_tree_root(builder, _chunk_lanes(builder, x_ptr, y_ptr, n_val, comp,
                                                     streamed), comp)
        return context.make_tuple(builder, signature.return_type, list(root))

    return sig, codegen


@intrinsic
def chunk_partials2(typingctx, A, row, other, y, n, compensated, stream):
    """:func:`chunk_partial` of rows ``row`` and ``other`` of the 2-D C-contiguous ``A``
    with ``y``, terms ``0 .. n - 1`` (one chunk: ``n <= CHUNK``), in one loop: ``(s0, c0,
    s1, c1)``, each pair bit for bit that row's :func:`chunk_partial`. The two rows
    stream from memory side by side and share each load of ``y`` (``gemv``'s rows:
    :func:`.multi._rows_times_tasks` pairs them half a block apart). ``compensated`` and
    ``stream`` literal bools; no bounds checks."""
    if not all(isinstance(f, types.BooleanLiteral) for f in (compensated, stream)):
        return None
    if not (isinstance(A, types.Array) and A.ndim == 2 and A.layout == "C"
            and A.dtype == types.float64 and _contiguous_f64(y)):
        return None
    comp, streamed = compensated.literal_value, stream.literal_value
    sig = types.UniTuple(types.float64, 4)(A, row, other, y, n, compensated, stream)

    def codegen(context, builder, signature, args):
        a_val, row_val, other_val, y_val, n_val = args[:5]
        a_arr = context.make_array(signature.args[0])(context, builder, a_val)
        y_arr = context.make_array(signature.args[3])(context, builder, y_val)
        ld = builder.extract_value(a_arr.shape, 1)
        x_ptrs = [builder.gep(a_arr.data, [builder.mul(r, ld)]) for r in (row_val, other_val)]
        roots = []
        for acc in _chunk_lanes_rows(builder, x_ptrs, y_arr.data, n_val, comp, streamed):
            roots.extend(_lane_tree_root(builder, acc, comp))
        return context.make_tuple(builder, signature.return_type, roots)

    return sig, codegen


@intrinsic
def lane_axpy(typingctx, s, e, A, i, m0, n, wts, steps, compensated):
    """CRO-1 lane steps for a run of columns, eight at a time, ``steps`` rows in order:
    for ``m < n`` (a multiple of 8; the caller does the rest) and ``r = 0 .. steps - 1``,
    ``s[m] <- s[m] + fl(A[i + 32 r, m0 + m] * wts[r])`` (plain) or ``(s[m], err) =
    TwoSum(s[m], fl(A[i + 32 r, m0 + m] * wts[r])); e[m] <- e[m] + err`` (compensated):
    the rows ``i, i + 32, ...`` are consecutive terms of one CRO-1 lane. The run of
    accumulators is loaded once per ``steps`` rows. ``s``, ``e``, ``wts``: 1-D C-contiguous
    float64; ``A``: 2-D C-contiguous float64; ``steps`` a literal int, ``compensated`` a
    literal bool; no bounds checks. (As a Numba loop the compensated step did not
    vectorise: three arrays that may alias.)"""
    if not isinstance(compensated, types.BooleanLiteral) or not isinstance(
            steps, types.IntegerLiteral):
        return None
    if any(not isinstance(x, types.Array) or x.layout != "C" or x.dtype != types.float64
           for x in (s, e, A, wts)):
        return None
    comp, n_steps = compensated.literal_value, steps.literal_value
    sig = types.void(s, e, A, i, m0, n, wts, steps, compensated)

    def codegen(context, builder, signature, args):
        s_val, e_val, a_val, i_val, m0_val, n_val, w_val = args[:7]
        s_arr, e_arr, a_arr, w_arr = (
            context.make_array(signature.args[k])(context, builder, v)
            for k, v in ((0, s_val), (1, e_val), (2, a_val), (6, w_val)))
        ld = builder.extract_value(a_arr.shape, 1)
        rows = [builder.gep(a_arr.data, [builder.add(builder.mul(builder.add(
            i_val, ir.Constant(_I64, 32 * r)), ld), m0_val)]) for r in range(n_steps)]
        weights = [_splat(builder, builder.load(builder.gep(w_arr.data, [ir.Constant(
            _I64, r)]))) for r in range(n_steps)]
        _run_steps(builder, s_arr.data, e_arr.data, rows, weights,
                   builder.ashr(n_val, ir.Constant(_I64, 3)), comp)
        return context.get_dummy_value()

    return sig, codegen


def _column_weights(builder, w_ptr, eq_ptr, w_stride, picks):
    """The eight per-column weights ``w[eq[pick[b]] * w_stride]`` of one vector of
    columns: ``eq_ptr`` points at the vector's ``len(picks) + 1`` equation indices,
    ``picks`` are the precomputed masks ``pick == q`` for ``q >= 1`` (slot ``b`` takes
    equation ``eq[q]`` where its mask is set, else ``eq[0]``). Splats and selects only:
    the weights are moved, never computed."""
    def weight(q):
        index = builder.load(builder.gep(eq_ptr, [ir.Constant(_I64, q)]))
        return _splat(builder, builder.load(builder.gep(w_ptr, [builder.mul(index,
                                                                             w_stride)])))

    w = weight(0)
    for q, mask in enumerate(picks, start=1):
        w = builder.select(mask, weight(q), w)
    return w


def weighted_vector_steps(builder, j, m0, s_ptr, e_ptr, a_rows, a_ld, w_rows, w_stride,
                          eqv_ptr, pick_ptr, n_span, comp, signs):
    """The IR of :func:`weighted_lane_axpy` for its vector ``j`` (columns ``m0 + 8 j ..
    m0 + 8 j + 7``, accumulators ``s_ptr[8 j ..]``, ``e_ptr[8 j ..]``): the lane steps of
    the rows at ``a_rows`` (pointers to their column ``m0``), weighted from ``w_rows``,
    in order. Shared with the fused operator's row pass (:mod:`.fused_rows`)."""
    at = builder.mul(j, ir.Constant(_I64, 8))
    column = builder.add(m0, at)
    vector = builder.ashr(column, ir.Constant(_I64, 3))
    eq_ptr = builder.gep(eqv_ptr, [builder.mul(vector, ir.Constant(_I64, n_span))])
    pick_vec = builder.load(builder.bitcast(builder.gep(pick_ptr, [column]),
                                            _VEC8_I64.as_pointer()), align=8)
    picks = [builder.icmp_signed("==", pick_vec, ir.Constant(_VEC8_I64, [q] * 8))
             for q in range(1, n_span)]

    def vptr(ptr, offset):
        return builder.bitcast(builder.gep(ptr, [offset]), _VEC8.as_pointer())

    sv = builder.load(vptr(s_ptr, at), align=8)
    ev = builder.load(vptr(e_ptr, at), align=8) if comp else None
    if CHUNK_PREFETCH_AHEAD:  # the first row of the lane's next pass, into L2
        _prefetch(builder, builder.gep(a_rows[0], [builder.add(at, builder.mul(
            a_ld, ir.Constant(_I64, 32 * len(a_rows))))]), 2)
    for a_row, w_row in zip(a_rows, w_rows, strict=True):
        weight = _column_weights(builder, w_row, eq_ptr, w_stride, picks)
        term = builder.fmul(builder.load(vptr(a_row, at), align=8), weight)
        if comp:
            sv, ev = _two_sum_step(builder, sv, ev, term, signs)
        else:
            sv = builder.fadd(sv, term)
    builder.store(sv, vptr(s_ptr, at), align=8)
    if comp:
        builder.store(ev, vptr(e_ptr, at), align=8)


@intrinsic
def weighted_lane_axpy(typingctx, s, e, A, i, m0, n, W, w0, w_step, w_stride, eqv, pick, span,
                       steps, compensated):
    """CRO-1 lane steps for a run of columns whose weights differ by column, eight
    columns at a time, ``steps`` rows in order: for ``m < n`` (a multiple of 8; ``m0`` a
    multiple of 8) and ``r = 0 .. steps - 1``, with ``c = m0 + m``,
    ``s[m] <- s[m] + fl(A[i + 32 r, c] * W[w0 + r w_step + eq(c) w_stride])`` (plain) or
    the TwoSum step with ``e[m] <- e[m] + err`` (compensated) -- the terms of
    ``sur_rmatvec``: ``W`` is the flat weight matrix, row-major ``(w0, w_step, w_stride)
    = (i K, 32 K, 1)`` or a 32-row block ``(K, 32)``.

    ``eq(c)`` comes from a precomputed table: the eight columns ``8 v .. 8 v + 7`` belong
    to at most ``span`` equations ``eqv[v * span + q]`` and column ``c`` to the one at
    ``q = pick[c]``. The weight vector is built from ``span`` broadcasts and ``span - 1``
    selects (no gather). ``s``, ``e``, ``W``, ``eqv``, ``pick``: 1-D C-contiguous (float64
    but int64 for the last two); ``A``: 2-D C-contiguous float64; ``span`` and ``steps``
    literal ints; ``compensated`` a literal bool; no bounds checks.

    Where :data:`CHUNK_PREFETCH_AHEAD` is on, each vector also prefetches into L2 the
    same columns of row ``i + 32 steps`` -- the first row of the lane's next pass, which
    in the fused normal operator is the next block's -- so that memory is read while
    the fused operator's lane steps compute from cache (a hint: no effect on values).
    Twenty-second session, Emerald Rapids VM, fused operator at N = 25000, K = 200, p =
    10, alternating processes, best of seven: two threads 27.5-28.4 -> 25.5-26.0 ms
    plain, compensated unchanged within the noise (32.5-36.0 against 32.6-35.3 ms); one
    thread 54-57 -> 47.5-52 ms plain. One prefetch per vector (a quarter of the next
    block) was best: two or four per vector measured the same in plain mode and slower
    in compensated mode, and adding the next block's second run of rows during the
    Woodbury block (:mod:`.woodbury_rows`) gained nothing. ``sur_rmatvec``, which reads
    its rows from memory in these steps, measured the same with and without."""
    if not isinstance(compensated, types.BooleanLiteral) or not all(
            isinstance(x, types.IntegerLiteral) for x in (span, steps)):
        return None
    if any(not isinstance(x, types.Array) or x.layout != "C" or x.dtype != types.float64
           for x in (s, e, A, W)):
        return None
    if any(not isinstance(x, types.Array) or x.layout != "C" or x.dtype != types.int64
           for x in (eqv, pick)):
        return None
    comp, n_span, n_steps = (compensated.literal_value, span.literal_value,
                             steps.literal_value)
    sig = types.void(s, e, A, i, m0, n, W, w0, w_step, w_stride, eqv, pick, span, steps,
                     compensated)

    def codegen(context, builder, signature, args):
        (s_val, e_val, a_val, i_val, m0_val, n_val, w_val, w0_val, w_step_val, w_stride_val,
         eqv_val, pick_val) = args[:12]
        s_arr, e_arr, a_arr, w_arr, eqv_arr, pick_arr = (
            context.make_array(signature.args[k])(context, builder, v)
            for k, v in ((0, s_val), (1, e_val), (2, a_val), (6, w_val), (10, eqv_val),
                         (11, pick_val)))
        a_ld = builder.extract_value(a_arr.shape, 1)
        a_rows = [builder.gep(a_arr.data, [builder.add(builder.mul(builder.add(
            i_val, ir.Constant(_I64, 32 * r)), a_ld), m0_val)]) for r in range(n_steps)]
        w_rows = [builder.gep(w_arr.data, [builder.add(w0_val, builder.mul(
            w_step_val, ir.Constant(_I64, r)))]) for r in range(n_steps)]
        signs = _fma_signs(builder) if comp else None
        j, _, close = _counted_loop(builder, builder.ashr(n_val, ir.Constant(_I64, 3)),
                                    "weighted")
        weighted_vector_steps(builder, j, m0_val, s_arr.data, e_arr.data, a_rows, a_ld,
                              w_rows, w_stride_val, eqv_arr.data, pick_arr.data, n_span,
                              comp, signs)
        close()
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def axpy_run(typingctx, s, e, a, w, compensated):
    """One CRO-1 lane step for each slot of a run, eight slots at a time:
    ``s[x] <- s[x] + fl(a[x] * w)`` (plain) or ``(s[x], err) = TwoSum(s[x], fl(a[x] * w));
    e[x] <- e[x] + err`` (compensated) for ``x < len(a)`` (a multiple of 8). ``s``, ``e``,
    ``a``: 1-D C-contiguous float64 views of at least that length; ``w`` float64;
    ``compensated`` a literal bool; no bounds checks. (As a Numba loop LLVM could not
    prove the runs do not alias and left the plain step scalar.)"""
    if not isinstance(compensated, types.BooleanLiteral):
        return None
    if any(not isinstance(x, types.Array) or x.layout != "C" or x.ndim != 1
           or x.dtype != types.float64 for x in (s, e, a)):
        return None
    comp = compensated.literal_value
    sig = types.void(s, e, a, w, compensated)

    def codegen(context, builder, signature, args):
        s_val, e_val, a_val, w_val = args[:4]
        s_arr, e_arr, a_arr = (context.make_array(signature.args[k])(context, builder, v)
                               for k, v in ((0, s_val), (1, e_val), (2, a_val)))
        n = builder.extract_value(a_arr.shape, 0)
        _run_steps(builder, s_arr.data, e_arr.data, [a_arr.data], [_splat(builder, w_val)],
                   builder.ashr(n, ir.Constant(_I64, 3)), comp)
        return context.get_dummy_value()

    return sig, codegen


#: Sequences per call of :func:`lane_sums`, plain and compensated. Measured on the Zen 3
#: (AVX2) box, one core, ``t = G^T u`` of a 32-row Woodbury block with K = 1000, k = 10
#: (three alternating runs): plain 150-155 us with 16 sequences (two cache lines per
#: term, 8 KiB apart) against 49-67 us with 32; compensated 104-155 against 112-143 us
#: (32 sequences need 16 vector registers for the sums and compensations alone, all that
#: AVX2 has), so compensated keeps 16 there. With AVX-512's 32 registers compensated
#: takes 32 too (Zen 4, :func:`_lane_sums_adds_on_fma` for the numbers).
LANE_SUM_WIDTH_PLAIN = 32
LANE_SUM_WIDTH_COMPENSATED = 32 if _zen_target()[1] else 16


#: Coefficient sequences (Woodbury ranks) per :func:`lane_sums` call in plain mode:
#: four ranks' 16 vectors of partials (32 sequences each) and the four vectors of ``A``
#: they share fit in AVX-512's 32 registers; AVX2's 16 hold one rank's
#: (:func:`.segments.dot_segments_ranks`).
LANE_SUM_RANKS_PLAIN = 4 if _zen_target()[1] else 1


def _lane_sums_ir(context, builder, signature, args, comp, nv, ranks):
    """The code of :func:`lane_sums` (``args`` in its order)."""
    (s_val, e_val, dst_val, dst_step, a_val, a0_val, as_val, b_val, b0_val, bs_val,
     b_step, n_val) = args[:12]
    s_arr, e_arr, a_arr, b_arr = (
        context.make_array(signature.args[k])(context, builder, v)
        for k, v in ((0, s_val), (1, e_val), (4, a_val), (7, b_val)))
    signs = _fma_signs(builder, LANE_SUMS_ADDS_ON_FMA) if comp else None

    def vptr(ptr, index, part):
        at = builder.add(index, ir.Constant(_I64, 8 * part))
        return builder.bitcast(builder.gep(ptr, [at]), _VEC8.as_pointer())

    def terms(r):
        """Term ``r`` of every rank: ``ranks * nv`` vectors, rank-major."""
        a_at = builder.add(a0_val, builder.mul(r, as_val))
        values = [builder.load(vptr(a_arr.data, a_at, h), align=8) for h in range(nv)]
        out = []
        for q in range(ranks):
            b_at = builder.add(builder.add(b0_val, builder.mul(r, bs_val)),
                               builder.mul(b_step, ir.Constant(_I64, q)))
            weight = _splat(builder, builder.load(builder.gep(b_arr.data, [b_at])))
            out += [builder.fmul(value, weight) for value in values]
        return out

    n_vec = ranks * nv
    sums = terms(ir.Constant(_I64, 0))
    errs = [ir.Constant(_VEC8, [0.0] * 8)] * n_vec if comp else []
    limit = builder.sub(n_val, ir.Constant(_I64, 1))
    j, carried, close = _counted_loop(builder, limit, "lane_terms", sums + errs)
    new_s, new_e = [], []
    for h, term in enumerate(terms(builder.add(j, ir.Constant(_I64, 1)))):
        if comp:
            s, e = _two_sum_step(builder, carried[h], carried[n_vec + h], term, signs)
            new_e.append(e)
        else:
            s = builder.fadd(carried[h], term)
        new_s.append(s)
    close(new_s + new_e)
    for q in range(ranks):  # (after the loop the phis hold the final partials)
        dst = builder.add(dst_val, builder.mul(dst_step, ir.Constant(_I64, q)))
        for h in range(nv):
            builder.store(carried[q * nv + h], vptr(s_arr.data, dst, h), align=8)
            if comp:
                builder.store(carried[n_vec + q * nv + h], vptr(e_arr.data, dst, h),
                              align=8)
    return context.get_dummy_value()


def _lane_sums_types(S, E, A, B, width, compensated, ranks) -> bool:
    """Whether :func:`lane_sums` accepts these argument types."""
    if not isinstance(compensated, types.BooleanLiteral) or not isinstance(
            width, types.IntegerLiteral) or width.literal_value % 8:
        return False
    if not isinstance(ranks, types.IntegerLiteral) or ranks.literal_value < 1:
        return False
    return all(isinstance(x, types.Array) and x.layout == "C" and x.ndim == 1
               and x.dtype == types.float64 for x in (S, E, A, B))


@intrinsic
def lane_sums(typingctx, S, E, dst, dst_step, A, a0, a_stride, B, b0, b_stride, b_step,
              n_terms, width, ranks, compensated):
    """One CRO-1 lane of ``width`` sequences at once (a literal multiple of 8) for
    ``ranks`` coefficient sequences (a literal), its partial sums in registers: for ``x
    < width`` and ``q < ranks``, the lane takes the terms ``fl(A[a0 + r a_stride + x] *
    B[b0 + q b_step + r b_stride])`` for ``r = 0 .. n_terms - 1`` in order, starting
    from the first term with compensation 0 (a lane's first step from the identity),
    then ``s += term`` (plain) or ``(s, err) = TwoSum(s, term); e += err``
    (compensated), and stores ``S[dst + q dst_step + x]`` (and ``E[...]``).
    ``n_terms >= 1``; ``S``, ``E``, ``A``, ``B``: 1-D C-contiguous float64;
    ``compensated`` a literal bool; no bounds checks.

    The flat passes of :func:`.segments.dot_segments` load and store every lane partial
    once per term; here a lane's terms stay in registers. Where
    :data:`LANE_SUMS_ADDS_ON_FMA` holds, three TwoSum additions are exact FMAs. Each
    rank's sums are those of a call with ``ranks = 1``, term for term in the same order
    (the same bits); the loads of ``A`` are shared and the ranks' additions are
    independent, so a lane of few terms (the Woodbury block's ``t = G^T u`` at K = 200
    has six) runs ``ranks`` times fewer loops, each with ``ranks`` times as many
    independent additions in flight (twenty-fourth session).
    """
    if not _lane_sums_types(S, E, A, B, width, compensated, ranks):
        return None
    comp, nv, n_ranks = (compensated.literal_value, width.literal_value // 8,
                         ranks.literal_value)
    sig = types.void(S, E, dst, dst_step, A, a0, a_stride, B, b0, b_stride, b_step, n_terms,
                     width, ranks, compensated)

    def codegen(context, builder, signature, args):
        return _lane_sums_ir(context, builder, signature, args, comp, nv, n_ranks)

    return sig, codegen
