"""The pool of reused buffers (reprogls.kernels.cpu.scratch): an array from it never
shares memory with a live array, idle buffers come back, and the pool stays bounded."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from reprogls.kernels.cpu import pages, scratch

pytestmark = pytest.mark.skipif(scratch._IDLE_REFERENCES is None,
                                reason="no pool where reference counts are not exact")


@pytest.fixture(autouse=True)
def empty_pool():
    scratch.clear()
    yield
    scratch.clear()


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def test_like_numpy_empty():
    a = scratch.empty((300, 7))
    assert a.shape == (300, 7) and a.dtype == np.float64 and a.flags.c_contiguous
    assert a.flags.writeable
    assert scratch.empty(5).shape == (5,)
    assert scratch.empty((0, 4)).shape == (0, 4)


@pytest.mark.parametrize("shape", [(1000, 10), (1000, 700)])
def test_a_live_array_or_view_keeps_its_buffer(monkeypatch, request, shape):
    # (1000, 700): 5.6 MB, where pages.fresh would map small pages of its own; the pool
    # must still count a view as a use of its buffer (it would not, were the buffer an
    # array that does not own its memory)
    monkeypatch.setenv("REPROGLS_HUGE_PAGES", "0")
    pages.small_pages.cache_clear()
    request.addfinalizer(pages.small_pages.cache_clear)
    a = scratch.empty(shape)
    a[:] = 1.0
    b = scratch.empty(shape)  # a is alive: new memory
    assert not np.shares_memory(a, b)
    column = a[:, 3]
    del a
    c = scratch.empty(shape)  # a's view is alive: still new memory
    assert not np.shares_memory(column, c)
    c[:] = 2.0
    assert np.all(column == 1.0)


def test_a_released_buffer_comes_back():
    a = scratch.empty((1000, 10))
    address = _address(a)
    del a
    b = scratch.empty((500, 10))  # smaller requests reuse it too
    assert _address(b) == address
    del b
    assert _address(scratch.empty(10_000)) == address
    assert scratch.pooled_bytes() == 80_000


def test_the_smallest_idle_buffer_that_fits_is_lent():
    big, small = scratch.empty(10_000), scratch.empty(2_000)
    small_address = _address(small)
    del big, small
    assert _address(scratch.empty(1_500)) == small_address


def test_bounded(monkeypatch):
    monkeypatch.setattr(scratch, "POOL_BYTES", 8 * 5_000)
    huge = scratch.empty(6_000)  # larger than the pool: fresh memory, not kept
    assert scratch.pooled_bytes() == 0
    a = scratch.empty(3_000)
    b = scratch.empty(1_000)
    assert scratch.pooled_bytes() == 8 * 4_000
    c = scratch.empty(2_000)  # does not fit while a and b are lent: not kept
    assert scratch.pooled_bytes() == 8 * 4_000
    del a
    d = scratch.empty(4_000)  # evicts the idle 3000 to make room
    assert scratch.pooled_bytes() == 8 * 5_000
    assert not any(np.shares_memory(d, x) for x in (b, c, huge))


def test_clear_keeps_lent_buffers():
    a = scratch.empty(1_000)
    b = scratch.empty(2_000)
    del b
    scratch.clear()
    assert scratch.pooled_bytes() == 8_000
    a[:] = 3.0
    assert not np.shares_memory(a, scratch.empty(1_000))


def test_threads_never_share_a_buffer():
    errors: list[str] = []
    start = threading.Barrier(4)

    def worker(tag: float) -> None:
        start.wait()
        for _ in range(200):
            a = scratch.empty((64, 64))
            a[:] = tag
            time.sleep(0)  # let the other threads run in between
            if not np.all(a == tag):
                errors.append(f"thread {tag}: buffer shared")
            del a

    threads = [threading.Thread(target=worker, args=(float(t),)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_can_use_the_pool_while_a_parent_thread_holds_the_lock():
    held, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        with scratch._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    held.wait(10)
    try:
        pid = os.fork()
        if pid == 0:  # the child: the lock was held at the fork, by a thread it lacks
            ok = scratch.empty(100).shape == (100,)
            os._exit(0 if ok else 1)
        deadline = time.monotonic() + 20
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        if done[0] == 0:  # a child stuck on the parent's lock: fail, don't hang
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child blocked on the pool's lock")
    finally:
        release.set()
        holder.join()
    assert os.waitstatus_to_exitcode(done[1]) == 0


def test_no_idle_buffer_is_dropped_for_one_that_cannot_be_kept(monkeypatch):
    monkeypatch.setattr(scratch, "POOL_BYTES", 8 * 5_000)
    lent = scratch.empty(3_000)
    idle = scratch.empty(1_000)
    idle_address = _address(idle)
    del idle
    big = scratch.empty(2_500)  # 3000 lent + 2500 > 5000: not kept, and 1000 stays
    assert scratch.pooled_bytes() == 8 * 4_000
    assert _address(scratch.empty(1_000)) == idle_address
    assert not np.shares_memory(lent, big)


def test_lane_accumulators_come_from_the_pool_only_when_large():
    """The reductions over rows take their lane sums and compensations from the pool from
    ``POOLED_LANE_BYTES`` up (no page faults per call), smaller ones from NumPy (the
    pool's bookkeeping would cost more than it saves); the two never share memory."""
    from reprogls.kernels.cpu.rowgroups import POOLED_LANE_BYTES, lane_accumulators

    LS, LC = lane_accumulators((1, 32, 10))
    assert scratch.pooled_bytes() == 0
    assert LS.shape == LC.shape == (1, 32, 10) and not np.shares_memory(LS, LC)
    columns = POOLED_LANE_BYTES // (8 * 32)
    LS, LC = lane_accumulators((1, 32, columns))
    assert scratch.pooled_bytes() == 2 * POOLED_LANE_BYTES
    assert LS.flags.c_contiguous and LC.flags.c_contiguous and not np.shares_memory(LS, LC)
    del LS, LC  # idle now: the next pair reuses both buffers
    again = lane_accumulators((1, 32, columns))
    assert scratch.pooled_bytes() == 2 * POOLED_LANE_BYTES
    assert not np.shares_memory(*again)
