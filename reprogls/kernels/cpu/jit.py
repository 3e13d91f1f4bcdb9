"""Numba's ``njit`` and ``cfunc`` with an on-disk cache that several processes can fill
at once. Every cached Numba function of reprogls is made by these two.

Why. Numba's cache (``numba.core.caching.IndexDataCacheFile``, Numba 0.59-0.68 at
least) saves an entry of a function without a lock: it reads the function's index, takes
the first data-file number that index does not use, writes the index, then the data
file. Two processes that compile the same function at once -- :func:`.warm.warm_parallel`'s
workers, pytest-xdist workers, a user's process pool, all on a fresh install -- can take
the same number: the index then maps one signature to a file that holds another
signature's code. Every later process that asks for the first signature loads the
second's, Numba files it under the second's signature, and the caller fails to type
(``Invalid use of type(CPUDispatcher(...)) with parameters (Literal[int](0)); Known
signatures: (Literal[int](32),) ...``) -- in every run, until the cache is deleted. CI's
warm-up of the installed package failed so on 2026-12-06 (``blocked.runtime_int``); two
processes compiling 20 signatures each of one function into a fresh cache broke it in 1
of 3 tries (``tests/test_jit_cache.py`` runs that race). A reader can also find the
new index before its data file is written and load an older source's file of that
number.

What changes, for reprogls's functions only (other Numba code in the process is left
as it is):

* every save of an entry holds an exclusive ``flock`` on one lock file in the cache
  directory (:data:`LOCK_NAME`), every load a shared one, so an index and its data file
  change together;
* an entry whose code is for another signature than the one asked for (written by an
  unlocked writer before) counts as a miss: the function compiles again and its entry
  is written over the wrong file, so a broken cache heals.

No value depends on this: which process compiled a kernel, and whether it came from the
cache, never changes its machine code. Without ``fcntl`` (Windows), where the lock
file cannot be opened (a read-only directory, where Numba writes nothing either), or
where ``flock`` fails (ENOLCK on some network file systems), the entries go unlocked,
as Numba's own do, and are still checked.

The classes below stand on Numba internals (``IndexDataCacheFile``, ``FunctionCache``,
a dispatcher's ``_cache``), unchanged from 0.59 to 0.68. Should a later Numba change
them, nothing fails: the functions keep Numba's own cache, :func:`cache_is_locked`
turns False, a :class:`RuntimeWarning` says so once, and
:func:`.warm.warm_parallel` then compiles in one process instead of racing workers.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator

import numba
from numba.core import caching, sigutils

try:
    from numba.core.ccallback import CFunc
except ImportError:  # pragma: no cover - a Numba that moved it: cfunc falls back
    CFunc = None

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux
    fcntl = None

__all__ = ["LOCK_NAME", "LockedFunctionCache", "cache_is_locked", "cache_lock", "cfunc",
           "njit"]

#: The lock file, one per cache directory (each ``__pycache__`` of the package, or its
#: directory under ``NUMBA_CACHE_DIR``).
LOCK_NAME = "reprogls-numba-cache.lock"


def _open_lock(directory: str) -> int | None:
    """A descriptor of ``directory``'s lock file, created if missing (read-only where
    another user created it: ``flock`` needs no write access); None without ``fcntl``
    or when it cannot be opened."""
    if fcntl is None:
        return None
    path = os.path.join(directory, LOCK_NAME)
    for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
        try:
            return os.open(path, flags, 0o666)
        except OSError:
            continue
    return None


@contextlib.contextmanager
def cache_lock(directory: str, exclusive: bool, blocking: bool = True) -> Iterator[bool]:
    """Hold ``directory``'s cache lock (``flock``: exclusive for a writer, shared for a
    reader) for the block; yields whether a lock is held: False where none can be
    taken (no ``fcntl``, a lock file that cannot be opened, a file system without
    ``flock``), and the block runs unlocked. With ``blocking=False`` a lock that
    another process holds raises :class:`BlockingIOError` instead of waiting."""
    fd = _open_lock(directory)
    if fd is not None:
        operation = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(fd, operation if blocking else operation | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise
        except OSError:  # e.g. ENOLCK on a network file system: no lock to be had
            os.close(fd)
            fd = None
    try:
        yield fd is not None
    finally:
        if fd is not None:
            os.close(fd)  # (closing the descriptor releases the lock)


def _define_locked_cache() -> tuple[type | None, str]:
    """:class:`LockedFunctionCache` on this Numba's cache classes, or ``None`` and what is
    missing."""
    try:
        index_data_file, function_cache = caching.IndexDataCacheFile, caching.FunctionCache
    except AttributeError as exc:
        return None, f"numba.core.caching: {exc}"

    class _LockedIndexDataCacheFile(index_data_file):
        """Numba's index and data files of one function, read and written under
        :func:`cache_lock` of their directory."""

        def save(self, *args, **kwargs):
            with cache_lock(self._cache_path, exclusive=True):
                return super().save(*args, **kwargs)

        def load(self, *args, **kwargs):
            with cache_lock(self._cache_path, exclusive=False):
                return super().load(*args, **kwargs)

    class LockedFunctionCache(function_cache):
        """Numba's cache of a ``jit`` function or a ``cfunc`` (Numba's ``CFunc`` takes
        ``FunctionCache`` too), with its files under :func:`cache_lock`, and a loaded
        entry for another signature than the one asked for counted as a miss."""

        def __init__(self, py_func):
            super().__init__(py_func)
            self._cache_file = _LockedIndexDataCacheFile(
                cache_path=self._cache_path, filename_base=self._impl.filename_base,
                source_stamp=self._impl.locator.get_source_stamp())

        def load_overload(self, sig, *args, **kwargs):
            cres = super().load_overload(sig, *args, **kwargs)
            loaded = getattr(getattr(cres, "signature", None), "args", None)
            if loaded is not None and tuple(loaded) != tuple(
                    sigutils.normalize_signature(sig)[0]):
                return None
            return cres

    return LockedFunctionCache, ""


#: None where this Numba lacks the classes it extends (:func:`_define_locked_cache`).
LockedFunctionCache, _MISSING = _define_locked_cache()
_unlocked_reason: str | None = None


def cache_is_locked() -> bool:
    """Whether the package's cached functions take :class:`LockedFunctionCache`: False
    once one could not (a Numba whose cache internals differ from 0.59-0.68's), and
    then their entries are Numba's own, saved without a lock."""
    return _unlocked_reason is None


def _unlock(reason: str, stacklevel: int = 4) -> bool:
    """Record why the package's functions keep Numba's own cache, warning once; False."""
    global _unlocked_reason
    if _unlocked_reason is None:
        _unlocked_reason = reason
        warnings.warn(
            f"reprogls: Numba {numba.__version__}'s cache differs from the versions "
            f"reprogls knows (0.59-0.68; {reason}), so its kernels use Numba's own cache, "
            "which processes compiling the same kernel at once can leave broken; compile "
            "them in one process first (python -c \"import reprogls; reprogls.warmup()\") "
            "before starting several", RuntimeWarning, stacklevel=stacklevel)
    return False


def _lock_cache_of(compiled, py_func) -> bool:
    """Give ``compiled`` (a dispatcher or a ``CFunc``) a :class:`LockedFunctionCache` of
    ``py_func``; False, with a warning once per process, where this Numba's internals
    do not fit it (the object then keeps the cache it has)."""
    if _unlocked_reason is not None:
        return False
    if LockedFunctionCache is None:
        return _unlock(_MISSING)
    if not hasattr(compiled, "_cache"):
        return _unlock(f"{type(compiled).__name__} has no _cache")
    try:
        compiled._cache = LockedFunctionCache(py_func)
    except (AttributeError, TypeError) as exc:
        return _unlock(f"{type(exc).__name__}: {exc}")
    return True


def njit(*args, cache: bool = False, **options) -> Callable:
    """:func:`numba.njit` whose ``cache=True`` uses :class:`LockedFunctionCache`.

    Without ``cache`` it is :func:`numba.njit` itself. With it, options go by keyword
    (``@njit(cache=True, nogil=True)``, ``njit(cache=True)(func)``): a signature would
    compile at decoration, before the locked cache is in place, so one is refused."""
    if not cache:
        return numba.njit(*args, **options)
    if args:
        raise TypeError("njit(cache=True) takes keyword options only, e.g. "
                        "@njit(cache=True, nogil=True); it compiles lazily")
    decorate = numba.njit(**options)

    def wrap(func):
        dispatcher = decorate(func)
        if not _lock_cache_of(dispatcher, dispatcher.py_func):
            dispatcher.enable_caching()  # Numba's own, as numba.njit(cache=True) has
        return dispatcher

    return wrap


def cfunc(sig, cache: bool = False, **options) -> Callable:
    """:func:`numba.cfunc` whose ``cache=True`` uses :class:`LockedFunctionCache`
    (compiled, or loaded, at decoration as Numba's is)."""
    if not cache:
        return numba.cfunc(sig, **options)
    signature = sigutils.normalize_signature(sig)
    locals_ = dict(options.pop("locals", {}))

    def wrap(func):
        if CFunc is None:
            _unlock("numba.core.ccallback has no CFunc", stacklevel=3)
            return numba.cfunc(signature, cache=True, locals=locals_, **options)(func)
        compiled = CFunc(func, signature, locals=locals_, options=options)
        if not _lock_cache_of(compiled, func):
            compiled.enable_caching()
        compiled.compile()
        return compiled

    return wrap
