"""New memory for large outputs and temporaries, in small pages where huge ones are slow.

NumPy asks Linux for transparent huge pages (``madvise(MADV_HUGEPAGE)``) for every
allocation of 4 MiB or more. On a virtual machine whose balloon device reports free
memory back to the host (virtio-balloon free page reporting, as on the Firecracker VMs
this package is tested on) the guest reports free blocks of 2 MiB and more, so a new
huge page is usually one the host no longer backs, and its first touch then waits for
the host to fault the whole page in. Measured on the 2-core Emerald Rapids test VM
(twentieth session), each a fresh output written once:

=============================================  ============  ============
                                               huge pages    4 KiB pages
=============================================  ============  ============
fill 320 MB, freed huge pages reused at once   49-65 ms      120-135 ms
fill 320 MB, after a pause                     450-990 ms    120-135 ms
``soft_threshold``, 5e7 values, in a loop      58-109 ms     134-149 ms
``soft_threshold``, 2.5 s between calls        643-911 ms    133-149 ms
``soft_threshold``, the first call             782-911 ms    134-143 ms
M fit (estimator issue) right after alsgls's   1.04-1.19 s   0.86-0.97 s
M fits back to back                            0.71-0.77 s   0.85-0.93 s
``kernel_bandwidth.py``: ``sur_matvec``        67% of ddot   42% of ddot
=============================================  ============  ============

(the M fit packs its 320 MB ``X`` and its 32 MB ``Y`` into new memory; the benchmark
repeats a call back to back). Huge pages win only where the huge pages freed a moment
ago come straight back -- a loop of equal calls -- and there by up to 2x; anywhere else
(after a pause of a couple of seconds, the reporting delay, or after other work) they
cost 3-7x, which is the case this module guards against. The loop case is then served
better than by either: a freed mapping is kept for a second and reused (:func:`fresh`),
so a loop touches no new page at all -- M fits back to back 0.71-0.72 s (the packed
``X`` and every 32 MB array of the fit from kept mappings), ``soft_threshold`` in a loop
35 ms, and in ``kernel_bandwidth.py`` ``sur_matvec`` 74% of ddot, ``woodbury_solve``
(800 MB out) 0.18 s against 0.24 s with huge pages and 0.42 s with new small ones,
``soft_threshold`` 0.069 s against 0.11 and 0.33 s. On bare metal, or a VM without page
reporting, huge pages have no such cost and save the 4 KiB faults, so :func:`fresh`
keeps NumPy's choice there.

``REPROGLS_HUGE_PAGES=1`` keeps huge pages everywhere, ``=0`` uses small pages
everywhere (Linux); unset, small pages exactly where a virtio balloon device offers
free page reporting (feature bit 5, ``VIRTIO_BALLOON_F_REPORTING``, read from sysfs
once per process). Which pages back an array never changes a value.
"""

from __future__ import annotations

import glob
import math
import mmap
import os
import threading
import time
import weakref
from functools import lru_cache

import numpy as np

__all__ = ["FRESH_MAPPING_BYTES", "fresh", "page_policy", "small_pages"]

#: Arrays of at least this many bytes get a mapping of their own from :func:`fresh`
#: (NumPy's threshold for asking for huge pages).
FRESH_MAPPING_BYTES = 4 << 20

#: virtio-balloon feature bit of free page reporting (Linux ``VIRTIO_BALLOON_F_REPORTING``).
_BALLOON_REPORTING_BIT = 5
#: Where sysfs lists the negotiated features of each virtio balloon device.
_BALLOON_FEATURES = "/sys/bus/virtio/drivers/virtio_balloon/virtio*/features"


def _balloon_reports_free_pages() -> bool:
    """Whether a virtio balloon device of this (Linux) machine has free page reporting:
    sysfs lists each device's negotiated features as a string of 0/1, bit 0 first."""
    for path in glob.glob(_BALLOON_FEATURES):
        try:
            with open(path) as file:
                bits = file.read().strip()
        except OSError:
            continue
        if len(bits) > _BALLOON_REPORTING_BIT and bits[_BALLOON_REPORTING_BIT] == "1":
            return True
    return False


@lru_cache(maxsize=1)
def small_pages() -> bool:
    """Whether :func:`fresh` maps large arrays in 4 KiB pages (``MADV_NOHUGEPAGE``):
    ``REPROGLS_HUGE_PAGES`` if set to 0 or 1, else where free page reporting is on (the
    module docstring); never where ``madvise`` has no such advice (not Linux)."""
    if not hasattr(mmap, "MADV_NOHUGEPAGE"):
        return False
    setting = os.environ.get("REPROGLS_HUGE_PAGES", "")
    if setting in ("0", "1"):
        return setting == "0"
    return _balloon_reports_free_pages()


