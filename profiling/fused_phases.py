"""Where the fused normal operator's time goes: its three phases per block of 32 rows,
alone and together, with the rows in cache and from memory, on one thread.

Usage::

    python profiling/fused_phases.py [--equations 200 --width 10 --rank 5] [--chunks 3]

First the kernel itself (:func:`reprogls.kernels.cpu.streamed._normal_lanes`, every task
on this thread), which since the twenty-second session steps each block's lanes during
the next block's dots (:mod:`reprogls.kernels.cpu.fused_rows`). Then the phases one
after the other, as the kernel ran them before: the loop runs over every task of
``--chunks`` chunks of 8192 rows in order, with each phase switched on or off:
``dots`` (``U = X v`` for the block's four row groups, :func:`.row_trees.row_dots8`),
``woodbury`` (``W = U Sigma^-1``, the compiled block) and ``steps`` (the weighted lane
steps of ``X^T W`` over the same rows). "in cache" re-reads the first block every time;
"memory" walks all rows (X of ``8192 chunks`` rows, beyond the L3 of the 2-core VMs at
the default sizes when ``--chunks`` is 3 or more). ns per row; the results are not
used (the phases alone compute nothing meaningful).

Twenty-second session (Emerald Rapids VM, K = 200, p = 10, k = 5), plain / compensated,
in cache and from memory, three runs. With ``row_dots8``: dots 330-395 / 515-653 and
1094-1132 / 1087-1143, the Woodbury block 293-360 / 539-618 and 328-368 / 566-603, lane
steps 465-499 / 520-613 and 1038-1096 / 1162-1210 (alone, reading the rows), the three
in sequence 1129-1271 / 1570-1838 and 1812-1925 / 2169-2326 -- the dots wait on memory
with little to compute, the other two compute with memory idle. The interleaved kernel
(two runs): 1470-1606 / 2072-2125 ns per row from memory.

Twenty-third session, same box, two runs each: at the session's start the Woodbury
block took 285-369 / 521-561 in cache and the kernel 1541-1568 / 1825-2109; leaving
its ``t = G^T u`` out (wrong results, only to size it) gave 160-182 / 278-308 and
1375-1401 / 1583-1713. After the division by reciprocals and the lane trees in
registers (:mod:`reprogls.kernels.cpu.reciprocal`, ``segments.lane_tree_rows``): the
block 228-265 / 473-492, the kernel 1459-1591 / 1905-1955.

Twenty-fourth session, same box: at the session's start the kernel took 1682 / 2146,
dots 399 / 671 in cache and 1152 / 1204 from memory, the Woodbury block 295 / 525, the
lane steps 477 / 621 in cache, the three in cache 1207 / 1813. After the block's
one-pass output, quotients by broadcast reciprocals and ranks sharing lane-sum calls
(:mod:`reprogls.kernels.cpu.register_trees`, ``segments.dot_segments_ranks``): the
kernel 1377 / 1848, the block 158 / 450, dots 341 / 591 and 1063 / 1093, lane steps 475
/ 508, the three in cache 1043 / 1594 -- the arithmetic now about equals one core's
reads.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit

from reprogls import kernels
from reprogls.kernels.cpu._cro import CHUNK, LANES
from reprogls.kernels.cpu.blocked import runtime_int
from reprogls.kernels.cpu.row_trees import row_dots8
from reprogls.kernels.cpu.rowgroups import (
    BLOCK,
    GROUP,
    N_GROUPS,
    ROWS,
    block_call_arrays,
    block_scratch,
)
from reprogls.kernels.cpu.simd import FUSED_INTERLEAVED
from reprogls.kernels.cpu.streamed import _lane_steps, _normal_lanes, weight_plan
from reprogls.kernels.cpu.views import unmanaged
from reprogls.kernels.cpu.woodbury_rows import call_woodbury_block


@njit(cache=True)
def _phases(X, offsets, v, eqv, pick, eq_of_column, span, block_fn, GT, L, LT, DE,
            compensated, dots, woodbury, steps, in_cache):
    """The fused task loop over all whole blocks of X with the chosen phases."""
    N, P = X.shape
    k, K = GT.shape
    one = runtime_int(1)
    _, S, E, _, U, W, T, Z, UQ, acc, _ = block_scratch(runtime_int(0), K, k, one, one)
    SA, EA = np.full((GROUP, P), -0.0), np.full((GROUP, P), -0.0)
    Xv, Wv = unmanaged(X), unmanaged(W)
    W[:] = 0.5
    U[:] = 0.25  # the Woodbury phase alone: nonzero rows, as the dots would leave
    for task in range(N // CHUNK * N_GROUPS):
        c, lane0 = task // N_GROUPS, (task % N_GROUPS) * GROUP
        for i0 in range(c * CHUNK + lane0, (c + 1) * CHUNK, BLOCK * LANES):
            first_row = lane0 if in_cache else i0
            if dots:
                for s in range(BLOCK):
                    if compensated:
                        row_dots8(Xv, offsets, v, first_row + s * LANES, GROUP, U, s * GROUP,
                                  ROWS, True)
                    else:
                        row_dots8(Xv, offsets, v, first_row + s * LANES, GROUP, U, s * GROUP,
                                  ROWS, False)
            if woodbury:
                call_woodbury_block(block_fn, U, GT, L, LT, DE, compensated, S, E, T, Z, UQ,
                                    acc, W)
            if steps:
                for b in range(GROUP):
                    _lane_steps(unmanaged(SA[b]), unmanaged(EA[b]), Xv, first_row + b, 0, P,
                                Wv, b, GROUP, ROWS, eqv, pick, eq_of_column, span, BLOCK,
                                compensated)
    return SA[0, 0] + EA[0, 0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--equations", type=int, default=200)
    parser.add_argument("--width", type=int, default=10)
    parser.add_argument("--rank", type=int, default=5)
    parser.add_argument("--chunks", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    K, p = args.equations, args.width
    N = args.chunks * CHUNK
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, K * p))
    offsets = np.arange(0, K * p + 1, p)
    v = rng.standard_normal(K * p)
    F = rng.standard_normal((K, args.rank))
    d = 0.05 + 0.2 * rng.uniform(size=K)
    plan = weight_plan(offsets)
    if plan.most > 4 or p > 32:
        raise SystemExit("this layout does not take the streamed fused operator")
    print(f"N = {N}, K = {K}, p = {p}, k = {args.rank} (X of {X.nbytes / 1e6:.0f} MB), "
          "one thread; ns per row")
    phases = {"dots": (1, 0, 0), "woodbury": (0, 1, 0), "steps": (0, 0, 1),
              "all three": (1, 1, 1)}
    for mode in ("plain", "compensated"):
        factor = kernels.woodbury_factor(F, d, mode)
        fixed = (X, offsets, v, plan.eqv, plan.pick, plan.eq_of_column, plan.span,
                 *block_call_arrays(factor.G, factor.d, factor.L), mode == "compensated")
        kernel_best = np.inf
        order, starts = np.arange(N // CHUNK * N_GROUPS), np.array([0, N // CHUNK * N_GROUPS])
        LS, LC = np.empty((N // CHUNK, LANES, K * p)), np.empty((N // CHUNK, LANES, K * p))
        for _ in range(args.repeat + 1):  # the first run compiles
            t0 = time.perf_counter()
            _normal_lanes(0, 1, *fixed, order, starts, LS, LC)
            kernel_best = min(kernel_best, time.perf_counter() - t0)
        schedule = "interleaved" if FUSED_INTERLEAVED else "in turn"
        print(f"  {mode:<12} the kernel ({schedule:<11})         memory "
              f"{kernel_best / N * 1e9:6.0f}")
        for name, flags in phases.items():
            cells = []
            for in_cache in (True, False):
                _phases(*fixed, *flags, in_cache)
                best = np.inf
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    _phases(*fixed, *flags, in_cache)
                    best = min(best, time.perf_counter() - t0)
                cells.append(f"{best / N * 1e9:6.0f}")
            print(f"  {mode:<12} {name:<10} in cache {cells[0]}   memory {cells[1]}",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
