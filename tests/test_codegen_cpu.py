"""No FMA instruction in the Numba kernels' machine code (and the check can fail); the
two deliberate exceptions -- additions issued as exact ``fma(x, +-1, y)`` on AMD Zen
(``simd.*_ADDS_ON_FMA``) and the Woodbury solve's division by reciprocals
(``reciprocal.RECIPROCAL_DIVISION``, tested in ``test_reciprocal_division.py``) -- give
the reference's bits."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from reprogls.kernels import warm

ROOT = Path(__file__).resolve().parents[1]
FMA = re.compile(r"\bv?f(?:n)?m(?:add|sub)(?:sub|add)?\d{3}[sp][sd]\b")

# Compile a share of the CPU kernels (warm-up tasks) in a fresh Numba cache (code loaded
# from a cache cannot be inspected), then collect the assembly of every dispatcher in the
# CPU package that has a compiled signature. With "negative-control", also a fastmath
# kernel that must show FMA.
_CHILD = r"""
import json, sys
import numpy as np
import numba
from numba.core.registry import CPUDispatcher
from reprogls import kernels
from reprogls.kernels import warm
from reprogls.gls import _subspace, _tridiagonal
from reprogls.kernels.cpu import (_cro, blocked, elementwise, gram, linalg, multi, reductions,
                                  row_trees, rowgroups, segments, spd, streamed, woodbury_rows)
args = sys.argv[1:]
control = "negative-control" in args
warm.compile_tasks([a for a in args if a != "negative-control"])
if control:  # the strided paths of the reductions, and the fastmath control
    x = np.arange(10_000.0)
    for mode in ("compensated", "plain"):
        kernels.sum(x[::2], mode); kernels.dot(x[::3], x[::3], mode)
asm = {}
for module in (_cro, blocked, gram, reductions, linalg, elementwise, multi, rowgroups,
               segments, spd, streamed, row_trees, woodbury_rows, _subspace, _tridiagonal):
    for name, obj in vars(module).items():
        if isinstance(obj, CPUDispatcher) and obj.signatures:
            asm[f"{module.__name__}.{name}"] = "\n".join(obj.inspect_asm().values())
# the Woodbury block's C entry point (a cfunc, called by address: not a dispatcher)
asm["woodbury_rows.entry"] = woodbury_rows.woodbury_block_entry()._library.get_asm_str()
if control:
    @numba.njit(fastmath=True)
    def fused(a, b, c):
        out = np.empty_like(a)
        for i in range(a.shape[0]):
            out[i] = a[i] * b[i] + c[i]
        return out
    fused(x, x, x)
    asm["negative_control"] = "\n".join(fused.inspect_asm().values())

    @numba.njit
    def slice_copy(a, b):  # a slice assignment of an array: its shape-error message
        a[1:3] = b

    slice_copy(np.zeros(4), np.ones(2))
    asm["slice_control"] = "\n".join(slice_copy.inspect_asm().values())
