"""Shared fixtures: the ``gpu`` marker skips cleanly without a usable CUDA device."""

from __future__ import annotations

import pytest

from reprogls.kernels.devices import cuda_status


def pytest_collection_modifyitems(config, items):
    status = cuda_status()
    if status.usable:
        return
    skip = pytest.mark.skip(reason=f"no usable CUDA device: {status.reason}")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)
