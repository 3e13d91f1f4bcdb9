"""Timing helpers shared by the profiling scripts."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def best_seconds(fn: Callable[[], object], repeat: int, pause: float = 0.3) -> float:
    """Best wall time of ``repeat`` calls, each after ``pause`` seconds of idling.

    The pause lets OpenBLAS worker threads stop spinning (they would otherwise take the
    cores from the Numba threads of the next call).
    """
    best = np.inf
    for _ in range(repeat):
        time.sleep(pause)
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def best_seconds_back_to_back(fn: Callable[[], object], repeat: int,
                              settle: float = 0.3) -> float:
    """Best wall time of ``repeat`` calls in a row, after ``settle`` seconds of idling and
    one untimed call: the steady state of a loop (a CG solve calls the fused operator
    so), which on the 2-core test VMs is faster than a call after a pause
    (``profiling/README.md``). The settling pause still keeps OpenBLAS's spinning
    workers of an earlier call off the cores."""
    time.sleep(settle)
    fn()
    return best_seconds(fn, repeat, pause=0.0)


def blas_read_bandwidth(n: int = 50_000_000, repeat: int = 5,
                        back_to_back: bool = False) -> float:
    """GB/s of BLAS ``np.dot(x, y)`` over two vectors of ``n`` float64 (16 n bytes read),
    each call after a pause (:func:`best_seconds`) or in a row
    (:func:`best_seconds_back_to_back`)."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(n), rng.standard_normal(n)
    np.dot(x, y)
    timer = best_seconds_back_to_back if back_to_back else best_seconds
    return 16 * n / timer(lambda: np.dot(x, y), repeat) / 1e9


def cuda_median_seconds(fn: Callable[[], object], repeat: int) -> float:
    """Median CUDA-event time of ``repeat`` calls of ``fn`` after 3 untimed ones
    (``cupyx.profiler.benchmark``: a GPU kernel takes tens of microseconds, as long as a
    launch and a synchronisation, so a host timer would measure those; the events still
    see the Python dispatch as gaps between launches). On the host emulator, which has
    no events, the median wall time."""
    try:
        from cupyx.profiler import benchmark
    except ImportError:  # the emulator
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return float(np.median(times))
    # (name=: benchmark reads fn.__name__ by default, which a functools.partial lacks)
    return float(np.median(benchmark(fn, n_repeat=repeat, n_warmup=3,
                                     name="kernel").gpu_times[0]))
