"""Parallel loops over tasks: Python threads calling compiled ``nogil`` kernels.

Every parallel CPU kernel is a serial Numba function ``kernel(t0, t1, *args)`` that runs
its tasks ``t0 .. t1 - 1`` without the GIL (``@njit(nogil=True)``);
:func:`run_tasks` splits ``0 .. n_tasks - 1`` into one contiguous range per thread (the
static schedule Numba's ``prange`` used) and runs the ranges on a shared thread pool,
the calling thread taking the first.

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

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

__all__ = ["lpt_schedule", "run_tasks", "threads"]

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


def run_tasks(kernel: Callable[..., object], n_tasks: int, *args) -> None:
    """Run ``kernel(t0, t1, *args)`` over contiguous ranges covering ``0 .. n_tasks - 1``.

    With ``T = min(threads(), n_tasks)`` ranges, range ``t`` is
    ``[t n / T, (t + 1) n / T)``; one range (``T <= 1``) runs in the calling thread
    alone. ``kernel`` must be compiled with ``nogil=True`` and write only its own tasks'
    outputs. An exception raised by any range is re-raised here after every range has
    finished.
    """
    n_tasks = int(n_tasks)
    if n_tasks <= 0:
        return
    n_threads = min(threads(), n_tasks)
    if n_threads == 1:
        kernel(0, n_tasks, *args)
        return
    bounds = [t * n_tasks // n_threads for t in range(n_threads + 1)]
    pool = _executor(n_threads - 1)
    futures = [pool.submit(kernel, bounds[t], bounds[t + 1], *args)
               for t in range(1, n_threads)]
    try:
        kernel(bounds[0], bounds[1], *args)
    finally:
        for future in futures:
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
