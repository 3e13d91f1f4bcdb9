"""Run the package's CUDA kernels on the host: a test harness for machines without a GPU.

Most sessions of this project have no GPU (the first that had one, an H100 on
2026-12-06, found every ``gpu`` test passing there as here), so this harness executes
the CUDA code wherever CI and those sessions run: the CUDA C sources
(``reprogls/kernels/cuda/*.cu``, the exact text NVRTC compiles) are built with ``g++``
against :file:`host_cuda.hpp`, which runs every
CUDA thread of a block as a fiber on one host thread and implements warp shuffles, votes
and barriers; :mod:`.fake_cupy` stands in for CuPy so that the package's launchers and the
``gpu``-marked tests run unchanged. ``REPROGLS_CUDA_EMULATOR=1 pytest -m gpu`` runs them
(``tests/test_cuda_emulator.py`` does so in CI).

What it proves: the kernels' index arithmetic, launch shapes, argument lists, warp and
block trees, chunk trees and scratch layouts compute the reference's bits for every
input the ``gpu`` tests use, every thread reaches every warp-synchronous call together,
no kernel reads or writes outside its arrays (an inaccessible page after each array's
end, or with ``REPROGLS_CUDA_EMULATOR_ALIGN=start`` before its start) or reads shared
memory its block did not write, and (with ``REPROGLS_CUDA_EMULATOR_SCHEDULE=reverse``,
warps and lanes in descending order) no result depends on the order in which threads
run between barriers, and (two emulated devices, each array on the one it was allocated
on) that work for ``device="cuda:1"`` runs under that device. What it cannot: see a
race directly (fibers never run concurrently), accesses past the ends of a view inside
a larger array, and anything about speed. The GPU's arithmetic
itself is not emulated but specified: ``__dadd_rn`` & co. are IEEE-754 operations rounded
to nearest, which is what the host's SSE2 double operations are (no FMA contraction:
``-ffp-contract=off`` here, ``--fmad=false`` there).
"""

from __future__ import annotations

import contextlib
import os
import sys

ENV = "REPROGLS_CUDA_EMULATOR"


def requested() -> bool:
    """True when the environment asks for the emulated CUDA device."""
    return os.environ.get(ENV, "").strip() not in ("", "0")


def install() -> None:
    """Make ``import cupy`` return the emulator and forget any earlier CUDA probe."""
    from . import fake_cupy

    sys.modules["cupy"] = fake_cupy
    for name in [n for n in sys.modules if n.startswith("reprogls.kernels.cuda")]:
        del sys.modules[name]
    from reprogls.kernels.devices import cuda_status

    cuda_status.cache_clear()


def _emulation_modules() -> list[str]:
    return [n for n in sys.modules if n == "cupy" or n.startswith("reprogls.kernels.cuda")]


@contextlib.contextmanager
def installed():
    """:func:`install` for the duration of a ``with`` block, then the modules, the
    ``reprogls.kernels.cuda`` attribute and the CUDA probe as they were."""
    import reprogls.kernels as kernels_package
    from reprogls.kernels.devices import cuda_status

    saved = {n: sys.modules[n] for n in _emulation_modules()}
    missing = object()
    package_attr = getattr(kernels_package, "cuda", missing)
    try:
        install()
        yield
    finally:
        for name in _emulation_modules():
            del sys.modules[name]
        sys.modules.update(saved)
        if package_attr is missing:
            vars(kernels_package).pop("cuda", None)
        else:
            kernels_package.cuda = package_attr
        cuda_status.cache_clear()
