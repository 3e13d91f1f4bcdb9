"""The golden fingerprints do not depend on the CPU the kernels are compiled for.

The promise is the same bits on every machine, and the CPU kernels choose code paths by
the compile target (:mod:`reprogls.kernels.cpu.simd`): the register blocking of the Gram
kernel (one, two or four rows per loop), TwoSum additions issued as exact FMAs on AMD
Zen, 16 or 32 sequences per lane-sum call, the fused operator's schedule, and LLVM's
lowering of the ``<8 x double>`` vector code to SSE2, AVX2 or AVX-512 registers. A CI
machine has one CPU, so each target below is compiled here, in a child process with its
own fresh Numba cache (``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES``; the host runs any
target whose features it has), and must reproduce every committed golden fingerprint
(:mod:`tests.golden`). Each child also reports the choices it made and which vector
registers its Gram kernel's machine code uses, so a target that was silently ignored
fails here instead of testing the host's code twice.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from tests.golden import PATH

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = json.loads(PATH.read_text())

_CHILD = r"""
import json, re
from reprogls.kernels.cpu import gram, reciprocal, simd
from tests.golden import fingerprints
prints = fingerprints()  # compiles the kernels the fits use, in this fresh cache
asm = "\n".join(gram._tile_partials.inspect_asm().values())
print(json.dumps({
    "zen_avx512": list(simd._zen_target()),
    "choices": {"ADDS_ON_FMA": simd.ADDS_ON_FMA, "GRAM_ADDS_ON_FMA": simd.GRAM_ADDS_ON_FMA,
                "CHUNK_ADDS_ON_FMA": simd.CHUNK_ADDS_ON_FMA,
                "LANE_SUMS_ADDS_ON_FMA": simd.LANE_SUMS_ADDS_ON_FMA,
                "gram_rows": len(simd.GRAM_ROW_GROUPS[0]),
                "lane_sum_width": simd.LANE_SUM_WIDTH_COMPENSATED,
                "lane_sum_ranks": simd.LANE_SUM_RANKS_PLAIN,
                "chunk_prefetch": simd.CHUNK_PREFETCH_AHEAD,
                "chunk_prefetch_plain": simd.CHUNK_PREFETCH_AHEAD_PLAIN,
                "reciprocal_division": reciprocal.RECIPROCAL_DIVISION,
                "fused_interleaved": simd.FUSED_INTERLEAVED},
    "registers": sorted({r for r in ("xmm", "ymm", "zmm") if re.search(r"%" + r, asm)}),
    "fingerprints": prints}))
