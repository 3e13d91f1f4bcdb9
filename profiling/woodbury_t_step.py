"""The Woodbury block's ``t = G^T u`` alone: its lane sums, then its lane tree and
finalize, on one thread with the block in cache.

Usage::

    python profiling/woodbury_t_step.py [--sizes 200x5 1000x10] [--repeat 2000]

For each ``K x k`` it times, per row of the 32-row block, ``k`` calls of
:func:`reprogls.kernels.cpu.segments.dot_segments` (what
:func:`reprogls.kernels.cpu.woodbury_rows.woodbury_block` ran until the twenty-fourth
session), the lane sums alone (``segments._lane_sums``), the lane sums plus the register
lane tree (``segments.lane_tree_rows``), and what the block runs now,
:func:`reprogls.kernels.cpu.segments.dot_segments_ranks` (in plain mode up to four ranks
per lane-sum call on AVX-512), in both modes, and prints MAC/ns (``K k`` products per
row). At the adders' limit one core of the Emerald Rapids VM (two 8-wide ports, ~3.45
GHz) does ~27 plain MAC/ns; plain ``lane_sums`` keeps four independent sums per lane
(32 rows), so each step waits on the add latency and reaches about half of that.

Twenty-third session, that VM, two runs of this script, ns per row plain / compensated:
K = 200, k = 5: lane sums 73-78 / 148-157, with the tree 71-74 / 183-188,
``dot_segments`` 88-96 / 199-203; K = 1000, k = 10: 663-711 / 1708-1724, 696-702 /
1759-1795, 748-755 / 1791-1827. (Before the tree ran in registers, a similar loop timed
``dot_segments`` at 169 / 300 and 881 / 2026.) Compensated, the lane sums are at the
adders' limit (a TwoSum step is seven additions); plain, they are latency-bound.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit

from reprogls.kernels.cpu import segments
from reprogls.kernels.cpu.blocked import runtime_int
from reprogls.kernels.cpu.rowgroups import ROWS, aligned_empty


@njit(cache=True)
def _t_step(U, GT, S, E, T, repeat, compensated, part):
    """``repeat`` times the ``k`` reductions of ``t``: ``part`` 0 the whole
    ``dot_segments`` per rank, 1 the lane sums alone, 2 the lane sums and the register
    tree, 3 ``dot_segments_ranks`` (the block's, several ranks per lane-sum call)."""
    k, K = GT.shape
    R, one, b5 = runtime_int(ROWS), runtime_int(1), runtime_int(5)
    for _ in range(repeat):
        if part == 3:
            segments.dot_segments_ranks(U, R, GT, K, R, compensated, S, E, T)
            continue
        for q in range(k):
            if part == 0:
                segments.dot_segments(U, R, GT[q], one, b5, K, R, compensated, S, E,
                                      T[q * R:])
                continue
            segments._lane_sums(S, E, 0, U, R, GT[q], 1, 0, K, R, compensated)
            if part == 2:
                if compensated:
                    segments.lane_tree_rows(S, E, R, True, T[q * R:])
                else:
                    segments.lane_tree_rows(S, E, R, False, T[q * R:])
    return T[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", default=["200x5", "1000x10"])
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args(argv)
    parts = {0: "dot_segments", 1: "lane sums", 2: "sums + tree", 3: "block (ranks)"}
    print("one thread, block in cache; ns per row (MAC/ns)")
    for size in args.sizes:
        K, k = (int(v) for v in size.split("x"))
        if not 32 <= K <= 8192:
            raise SystemExit(f"K = {K}: the register tree needs 32 <= K <= 8192")
        rng = np.random.default_rng(0)
        U = aligned_empty(K * ROWS)
        U[:] = rng.standard_normal(K * ROWS)
        GT = rng.standard_normal((k, K))
        # four ranks' lane partials: what the block's scratch holds (dot_segments_ranks)
        S, E, T = (aligned_empty(4 * 32 * ROWS), aligned_empty(4 * 32 * ROWS),
                   aligned_empty(ROWS * k))
        for compensated in (False, True):
            cells = []
            for part, name in parts.items():
                _t_step(U, GT, S, E, T, 1, compensated, part)  # compiles
                best = np.inf
                for _ in range(7):
                    t0 = time.perf_counter()
                    _t_step(U, GT, S, E, T, args.repeat, compensated, part)
                    best = min(best, time.perf_counter() - t0)
                ns = best / args.repeat / ROWS * 1e9
                cells.append(f"{name} {ns:7.1f} ({K * k / ns:5.2f})")
            mode = "compensated" if compensated else "plain"
            print(f"K = {K:5d} k = {k:3d} {mode:<12} " + "   ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
