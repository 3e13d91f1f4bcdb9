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
:func:`numba.set_num_threads` in the calling thread). Costs: a call that a pool thread
takes part in pays for waking it and for being woken by it (a futex wake-up each: ~30 µs
on the 2-core Zen 4 VM, ~50 µs on the Emerald Rapids VM; Numba's spinning OpenMP
threads took ~2 µs), more than a one-core call of a few hundred KB takes, so small calls
run on the calling thread alone (:data:`SERIAL_BYTES`). A pool thread also needs the GIL
for a moment to start its range, so a program whose other Python threads hold the GIL
can delay it.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numba
import numpy as np

__all__ = ["PIECES_PER_THREAD", "SERIAL_BYTES", "in_background", "lpt_schedule", "run_tasks",
           "schedule_bins", "threads"]

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


def _serial_bytes() -> int:
    """:data:`SERIAL_BYTES` from ``REPROGLS_SERIAL_BYTES`` (a byte count; 0 never runs
    serially for size), else 1 MiB."""
    value = os.environ.get("REPROGLS_SERIAL_BYTES", "").strip()
    if not value:
        return 1 << 20
    try:
        return max(0, int(value))
    except ValueError:
        raise ValueError(f"REPROGLS_SERIAL_BYTES must be a whole number of bytes, got "
                         f"{value!r}; unset it for the default (1048576)") from None


#: :func:`run_tasks` runs a call whose work is less than this many bytes (its arrays'
#: bytes, or the caller's count, a term as 8 bytes) on the calling thread alone, whatever
#: the thread count; ``REPROGLS_SERIAL_BYTES`` overrides it at import (the test suite
#: sets 0, so that its small inputs still take the threads). Which thread runs a task
#: never changes its bits. Twenty-sixth session, 2-core Emerald Rapids VM, one / two
#: threads, µs per call, plain unless noted: ``gemv`` 10 x 10 19 / 91, 512 x 512 (2 MiB)
#: 101 / 161, 1024 x 1024 (8 MiB) 385 / 367; ``sum`` of 2 MiB 77 / 164, of 8 MiB 337 /
#: 328; ``sur_matvec`` (K = 50, p = 5) with X of 0.5 MiB 45 / 155, 2 MiB 130 / 234
#: (compensated 233 / 220); ``woodbury_solve`` (K = 50, k = 3) compensated, R and its
#: output 1.6 MiB, 343 / 277; ``A B`` (:func:`.multi.rows_times`) compensated, 2000 x 60
#: times 60 x 3 (2.9 MiB of terms) 162 / 177, times 60 x 10 (9.6 MiB) 512 / 335. Below
#: 1 MiB one thread was faster for every kernel measured.
SERIAL_BYTES = _serial_bytes()


def _array_bytes(args: tuple) -> int:
    """Bytes held by the NumPy arrays among ``args`` (the default work of a call)."""
    return sum(a.nbytes for a in args if isinstance(a, np.ndarray))


def schedule_bins() -> int:
    """How many bins a caller that balances its own tasks (:func:`lpt_schedule`) should
    fill: :data:`PIECES_PER_THREAD` per thread (one when single-threaded), so that
    :func:`run_tasks` can share the bins out as the threads come free. With no more
    tasks than bins, every task gets a bin of its own, the costliest first, and the
    threads take them in that order (the longest-processing-time rule, applied as the
    threads come free)."""
    n = threads()
    return 1 if n == 1 else n * PIECES_PER_THREAD


def run_tasks(kernel: Callable[..., object], n_tasks: int, *args,
              work: int | None = None) -> None:
    """Run ``kernel(t0, t1, *args)`` over contiguous ranges covering ``0 .. n_tasks - 1``.

    With ``T = min(threads(), n_tasks)`` threads (the calling one and ``T - 1`` of the
    pool; one when ``work`` -- the bytes the call reads and writes, a value counted once
    per product it enters; by default the bytes of the arrays among ``args`` -- is below
    :data:`SERIAL_BYTES`), the tasks are cut into ``R = min(n_tasks, PIECES_PER_THREAD T)`` ranges,
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
    if n_threads > 1 and (_array_bytes(args) if work is None else work) < SERIAL_BYTES:
        n_threads = 1
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


def in_background(kernel: Callable[..., object], *args) -> Future:
    """Start ``kernel(*args)`` on a thread of the shared pool and return its future, so
    that the calling thread works on meanwhile (a pipeline of two stages, e.g.
    :func:`reprogls.gls._subspace.tiled_rotations`). ``kernel`` must be compiled
    with ``nogil=True``; the caller orders dependent work by waiting for the future
    (``result()``, which also re-raises the kernel's exception) before it starts the
    next step that reads what the kernel writes."""
    return _executor(1).submit(kernel, *args)


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