print(json.dumps(asm))
"""


@pytest.fixture(scope="module")
def assembly(tmp_path_factory) -> dict[str, str]:
    """Assembly of every compiled CPU kernel (and of the fastmath control), compiled once
    for both tests by two child processes side by side, each a share of the warm-up
    tasks (every CPU kernel), in fresh Numba caches."""
    shares = warm._shares(list(warm.TASKS), 2)
    shares[0] = [*shares[0], "negative-control"]
    children = []
    for i, share in enumerate(shares):
        cache = tmp_path_factory.mktemp(f"numba-cache-{i}")
        # without the deliberate exact-FMA additions (tested below, by their bits) and
        # the division by reciprocals (test_reciprocal_division.py)
        env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), REPROGLS_ADDS_ON_FMA="0",
                   REPROGLS_RECIPROCAL_DIVISION="0",
                   PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        children.append(subprocess.Popen([sys.executable, "-c", _CHILD, *share], env=env,
                                         cwd=ROOT, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True))
    asm: dict[str, str] = {}
    for child in children:
        out, err = child.communicate(timeout=900)
        assert child.returncode == 0, err[-3000:]
        asm.update(json.loads(out.strip().splitlines()[-1]))
    return asm


def _fma_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if FMA.search(line)]


def test_cpu_kernels_contain_no_fma(assembly):
    asm = {name: text for name, text in assembly.items()
           if name not in ("negative_control", "slice_control")}
    expected = {"reprogls.kernels.cpu.reductions._sum_tasks",
                "reprogls.kernels.cpu.reductions._dot_tasks",
                "reprogls.kernels.cpu.reductions._scaled_squares_tasks",
                "reprogls.kernels.cpu.rowgroups._dots_tasks",
                "reprogls.kernels.cpu.rowgroups._rmatvec_lanes",
                "reprogls.kernels.cpu.streamed._streamed_lanes",
                "reprogls.kernels.cpu.streamed._row_dots_tasks",
                "reprogls.kernels.cpu.streamed._normal_lanes",
                "reprogls.kernels.cpu.rowgroups._normal_lanes",
                # (woodbury_block is inlined into these two, not compiled on its own)
                "reprogls.kernels.cpu.rowgroups._woodbury_tasks",
                "woodbury_rows.entry",
                "reprogls.kernels.cpu.segments.dot_tree",
                "reprogls.kernels.cpu.multi._transposed_lanes",
                "reprogls.kernels.cpu.gram._pair_partials",
                "reprogls.kernels.cpu.gram._tile_partials",
                "reprogls.kernels.cpu.spd._below_block",
                "reprogls.kernels.cpu.spd._inverse_factor_rows",
                "reprogls.kernels.cpu.elementwise.exp_tasks",
                "reprogls.kernels.cpu.elementwise.log_tasks",
                "reprogls.kernels.cpu.elementwise.fista_step_tasks",
                "reprogls.gls._subspace.orthonormalize",
                "reprogls.gls._subspace.rayleigh_matrix",
                "reprogls.gls._tridiagonal.householder_tridiagonal",
                "reprogls.gls._tridiagonal.implicit_ql",
                "reprogls.gls._tridiagonal.back_transform"}
    assert expected <= set(asm), f"kernels not compiled: {expected - set(asm)}"
    assert all(len(text) > 1000 for text in asm.values())
    offenders = {name: _fma_lines(text)[:3] for name, text in asm.items() if _fma_lines(text)}
    assert not offenders


#: The start of the message Numba compiles for a slice assignment of an array
#: (``numba.np.arrayobj``: "cannot assign slice of shape ... from input of shape ..."
#: formatted by ``raise_with_shape_context`` in Numba 0.68, "cannot assign slice from
#: input of different size" in 0.59).
SLICE_MESSAGE = "cannot assign slice"


def test_no_kernel_compiles_the_slice_assignment_message(assembly):
    """No compiled kernel assigns an array to a slice (``A[i0:i1] = B``): Numba then
    compiles the shape-mismatch message with its string formatting, ~3.8 s of the demo's
    warm-up (thirty-third session; ``rowgroups.copy_lane_block`` copies by loops instead).
    The control, a two-line function with such an assignment, carries the message."""
    assert SLICE_MESSAGE in assembly["slice_control"]
    carriers = sorted(name for name, text in assembly.items()
                      if SLICE_MESSAGE in text and name != "slice_control")
    assert carriers == []


def test_software_prefetch_only_where_rows_stream(assembly):
    """``prefetcht1`` (:data:`.simd.CHUNK_PREFETCH_AHEAD`, in plain mode
    :data:`.simd.CHUNK_PREFETCH_AHEAD_PLAIN`; a hint: no bits depend on it) in the
    kernels whose CRO-1 chunks read each term once from memory -- long sums and dots,
    ``gemv``'s rows -- where this target gets it in either mode (each kernel holds both
    modes' loops), and never in the dense kernels whose rows are in cache (the Cholesky
    and the SPD inverse measured slower with it)."""
    from reprogls.kernels.cpu import simd

    prefetch = re.compile(r"\bprefetcht1\b")
    streaming = ["reprogls.kernels.cpu.reductions._sum_tasks",
                 "reprogls.kernels.cpu.reductions._dot_tasks",
                 "reprogls.kernels.cpu.multi._rows_times_tasks"]
    in_cache = ["reprogls.kernels.cpu.spd._below_block",
                "reprogls.kernels.cpu.spd._inverse_factor_rows",
                "reprogls.kernels.cpu.linalg.cholesky_kernel"]
    assert set(streaming + in_cache) <= set(assembly)
    expected = bool(simd.CHUNK_PREFETCH_AHEAD or simd.CHUNK_PREFETCH_AHEAD_PLAIN)
    for name in streaming:
        assert bool(prefetch.search(assembly[name])) == expected, name
    for name in in_cache:
        assert not prefetch.search(assembly[name]), name


@pytest.mark.parametrize("compensated", [False, True], ids=["plain", "compensated"])
def test_streamed_chunk_prefetches_as_its_mode_says(compensated):
    """One streamed chunk loop per mode, compiled here (uncached, so its machine code can
    be read): ``prefetcht1`` exactly where :data:`.simd.CHUNK_PREFETCH_AHEAD` (compensated)
    or :data:`.simd.CHUNK_PREFETCH_AHEAD_PLAIN` (plain) is set -- on the Zen 3 target
    only the compensated loop prefetches -- and the same bits as without."""
    import numpy as np
    from numba import njit

    from reprogls.kernels.cpu import simd
    from reprogls.kernels.reference.cro import cro_dot

    if compensated:
        @njit
        def streamed_dot(x, y):
            return simd.chunk_partial(x, y, 0, x.shape[0], True, True)
        ahead = simd.CHUNK_PREFETCH_AHEAD
    else:
        @njit
        def streamed_dot(x, y):
            return simd.chunk_partial(x, y, 0, x.shape[0], False, True)
        ahead = simd.CHUNK_PREFETCH_AHEAD_PLAIN
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal(1000), rng.standard_normal(1000)
    s, c = streamed_dot(x, y)
    total = s if not compensated or c == 0.0 else s + c
    mode = "compensated" if compensated else "plain"
    want = cro_dot(x, y, mode=mode)
    assert np.float64(total).view(np.uint64) == np.float64(want).view(np.uint64)
    asm = "\n".join(streamed_dot.inspect_asm().values())
    assert bool(re.search(r"\bprefetcht1\b", asm)) == bool(ahead)


def test_negative_control_fastmath_kernel_shows_fma(assembly):
    # The detector must see FMA where it is present, or the test above proves nothing.
    # Only meaningful on a CPU with FMA (x86-64 with AVX2/FMA3, or aarch64).
    import numba

    cpu_features = numba.config.CPU_FEATURES or ""
    has_fma = "+fma" in cpu_features or os.uname().machine == "aarch64"
    if not has_fma:
        import llvmlite.binding as llvm

        has_fma = "+fma" in llvm.get_host_cpu_features().flatten()
    if not has_fma:
        pytest.skip("this CPU has no FMA instructions")
    assert _fma_lines(assembly["negative_control"])


# The Gram micro-kernel with its TwoSum additions split onto the FMA units
# (simd.GRAM_ADDS_ON_FMA) or not, with one, two or four rows of the register block per
# loop (simd.GRAM_ROW_GROUPS), and the Woodbury solve's lane sums and short-dot trees
# (simd.lane_sums, simd.LANE_SUMS_ADDS_ON_FMA; register_trees.tree_dots,
# simd.TREE_ADDS_ON_FMA) and the one-chunk CRO-1 dots of the SPD inverse (simd.chunk_partial,
# simd.CHUNK_ADDS_ON_FMA) likewise: on any x86-64 CPU with FMA, each variant in a fresh cache
# must give the reference's bits. The children cover the FMA additions on and off with
# this machine's row groups, and on with four rows (the variant no default picks); the
# child without them divides by reciprocals in the Woodbury block (reciprocal.py), the
# others divide.
_GRAM_CHILD = r"""
import json
import numpy as np
from reprogls.kernels.cpu import gram, reciprocal, simd
from tests.corpus import same_bits
from tests.digests import reference_lower_gram
from tests.linalg_cases import sur_problem
from reprogls import kernels
from reprogls.kernels import reference
from reprogls.kernels.cpu import woodbury_rows
from tests.linalg_cases import factor_problem, wide
X = sur_problem(9000)[0]
equal = {mode: bool(same_bits(np.tril(gram.lower_gram(X, mode == "compensated")),
                              reference_lower_gram(X, mode)))
         for mode in ("compensated", "plain")}
