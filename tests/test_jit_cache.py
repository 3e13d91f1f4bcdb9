"""The package's Numba cache is safe to fill from several processes at once
(:mod:`reprogls.kernels.cpu.jit`): entries are read and written under a file lock, an
entry whose code is for another signature counts as a miss, and every cached function of
the package goes through it."""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from numba.core import caching
from numba.core.dispatcher import Dispatcher

import reprogls
from reprogls.kernels.cpu import jit

ROOT = Path(__file__).resolve().parents[1]

_MODULE = """
from {njit_from} import njit


@njit(cache=True)
def twice(x):
    return x + x
"""

#: Compiles ``twice`` for int64 and float64 into the module's cache, then swaps the two
#: entries of its index: the state an unlocked race between two writers leaves (each
#: signature's index entry names the other's data file).
_BREAK = """
import sys, importlib
mod = importlib.import_module(sys.argv[1])
assert mod.twice(3) == 6 and mod.twice(1.5) == 3.0
cache_file = mod.twice._cache._cache_file
index = cache_file._load_index()
(a, file_a), (b, file_b) = index.items()
index[a], index[b] = file_b, file_a
cache_file._save_index(index)
"""

#: A fresh process calls ``twice`` (directly and from another jit function, as the
#: kernels call their helpers) and prints the results' reprs and the cache hits.
_USE = """
import sys, importlib
from numba import njit
mod = importlib.import_module(sys.argv[1])
twice = mod.twice

@njit
def caller(x):
    return twice(x)

print(repr(twice(3)), repr(twice(1.5)), repr(caller(7)),
      sum(twice.stats.cache_hits.values()), sum(twice.stats.cache_misses.values()))
"""


