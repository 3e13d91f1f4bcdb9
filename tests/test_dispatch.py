"""Device resolution, CUDA probing without a GPU, and bad-input handling."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import numpy as np
import pytest

from reprogls import kernels
from reprogls.kernels import devices
from reprogls.kernels.devices import CudaUnavailableError, Device, resolve_device
from tests.corpus import bits, same_bits


@pytest.fixture
def fresh_probe(monkeypatch):
    """Forget the cached CUDA probe before and after the test."""
    devices.cuda_status.cache_clear()
    yield monkeypatch
    devices.cuda_status.cache_clear()


def _fake_cupy(driver_version=12040, device_count=1, driver_error=None, count_error=None):
    runtime = types.SimpleNamespace()

    def driver_get_version():
        if driver_error:
            raise driver_error
        return driver_version

    def get_device_count():
        if count_error:
            raise count_error
        return device_count

    runtime.driverGetVersion = driver_get_version
    runtime.getDeviceCount = get_device_count
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))


def test_import_does_not_import_cupy_or_numba():
    code = "import sys, reprogls; print('cupy' in sys.modules, 'numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "False"]


def test_auto_follows_numpy_data_to_cpu():
    assert resolve_device("auto", np.ones(3)) == Device("cpu")
    assert str(resolve_device("cpu")) == "cpu"


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "cuda:-1", ""])
def test_unknown_device_string(bad):
    with pytest.raises(ValueError, match="device must be"):
        resolve_device(bad)


def test_device_of_wrong_type():
    with pytest.raises(TypeError, match="device must be a string"):
        resolve_device(0)


def test_disabled_by_environment(fresh_probe):
    fresh_probe.setenv("REPROGLS_DISABLE_CUDA", "1")
    assert kernels.available_devices() == ["cpu"]
    with pytest.raises(CudaUnavailableError, match="REPROGLS_DISABLE_CUDA"):
        kernels.sum([1.0], device="cuda")


def test_missing_cupy_names_the_extra(fresh_probe):
    fresh_probe.delenv("REPROGLS_DISABLE_CUDA", raising=False)
    fresh_probe.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    with pytest.raises(CudaUnavailableError, match=r"CuPy is not installed.*reprogls\[cuda12\]"):
        kernels.sum([1.0], device="cuda:0")
    assert kernels.available_devices() == ["cpu"]


def test_missing_driver(fresh_probe):
    fresh_probe.delenv("REPROGLS_DISABLE_CUDA", raising=False)
    fresh_probe.setitem(sys.modules, "cupy", _fake_cupy(driver_error=OSError("libcuda.so")))
    with pytest.raises(CudaUnavailableError, match="no NVIDIA driver"):
        resolve_device("cuda")


def test_driver_without_device(fresh_probe):
    fresh_probe.delenv("REPROGLS_DISABLE_CUDA", raising=False)
    fresh_probe.setitem(sys.modules, "cupy", _fake_cupy(device_count=0))
    with pytest.raises(CudaUnavailableError, match="no CUDA device"):
        resolve_device("cuda")


def test_device_index_out_of_range(fresh_probe):
    fresh_probe.delenv("REPROGLS_DISABLE_CUDA", raising=False)
    fresh_probe.setitem(sys.modules, "cupy", _fake_cupy(device_count=1))
    assert devices.available_devices() == ["cpu", "cuda:0"]
    with pytest.raises(ValueError, match="cuda:3"):
        resolve_device("cuda:3")


def test_float32_is_rejected_with_the_fix():
    with pytest.raises(TypeError, match=r"float32.*astype\(np.float64\)"):
        kernels.sum(np.ones(4, dtype=np.float32))
    with pytest.raises(TypeError, match=r"float32.*astype\(np.float64\)"):
        kernels.sum(np.ones(4, dtype=">f4"))


def test_big_endian_float64_is_float64():
    """Float64 stored big-endian (FITS, HDF5 and other file formats) is the same numbers:
    converted exactly, the same bits, not refused as another floating type."""
    x = np.random.default_rng(4).standard_normal(1000)
    A = x[:990].reshape(99, 10)
    assert bits(kernels.sum(x.astype(">f8"))) == bits(kernels.sum(x))
    assert same_bits(kernels.gemv(A.astype(">f8"), np.ones(10, dtype=">f8")),
                     kernels.gemv(A, np.ones(10)))


@pytest.mark.gpu
def test_big_endian_float64_goes_to_the_gpu():
    x = np.random.default_rng(4).standard_normal(1000)
    assert bits(kernels.sum(x.astype(">f8"), device="cuda")) == bits(kernels.sum(x))


@pytest.mark.parametrize("bad", [np.ones(3, dtype=complex), np.array(["a", "b"]),
                                 np.array([object(), 1.0], dtype=object)])
def test_non_real_dtypes_are_rejected(bad):
    with pytest.raises(TypeError, match="dtype"):
        kernels.sum(bad)


def test_integers_and_bools_are_converted_to_float64():
    assert kernels.sum(np.arange(10, dtype=np.int32)) == 45.0
    assert kernels.sum(np.array([True, True, False])) == 2.0
    assert kernels.dot([1, 2, 3], [4, 5, 6]) == 32.0


def test_two_dimensional_input_is_rejected():
    with pytest.raises(ValueError, match="one-dimensional"):
        kernels.sum(np.ones((2, 2)))


def test_dot_length_mismatch():
    with pytest.raises(ValueError, match="same length, got 3 and 4"):
        kernels.dot(np.ones(3), np.ones(4))


def test_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        kernels.dot(np.ones(3), np.ones(3), mode="fast")


@pytest.mark.parametrize("bad", ["gpu", "cuda", None, 1])
def test_bad_result_place_names_the_choices(bad):
    A = np.ones((3, 2))
    with pytest.raises(ValueError, match=r"result must be 'host' .* or 'device'"):
        kernels.gemv(A, np.ones(2), result=bad)
    with pytest.raises(ValueError, match="result must be"):
        kernels.log(np.ones(3), result=bad)


def test_result_device_on_the_cpu_is_numpy_and_refuses_out():
    """On the CPU ``result="device"`` is the NumPy result (the array stays where it was
    computed); with ``out=`` (a NumPy array) it is an error naming the fix."""
    rng = np.random.default_rng(0)
    X, offsets = kernels.pack_sur([rng.standard_normal((50, p)) for p in (2, 3)])
    beta = rng.standard_normal(X.shape[1])
    got = kernels.sur_matvec(X, offsets, beta, device="cpu", result="device")
    assert isinstance(got, np.ndarray)
    assert np.array_equal(got.view(np.uint64),
                          kernels.sur_matvec(X, offsets, beta, device="cpu").view(np.uint64))
    with pytest.raises(ValueError, match="leave out=None"):
        kernels.sur_matvec(X, offsets, beta, out=np.empty((50, 2)), result="device")
    factor = kernels.woodbury_factor(rng.standard_normal((2, 1)), np.ones(2))
    with pytest.raises(ValueError, match="leave out=None"):
        kernels.woodbury_solve(factor, got, out=np.empty((50, 2)), result="device")


def test_caller_arrays_are_not_modified():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(20_001)[::2]
    y = rng.standard_normal(10_001)
    x_before, y_before = x.copy(), y.copy()
    for mode in ("compensated", "plain"):
        kernels.sum(x, mode)
        kernels.dot(x, y, mode)
        kernels.nrm2(x, mode)
    assert bits_equal(x, x_before) and bits_equal(y, y_before)


def bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a.view(np.uint64), b.view(np.uint64)))


def test_nan_results_are_canonical():
    neg_nan = np.array([0xFFF8000000000123], dtype=np.uint64).view(np.float64)
    x = np.concatenate([np.ones(100), neg_nan])
    for f in (lambda v: kernels.sum(v), lambda v: kernels.dot(v, v), lambda v: kernels.nrm2(v)):
        assert bits(f(x)) == 0x7FF8000000000000


def test_warmup_reports_devices():
    assert kernels.warmup(("cpu",)) == ["cpu"]


def test_warm_tasks_split_and_validation():
    from reprogls.kernels import warm

    shares = warm._shares(list(warm.TASKS), 2)
    assert sorted(n for share in shares for n in share) == sorted(warm.TASKS)
    loads = [warm._cost(share) for share in shares]
    assert max(loads) - min(loads) <= max(warm._cost(g) for g in warm._groups(list(warm.TASKS)))
    for task, partner in warm.PARTNERS.items():  # partners share a worker
        assert [share for share in shares if task in share and partner in share]
    assert warm._shares(["sur_rmatvec", "reductions"], 2) == [["reductions"], ["sur_rmatvec"]]
    assert warm._shares(["reductions"], 4) == [["reductions"]]
    with pytest.raises(ValueError, match="unknown warm-up task 'nope'"):
        warm.warm_parallel(["nope"])
    assert warm.warm_parallel(["reductions"], jobs=1) >= 0.0


def test_warm_workers_import_this_package_whatever_the_working_directory(tmp_path):
    """Run from a directory holding another ``reprogls`` (a source checkout beside the
    installed copy), a warm-up worker still imports the caller's package: else its
    compiled kernels land in the other copy's cache and the caller compiles them all
    again. The decoy here exits with status 3 when imported; ``python -m`` imports it."""
    from reprogls.kernels import warm

    (tmp_path / "reprogls").mkdir()
    (tmp_path / "reprogls" / "__init__.py").write_text("raise SystemExit(3)\n")
    naive = subprocess.run([sys.executable, "-m", "reprogls.kernels.warm"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)
    assert naive.returncode == 3  # the trap works
    run = subprocess.run(warm.worker_command(["elementary"]), cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr


def test_warm_worker_entry_point_compiles_into_the_cache():



    run = subprocess.run([sys.executable, "-m", "reprogls.kernels.warm", "reductions"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    bad = subprocess.run([sys.executable, "-m", "reprogls.kernels.warm", "nope"],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "unknown warm-up task" in bad.stderr


_FIT_AFTER_WARMUP = """
import sys
from numba.core.dispatcher import Dispatcher
from reprogls.kernels import warm


