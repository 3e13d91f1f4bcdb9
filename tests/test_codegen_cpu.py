"""No FMA instruction in the Numba kernels' machine code (and the check can fail)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FMA = re.compile(r"\bv?f(?:n)?m(?:add|sub)(?:sub|add)?\d{3}[sp][sd]\b")

# Compile every CPU kernel in a fresh Numba cache (code loaded from a cache cannot be
# inspected), then collect the assembly of every dispatcher in the CPU package.
_CHILD = r"""
import json, re, sys
import numpy as np
import numba
from numba.core.registry import CPUDispatcher
from reprogls import kernels
from reprogls.kernels import cpu
from reprogls.kernels.cpu import (_cro, blocked, elementwise, gram, linalg, multi, reductions,
                                  rowgroups, segments, spd)
kernels.warmup(("cpu",), jobs=1)  # in this process: cached code has no assembly
x = np.arange(10_000.0)
for mode in ("compensated", "plain"):
    kernels.sum(x[::2], mode); kernels.dot(x[::3], x[::3], mode)
asm = {}
for module in (_cro, blocked, gram, reductions, linalg, elementwise, multi, rowgroups,
               segments, spd):
    for name, obj in vars(module).items():
        if isinstance(obj, CPUDispatcher) and obj.signatures:
            asm[f"{module.__name__}.{name}"] = "\n".join(obj.inspect_asm().values())
extra = sys.argv[1:] and sys.argv[1] == "negative-control"
if extra:
    @numba.njit(fastmath=True)
    def fused(a, b, c):
        out = np.empty_like(a)
        for i in range(a.shape[0]):
            out[i] = a[i] * b[i] + c[i]
        return out
    fused(x, x, x)
    asm["negative_control"] = "\n".join(fused.inspect_asm().values())
print(json.dumps(asm))
"""


def _assembly(tmp_path: Path, *args: str) -> dict[str, str]:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", _CHILD, *args], env=env, cwd=ROOT,
                         check=True, capture_output=True, text=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _fma_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if FMA.search(line)]


def test_cpu_kernels_contain_no_fma(tmp_path):
    asm = _assembly(tmp_path)
    expected = {"reprogls.kernels.cpu.reductions._sum_kernel",
                "reprogls.kernels.cpu.reductions._dot_kernel",
                "reprogls.kernels.cpu.reductions._scaled_squares_kernel",
                "reprogls.kernels.cpu.rowgroups._dots_kernel",
                "reprogls.kernels.cpu.rowgroups._rmatvec_lanes",
                "reprogls.kernels.cpu.rowgroups._normal_lanes",
                "reprogls.kernels.cpu.rowgroups._woodbury_kernel",
                "reprogls.kernels.cpu.segments.dot_tree",
                "reprogls.kernels.cpu.multi._transposed_partials",
                "reprogls.kernels.cpu.gram._pair_partials",
                "reprogls.kernels.cpu.elementwise.exp_kernel",
                "reprogls.kernels.cpu.elementwise.log_kernel",
                "reprogls.kernels.cpu.elementwise.fista_step_kernel"}
    assert expected <= set(asm), f"kernels not compiled: {expected - set(asm)}"
    assert all(len(text) > 1000 for text in asm.values())
    offenders = {name: _fma_lines(text)[:3] for name, text in asm.items() if _fma_lines(text)}
    assert not offenders


def test_negative_control_fastmath_kernel_shows_fma(tmp_path):
    # The detector must see FMA where it is present, or the test above proves nothing.
    # Only meaningful on a CPU with FMA (x86-64 with AVX2/FMA3, or aarch64).
    asm = _assembly(tmp_path, "negative-control")
    import numba

    cpu_features = numba.config.CPU_FEATURES or ""
    has_fma = "+fma" in cpu_features or os.uname().machine == "aarch64"
    if not has_fma:
        import llvmlite.binding as llvm

        has_fma = "+fma" in llvm.get_host_cpu_features().flatten()
    if not has_fma:
        import pytest

        pytest.skip("this CPU has no FMA instructions")
    assert _fma_lines(asm["negative_control"])
