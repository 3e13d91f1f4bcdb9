"""Shared fixtures: the ``gpu`` marker skips cleanly without a usable CUDA device, and a
session that runs many tests compiles the CPU kernels up front, in parallel.

Under pytest-xdist (the README's ``-n auto``) each test file runs whole on one worker, so
that a module fixture is built once (:func:`pytest_xdist_make_scheduler`), the files run
longest first (:data:`LONGEST_FIRST`), so that the workers finish together, and the
controller compiles the kernels before the workers start. Without xdist (it is in the
test extra) the suite runs in one process as before.

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

#: The test files that take longest (seconds on the 2-core AMD EPYC VM, run alone, thirtieth
#: session: most of it compiling the kernels in child processes with fresh Numba
#: caches), run first and in this order; the rest follow in collection order, so that
#: with two xdist workers none of these ends the run alone.
LONGEST_FIRST = (
    "test_codegen_cpu.py",     # ~190 s: every kernel's assembly, the FMA variants
    "test_cuda_emulator.py",   # ~150 s: the gpu suite and scripts on the host emulator
    "test_cpu_targets.py",     # ~95 s: the golden fits compiled for other CPUs
    "test_linalg.py",
    "test_threads.py",
    "test_dashboard.py",
    "test_audit.py",
)


def _is_xdist_worker(config) -> bool:
    return hasattr(config, "workerinput")


def _xdist_workers(config) -> bool:
    """Whether ``-n`` asked for xdist workers (``-n 0``: none, the tests run here)."""
    return getattr(config.option, "numprocesses", None) not in (None, 0, "0")


def pytest_configure(config):
    # the xdist controller collects nothing and runs no test: it compiles the kernels
    # once, before its workers start, instead of every worker compiling them at once
    if _xdist_workers(config) and not _is_xdist_worker(config) \
            and not cuda_emulator.requested():
        from reprogls.kernels import warm

        warm.warm_parallel()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """xdist's ``--dist loadfile`` whatever ``--dist`` says, with the files in the order
    of :func:`pytest_collection_modifyitems` (xdist's own order, the files with most
    tests first, put the codegen and CPU-target files last: 620 s instead of ~530)."""
    from xdist.scheduler import LoadFileScheduling

    config.option.loadscopereorder = False
    return LoadFileScheduling(config, log)


def _longest_first(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    return sorted(items, key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_collection_modifyitems(config, items):
    items[:] = _longest_first(items)  # a stable sort: each file keeps its order
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
    if _is_xdist_worker(session.config) or _xdist_workers(session.config):
        return  # the controller has compiled them (pytest_configure)
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
