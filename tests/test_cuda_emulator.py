"""The CUDA kernels run on the host emulator (:mod:`tests.cuda_emulator`): first the
emulator's own semantics (shuffles, votes, barriers, divergence, guard bytes, argument
checks), then that it catches a wrong kernel, then the whole ``gpu`` test suite on it.

Needs a C++17 compiler on x86-64 Linux; without one these tests skip, except where
``REPROGLS_REQUIRE_CXX=1`` (CI), where that is a failure.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import cuda_emulator
from tests.cuda_emulator import compiler, fake_cupy
from tests.cuda_emulator.compiler import EmulatorError

ROOT = Path(__file__).resolve().parents[1]
_missing = (None if platform.machine() in ("x86_64", "AMD64") and sys.platform == "linux"
            else "the emulator switches fibers with x86-64 Linux assembly")
if _missing is None and compiler.compiler() is None:
    _missing = "no C++ compiler (g++ or $CXX) to build the emulated kernels"
if _missing and os.environ.get("REPROGLS_REQUIRE_CXX") == "1":
    raise RuntimeError(f"REPROGLS_REQUIRE_CXX=1 but {_missing}")
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")

PROBES = r"""
extern "C" __global__ void shuffles(const double *__restrict__ x, long long n,
                                    double *__restrict__ down, int *__restrict__ any) {
    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const double v = t < n ? x[t] : -1.0;
    const double d = __shfl_down_sync(0xffffffffu, v, 3);
    const int a = __any_sync(0xffffffffu, v > 0.5);
    if (t < n) {
        down[t] = d;
        any[t] = a;
    }
}

// block-wide exchange through shared memory: thread t reads what thread bx-1-t wrote
extern "C" __global__ void reverse(const double *__restrict__ x, double *__restrict__ y) {
    __shared__ double buf[1024];
    const int t = threadIdx.x;
    buf[t] = x[blockIdx.x * blockDim.x + t];
    __syncthreads();
    y[blockIdx.x * blockDim.x + t] = buf[blockDim.x - 1 - t];
}

// shared memory written by block 0 only: later blocks must not see it
extern "C" __global__ void stale(double *y) {
    __shared__ double buf[64];
    if (blockIdx.x == 0) buf[threadIdx.x] = 1.0;
    __syncthreads();
    y[blockIdx.x * blockDim.x + threadIdx.x] = buf[threadIdx.x];
}

// a race: thread 0 writes what the others read, with no barrier in between
extern "C" __global__ void racy(double *y, int synced) {
    __shared__ double v[1];
    if (threadIdx.x == 0) v[0] = 7.0;
    if (synced) __syncthreads();
    y[threadIdx.x] = v[0];
}

extern "C" __global__ void diverge(double *out) {
    if ((threadIdx.x & 31) == 0) __syncwarp();
    out[threadIdx.x] = 1.0;
}

extern "C" __global__ void overrun(double *out, long long n) {
    if (threadIdx.x == 0 && blockIdx.x == 0) out[n] = 1.0;
}

