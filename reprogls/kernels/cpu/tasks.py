"""Parallel loops over tasks: Python threads calling compiled ``nogil`` kernels.

Every parallel CPU kernel is a serial Numba function ``kernel(t0, t1, *args)`` that runs
its tasks ``t0 .. t1 - 1`` without the GIL (``@njit(nogil=True)``);
:func:`run_tasks` cuts ``0 .. n_tasks - 1`` into a few contiguous ranges per thread and
the threads of a shared pool (the calling thread among them) take the ranges in order
as they come free.

Why not ``prange``: a ``parallel=True`` function costs LLVM about three times as much
as the same loop compiled serially (the outlined loop body, with every helper inlined
into it, is optimised again inside the parallel wrapper). Measured on the 2-core Zen 3
box, empty Numba cache: the Woodbury solve's driver 6.1 s of LLVM time with ``prange``
against 1.7 s serial; the demo's kernels 64.5 s of single-core compile work against
39.9 s. The arithmetic of a task never depends on which thread runs it, so the bits
do not change.

The thread count is Numba's (:func:`numba.get_num_threads`: ``NUMBA_NUM_THREADS``, or
:func:`numba.set_num_threads` in the calling thread). Costs: a dispatch to the pool
takes ~30 µs (Numba's spinning OpenMP threads took ~2 µs), which shows only in many
small calls; and a pool thread needs the GIL for a moment to start its range, so a
program whose other Python threads hold the GIL can delay it.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

__all__ = ["PIECES_PER_THREAD", "lpt_schedule", "run_tasks", "schedule_bins", "threads"]

_pool: ThreadPoolExecutor | None = None
_pool_workers = 0
_pool_lock = threading.Lock()


def _forget_pool() -> None:
    """In a forked child: the parent's pool object came along but its threads did not."""
    global _pool, _pool_workers, _pool_lock
    _pool, _pool_workers, _pool_lock = None, 0, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def threads() -> int:
    """Threads the CPU kernels use: Numba's :func:`numba.get_num_threads`."""
    return max(1, int(numba.get_num_threads()))


def _executor(workers: int) -> ThreadPoolExecutor:
    """The shared pool of this process, grown to at least ``workers`` threads."""
    global _pool, _pool_workers
    with _pool_lock:
        if _pool is None or _pool_workers < workers:
            old = _pool
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reprogls")
            _pool_workers = workers
            if old is not None:
                old.shutdown(wait=False)
        return _pool


#: Ranges per thread that :func:`run_tasks` cuts the tasks into; the threads take them
#: in order as they come free. With one range per thread (a static schedule) a thread
#: sat idle for 124-186 ms of a 0.8-1.0 s fit at the size M of the estimator issue (two
#: threads, 2-core Zen 4 box): the two virtual cores do not keep the same pace from
#: moment to moment (equal halves of ``X beta``'s rows finished 15-33 ms apart in 64-99
#: ms), and some task lists split unevenly (the OLS Gram blocks' 36 tasks: one thread
#: had 1.6x the other's rows, idle 29 of 66 ms). Eight ranges per thread: idle 63-78
#: ms, the fit's median 0.805 -> 0.755 s and 0.834 -> 0.773 s (two runs of 14
#: alternating fits in one process); the S fit unchanged (42-43 ms); the same bits.
PIECES_PER_THREAD = 8


def schedule_bins() -> int:
    """How many bins a caller that balances its own tasks (:func:`lpt_schedule`) should
    fill: :data:`PIECES_PER_THREAD` per thread (one when single-threaded), so that
    :func:`run_tasks` can share the bins out as the threads come free. With no more
    tasks than bins, every task gets a bin of its own, the costliest first, and the
    threads take them in that order (the longest-processing-time rule, applied as the
    threads come free)."""
    n = threads()
    return 1 if n == 1 else n * PIECES_PER_THREAD


def run_tasks(kernel: Callable[..., object], n_tasks: int, *args) -> None:
    """Run ``kernel(t0, t1, *args)`` over contiguous ranges covering ``0 .. n_tasks - 1``.

    With ``T = min(threads(), n_tasks)`` threads (the calling one and ``T - 1`` of the
    pool), the tasks are cut into ``R = min(n_tasks, PIECES_PER_THREAD T)`` ranges,
    range ``r`` being ``[r n / R, (r + 1) n / R)``, and each thread runs the next range
    not yet taken until none is left (a dynamic schedule: which thread runs a range
    depends on timing, never what the range computes). ``T <= 1`` runs ``kernel(0, n)``
    in the calling thread alone. ``kernel`` must be compiled with ``nogil=True``, write
    only its own tasks' outputs and give the same results for any cut of the tasks
    into ranges. An exception raised by any range is re-raised here after every thread
    has stopped (a thread stops at its first exception).
    """
    n_tasks = int(n_tasks)
    if n_tasks <= 0:
        return
    n_threads = min(threads(), n_tasks)
    if n_threads == 1:
        kernel(0, n_tasks, *args)
        return
    n_ranges = min(n_tasks, n_threads * PIECES_PER_THREAD)
    bounds = [r * n_tasks // n_ranges for r in range(n_ranges + 1)]
    taken = itertools.count()  # next() is atomic under the GIL

    def take_ranges() -> None:
        while (r := next(taken)) < n_ranges:
            kernel(bounds[r], bounds[r + 1], *args)

    pool = _executor(n_threads - 1)
    futures = [pool.submit(take_ranges) for _ in range(1, n_threads)]
    try:
        take_ranges()
    finally:
        for future in futures:
            # a worker that has not started yet finds no range left: cancel it rather
            # than wait for its thread to wake up (fifteenth session, 2-core Zen 4 VM:
            # run_tasks of a trivial kernel, 2 threads, 2 tasks 62.7 -> 16.1 us, 16
            # tasks 55.0 -> 37.3 us; the S fit the same within the noise)
            if not future.cancel():
                future.result()


def lpt_schedule(costs: np.ndarray, n_threads: int) -> tuple[np.ndarray, np.ndarray]:
    """Tasks of unequal ``costs`` shared among ``n_threads`` by the
    longest-processing-time rule (the costliest task first, each to the least-loaded
    thread; ties by task index): ``order[starts[t]:starts[t + 1]]`` are thread ``t``'s
    tasks, in increasing index. Only the schedule depends on the thread count, never a
    task's arithmetic."""
    costs = np.asarray(costs)
    load = np.zeros(n_threads)
    owner = np.empty(costs.shape[0], dtype=np.int64)
    for task in np.argsort(-costs, kind="stable").tolist():
        owner[task] = int(np.argmin(load))
        load[owner[task]] += costs[task]
    order = np.argsort(owner, kind="stable").astype(np.int64)
    starts = np.searchsorted(owner[order], np.arange(n_threads + 1)).astype(np.int64)
    return order, starts
