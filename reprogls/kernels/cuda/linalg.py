"""CuPy launchers of the linear-algebra kernels (``linalg.cu``).

Inputs are validated C-contiguous float64 CuPy arrays on the current device; offsets
int64, preferably on the host (the device copy of each layout and the column-to-equation
map are kept per layout, :func:`_layout`, and so are the device copies of a Woodbury
factor, :func:`_factor_arrays`: a fit calls these launchers dozens of times with one
layout and a dozen times per factor, and each call used to copy them anew). The
Woodbury factor (``G``, ``L``) is computed on the host by the CPU code (it is
``O(K k^2)``) and copied here; the bits are the same by construction. The normal operator
composes the three kernels (:data:`NORMAL_OPERATOR`, with the H100's times), reading X
twice; its single pass (``sur_normal_lanes``: per CRO-1 lane of a chunk, a block takes
the lane's rows eight at a time, one per warp through ``X v`` and the Woodbury row, then
all eight through the ``X^T W`` lane step, the rows still in cache; lane accumulators in
registers up to :data:`FUSED_MAX_P` columns and in device memory beyond, a row's
``U``/``W`` in shared memory up to :data:`FUSED_MAX_K` equations and in a device
scratch beyond) reads it once but was 1.6-3.9x slower there. Either way it is bitwise
equal to the CPU's fused operator.
``sur_matvec`` (and ``gemv``) compute each output in one thread when no equation is
wider than 32 columns (``sur_matvec_short_8``, ``_16``, ``_32``: the dot's lanes in
registers sized for the widest equation), else with a warp per output. The Woodbury
solve takes a warp per row, with its per-row arrays in registers up to rank 32
(``woodbury_solve_4`` ... ``_32``) and in local memory beyond. Before 2026-12-06 both
kept those arrays in local memory (512 and 2560 bytes per thread) and measured 30-37%
and 6-8% of a device-to-device copy on an H100; the register versions compile to no
local memory (``tests/test_cuda_compile.py``) but have not yet run on a GPU.
``sur_rmatvec`` (and ``gemv_t``) keep one accumulator pair per (chunk, lane, column) in
global memory: thread ``j`` of a block sums column ``m`` over one lane's rows, so a warp
reads 32 consecutive doubles of a row (the first version, a warp per (chunk, column),
read one double per row and cache line).

Their bits are checked on the host emulator (``tests/cuda_emulator``) in CI and were on
an NVIDIA H100 on 2026-12-06 (``pytest -m gpu``: every test passed); their speed there
is in ``profiling/results/h100-2026-12-06/gpu-kernels.md``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cupy as cp
import numpy as np

from ..reference import cro as _ref
from ._launch import THREADS, kernel, thread_grid, warp_grid
from .sources import SHAPE_CONSTANTS

MAX_RANK = SHAPE_CONSTANTS["CRO_MAX_RANK"]
#: The single-pass normal operator (``linalg.cu``): a block of ``32 * FUSED_ROWS``
#: threads; lane accumulators in registers up to ``FUSED_COLS_PER_THREAD = 12`` columns
#: per thread (else in device memory), a row's ``U``/``W`` in shared memory up to
#: ``FUSED_MAX_K`` equations (else in :data:`FUSED_SCRATCH_BYTES` of device memory at
#: most, ``FUSED_ROWS * K`` doubles per block).
FUSED_ROWS = SHAPE_CONSTANTS["FUSED_ROWS"]
FUSED_THREADS = 32 * FUSED_ROWS
FUSED_MAX_P = SHAPE_CONSTANTS["FUSED_COLS_PER_THREAD"] * FUSED_THREADS
FUSED_MAX_K = SHAPE_CONSTANTS["FUSED_MAX_K"]
FUSED_SCRATCH_BYTES = 64 << 20
#: How :func:`sur_normal_matvec` runs on the GPU: ``"three_kernels"`` (``sur_matvec``,
#: ``woodbury_solve``, ``sur_rmatvec``: X read twice, U and W through device memory) or
#: ``"one_pass"`` (``sur_normal_lanes``: X read once). The same bits either way. On an
#: H100 (2026-12-06, ``profiling/gpu_kernels.py``) the three kernels took 0.73-0.90 ms at
#: the size M (N = 20000, K = 200, p = 10, k = 5) and 1.7-2.3 ms at L (N = 5000,
#: K = 2000, p = 5, k = 10), the single pass 1.55-1.73 and 6.4-7.3 ms: the operator is
#: bound by the latency of the per-row Woodbury solves, not by reading X, and the single
#: pass has ``n_chunks * 32`` blocks (one row per warp at a time) to hide it where the
#: solve kernel has a warp per row. A kernel that fused the first two (a warp per row
#: forming its U and solving it in place, then ``sur_rmatvec``) measured the same as the
#: three within 2-10% and was not kept.
NORMAL_OPERATOR = "three_kernels"


def _k(name):
    return kernel("linalg.cu", name)


@dataclass(frozen=True)
class _Layout:
    """A SUR layout as the launchers need it: ``widest`` (the most columns of an
    equation) on the host, ``offsets`` (int64) and ``eq`` (``eq[m]``: the equation that
    owns column ``m``, int32) on the device."""

    widest: int
    offsets: object
    eq: object


#: Layouts and factors whose device copies are kept (least recently used dropped).
_CACHED = 16
#: Largest Woodbury factor (``K k`` values) whose device copies are kept: its bytes are
#: the cache key, hashed at every call.
FACTOR_CACHE_MAX = 1 << 16


def _layout(offsets) -> _Layout:
    """The :class:`_Layout` of ``offsets`` (host int64, or a device array: then copied
    back once per call), from a cache keyed on the offsets' bytes and the current
    device. A fit calls the SUR kernels dozens of times with one layout; each call used
    to copy the offsets to the host and the equation of every column to the device."""
    host = offsets if isinstance(offsets, np.ndarray) else cp.asnumpy(offsets)
    return _cached_layout(np.ascontiguousarray(host, dtype=np.int64).tobytes(),
                          cp.cuda.Device().id)


@functools.lru_cache(maxsize=_CACHED)
def _cached_layout(key: bytes, device_id: int) -> _Layout:
    offsets = np.frombuffer(key, dtype=np.int64)
    widths = np.diff(offsets)
    return _Layout(widest=int(widths.max(initial=0)),
                   offsets=cp.asarray(offsets),
                   eq=cp.asarray(np.repeat(np.arange(widths.shape[0], dtype=np.int32), widths)))


def _factor_arrays(G, d, L):
    """``(G, d, L, L^T)`` of a Woodbury factor (host arrays) on the current device, kept
    for the next call with the same values (a CG fit solves with one factor a dozen
    times): the key is their bytes, so a factor changed in place is copied again.
    Factors above :data:`FACTOR_CACHE_MAX` values are copied every call."""
    if G.size > FACTOR_CACHE_MAX:
        return _factor_to_device(G, d, L)
    key = tuple((np.ascontiguousarray(a, dtype=np.float64).tobytes(), a.shape)
                for a in (G, d, L))
    return _cached_factor(key, cp.cuda.Device().id)


def _factor_to_device(G, d, L):
    Ld = cp.asarray(L)
    return cp.asarray(G), cp.asarray(d), Ld, cp.ascontiguousarray(Ld.T)


@functools.lru_cache(maxsize=_CACHED)
def _cached_factor(key, device_id: int):
    G, d, L = (np.frombuffer(data, dtype=np.float64).reshape(shape) for data, shape in key)
    return _factor_to_device(G, d, L)


def sur_matvec(X, offsets, beta, compensated):
    N, P = X.shape
    K = offsets.shape[0] - 1
    U = cp.empty((N, K), dtype=cp.float64)
    if U.size == 0:
        return U
    layout = _layout(offsets)
    offsets, widest = layout.offsets, layout.widest
    if widest <= 32:  # a thread per output, its dot's lanes in registers
        grid, block = thread_grid(N * K)
        _k(f"sur_matvec_short_{_register_bound(widest, (8, 16, 32))}")(
            grid, block, (X, offsets, beta, np.int64(N), np.int32(K), np.int64(P),
                          np.int32(compensated), U))
        return U
    n_slots = max(1, -(-widest // _ref.CHUNK))
    grid, block = warp_grid(N * K)
    n_warps = grid[0] * block[0] // 32
    scratch = (cp.empty((n_warps, n_slots)) if n_slots > 1 else cp.empty((1, 1)))
    scratch_c = cp.empty_like(scratch)
    _k("sur_matvec")(grid, block, (X, offsets, beta, np.int64(N), np.int32(K), np.int64(P),
                                   np.int32(compensated), np.int32(n_slots), scratch,
                                   scratch_c, U))
    return U


def sur_rmatvec(X, offsets, W, compensated):
    N, P = X.shape
    K = offsets.shape[0] - 1
    if N == 0 or P == 0:
        return cp.zeros(P, dtype=cp.float64)
    n_chunks = -(-N // _ref.CHUNK)
    LS, LC = cp.empty((n_chunks * 32, P)), cp.empty((n_chunks * 32, P))
    n_tasks = n_chunks * 32 * -(-P // THREADS)
    _k("sur_rmatvec_lanes")((min(n_tasks, 2**31 - 1),), (THREADS,), (
        X, _layout(offsets).eq, cp.ascontiguousarray(W),
        np.int64(N), np.int64(P), np.int32(K), np.int32(compensated), LS, LC))
    return _finish_lanes(LS, LC, n_chunks, P, compensated)


def _finish_lanes(LS, LC, n_chunks, P, compensated):
    """``g`` from lane accumulators (n_chunks * 32, P): each chunk's lane tree, then the
    chunk tree down the columns and the finalize (CRO-1 steps 3-5)."""
    PS, PC = cp.empty((n_chunks, P)), cp.empty((n_chunks, P))
    grid, block = thread_grid(n_chunks * P)
    _k("lane_tree_partials")(grid, block, (LS, LC, np.int64(n_chunks), np.int64(P),
                                           np.int32(compensated), PS, PC))
    return _finish_chunks(PS, PC, n_chunks, P, compensated)


def _finish_chunks(PS, PC, n_chunks, width, compensated):
    """One result per column of the chunk partials ``PS``/``PC`` (n_chunks, width): the
    chunk tree down the column and the finalize (CRO-1 steps 4-5; PS/PC are consumed)."""
    g = cp.empty(width)
    _k("column_chunk_tree")(thread_grid(width)[0], (THREADS,), (
        PS, PC, np.int64(n_chunks), np.int64(width), np.int32(compensated), g))
    return g


#: ``X^T X`` (``gram_tile_partials_8`` / ``_16``): column tiles of ``GRAM_TILE`` (one
#: of :data:`GRAM_TILES`), a block of ``32 * GRAM_TILE`` threads per (tile pair, chunk);
#: the chunk partials of at most ``GRAM_PARTIAL_BYTES`` per launch. The same bits with
#: either tile. 8 took 141 ms at the size M on an H100 (2026-12-06, before its shared
#: rows were padded against bank conflicts); 16 reads X half as often and is untimed:
#: ``profiling/gpu_kernels.py`` times both.
GRAM_TILES = (8, 16)
GRAM_TILE = 8
GRAM_PARTIAL_BYTES = 256 << 20


def _tile_pairs(first, n):
    """``(mt, at)`` of the lower triangle's tile pairs ``first .. first + n - 1``, numbered
    row by row (row ``mt`` holds ``mt + 1`` pairs)."""
    idx = np.arange(first, first + n, dtype=np.int64)
    mt = ((np.sqrt(8.0 * idx + 1.0) - 1.0) // 2).astype(np.int64)
    mt += (mt + 1) * (mt + 2) // 2 <= idx  # (float rounding either way)
    mt -= mt * (mt + 1) // 2 > idx
    return mt, idx - mt * (mt + 1) // 2


def gram_lower(X, compensated):
    """``X^T X`` on the host with the lower triangle filled (``G[m, a]``, ``m >= a``, the
    bits of ``gemv_t(X, X[:, a])[m]``) and the strict upper triangle zero: one pass over
    X per launch, each launch the chunk partials of as many tile pairs as fit in
    :data:`GRAM_PARTIAL_BYTES` (one launch up to P ~ 3300 at N = 20000)."""
    N, P = X.shape
    G = np.zeros((P, P))
    if N == 0 or P == 0:
        return G
    tile = GRAM_TILE
    if tile not in GRAM_TILES:
        raise ValueError(f"GRAM_TILE must be one of {GRAM_TILES}, got {tile}")
    n_chunks = -(-N // _ref.CHUNK)
    n_tiles = -(-P // tile)
    total = n_tiles * (n_tiles + 1) // 2
    per_pair = n_chunks * tile * tile * 16  # bytes of PS and PC per tile pair
    batch = max(1, GRAM_PARTIAL_BYTES // per_pair)
    for first in range(0, total, batch):
        n = min(batch, total - first)
        width = n * tile * tile
        PS, PC = cp.empty((n_chunks, width)), cp.empty((n_chunks, width))
        _k(f"gram_tile_partials_{tile}")((min(n * n_chunks, 2**31 - 1),), (32 * tile,), (
            X, np.int64(N), np.int64(P), np.int64(first), np.int64(n),
            np.int32(compensated), PS, PC))
        g = cp.asnumpy(_finish_chunks(PS, PC, n_chunks, width, compensated))
        kept, slots = _lower_slots(P, first, n, tile)
        G.ravel()[slots] = g[kept]
    return G


@functools.lru_cache(maxsize=2)
def _lower_slots(P: int, first: int, n: int, tile: int) -> tuple[np.ndarray, np.ndarray]:
    """Where :func:`gram_lower`'s results for the tile pairs ``first .. first + n - 1``
    (tiles of ``tile`` columns) go: ``(kept, slots)``, the entries of the batch's
    ``n * tile**2`` results that are in the lower triangle (``m >= a``, ``m < P``) and
    their flat indices ``m P + a`` in G. The last two shapes' are kept (a fit's ``X^T X``
    and ``E^T E``; 32 MB each at P = 2000, 16 bytes per lower-triangle entry). At
    P = 2000 on the 2-core test VM the host's scatter took 48-51 ms with fancy indexing
    of (row, column) pairs built every call, 37-39 ms with flat indices, 7.3-7.7 ms with
    them cached; the GPU's whole ``gram_lower`` took 141 ms on an H100 at N = 20000."""
    w, q = np.meshgrid(np.arange(tile), np.arange(tile), indexing="ij")
    mt, at = _tile_pairs(first, n)
    m = (mt[:, None, None] * tile + w).ravel()  # (n, tile, tile): row w, column q
    a = (at[:, None, None] * tile + q).ravel()
    kept = np.flatnonzero((m < P) & (a <= m))
    return kept, m[kept] * P + a[kept]