# the Woodbury solve's G^T r lane sums (simd.lane_sums16), K over one chunk of lanes
F, d = factor_problem(300, 4)
R = wide(np.random.default_rng(1), (70, 300))
for mode in ("compensated", "plain"):
    f = kernels.woodbury_factor(F, d, mode)
    equal["woodbury " + mode] = bool(same_bits(kernels.woodbury_solve(f, R, "cpu"),
                                               reference.woodbury_solve(f, R)))
# the fused operator: the Woodbury block through its C entry point (woodbury_rows), over
# several blocks of 128 rows and a short last one (simd.FUSED_INTERLEAVED: either schedule)
Xs, offs, v, _ = sur_problem(1000, widths=(3, 0, 1, 5, 12))
F2, d2 = factor_problem(5, 2)
for mode in ("compensated", "plain"):
    f = kernels.woodbury_factor(F2, d2, mode)
    U = kernels.woodbury_solve(f, kernels.sur_matvec(Xs, offs, v, mode, "cpu"), "cpu")
    equal["fused " + mode] = bool(same_bits(kernels.sur_normal_matvec(Xs, offs, f, v, "cpu"),
                                            kernels.sur_rmatvec(Xs, offs, U, mode, "cpu")))
# the SPD Cholesky and inverse: CRO-1 dots of one chunk (simd.chunk_partial)
from reprogls.kernels.cpu import spd
from tests.digests import cpu_cholesky_inverse, spd_problem
C = spd_problem(100)
for mode in ("compensated", "plain"):
    L, inv = cpu_cholesky_inverse(C, mode)
    L_ref = reference.cholesky(C, mode)
    equal["spd " + mode] = bool(same_bits(L, L_ref)) and bool(
        same_bits(inv, reference.cholesky_inverse(L_ref, mode)))
