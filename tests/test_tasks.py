"""The thread-pool task runner behind the parallel CPU kernels (`kernels.cpu.tasks`)."""

from __future__ import annotations

import multiprocessing
import sys

import numba
import numpy as np
import pytest
from numba import njit

from reprogls.kernels.cpu import tasks


@njit(nogil=True, cache=True)
def _count_tasks(t0, t1, hits, owner_start):
    """Marks every task of the range and records the range's first task for each."""
    for t in range(t0, t1):
        hits[t] += 1
        owner_start[t] = t0


@njit(nogil=True, cache=True)
def _fail_on(t0, t1, bad):
    for t in range(t0, t1):
        if t == bad:
            raise ValueError("task failed")


@pytest.mark.parametrize("n_tasks", [0, 1, 2, 3, 7, 64, 1001])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_every_task_runs_once_in_contiguous_ranges(n_tasks, n_threads):
    if n_threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("needs more Numba threads")
    hits = np.zeros(n_tasks, dtype=np.int64)
    owner = np.full(n_tasks, -1, dtype=np.int64)
    before = numba.get_num_threads()
    numba.set_num_threads(n_threads)
    try:
        tasks.run_tasks(_count_tasks, n_tasks, hits, owner)
    finally:
        numba.set_num_threads(before)
    assert (hits == 1).all()
    used = min(n_threads, n_tasks)
    ranges = used if used <= 1 else min(n_tasks, used * tasks.PIECES_PER_THREAD)
    expected = [r * n_tasks // ranges for r in range(ranges)] if n_tasks else []
    assert sorted(set(owner.tolist())) == expected


@pytest.mark.parametrize(("serial_bytes", "work", "ranges"),
                         [(1 << 20, None, 1), (1 << 20, 1 << 20, 16), (0, None, 16)])
def test_small_work_runs_on_the_calling_thread(monkeypatch, serial_bytes, work, ranges):
    """Below ``SERIAL_BYTES`` of work (by default the bytes of the array arguments) the
    whole call is one range on the calling thread; at or above it, the threads' ranges."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two Numba threads")
    monkeypatch.setattr(tasks, "SERIAL_BYTES", serial_bytes)
    hits = np.zeros(64, dtype=np.int64)
    owner = np.full(64, -1, dtype=np.int64)
    before = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        tasks.run_tasks(_count_tasks, 64, hits, owner, work=work)
    finally:
        numba.set_num_threads(before)
    assert (hits == 1).all()
    assert len(set(owner.tolist())) == ranges


@pytest.mark.parametrize(("value", "expected"), [("", 1 << 20), ("0", 0), (" 4096 ", 4096)])
def test_serial_bytes_comes_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("REPROGLS_SERIAL_BYTES", value)
    assert tasks._serial_bytes() == expected


def test_a_malformed_serial_bytes_names_the_variable(monkeypatch):
    monkeypatch.setenv("REPROGLS_SERIAL_BYTES", "1MB")
    with pytest.raises(ValueError, match="REPROGLS_SERIAL_BYTES must be a whole number"):
        tasks._serial_bytes()


def test_an_exception_in_any_range_reaches_the_caller():
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two Numba threads")
    for bad in (0, 99):  # the calling thread's range, a pool thread's range
        with pytest.raises(ValueError, match="task failed"):
            tasks.run_tasks(_fail_on, 100, bad)


def _child_dot(queue):
    from reprogls.kernels import dot

    x = np.arange(200_000, dtype=np.float64)
    queue.put(dot(x, x, "compensated", "cpu"))


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_a_forked_child_runs_parallel_kernels():
    from reprogls.kernels import dot

    x = np.arange(200_000, dtype=np.float64)
    expected = dot(x, x, "compensated", "cpu")  # the parent's pool exists now
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_dot, args=(queue,))
    child.start()
    child.join(timeout=120)
    if child.is_alive():  # (hung: the pool's threads did not survive the fork)
        child.kill()
    assert child.exitcode == 0
    got = queue.get(timeout=5)
    assert np.float64(got).view(np.uint64) == np.float64(expected).view(np.uint64)