def gemv(A, x, compensated):
    return sur_matvec(A, np.array([0, A.shape[1]], dtype=np.int64), x, compensated)[:, 0]


def gemv_t(A, y, compensated):
    return sur_rmatvec(A, np.array([0, A.shape[1]], dtype=np.int64), y.reshape(-1, 1),
                       compensated)


def woodbury_solve(R, G, d, L, compensated):
    N, K = R.shape
    k = G.shape[1]
    if k > MAX_RANK or K > _ref.CHUNK:
        raise NotImplementedError(f"the CUDA Woodbury solve supports rank <= {MAX_RANK} and "
                                  f"K <= {_ref.CHUNK} (got rank {k}, K {K}); use device='cpu'")
    out = cp.empty((N, K), dtype=cp.float64)
    if out.size == 0:
        return out
    Gd, dd, Ld, LT = _factor_arrays(G, d, L)
    grid, block = warp_grid(N)
    bound = _register_bound(k, WOODBURY_REGISTER_RANKS)
    name = "woodbury_solve" if bound is None else f"woodbury_solve_{bound}"
    _k(name)(grid, block, (R, Gd, dd, Ld, LT, np.int64(N), np.int32(K), np.int32(k),
                           np.int32(compensated), out))
    return out


#: Ranks up to which ``woodbury_solve`` has a kernel with its per-row arrays in registers
#: (``woodbury_solve_4`` ... ``_32``); above 32 (to :data:`MAX_RANK`) the generic kernel,
#: whose arrays live in local memory.
WOODBURY_REGISTER_RANKS = (4, 8, 16, 32)