asm = "\n".join(gram._tile_partials.inspect_asm().values())
casm = "\n".join(spd._parallel_rows.inspect_asm().values())
wasm = woodbury_rows.woodbury_block_entry()._library.get_asm_str()  # the block's cfunc
print(json.dumps({"flag": simd.ADDS_ON_FMA, "gram_flag": simd.GRAM_ADDS_ON_FMA,
                  "interleaved": simd.FUSED_INTERLEAVED,
                  "chunk_flag": simd.CHUNK_ADDS_ON_FMA,
                  "lane_sums_flag": simd.LANE_SUMS_ADDS_ON_FMA,
                  "tree_flag": simd.TREE_ADDS_ON_FMA, "groups": simd.GRAM_ROW_GROUPS,
                  "reciprocal_flag": reciprocal.RECIPROCAL_DIVISION,
                  "casm": casm,
                  "equal": equal, "asm": asm, "wasm": wasm}))
"""


def test_additions_on_fma_units_give_reference_bits(tmp_path):
    import llvmlite.binding as llvm

    if os.uname().machine != "x86_64" or "+fma" not in llvm.get_host_cpu_features().flatten():
        pytest.skip("the exact-FMA additions are an x86-64 (FMA3) code path")
    children = {}
    # (additions on FMA, Gram rows, division by reciprocals, the fused operator's
    # schedule): the child without the FMA additions divides by reciprocals, so its
    # Woodbury block's FMAs are those alone; both schedules run whatever the host's default
    for flag, rows, reciprocal, interleaved in (("1", "", "0", "1"), ("0", "", "1", "0"),
                                                ("1", "4", "0", "0")):
        env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / f"cache-{flag}{rows}"),
                   REPROGLS_ADDS_ON_FMA=flag, REPROGLS_GRAM_ROWS=rows,
                   REPROGLS_RECIPROCAL_DIVISION=reciprocal,
                   REPROGLS_FUSED_INTERLEAVED=interleaved,
                   PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        children[flag, rows, reciprocal, interleaved] = subprocess.Popen(
            [sys.executable, "-c", _GRAM_CHILD], env=env, cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
    for (flag, rows, reciprocal, interleaved), child in children.items():
        out, err = child.communicate(timeout=900)
        assert child.returncode == 0, err[-3000:]
        got = json.loads(out.strip().splitlines()[-1])
        assert (got["flag"] is got["gram_flag"] is got["chunk_flag"] is got["lane_sums_flag"]
                is got["tree_flag"] is (flag == "1"))
        if rows:
            assert got["groups"] == [[0, 1, 2, 3]]
        assert got["interleaved"] is (interleaved == "1")
        assert got["equal"] == {"compensated": True, "plain": True,
                                "woodbury compensated": True, "woodbury plain": True,
                                "spd compensated": True, "spd plain": True,
                                "fused compensated": True, "fused plain": True}
        # the variant really ran: FMA instructions exactly when the flag is on
        assert got["reciprocal_flag"] is (reciprocal == "1")
        assert bool(_fma_lines(got["asm"])) is (flag == "1")
        assert bool(_fma_lines(got["wasm"])) is (flag == "1" or reciprocal == "1")
        assert bool(_fma_lines(got["casm"])) is (flag == "1")