extern "C" __global__ void overread(const double *x, long long n, double *y) {
    if (threadIdx.x == 0 && blockIdx.x == 0) y[0] = x[n];
}
"""


@pytest.fixture(scope="module")
def probes():
    return compiler.compile_module(PROBES)


def test_shuffle_down_and_vote_follow_cuda(probes):
    n = 200  # not a multiple of the block: the last warp has missing rows, all lanes run
    x = np.random.default_rng(0).uniform(size=n)
    x[64:96] = 0.1  # one warp where no lane votes yes
    xd = fake_cupy.asarray(x)
    down, any_ = fake_cupy.empty(n), fake_cupy.empty(n, dtype=np.int32)
    probes.get_function("shuffles")((4,), (64,), (xd, np.int64(n), down, any_))
    lane = np.arange(n) % 32
    padded = np.concatenate([x, np.full(256 - n, -1.0)])
    src = np.where(lane + 3 < 32, np.arange(n) + 3, np.arange(n))
    assert (down.get().view(np.uint64) == padded[src].view(np.uint64)).all()
    votes = (padded > 0.5).reshape(-1, 32).any(axis=1)
    assert (any_.get() == np.repeat(votes, 32)[:n]).all()


def test_syncthreads_orders_shared_memory_across_warps(probes):
    x = np.arange(3 * 256, dtype=np.float64)
    y = fake_cupy.empty(x.size)
    probes.get_function("reverse")((3,), (256,), (fake_cupy.asarray(x), y))
    assert (y.get() == x.reshape(3, 256)[:, ::-1].ravel()).all()


def test_each_block_starts_with_poisoned_shared_memory(probes):
    y = fake_cupy.empty(3 * 64)
    probes.get_function("stale")((3,), (64,), (y,))
    assert (y.get()[:64] == 1.0).all() and np.isnan(y.get()[64:]).all()


def test_the_reverse_schedule_exposes_a_missing_barrier(probes, monkeypatch):
    outputs = {}
    for order in ("ascending", "reverse"):
        monkeypatch.setenv(compiler.SCHEDULE_ENV, order)
        for synced in (0, 1):
            y = fake_cupy.empty(64)
            probes.get_function("racy")((1,), (64,), (y, np.int32(synced)))
            outputs[order, synced] = y.get()
    assert (outputs["ascending", 1] == 7.0).all() and (outputs["reverse", 1] == 7.0).all()
    assert (outputs["ascending", 0] == 7.0).all()
    assert np.isnan(outputs["reverse", 0][1:]).all()


def test_divergent_warp_sync_is_an_error(probes):
    with pytest.raises(EmulatorError, match="divergence"):
        probes.get_function("diverge")((1,), (64,), (fake_cupy.empty(64),))


@pytest.mark.parametrize("align, outside", [("end", -1), ("start", 10)])
def test_write_beside_an_array_is_an_error(probes, monkeypatch, align, outside):
    monkeypatch.setenv(fake_cupy.ALIGN_ENV, align)
    out = fake_cupy.empty(10)
    with pytest.raises(EmulatorError, match="wrote outside"):
        probes.get_function("overrun")((1,), (32,), (out, np.int64(outside)))
    probes.get_function("overrun")((1,), (32,), (out, np.int64(9)))  # in bounds: fine
    assert out.get()[9] == 1.0


@pytest.mark.parametrize("align, kernel, n, dies", [
    ("end", "overread", 10, True), ("end", "overrun", 10, True), ("end", "overread", 9, False),
    ("start", "overread", -1, True), ("start", "overrun", -1, True),
    ("start", "overread", 0, False)])
def test_access_past_the_fenced_side_kills_the_process(align, kernel, n, dies):
    code = f"""