def page_policy() -> str:
    """One line for benchmark headers: which pages :func:`fresh` gives large arrays."""
    return ("large new outputs in 4 KiB pages (free page reporting; REPROGLS_HUGE_PAGES)"
            if small_pages() else "large new outputs in NumPy's pages")


#: A mapping whose array has been freed is kept this many seconds for the next request
#: it fits. (A kept mapping stays backed however long it is kept -- it is not free
#: memory, so nothing reports it --; the time only bounds how long freed memory is held.)
KEEP_SECONDS = 1.0
#: The kept mappings take at most this share of the machine's memory in all (the most
#: recently freed are kept).
KEEP_SHARE = 1 / 8

# (reentrant: a garbage collection inside a locked region may free an array of ours,
# whose finalizer then keeps its mapping from the same thread)
_kept_lock = threading.RLock()
_kept: list[tuple[float, mmap.mmap]] = []  # (when its array was freed, the mapping)


@lru_cache(maxsize=1)
def _physical_bytes() -> int:
    """The machine's memory (``sysconf``; where it cannot say, 0: nothing is kept)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


_timer: threading.Timer | None = None  # the one pending expiry, if any


def _forget_kept_in_child() -> None:
    """In a forked child: a fresh lock, and no kept mappings (no timer expires them)."""
    global _kept_lock, _timer
    _kept_lock, _timer = threading.RLock(), None
    _kept.clear()


os.register_at_fork(after_in_child=_forget_kept_in_child)


def _schedule(delay: float) -> None:
    """Start the expiry timer (one at a time; called with the lock held)."""
    global _timer
    _timer = threading.Timer(delay, _expire)
    _timer.daemon = True
    _timer.start()


def _expire() -> None:
    """Drop the kept mappings older than :data:`KEEP_SECONDS` (unmapped once unused),
    and wait for the next one to age if any is left."""
    global _timer
    now = time.monotonic()
    with _kept_lock:
        _kept[:] = [entry for entry in _kept if entry[0] > now - KEEP_SECONDS]
        _timer = None
        if _kept:
            _schedule(_kept[0][0] + KEEP_SECONDS - now + 0.05)


def _keep(memory: mmap.mmap) -> None:
    """The array over ``memory`` is gone: keep the mapping for :data:`KEEP_SECONDS`,
    dropping the oldest kept ones beyond :data:`KEEP_SHARE` of the memory."""
    budget = KEEP_SHARE * _physical_bytes()
    if len(memory) > budget:
        return
    with _kept_lock:
        _kept.append((time.monotonic(), memory))
        total = sum(len(kept) for _, kept in _kept)
        while total > budget:
            total -= len(_kept.pop(0)[1])
        if _timer is None:
            _schedule(KEEP_SECONDS + 0.05)


def _take(nbytes: int) -> mmap.mmap | None:
    """A kept mapping of ``nbytes`` to ``1.25 nbytes`` (none larger: it would hold its
    excess for as long as the new array lives), the most recent first."""
    horizon = time.monotonic() - KEEP_SECONDS
    with _kept_lock:
        for i in range(len(_kept) - 1, -1, -1):
            freed, memory = _kept[i]
            if freed > horizon and nbytes <= len(memory) <= nbytes + nbytes // 4:
                del _kept[i]
                return memory
    return None


def fresh(shape: int | tuple[int, ...]) -> np.ndarray:
    """An uninitialised C-contiguous float64 array in new memory, like
    ``numpy.empty(shape)``. From :data:`FRESH_MAPPING_BYTES` up, where
    :func:`small_pages` says so, the memory is an anonymous mapping of its own, advised
    ``MADV_NOHUGEPAGE`` before its first touch, which the array holds (it is released
    when the array and every view of it are gone).

    A loop of equal calls does not pay for new pages each time: the mapping of an array
    from here that has been freed (with every view of it) is kept for
    :data:`KEEP_SECONDS` and given to the next request of at most its size that it
    exceeds by at most a quarter (the kept mappings take at most :data:`KEEP_SHARE` of
    the memory in all; a timer unmaps them). Its contents are whatever the last array
    left, as with ``numpy.empty``.

    (Why not huge pages in a loop: memory freed in 4 KiB pages does not come back as
    backed huge pages -- a loop that switched to ``numpy.empty`` once the previous
    output was freed took 782 ms for its next 400 MB output, 70 ms only for the one
    after; a kept mapping needs no new page at all, 35 ms.)
    """
    shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)
    nbytes = 8 * math.prod(shape)
    if nbytes < FRESH_MAPPING_BYTES or not small_pages():
        return np.empty(shape)
    memory = _take(nbytes)
    if memory is None:
        memory = mmap.mmap(-1, nbytes)
        memory.madvise(mmap.MADV_NOHUGEPAGE)
    owner = np.frombuffer(memory, dtype=np.float64, count=nbytes // 8)
    # views of the returned array are based on ``owner``: when it goes, the memory is free
    weakref.finalize(owner, _keep, memory).atexit = False
    return owner.reshape(shape)
