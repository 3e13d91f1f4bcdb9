"""Shared CuPy plumbing: one compiled ``RawModule`` per (source, device), launch shapes."""

from __future__ import annotations

import cupy as cp

from .sources import NVRTC_OPTIONS, source

_modules: dict[tuple[str, int], cp.RawModule] = {}

#: Threads per block of the one-thread-per-element kernels.
THREADS = 256
#: Default warps per block of the warp-per-task kernels.
WARPS_PER_BLOCK = 8


def kernel(source_name: str, name: str) -> cp.RawKernel:
    """The kernel ``name`` of ``source_name``, compiled once per device with NVRTC."""
    key = (source_name, cp.cuda.Device().id)
    module = _modules.get(key)
    if module is None:
        module = cp.RawModule(code=source(source_name), options=NVRTC_OPTIONS)
        _modules[key] = module
    return module.get_function(name)


def warp_grid(n_tasks: int, warps_per_block: int = WARPS_PER_BLOCK):
    """``(grid, block)`` for one warp per task (grid-stride beyond 2**31 - 1 blocks)."""
    if not 1 <= warps_per_block <= 32:
        raise ValueError(f"warps_per_block must be in 1..32, got {warps_per_block}")
    blocks = max(1, min(-(-n_tasks // warps_per_block), 2**31 - 1))
    return (blocks,), (32 * warps_per_block,)


def thread_grid(n: int):
    """``(grid, block)`` for one thread per element."""
    return (max(1, min(-(-n // THREADS), 2**31 - 1)),), (THREADS,)