import resource
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file from the expected crash
import numpy as np
from tests.cuda_emulator import compiler, fake_cupy
from tests.test_cuda_emulator import PROBES
f = compiler.compile_module(PROBES).get_function({kernel!r})
x, y = fake_cupy.ones(10), fake_cupy.empty(10)
f((1,), (32,), (x, np.int64({n}), y) if {kernel!r} == "overread" else (x, np.int64({n})))
print("survived")
"""
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env={**os.environ, fake_cupy.ALIGN_ENV: align})
    if dies:
        assert run.returncode == -11, (run.returncode, run.stderr[-2000:])  # SIGSEGV
    else:
        assert run.returncode == 0 and "survived" in run.stdout, run.stderr[-2000:]


@pytest.mark.parametrize("args, message", [
    (lambda: (fake_cupy.empty(11), np.int32(10)), "needs int64"),
    (lambda: (fake_cupy.empty(11), 10), "needs int64"),
    (lambda: (np.zeros(10), np.int64(10)), "not a device array"),
    (lambda: (np.int64(10),), "takes 2 arguments"),
])
def test_arguments_are_checked_against_the_kernel_signature(probes, args, message):
    with pytest.raises(EmulatorError, match=message):
        probes.get_function("overrun")((1,), (32,), args())


def test_device_arrays_refuse_implicit_host_conversion():
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(fake_cupy.ones(3))
    with pytest.raises(TypeError):
        fake_cupy.ones(3) + np.ones(3)


def test_the_emulator_has_two_devices_and_refuses_arrays_of_the_other_one():
    """As CuPy without peer access: arrays live where they were allocated (views where
    their base is), CuPy's own kernels (arithmetic, assignment, copies, reductions) and
    the package's launches refuse an array of a GPU other than the current one, and
    ``get`` works from anywhere."""
    with cuda_emulator.installed():
        from reprogls.kernels.cuda import reductions

        assert fake_cupy.cuda.runtime.getDeviceCount() == 2
        assert fake_cupy.cuda.Device().id == 0
        with fake_cupy.cuda.Device(1):
            a = fake_cupy.ones(10)
            assert fake_cupy.cuda.Device().id == 1 and (a + 1).device.id == 1
        assert fake_cupy.cuda.Device().id == 0 and a.device.id == 1
        assert a[2:5].device.id == 1 and a.reshape(2, 5).T.device.id == 1
        assert a.get().tolist() == [1.0] * 10
        for refused in (lambda: a * 2, lambda: -a, lambda: a.copy(), lambda: a.all(),
                        lambda: fake_cupy.isfinite(a), lambda: fake_cupy.zeros(10) + a,
                        lambda: a.__setitem__(slice(None), 0.0)):
            with pytest.raises(ValueError, match=r"resides \(1\) is different from the "
                                                 r"current device \(0\)"):
                refused()
        with pytest.raises(EmulatorError, match="got arrays on another device"):
            reductions.cro_sum(a, True)
        with fake_cupy.cuda.Device(1):
            assert reductions.cro_sum(a, True) == 10.0
        with pytest.raises(ValueError, match="has 2 CUDA device"):
            fake_cupy.cuda.Device(2)


def test_a_wrong_kernel_is_caught(monkeypatch):
    """Mutation check: with the lane tree's loop reversed (w = 1, 2, ..., 16 instead of
    16, ..., 1) the CUDA sum is wrong, and the emulated kernel must show it."""
    with cuda_emulator.installed():
        from reprogls.kernels import reference as ref
        from reprogls.kernels.cuda import _launch, reductions, sources

        tree = "for (int w = CRO_LANES / 2; w >= 1; w >>= 1)"
        assert tree in sources.source("reductions.cu")
        x = np.random.default_rng(5).standard_normal(10_000) * np.logspace(0, 12, 10_000)
        xd = fake_cupy.asarray(x)
        assert reductions.cro_sum(xd, False) == ref.cro_sum(x, "plain")
        monkeypatch.setattr(_launch, "_modules", {})
        monkeypatch.setattr(_launch, "source", lambda name: sources.source(name).replace(
            tree, "for (int w = 1; w <= CRO_LANES / 2; w <<= 1)"))
        assert reductions.cro_sum(xd, False) != ref.cro_sum(x, "plain")


def test_the_gpu_suite_passes_on_the_emulator(tmp_path):
    """Every ``gpu``-marked test (reductions, linear algebra, elementwise, the estimator's
    golden fingerprints on ``device="cuda"``) on the emulated device, in a child
    process. None may skip: each one runs the CUDA kernels. Twice, in two children that
    run at the same time (each is one thread; ~1 min of CI wall time saved): with warps
    and lanes run in ascending and in descending order, where a kernel that races (reads
    memory another thread writes, with no barrier between) would see other data; and
    with each array against an inaccessible page after its end, then before its start."""
    children = {}
    for schedule, align in [("ascending", "end"), ("reverse", "start")]:
        env = {**os.environ, cuda_emulator.ENV: "1", compiler.SCHEDULE_ENV: schedule,
               fake_cupy.ALIGN_ENV: align}
        log = open(tmp_path / f"{schedule}-{align}.log", "w+")
        children[(schedule, align)] = log, subprocess.Popen(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu",
             "-rs", str(ROOT / "tests")], cwd=ROOT, env=env, stdout=log,
            stderr=subprocess.STDOUT, text=True)
    outcomes = {}
    try:
        for key, (log, child) in children.items():
            returncode = child.wait(timeout=1800)
            log.seek(0)
            outcomes[key] = returncode, log.read()
    finally:
        for log, child in children.values():
            child.kill()
            log.close()
    for key, (returncode, output) in outcomes.items():
        tail = f"{key}:\n{output[-4000:]}"
        assert returncode == 0, tail
        summary = output.strip().splitlines()[-1]
        passed = re.search(r"(\d+) passed", summary)
        assert passed and int(passed.group(1)) > 1000, tail
        assert not re.search(r"skipped|failed|error", summary), tail


def test_the_gpu_fit_script_runs_on_the_emulator():
    """``profiling/gpu_fits.py`` is for the sessions with a GPU; here it runs on the
    emulator so that it still works when such a session comes (its S fit on
    ``device="cuda"`` must give the CPU's fingerprint)."""
    env = {**os.environ, cuda_emulator.ENV: "1"}
    run = subprocess.run([sys.executable, "profiling/gpu_fits.py", "--sizes", "S",
                          "--repeat", "1"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "fingerprints equal" in run.stdout, run.stdout


def test_the_gpu_session_script_runs_on_the_emulator(tmp_path):
    """``profiling/gpu_session.sh`` is the one prepared call for a session that is lent
    a GPU (about 15 minutes of device time in all). Its dry run (``--emulator``: the
    gram path's golden-fingerprint gpu test, the S fit and the kernel table at tiny
    sizes on the emulated device) must pass here, so that the call does not fail on the
    GPU machine for a reason visible here (the first real call, 2026-12-06, passed
    every step)."""
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    run = subprocess.run(["bash", "profiling/gpu_session.sh", "--emulator"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    summary = (tmp_path / "summary.txt").read_text()
    steps = [line for line in summary.splitlines() if re.match(r"^[\w-]+: exit ", line)]
    assert [line.split(":")[0] for line in steps] == ["sanity", "tests", "audit", "fits",
                                                      "kernels"], summary
    assert all(": exit 0 after" in line for line in steps), summary
    assert "verdict: every run gives the same bits" in summary, summary
    report = json.loads((tmp_path / "audit.json").read_text())
    labels = [r["label"] for r in report["runs"]]
    # the dry run audits one problem on cuda:0 beside the CPU at its own thread count
    assert labels[0] == "spec" and labels[1].startswith("cpu (") and \
        labels[2:] == ["cuda:0", "cpu (1 thread)"], labels
    assert "fingerprints equal" in run.stdout, run.stdout[-3000:]
    assert (tmp_path / "sanity.log").read_text().count("equal") == 1
    # the kernel table: the normal operator's two ways and the Woodbury solve's two
    # kernels, with equal bits, at 4 shapes x 2 modes
    table = (tmp_path / "gpu-kernels.md").read_text()
    assert table.count("| normal ") == 16 and "BITS DIFFER" not in table, table
    # ... the Woodbury solve's local-memory kernel at 4 shapes x 2 modes, and X^T X with
    # each tile size in 2 modes at M
    assert table.count("bits equal") == 16 + 8 + 4, table
    assert table.count("local memory, bits equal") == 8, table
    assert table.count("gram_lower ") == 4 and table.count("tile 16 ") == 2, table
    # the device tool brings back 8 files at most
    assert len([p for p in tmp_path.rglob("*") if p.is_file()]) <= 8
