"""Reused buffers for the large temporaries of one call: the packed design of a fit, the
column strips of ``X^T X`` and ``E^T E``, the lane accumulators of the reductions over
rows from 256 KiB up (``gemv_t``, ``A^T B``, ``sur_rmatvec``, the fused operator, through
:func:`.rowgroups.lane_accumulators`: 4 MB at N = 25000, P = 2000, where each call took
~1040 page faults; twenty-sixth session, best of seven
calls after 0.3 s pauses, three alternating rounds: ``sur_rmatvec`` plain 17.5-18.0 ->
17.1-17.2 ms, the others within the noise).

Why: a fresh array of a few MB comes from newly mapped pages, and the first touch of
each 4 KiB page is a page fault (~1.8 us each on the 2-core Zen 4 test VM: 0.9 ms per
2 MB). Worse, freeing such an array hands its pages back to the system and makes the
C allocator trim its heap, so the *small* arrays of the next call fault too. Measured
on the S fit of the estimator issue (N = 2000, K = 50, p = 5, k = 3; sixteenth
session): 2614 page faults per fit (the 4 MB packed ``X``, the 4 MB strips of
``X^T X`` and, through the trims, most of the rest), about 4.6 ms of a 35-45 ms fit;
with these two buffers reused, none.

:func:`empty` is :func:`numpy.empty` for float64 arrays, except that the memory may be
a buffer that an earlier call used and released. A buffer is lent out only while no
array uses it: the pool holds the buffer, and every array made from it -- the array
:func:`empty` returns and any view of it, which NumPy bases on the buffer itself --
holds a reference to it; a buffer whose reference count shows only the pool's is idle
(NumPy's ``ndarray.resize`` checks references the same way). So a caller that keeps
the array (or a view) keeps the buffer; nothing is ever shared between live arrays.
The contents are arbitrary, as with ``numpy.empty``: no result may depend on them, and
none does (the callers overwrite every element they read), so the bits are the same
whichever memory comes back.

Idle buffers are kept up to :data:`POOL_BYTES` in all (64 MiB); a request larger than
that always gets fresh memory (:func:`.pages.fresh`), and the pool is not used where
reference counts cannot be trusted to mean this (a free-threaded CPython). :func:`clear`
drops the idle buffers.
"""

from __future__ import annotations

import math
import os
import sys
import threading

import numpy as np

from .pages import fresh

__all__ = ["POOL_BYTES", "clear", "empty", "pooled_bytes"]

#: Most bytes of buffers the pool keeps (idle or lent out).
POOL_BYTES = 64 << 20

_lock = threading.Lock()
_buffers: list[np.ndarray] = []  # 1-D float64 owners of their memory


def _new_lock_in_child() -> None:
    """In a forked child: a fresh lock (the parent's may have been held by a thread that
    the child does not have)."""
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)


def _references(i: int) -> int:
    """References to ``_buffers[i]`` as this call counts them (calibrated below)."""
    return sys.getrefcount(_buffers[i])


def _calibrate() -> int | None:
    """The count :func:`_references` gives for a buffer only the pool holds, or None
    where reference counts are not exact (a free-threaded CPython)."""
    if not getattr(sys, "_is_gil_enabled", lambda: True)():
        return None
    _buffers.append(np.empty(1))
    try:
        return _references(len(_buffers) - 1)
    finally:
        _buffers.pop()


_IDLE_REFERENCES = _calibrate()


def _idle_indices() -> list[int]:
    return [i for i in range(len(_buffers)) if _references(i) <= _IDLE_REFERENCES]


def empty(shape: int | tuple[int, ...]) -> np.ndarray:
    """An uninitialised C-contiguous float64 array of ``shape``, like
    ``numpy.empty(shape)``, in a reused buffer when an idle one is large enough (the
    smallest such), else in a new one that the pool keeps if it fits in
    :data:`POOL_BYTES` (dropping idle buffers, largest first, to make room)."""
    shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)
    n = math.prod(shape)
    if _IDLE_REFERENCES is None or n == 0 or 8 * n > POOL_BYTES:
        return fresh(shape)
    with _lock:
        fits = [i for i in _idle_indices() if _buffers[i].size >= n]
        if fits:
            buffer = _buffers[min(fits, key=lambda i: _buffers[i].size)]
            return buffer[:n].reshape(shape)
        # (np.empty, never pages.fresh: an array that does not own its memory, as
        # fresh's are not, is skipped when NumPy bases a view, so the views of the
        # buffer would not count as references to it and it would look idle while
        # they use it)
        buffer = np.empty(n)
        if _make_room(8 * n):
            _buffers.append(buffer)
        return buffer.reshape(shape)


def _make_room(nbytes: int) -> bool:
    """Drop idle buffers, largest first, until ``nbytes`` more fit; False (dropping
    none) when even the lent-out buffers leave no room for them."""
    idle = set(_idle_indices())
    lent = sum(b.nbytes for i, b in enumerate(_buffers) if i not in idle)
    if lent + nbytes > POOL_BYTES:
        return False
    while pooled_bytes() + nbytes > POOL_BYTES:
        del _buffers[max(_idle_indices(), key=lambda i: _buffers[i].size)]
    return True


def pooled_bytes() -> int:
    """Bytes of the buffers the pool holds now (idle or lent out)."""
    return sum(buffer.nbytes for buffer in _buffers)


def clear() -> None:
    """Drop every idle buffer (a lent-out one stays with the arrays that use it)."""
    with _lock:
        for i in sorted(_idle_indices(), reverse=True):
            del _buffers[i]