def signatures():
    found = {}
    for name, module in list(sys.modules.items()):
        if name.startswith("reprogls"):
            for value in vars(module).values():
                if isinstance(value, Dispatcher):
                    key = f"{value.py_func.__module__}.{value.py_func.__qualname__}"
                    found[key] = set(value.overloads)
    return found


warm.compile_tasks(warm.FIT_TASKS)
from reprogls import gls
from reprogls.gls.simulate import simulate_sur

before = signatures()
Xs, Y, *_ = simulate_sur(300, 12, 3, 2, 0)
gls.fit(Xs, Y, rank=2).summary()
print(sorted(k for k, sigs in signatures().items() if sigs - before.get(k, set())))
"""


def test_demo_fit_needs_nothing_beyond_the_fit_warmup():
    """``reprogls demo`` compiles :data:`warm.FIT_TASKS` in parallel workers, then fits:
    a kernel the gram-path fit calls that those tasks did not compile is compiled in
    the fit itself, one core, on the demo's clock. In a fresh interpreter (the shared
    Numba cache: loading is fast, and a kernel counts whether it is loaded or compiled),
    the fit after the warm-up must give no compiled kernel a new signature. (Until the
    twenty-fifth session the mean squares of the y_j took ``sur_rmatvec``'s block
    kernels, a one-column-per-equation layout: 2.4 s of the demo's first fit.)"""
    run = subprocess.run([sys.executable, "-c", _FIT_AFTER_WARMUP], capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]", run.stdout


def test_warm_parallel_runs_the_callers_work_when_the_first_worker_is_done(monkeypatch):
    """``meanwhile`` runs once, in the caller, after the first worker has exited and
    while another still runs (here stand-in workers that sleep 0.3 s and 3 s), and with
    one job before compiling; an error in it is raised after the workers are done."""
    import time

    from reprogls.kernels import warm

    def sleeper(share):
        seconds = 0.3 if share == ["elementary"] else 3.0
        return [sys.executable, "-c", f"import time; time.sleep({seconds})"]

    monkeypatch.setattr(warm, "worker_command", sleeper)
    monkeypatch.setattr(warm, "compile_tasks", lambda names: None)
    monkeypatch.setattr(warm, "load_cached", lambda names: False)  # a cold cache
    calls = []
    t0 = time.perf_counter()
    total = warm.warm_parallel(["elementary", "reductions"], jobs=2,
                               meanwhile=lambda: calls.append(time.perf_counter() - t0))
    assert len(calls) == 1 and 0.3 <= calls[0] < 2.5 <= total
    warm.warm_parallel(["elementary"], jobs=1, meanwhile=lambda: calls.append(None))
    assert len(calls) == 2

    def fail():
        raise RuntimeError("boom")

    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match="boom"):
        warm.warm_parallel(["elementary", "reductions"], jobs=2, meanwhile=fail)
    assert time.perf_counter() - t0 >= 2.5  # raised once the 3 s worker was done


