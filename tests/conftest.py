"""Shared fixtures: the ``gpu`` marker skips cleanly without a usable CUDA device, and a
session that runs many tests compiles the CPU kernels up front, in parallel."""

from __future__ import annotations

import pytest

from reprogls.kernels.devices import cuda_status

#: A session with at least this many tests warms the CPU kernels first (one worker
#: process per core compiles a share into Numba's cache; with a warm cache it only loads
#: them, ~2 s). Single-file runs skip it and compile what they use.
WARM_UP_FROM = 200


def pytest_collection_modifyitems(config, items):
    status = cuda_status()
    if status.usable:
        return
    skip = pytest.mark.skip(reason=f"no usable CUDA device: {status.reason}")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


def pytest_collection_finish(session):
    runnable = [item for item in session.items if item.get_closest_marker("skip") is None]
    if len(runnable) >= WARM_UP_FROM:
        from reprogls.kernels import warm

        warm.warm_parallel()
