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
cost 3-7x, which is the case this module guards against. On bare metal, or a VM without
page reporting, they have no such cost and save the 4 KiB faults, so :func:`fresh`
keeps NumPy's choice there. The fit's per-sweep N x K arrays, freed and requested again
within milliseconds, keep NumPy's choice everywhere.

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


def fresh(shape: int | tuple[int, ...]) -> np.ndarray:
    """An uninitialised C-contiguous float64 array in new memory, like
    ``numpy.empty(shape)``. From :data:`FRESH_MAPPING_BYTES` up, where
    :func:`small_pages` says so, the memory is an anonymous mapping of its own, advised
    ``MADV_NOHUGEPAGE`` before its first touch; the array owns it (it is unmapped when
    the array and every view of it are gone).

    (Small pages always, not only after a pause: memory freed in 4 KiB pages does not
    come back as backed huge pages -- a loop that switched to ``numpy.empty`` once the
    previous output was freed took 782 ms for its next 400 MB output, 70 ms only for the
    one after.)
    """
    shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)
    nbytes = 8 * math.prod(shape)
    if nbytes < FRESH_MAPPING_BYTES or not small_pages():
        return np.empty(shape)
    memory = mmap.mmap(-1, nbytes)
    memory.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(memory, dtype=np.float64).reshape(shape)