def _register_bound(n: int, bounds: tuple[int, ...]) -> int | None:
    """The smallest of ``bounds`` that is at least ``n`` (None if none is): which
    compile-time size of a kernel's register arrays holds ``n`` entries."""
    return next((b for b in bounds if n <= b), None)


def sur_normal_matvec(X, offsets, v, G, d, L, compensated):
    """The normal operator ``X^T [(X v) Sigma^-1]``: the three kernels (``sur_matvec``,
    ``woodbury_solve``, ``sur_rmatvec``), or with :data:`NORMAL_OPERATOR` ``"one_pass"``
    and within its limits the single pass :func:`_normal_one_pass`. The CPU's bits
    either way."""
    N, P = X.shape
    K = offsets.shape[0] - 1
    k = G.shape[1]
    if NORMAL_OPERATOR == "one_pass" and N and P and k <= MAX_RANK and K <= _ref.CHUNK:
        layout = _layout(offsets)
        if layout.widest <= _ref.CHUNK:
            return _normal_one_pass(X, layout, v, G, d, L, compensated)
    U = sur_matvec(X, offsets, v, compensated)
    return sur_rmatvec(X, offsets, woodbury_solve(U, G, d, L, compensated), compensated)


def _normal_one_pass(X, layout, v, G, d, L, compensated):
    """``sur_normal_lanes``: each row of X read from device memory once, one block per
    CRO-1 lane of a chunk (``n_chunks * 32`` blocks)."""
    N, P = X.shape
    K = layout.offsets.shape[0] - 1
    k = G.shape[1]
    n_chunks = -(-N // _ref.CHUNK)
    n_tasks = n_chunks * 32
    uw_in_shared = K <= FUSED_MAX_K
    if uw_in_shared:
        blocks, uw_global = n_tasks, cp.empty(1)
    else:  # the blocks share the tasks out (grid-stride), each with its own scratch
        row_bytes = FUSED_ROWS * K * 8
        blocks = max(1, min(n_tasks, FUSED_SCRATCH_BYTES // row_bytes))
        uw_global = cp.empty(blocks * FUSED_ROWS * K)
    LS = cp.empty((n_tasks, P))
    LC = cp.empty((n_tasks, P))
    Gd, dd, Ld, LT = _factor_arrays(G, d, L)
    _k("sur_normal_lanes")((blocks,), (FUSED_THREADS,), (
        X, layout.offsets, layout.eq, v, Gd, dd, Ld, LT,
        np.int64(N), np.int64(P), np.int32(K), np.int32(k), np.int32(compensated),
        np.int32(layout.widest <= 32), np.int32(P <= FUSED_MAX_P), np.int32(uw_in_shared),
        uw_global, LS, LC))
    return _finish_lanes(LS, LC, n_chunks, P, compensated)
