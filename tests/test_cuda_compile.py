"""Every CUDA source compiles with NVRTC, with the run-time options, without a GPU.

Uses NVIDIA's ``cuda-bindings`` and the ``nvidia-cuda-nvrtc`` wheel (test extra), so it
runs (never skips) in CI on machines without a GPU or a CUDA toolkit.
"""

from __future__ import annotations

import re

import pytest
from cuda.bindings import nvrtc

from reprogls.kernels.cuda.sources import NVRTC_OPTIONS, SOURCE_FILES, source

ARCHS = ("compute_80", "compute_90")
FORBIDDEN = re.compile(r"\bfma\.|\.approx\b|\.ftz\b")


def _check(result):
    """Unpack a cuda-bindings ``(err, value)`` or ``(err,)`` tuple; raise on error."""
    err, *values = result
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise RuntimeError(f"NVRTC error {err}")
    return values[0] if values else None


def compile_to_ptx(text: str, name: str, options: tuple[str, ...]) -> str:
    """Compile CUDA C with NVRTC and return the PTX; raise with the log on failure."""
    prog = _check(nvrtc.nvrtcCreateProgram(text.encode(), name.encode(), 0, [], []))
    try:
        opts = [o.encode() for o in options]
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        size = _check(nvrtc.nvrtcGetProgramLogSize(prog))
        log = b" " * size
        _check(nvrtc.nvrtcGetProgramLog(prog, log))
        if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            raise AssertionError(f"{name} failed to compile ({err}):\n{log.decode()}")
        size = _check(nvrtc.nvrtcGetPTXSize(prog))
        ptx = b" " * size
        _check(nvrtc.nvrtcGetPTX(prog, ptx))
        return ptx.decode().rstrip("\x00 ")
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def forbidden_instructions(ptx: str) -> list[str]:
    return [line.strip() for line in ptx.splitlines() if FORBIDDEN.search(line)]


def test_options_never_allow_contraction_or_fast_math():
    assert "--fmad=false" in NVRTC_OPTIONS
    assert not any("fast_math" in o or o in ("--fmad=true", "--ftz=true") for o in NVRTC_OPTIONS)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", SOURCE_FILES)
def test_source_compiles_without_fma_or_approx(name, arch):
    ptx = compile_to_ptx(source(name), name, (*NVRTC_OPTIONS, f"--gpu-architecture={arch}"))
    assert ".entry " in ptx, "no kernel entry points in the PTX"
    assert "add.rn.f64" in ptx
    assert forbidden_instructions(ptx) == []


def test_negative_control_default_options_contract_to_fma():
    # The same kind of code without --fmad=false (and without _rn intrinsics) yields
    # fma instructions: the check above is able to fail.
    code = ('extern "C" __global__ void k(double* x, double a)'
            '{ x[threadIdx.x] = x[threadIdx.x] * a + 1.0; }')
    ptx = compile_to_ptx(code, "control.cu", ("--gpu-architecture=compute_80",))
    assert forbidden_instructions(ptx)


def test_shape_constants_are_defined_once():
    """The block shapes the kernels and the Python launchers share live in
    ``sources.SHAPE_CONSTANTS`` alone: every source gets them as ``#define``s ahead of
    its own text and no source file defines one itself (a second copy could drift)."""
    from reprogls.kernels.cuda.sources import SHAPE_CONSTANTS, _read

    for name in SOURCE_FILES:
        own = _read(name)
        for key in SHAPE_CONSTANTS:
            assert not re.search(rf"#\s*define\s+{key}\b", own), f"{name} defines {key}"
        text = source(name)
        for key, value in SHAPE_CONSTANTS.items():
            assert f"#define {key} {value}\n" in text
            assert text.index(f"#define {key}") < text.index(f'#line 1 "{name}"')


