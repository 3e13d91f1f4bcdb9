"""Shared fixtures: the ``gpu`` marker skips cleanly without a usable CUDA device, and a
session that runs many tests compiles the CPU kernels up front, in parallel.

With ``REPROGLS_CUDA_EMULATOR=1`` the session runs only the ``gpu`` tests, on the host
emulation of the CUDA kernels (:mod:`tests.cuda_emulator`)."""

from __future__ import annotations

import os

# Small inputs take the threads too, as they did before the serial cutoff (kernels.cpu
# .tasks.SERIAL_BYTES): the thread-count tests use small arrays. Set before reprogls is
# imported, and inherited by the subprocess tests; tests/test_tasks.py covers the cutoff.
os.environ.setdefault("REPROGLS_SERIAL_BYTES", "0")

import pytest

from tests import cuda_emulator

if cuda_emulator.requested():  # before anything probes CuPy (tests/cuda_emulator)
    cuda_emulator.install()

from reprogls.kernels.devices import cuda_status

#: A session with at least this many tests warms the CPU kernels first (one worker
#: process per core compiles a share into Numba's cache; with a warm cache it only loads
#: them, ~2 s). Single-file runs skip it and compile what they use.
WARM_UP_FROM = 200


def pytest_collection_modifyitems(config, items):
    if cuda_emulator.requested():  # the emulated device is for the ``gpu`` tests only
        keep = [item for item in items if item.get_closest_marker("gpu") is not None]
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep
        return
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


@pytest.fixture
def second_gpu() -> str:
    """``"cuda:1"``, for the tests of work on a GPU other than the current one (CuPy runs
    its own kernels on the current GPU and refuses arrays that live on another). The
    emulator reports two devices; a machine with one GPU skips these tests."""
    status = cuda_status()
    if not status.usable or status.device_count < 2:
        pytest.skip("needs a second CUDA device")
    return "cuda:1"
