"""The CUDA C sources of the kernels and the one set of NVRTC options they are built with.

Kept free of CuPy so the compile check (``tests/test_cuda_compile.py``) can build every
source with NVRTC on a machine without a GPU, with exactly the options used at run time.
"""

from __future__ import annotations

from importlib import resources

#: NVRTC options for every module. ``--fmad=false`` forbids contracting a*b+c into an
#: FMA (the kernels also use explicit ``__dadd_rn``/``__dmul_rn`` intrinsics); fast-math
#: options (``--use_fast_math``, ``--ftz=true``, ``--prec-div=false``,
#: ``--prec-sqrt=false``) are never used.
NVRTC_OPTIONS: tuple[str, ...] = ("--fmad=false", "--ftz=false", "--prec-div=true",
                                  "--prec-sqrt=true")

#: The header every source is prepended with.
HEADER = "cro1.cuh"

#: Every kernel source file of the package.
SOURCE_FILES: tuple[str, ...] = ("reductions.cu", "linalg.cu", "elementwise.cu")

#: Shapes shared by the CUDA sources and the Python launchers, defined here once:
#: :func:`source` prepends them as ``#define``s and :mod:`.linalg` sizes its grids and
#: launch flags from the same values. ``CRO_MAX_RANK``: the largest rank of the
#: Woodbury kernels (per-thread arrays of that length); ``FUSED_ROWS``: rows (warps) per
#: block of the single-pass normal operator; ``FUSED_COLS_PER_THREAD``: its lane
#: accumulators per thread when they live in registers; ``FUSED_MAX_K``: the most
#: equations whose ``U``/``W`` row fits its shared memory. (The tile of ``X^T X`` is a
#: template parameter: :data:`.linalg.GRAM_TILE`.)
SHAPE_CONSTANTS: dict[str, int] = {
    "CRO_MAX_RANK": 64,
    "FUSED_ROWS": 8,
    "FUSED_COLS_PER_THREAD": 12,
    "FUSED_MAX_K": 512,
}


def _read(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def source(name: str) -> str:
    """The compilable text of ``name``: the CRO-1 header, the :data:`SHAPE_CONSTANTS` as
    ``#define``s, then the file itself."""
    if name not in SOURCE_FILES:
        raise ValueError(f"unknown CUDA source {name!r}; known: {SOURCE_FILES}")
    header = _read(HEADER).replace("#pragma once", "")
    defines = "\n".join(f"#define {key} {value}" for key, value in SHAPE_CONSTANTS.items())
    return f"{header}\n{defines}\n#line 1 \"{name}\"\n{_read(name)}"
