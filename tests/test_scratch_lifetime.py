"""Scratch arrays outlive their unmanaged views (``kernels/cpu/views.py``).

Numba frees a local array right after its last use, and a use of an unmanaged view does
not count. A kernel that works through views of its scratch must therefore use the
scratch itself again after its last view, or the views point at freed memory. That can
go unnoticed: a small freed block stays mapped and is often not reused before the
kernel is done with it. This test runs the kernels with large scratch in a child process
whose glibc unmaps every freed block of 64 KiB or more at once
(``MALLOC_MMAP_THRESHOLD_=65536``, which also turns off glibc's growing threshold), so
a view of freed scratch faults there instead of reading stale data.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = """
import numpy as np
from reprogls import kernels
from reprogls.kernels import reference as ref
from reprogls.kernels.cpu.multi import rows_transposed_times

def same(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool((a.view(np.uint64) == b.view(np.uint64)).all())

rng = np.random.default_rng(7)
A = rng.standard_normal((70, 2000))
B = rng.standard_normal((70, 10))
y = rng.standard_normal(70)
offsets = np.arange(0, 2001, 10)
W = rng.standard_normal((70, 200))
F, d = rng.standard_normal((200, 3)), 0.5 + rng.uniform(size=200)
for mode in ("compensated", "plain"):
    c = mode == "compensated"
    got = rows_transposed_times(A, B, c)  # accumulators 2 x 8 x 10 x 816 doubles
    want = np.stack([ref.gemv_t(A, np.ascontiguousarray(B[:, q]), mode)
                     for q in range(B.shape[1])], axis=1)
    assert same(got, want), "A^T B"
    assert same(kernels.gemv_t(A, y, mode, "cpu"), ref.gemv_t(A, y, mode)), "gemv_t"
    assert same(kernels.sur_rmatvec(A, offsets, W, mode, "cpu"),
                ref.sur_rmatvec(A, offsets, W, mode)), "sur_rmatvec"
    factor = kernels.woodbury_factor(F, d, mode)
    v = rng.standard_normal(2000)
    assert same(kernels.sur_normal_matvec(A, offsets, factor, v, "cpu"),
                ref.sur_normal_matvec(A, offsets, ref.woodbury_factor(F, d, mode), v)), "fused"
    assert same(kernels.woodbury_solve(factor, W, "cpu"),
                ref.woodbury_solve(ref.woodbury_factor(F, d, mode), W)), "woodbury"
print("ok")
"""


def test_kernels_keep_their_scratch_alive_while_viewed():
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", NUMBA_NUM_THREADS="2",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    assert out.stdout.strip().splitlines()[-1] == "ok"