"""


def _host_features() -> list[str]:
    import llvmlite.binding as llvm

    return [f for f in llvm.get_host_cpu_features().flatten().split(",") if f]


def _without_avx512(features: list[str]) -> str:
    return ",".join("-" + f[1:] if f.startswith("+avx512") or f == "+evex512" else f
                    for f in features)


def _choices(adds: bool, gram_adds: bool, chunk_adds: bool, lane_sums_adds: bool,
             gram_rows: int, lane_sum_width: int, chunk_prefetch: int = 512,
             reciprocal_division: bool = True, chunk_prefetch_plain: int | None = None,
             fused_interleaved: bool = False) -> dict:
    """The code-path choices a child reports (``_CHILD``), by name."""
    return {"ADDS_ON_FMA": adds, "GRAM_ADDS_ON_FMA": gram_adds,
            "CHUNK_ADDS_ON_FMA": chunk_adds, "LANE_SUMS_ADDS_ON_FMA": lane_sums_adds,
            "gram_rows": gram_rows, "lane_sum_width": lane_sum_width,
            # ranks per plain lane-sum call: four where AVX-512's 32 registers hold them
            "lane_sum_ranks": 4 if lane_sum_width == 32 else 1,
            "chunk_prefetch": chunk_prefetch,
            # plain chunks prefetch as compensated ones unless a target says otherwise
            "chunk_prefetch_plain": (chunk_prefetch if chunk_prefetch_plain is None
                                     else chunk_prefetch_plain),
            "reciprocal_division": reciprocal_division,
            # the fused operator's lane steps inside the next block's dots: Intel
            # AVX-512 only (simd._fused_interleaved)
            "fused_interleaved": fused_interleaved}


def _targets() -> dict[str, tuple]:
    """name -> (environment, expected ``(zen, avx512)``, expected choices, widest vector
    register the Gram kernel should use), for the targets this host can run."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return {}
    host = _host_features()
    has = set(host)

    def env(name: str, features: str) -> dict:
        return {"NUMBA_CPU_NAME": name, "NUMBA_CPU_FEATURES": features}

    targets = {
        # SSE2 only (the x86-64 baseline): no FMA (the Woodbury solve divides), 16
        # two-wide registers
        "x86-64": (env("x86-64", ""), [False, False],
                   _choices(False, False, False, False, 2, 16, reciprocal_division=False),
                   "xmm"),
    }
    if {"+avx2", "+fma"} <= has:
        avx2 = _without_avx512(host)
        # AMD Zen 3: AVX2, TwoSum additions on the FMA units, plain chunks without
        # software prefetch
        targets["znver3"] = (env("znver3", avx2), [True, False],
                             _choices(True, True, False, True, 1, 16,
                                      chunk_prefetch_plain=0), "ymm")
        # Intel Haswell: AVX2 with FMA, additions on the adders
        targets["haswell"] = (env("haswell", avx2), [False, False],
                              _choices(False, False, False, False, 2, 16), "ymm")
    if {"+avx512f", "+fma"} <= has:
        # AMD Zen 4: AVX-512, some additions on the FMA units
        targets["znver4"] = (env("znver4", ",".join(host)), [True, True],
                             _choices(False, True, True, True, 2, 32, 0), "zmm")
        # Intel Skylake-X and later: AVX-512, additions on the adders, the fused
        # operator's interleaved schedule
        targets["skylake-avx512"] = (env("skylake-avx512", ",".join(host)), [False, True],
                                     _choices(False, False, False, False, 4, 32,
                                              fused_interleaved=True), "zmm")
    # a target that makes the host's own choices is what test_golden.py runs already
    from reprogls.kernels.cpu import simd

    host_zen_avx512 = list(simd._zen_target())
    return {name: target for name, target in targets.items() if target[1] != host_zen_avx512}


TARGETS = _targets()


@pytest.fixture(scope="module")
def target_runs(tmp_path_factory) -> dict[str, dict]:
    """Every target's child, two at a time (each compiles the fits' kernels from an empty
    cache, ~50 s of one core)."""
    runs: dict[str, dict] = {}
    pending = list(TARGETS)
    while pending:
        batch, pending = pending[:2], pending[2:]
        children = {}
        for name in batch:
            env = {key: value for key, value in os.environ.items()
                   if not key.startswith(("REPROGLS_", "NUMBA_CPU_"))}
            env.update(TARGETS[name][0],
                       NUMBA_CACHE_DIR=str(tmp_path_factory.mktemp(f"numba-{name}")),
                       PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
            children[name] = subprocess.Popen([sys.executable, "-c", _CHILD], env=env,
                                              cwd=ROOT, stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True)
        for name, child in children.items():
            out, err = child.communicate(timeout=900)
            assert child.returncode == 0, f"{name}: {err[-3000:]}"
            runs[name] = json.loads(out.strip().splitlines()[-1])
    return runs


@pytest.mark.skipif(not TARGETS, reason="compile targets are listed for x86-64 hosts only")
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_golden_fits_have_the_same_bits_on_every_cpu_target(target_runs, name):
    run = target_runs[name]
    _, zen_avx512, choices, register = TARGETS[name]
    # the target was honoured: its code paths were chosen and its registers used
    assert run["zen_avx512"] == zen_avx512
    assert run["choices"] == choices
    widest = max(run["registers"], key=["xmm", "ymm", "zmm"].index)
    assert widest == register, run["registers"]
    assert run["fingerprints"] == GOLDEN