def _run(tmp_path: Path, code: str, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    run = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


@pytest.mark.slow
def test_a_cache_broken_by_an_unlocked_writer_heals(tmp_path):
    """Numba's own cache hands the int64 call the float64 code (``6.0`` for ``twice(3)``:
    a wrong result type, and the int64 code would truncate a float); the package's
    cache treats both swapped entries as misses, compiles them again, writes them over
    the wrong files, and the next process loads them all."""
    (tmp_path / "plain_module.py").write_text(_MODULE.format(njit_from="numba"))
    (tmp_path / "locked_module.py").write_text(
        _MODULE.format(njit_from="reprogls.kernels.cpu.jit"))

    _run(tmp_path, _BREAK, "plain_module")
    assert _run(tmp_path, _USE, "plain_module").split()[:2] == ["6.0", "3.0"]  # the hazard

    _run(tmp_path, _BREAK, "locked_module")
    healed = _run(tmp_path, _USE, "locked_module").split()
    assert healed[:3] == ["6", "3.0", "14"]
    assert healed[3] == "0"  # both swapped entries refused: no hit
    again = _run(tmp_path, _USE, "locked_module").split()
    assert again == ["6", "3.0", "14", "2", "0"]  # int64 and float64 from the cache


_TRY_LOCK = """
import sys
from reprogls.kernels.cpu.jit import cache_lock
try:
    with cache_lock(sys.argv[1], exclusive=sys.argv[2] == "1", blocking=False) as held:
        print("held" if held else "no-lock")
except BlockingIOError:
    print("blocked")
"""


def test_cache_lock_excludes_other_processes(tmp_path):
    """While this process holds the exclusive lock, another can take neither a shared
    nor an exclusive one; while it holds a shared one, another can share it but not
    write; once released, both go through."""
    directory = str(tmp_path)
    with jit.cache_lock(directory, exclusive=True) as held:
        assert held
        assert _run(tmp_path, _TRY_LOCK, directory, "0") == "blocked"
        assert _run(tmp_path, _TRY_LOCK, directory, "1") == "blocked"
    with jit.cache_lock(directory, exclusive=False):
        assert _run(tmp_path, _TRY_LOCK, directory, "0") == "held"
        assert _run(tmp_path, _TRY_LOCK, directory, "1") == "blocked"
    assert _run(tmp_path, _TRY_LOCK, directory, "1") == "held"
    assert (tmp_path / jit.LOCK_NAME).exists()


def test_saves_and_loads_hold_the_lock(tmp_path, monkeypatch):
    """A cached function's save takes the directory's lock exclusively and its load
    shared (recorded here by wrapping :func:`jit.cache_lock`)."""
    taken = []
    real = jit.cache_lock

    def recording(directory, exclusive, blocking=True):
        taken.append((directory, exclusive))
        return real(directory, exclusive, blocking)

    monkeypatch.setattr(jit, "cache_lock", recording)
    name = f"fresh_module_{uuid.uuid4().hex}"  # never imported before in this process
    (tmp_path / f"{name}.py").write_text(_MODULE.format(njit_from="reprogls.kernels.cpu.jit"))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    assert module.twice(2.0) == 4.0
    cache_dir = module.twice._cache._cache_path
    assert (cache_dir, False) in taken and (cache_dir, True) in taken  # load, then save
    assert taken.index((cache_dir, False)) < taken.index((cache_dir, True))


def test_cache_lock_on_a_missing_directory_runs_unlocked(tmp_path):
    with jit.cache_lock(str(tmp_path / "missing"), exclusive=True) as held:
        assert held is False


def test_njit_with_cache_takes_keywords_only():
    with pytest.raises(TypeError, match="keyword options only"):
        jit.njit("float64(float64)", cache=True)
    assert jit.njit(lambda x: x + 1.0)(1.0) == 2.0  # no cache: numba.njit itself


def _package_modules():
    """Every module of the package but the CUDA ones (they import CuPy; no Numba)."""
    for info in pkgutil.walk_packages(reprogls.__path__, "reprogls."):
        if not info.name.endswith("__main__") and ".kernels.cuda" not in info.name:
            yield importlib.import_module(info.name)


def test_every_cached_function_of_the_package_uses_the_locked_cache():
    """A ``numba.njit(cache=True)`` added anywhere in the package (instead of
    :func:`reprogls.kernels.cpu.jit.njit`) would bring the unlocked cache back."""
    cached, unlocked = 0, []
    for module in _package_modules():
        for name, value in vars(module).items():
            if isinstance(value, Dispatcher) and value.py_func.__module__ == module.__name__:
                if isinstance(value._cache, caching.NullCache):
                    continue
                cached += 1
                if not isinstance(value._cache, jit.LockedFunctionCache):
                    unlocked.append(f"{module.__name__}.{name}")
    assert cached > 50
    assert not unlocked, unlocked
    from reprogls.kernels.cpu.woodbury_rows import woodbury_block_entry
    assert isinstance(woodbury_block_entry()._cache, jit.LockedFunctionCache)


def test_cache_lock_on_a_file_system_without_flock_runs_unlocked(tmp_path, monkeypatch):
    """``flock`` failing (ENOLCK on some network file systems) must not fail a compile:
    the block runs unlocked, as Numba's own cache always does."""
    import errno

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(jit.fcntl, "flock", no_locks)
    with jit.cache_lock(str(tmp_path), exclusive=True) as held:
        assert held is False


#: A Numba whose cache classes moved (``FunctionCache`` gone from ``numba.core.caching``
#: once Numba has imported it): the package imports, warns once, computes with Numba's
#: own cache, and ``warm_parallel`` compiles in this process instead of starting workers.
_CHANGED_NUMBA = """
import subprocess, warnings
import numpy as np
import numba.core.caching as caching
import numba.core.ccallback  # (imports FunctionCache itself)
own = caching.FunctionCache
del caching.FunctionCache
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from reprogls import kernels
    from reprogls.kernels import warm
    from reprogls.kernels.cpu import jit, reductions
    total = kernels.sum(np.arange(5.0), mode="plain", device="cpu")
ours = [str(w.message) for w in caught if "cache differs" in str(w.message)]
assert len(ours) == 1 and issubclass(caught[0].category, RuntimeWarning), ours
assert "numba.core.caching" in ours[0] and "FunctionCache" in ours[0], ours
assert jit.LockedFunctionCache is None and not jit.cache_is_locked()
assert type(reductions._sum_tasks._cache) is own
compiled = []
warm.load_cached = lambda names: False
warm.compile_tasks = compiled.extend
def no_worker(*args, **kwargs):
    raise AssertionError("a worker process started")
subprocess.Popen = no_worker
warm.warm_parallel(["gemv_t", "sur_rmatvec"], jobs=2, meanwhile=lambda: compiled.append("mine"))
print(total, compiled)
"""


@pytest.mark.slow
def test_a_numba_with_other_cache_internals_falls_back_to_its_own_cache(tmp_path):
    env_dir = tmp_path / "numba-cache"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(env_dir))
    run = subprocess.run([sys.executable, "-c", _CHANGED_NUMBA], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "10.0 ['mine', 'gemv_t', 'sur_rmatvec']"


def test_a_cache_class_that_does_not_fit_leaves_numba_s_own(tmp_path, monkeypatch):
    """Where :class:`jit.LockedFunctionCache` cannot be built on this Numba's objects (an
    attribute renamed), ``njit`` and ``cfunc`` keep Numba's own cache, with one warning."""
    import numba
    from numba import types

    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path))  # not tests/__pycache__
    class Unfitting:
        def __init__(self, py_func):
            raise AttributeError("'_CacheImpl' object has no attribute 'filename_base'")

    monkeypatch.setattr(jit, "LockedFunctionCache", Unfitting)
    monkeypatch.setattr(jit, "_unlocked_reason", None)
    with pytest.warns(RuntimeWarning, match="filename_base") as caught:
        dispatcher = jit.njit(cache=True)(lambda x: x + 1.0)
        callback = jit.cfunc(types.float64(types.float64), cache=True)(lambda x: x * 2.0)
    assert len(caught) == 1
    assert not jit.cache_is_locked()
    assert type(dispatcher._cache) is caching.FunctionCache
    assert type(callback._cache) is caching.FunctionCache
    assert dispatcher(1.0) == 2.0 and callback.ctypes(2.0) == 4.0