#: Static shared memory a block may declare without an opt-in (``cudaFuncSetAttribute``),
#: on every architecture the package targets.
STATIC_SHARED_LIMIT = 48 * 1024
_ENTRY = re.compile(r"\.entry\s+(\w+)\(")
_SHARED = re.compile(r"\.shared\s+\.align\s+\d+\s+\.b8\s+\w+\[(\d+)\];")


def static_shared_bytes(ptx: str) -> dict[str, int]:
    """Per kernel entry of ``ptx``: the bytes of the ``__shared__`` arrays it declares."""
    starts = [(m.start(), m.group(1)) for m in _ENTRY.finditer(ptx)]
    ends = [s for s, _ in starts[1:]] + [len(ptx)]
    return {name: sum(int(n) for n in _SHARED.findall(ptx[start:end]))
            for (start, name), end in zip(starts, ends, strict=True)}


@pytest.mark.parametrize("name", SOURCE_FILES)
def test_every_kernel_fits_the_static_shared_memory_limit(name):
    """A kernel whose ``__shared__`` arrays pass 48 KiB compiles but fails to launch on a
    GPU ("too many resources requested"), which the host emulator cannot show: e.g.
    ``FUSED_MAX_K`` raised to 1024 would give the fused operator 68 KiB. The sizes are
    read from the PTX; the fused operator's are pinned (8 rows of 512 U/W values and 8
    of 64 u values), so that a parse finding nothing fails here."""
    from reprogls.kernels.cuda.sources import SHAPE_CONSTANTS

    ptx = compile_to_ptx(source(name), name, (*NVRTC_OPTIONS, "--gpu-architecture=compute_90"))
    sizes = static_shared_bytes(ptx)
    assert sizes, "no kernel entry points found in the PTX"
    over = {k: v for k, v in sizes.items() if v > STATIC_SHARED_LIMIT}
    assert over == {}, f"static shared memory above {STATIC_SHARED_LIMIT} bytes: {over}"
    if name == "linalg.cu":
        rows, max_k, rank = (SHAPE_CONSTANTS[k] for k in
                             ("FUSED_ROWS", "FUSED_MAX_K", "CRO_MAX_RANK"))
        assert sizes["sur_normal_lanes"] == 8 * rows * (max_k + rank)
        assert sizes["woodbury_solve"] == 8 * 32 * rank


_LOCAL = re.compile(r"\.local\s+\.align\s+\d+\s+\.b8\s+\w+\[(\d+)\];")


def local_memory_bytes(ptx: str) -> dict[str, int]:
    """Per kernel entry of ``ptx``: the bytes of its local-memory depot (arrays NVVM could
    not keep in registers: per thread, in the GPU's cached device memory)."""
    starts = [(m.start(), m.group(1)) for m in _ENTRY.finditer(ptx)]
    ends = [s for s, _ in starts[1:]] + [len(ptx)]
    return {name: sum(int(n) for n in _LOCAL.findall(ptx[start:end]))
            for (start, name), end in zip(starts, ends, strict=True)}


def test_the_register_kernels_use_no_local_memory():
    """``sur_matvec_short_*`` and ``woodbury_solve_4`` ... ``_32`` keep their per-thread
    arrays in registers (loops unrolled over compile-time bounds). Their local-memory
    versions (512 and 2560 bytes per thread) ran at 30-37% and 6-8% of a copy on an
    H100; a change that puts an array back into local memory fails here. The generic
    ``woodbury_solve`` (ranks 33-64) still has its 2560 bytes: the parse can see them."""
    ptx = compile_to_ptx(source("linalg.cu"), "linalg.cu",
                         (*NVRTC_OPTIONS, "--gpu-architecture=compute_90"))
    local = local_memory_bytes(ptx)
    registers_only = [k for k in local if re.fullmatch(r"sur_matvec_short_\d+|woodbury_solve_\d+",
                                                       k)]
    assert len(registers_only) == 7, sorted(local)
    assert {k: local[k] for k in registers_only if local[k]} == {}
    assert local["woodbury_solve"] > 0