def test_no_compiling_stops_a_compile_and_the_function_compiles_later():
    """``warm.no_compiling`` raises at the start of a compile (a ``jit`` function not in
    the cache here: ``cache=False``) and leaves the function usable afterwards."""
    from numba import njit

    from reprogls.kernels import warm

    @njit
    def plus_one(x):
        return x + 1.0

    with pytest.raises(warm.CacheMissError), warm.no_compiling():
        plus_one(1.0)
    assert plus_one(1.0) == 2.0
    with warm.no_compiling():  # compiled now: a call compiles nothing
        assert plus_one(2.0) == 3.0


_WARM_FROM_CACHE = """
import sys
from reprogls.kernels import warm
cold = warm.load_cached(["elementary"])  # a fresh cache: stops at the first kernel
warm.compile_tasks(["elementary"])       # compiles, and writes the cache
print(cold)
"""

_WARM_FROM_CACHE_AGAIN = """
from reprogls.kernels import warm
def no_worker(share):
    raise AssertionError("a worker was started although the cache is warm")
warm.worker_command = no_worker
calls = []
warm.warm_parallel(["elementary"], jobs=2, meanwhile=lambda: calls.append(1))
print(warm.load_cached(["elementary"]), calls)
"""


def test_warm_parallel_starts_no_worker_when_the_cache_is_warm(tmp_path):
    """With a fresh Numba cache ``load_cached`` says False (and compiles nothing); once a
    process has compiled the task into that cache, another process loads it with
    ``load_cached`` True, and ``warm_parallel`` there starts no worker and still runs the
    caller's ``meanwhile`` once."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    first = subprocess.run([sys.executable, "-c", _WARM_FROM_CACHE], capture_output=True,
                           text=True, timeout=600, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == ["False"]
    second = subprocess.run([sys.executable, "-c", _WARM_FROM_CACHE_AGAIN],
                            capture_output=True, text=True, timeout=600, env=env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "True [1]"


def _read_only(a: np.ndarray) -> np.ndarray:
    a = np.array(a)
    a.flags.writeable = False
    return a


def test_read_only_inputs_take_the_compiled_kernels_and_give_the_same_bits(tmp_path):
    """A read-only input (``flags.writeable`` false; a ``np.load(..., mmap_mode="r")``) is
    another type to Numba: every kernel compiled again on its first such call (0.5 s for
    ``sum``, 9 s for ``sur_normal_matvec``), outside ``warmup()``. The kernels now read it
    through a writable alias of the same memory: after one call with writable inputs, the
    read-only call compiles nothing and gives the same bits."""
    from reprogls.kernels import warm

    rng = np.random.default_rng(3)
    X, offsets = kernels.pack_sur([rng.standard_normal((300, p)) for p in (2, 0, 3, 5)])
    P, K = X.shape[1], 4
    x, v, R = rng.standard_normal(500), rng.standard_normal(P), rng.standard_normal((300, K))
    F, d = rng.standard_normal((K, 2)), rng.uniform(0.5, 1.5, K)
    factor = kernels.woodbury_factor(F, d)
    calls = {
        "sum": lambda a: kernels.sum(a["x"]),
        "dot": lambda a: kernels.dot(a["x"], a["x"]),
        "nrm2": lambda a: kernels.nrm2(a["x"]),
        "gemv": lambda a: kernels.gemv(a["X"], a["v"]),
        "gemv_t": lambda a: kernels.gemv_t(a["X"], a["R"][:, 0].copy()),
        "sur_matvec": lambda a: kernels.sur_matvec(a["X"], offsets, a["v"]),
        "sur_rmatvec": lambda a: kernels.sur_rmatvec(a["X"], offsets, a["R"]),
        "woodbury_factor": lambda a: kernels.woodbury_factor(a["F"], a["d"]).L,
        "woodbury_solve": lambda a: kernels.woodbury_solve(factor, a["R"]),
        "sur_normal_matvec": lambda a: kernels.sur_normal_matvec(a["X"], offsets, factor,
                                                                 a["v"]),
        "soft_threshold": lambda a: kernels.soft_threshold(a["x"], np.abs(a["x"])[::-1]),
        "soft_threshold_box": lambda a: kernels.soft_threshold_box(a["x"], 0.1, -1.0, 1.0),
        "prox_elastic_net": lambda a: kernels.prox_elastic_net(a["x"], 0.1, 0.5, 0.3),
        "fista_step": lambda a: kernels.fista_step(a["x"], a["x"], 0.1, a["x"], 0.5, 0.01,
                                                   1.0)[0],
        "log": lambda a: kernels.log(np.abs(a["x"])),
        "exp": lambda a: kernels.exp(a["x"]),
    }
    writable = {"x": x, "X": X, "v": v, "R": R, "F": F, "d": d}
    np.save(tmp_path / "X.npy", X)
    read_only = {name: _read_only(a) for name, a in writable.items()}
    read_only["X"] = np.load(tmp_path / "X.npy", mmap_mode="r")
    assert not read_only["X"].flags.writeable
    for name, call in calls.items():
        expected = call(writable)
        with warm.no_compiling():
            got = call(read_only)
        assert same_bits(np.asarray(got), np.asarray(expected)), name
    for name, a in read_only.items():
        assert same_bits(a, writable[name]), name
