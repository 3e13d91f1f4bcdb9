"""Compiling the CPU kernels up front, in parallel processes.

Numba compiles one function at a time and holds the GIL, so the first use of the package
on a fresh install spends tens of seconds in LLVM on one core. The kernels are cached on
disk (``cache=True``), so the work can be spread over processes: each worker compiles a
share of the *tasks* below and writes them to Numba's cache; the calling process then
loads every kernel from that cache. A task calls the public kernels on tiny inputs in
both modes, which compiles the same specialisations real inputs use (the mode is a
runtime flag, not a type).

Run as ``python -m reprogls.kernels.warm TASK [TASK ...]`` (the workers run the same
function through :func:`worker_command`, which pins the package they import).

When everything is already in the cache, :func:`warm_parallel` starts no worker: it
first tries to load the tasks here with compiling forbidden (:func:`load_cached`) and
falls back to the workers at the first kernel that would compile. Each worker is a
Python process that imports NumPy, Numba and the package and loads its share before
this process loads it all again, so on a warm cache they only cost time: the warm
``reprogls demo`` took 3.3 s with its two workers and 1.8-2.1 s without (thirty-fourth
session, 2-core Zen 3 VM; ``FIT_TASKS`` load in 0.6-0.8 s here, every task in 0.8 s).
On a cold cache the attempt stops at the first kernel, having imported Numba and the
kernel modules (0.7 s), which this process imported after the workers before (cold
demo, three alternating pairs of fresh caches: 24.4-25.4 s against 23.6-27.7 s; warm
right after each, 1.85-2.12 s against 2.94-3.35 s). Starting the workers first and
stopping them once everything had loaded was slower on a warm cache (3.7-3.9 s: two
workers importing Numba beside the loading on two cores).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import numpy as np

__all__ = ["FIT_TASKS", "PARTNERS", "TASKS", "CacheMissError", "compile_tasks", "load_cached",
           "no_compiling", "warm_parallel", "worker_command"]

MODES = ("compensated", "plain")


def _reductions() -> None:
    """``sum``/``dot``/``nrm2``, then the Sigma-step's subspace steps, which reuse their
    CRO-1 helpers (one worker compiles both: ~5 s less than two)."""
    from . import dispatch
    from .cpu._cro import CHUNK

    for v in (np.array([1.0, 2.0, 3.0]), np.ones(CHUNK + 1)):  # one chunk, and two
        for mode in MODES:
            dispatch.sum(v, mode=mode, device="cpu")
            dispatch.dot(v, v, mode=mode, device="cpu")
            dispatch.nrm2(v, mode=mode, device="cpu")
    _subspace()


def _sur_matvec() -> None:
    """``sur_matvec`` and ``gemv``; and the estimator's packing of the designs into the
    SUR layout (:mod:`reprogls.gls._pack`), which every fit runs first."""
    from ..gls._pack import pack_designs
    from . import linalg

    X, offsets = np.arange(12.0).reshape(4, 3), np.array([0, 1, 3])
    pack_designs([X[:, :1], X[:, 1:]], [False, True], np.array([0, 1, 4]))
    for mode in MODES:
        linalg.sur_matvec(X, offsets, np.ones(3), mode, "cpu")
        linalg.gemv(X, np.ones(3), mode, "cpu")
        linalg.gemv(np.ones((2, 40)), np.ones(40), mode, "cpu")  # the long-row path


def _sur_rmatvec() -> None:
    """``sur_rmatvec``, and the estimator's one-pass ``X^T vec(R Sigma^-1)`` for one or
    two right-hand sides (:func:`.cpu.linalg.solved_rmatvecs`: every fit's ``b``), with
    the rows streamed (the block kernels' layouts: :func:`_block_layouts`)."""
    from . import linalg
    from .cpu.linalg import solved_rmatvecs

    X, offsets = np.arange(12.0).reshape(4, 3), np.array([0, 1, 3])
    for mode in MODES:
        linalg.sur_rmatvec(X, offsets, np.ones((4, 2)), mode, "cpu")
        factor = linalg.woodbury_factor(np.ones((2, 1)), np.ones(2), mode)
        solved_rmatvecs(X, offsets, [np.ones((4, 2))], factor.G, factor.d, factor.L,
                        mode == "compensated")


def _block_layouts() -> None:
    """The block kernels of :mod:`.cpu.rowgroups` for the layouts the row kernels
    decline: an equation past 32 regressors (``sur_matvec``, the fused operator) and
    nine one-column equations (``sur_rmatvec``, ``X^T vec(R Sigma^-1)``, the fused
    operator). Not in :data:`FIT_TASKS`: the demo's equal-width fit does not need them."""
    from . import linalg
    from .cpu.linalg import solved_rmatvecs

    wide, narrow = np.array([0, 33, 34]), np.arange(0, 10)
    for mode in MODES:
        linalg.sur_matvec(np.ones((4, 34)), wide, np.ones(34), mode, "cpu")
        linalg.sur_rmatvec(np.ones((4, 9)), narrow, np.ones((4, 9)), mode, "cpu")
        for layout in (wide, narrow):
            P, K = int(layout[-1]), layout.shape[0] - 1
            factor = linalg.woodbury_factor(np.ones((K, 1)), np.ones(K), mode)
            solved_rmatvecs(np.ones((4, P)), layout, [np.ones((4, K))], factor.G, factor.d,
                            factor.L, mode == "compensated")
            linalg.sur_normal_matvec(np.ones((4, P)), layout, factor, np.ones(P), "cpu")


def _woodbury() -> None:
    """Woodbury factor/solve/logdet (the capacitance's fixed-order Cholesky with them).
    The Cholesky solves of the beta-step and the OLS start are :func:`_dense`'s since the
    twenty-fifth session: in the demo's warm-up this task and ``sur_rmatvec`` (whose
    ``X^T vec(R Sigma^-1)`` inlines the Woodbury block) share one worker, which finished
    5 s after the other one; with the solves moved, 18.6 and 17.1 s."""
    from . import linalg

    for mode in MODES:
        factor = linalg.woodbury_factor(np.ones((2, 1)), np.ones(2), mode)
        linalg.woodbury_solve(factor, np.ones((4, 2)), "cpu")
        linalg.woodbury_logdet(factor)


def _spd_problem(compensated: bool, parallel: bool) -> None:
    from .cpu import gram, spd

    # order 40 > spd.BLOCK: the parallel Cholesky has rows below its first column block
    A = np.arange(2000.0).reshape(50, 40) % 7.0
    G = gram.lower_gram(A, compensated) + 50.0 * np.eye(40)
    L, Z, inv = np.empty_like(G), np.empty_like(G), np.empty_like(G)
    spd.cholesky(G, compensated, L, parallel)
    spd.inverse_factor(L, compensated, Z, parallel)
    spd.gram_of_rows_from_diagonal(Z, compensated, inv, parallel)


def _dense() -> None:
    """The dense kernels of the gram solver, the Sigma-step and the standard errors: the
    tiled lower Gram, ``A B`` with a few columns and its lower triangle (the robust
    sandwich, Wald tests), the SPD Cholesky and inverse, serial
    and parallel (the gram solver's normal matrix reaches the parallel drivers from
    order ``spd.PARALLEL_MIN = 128`` on: the demo's fit, P = 250, does), and the
    Cholesky solves of the beta-step and of the OLS start's per-equation blocks."""
    from ..gls._dense import mirror_lower
    from .cpu import multi
    from .cpu.linalg import block_cholesky_solves, cholesky_solve_kernel

    mirror_lower(np.eye(2))
    offsets, ptr = np.array([0, 2], dtype=np.int64), np.array([0, 4], dtype=np.int64)
    for compensated in (True, False):
        _spd_problem(compensated, parallel=False)
        _spd_problem(compensated, parallel=True)
        multi.rows_times(np.ones((3, 40)), np.ones((2, 40)), compensated)
        multi.lower_rows_times(np.ones((3, 40)), np.ones((3, 40)), compensated)
        cholesky_solve_kernel(np.eye(2), np.ones(2), compensated, np.empty(2))
        block_cholesky_solves(np.eye(2).ravel(), ptr, offsets, np.ones(2), np.ones(1),
                              compensated, np.empty(2))


def _large() -> None:
    """Kernels only large problems reach: the sparse pair Gram of the CG path's
    per-equation blocks, its coupled preconditioner (:mod:`reprogls.gls.precondition`),
    ``A^T B`` of the Sigma-step from residuals, the subspace iteration's and the block
    Krylov method's steps called one by one there (large K or ``K > 32 k``,
    :func:`_subspace_steps`) and the tiled, pipelined
    Jacobi sweeps of the whole space from ``eigen.LARGE_JACOBI_MIN`` (K >= 128)."""
    from ..gls import _subspace, precondition
    from . import linalg
    from .cpu import gram, multi

    X = np.arange(12.0).reshape(4, 3)
    offsets = np.array([0, 1, 3])
    factors = [np.ones((1, 1)), np.eye(2)]
    for compensated in (True, False):
        mode = MODES[0] if compensated else MODES[1]
        gram.column_pair_grams(X, gram.block_pair_plan(offsets), compensated)
        multi.rows_transposed_times(X, np.ones((4, 2)), compensated)
        precondition.design_coupling(X, offsets, factors, mode)
        packed, ptr = precondition.pack_block_factors(factors)
        factor = linalg.woodbury_factor(np.ones((2, 1)), np.ones(2), mode)
        precondition.CoupledPreconditioner(packed, ptr, offsets, factor, np.ones(2),
                                           0.5)(np.ones(3))
    _subspace_steps()
    for pipelined in (False, True):
        _subspace.tiled_rotations(np.array([[2.0, 1.0], [1.0, 3.0]]), np.eye(2), 30, 0.0,
                                  pipelined)


def _gemv_t() -> None:
    """``gemv_t``: ``A^T B`` with one column (the kernel of the large-K Sigma-step)."""
    from . import linalg

    for mode in MODES:
        linalg.gemv_t(np.arange(12.0).reshape(4, 3), np.ones(4), mode, "cpu")


def _fused() -> None:
    from . import linalg

    X, offsets = np.arange(12.0).reshape(4, 3), np.array([0, 1, 3])
    for mode in MODES:
        factor = linalg.woodbury_factor(np.ones((2, 1)), np.ones(2), mode)
        linalg.sur_normal_matvec(X, offsets, factor, np.ones(3), "cpu")


def _elementary() -> None:
    """The portable ``log``/``exp`` (the Sigma-step works in ``log d``)."""
    from . import elementary

    v = np.array([1.0, 2.0, 3.0])
    elementary.log(v, "cpu")
    elementary.exp(v, "cpu")


def _subspace() -> None:
    """The compiled profile of the Sigma-step (:func:`reprogls.gls._subspace.profile_moment`,
    its subspace iteration and whole-space solve inlined) and the Jacobi rotations of the
    k x k eigenproblem, which the fits with ``K^2 k`` up to ``eigen.COMPILED_MAX_WORK``
    use (S and M). The steps on their own (Python's loop for larger K) are
    :func:`_large`'s."""
    from ..gls import _subspace

    Z = np.arange(6.0).reshape(3, 2)
    M = np.array([[2.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 4.0]])
    for compensated in (True, False):
        for full in (False, True):  # subspace iteration, whole space
            _subspace.profile_moment(M, np.diag(M).copy(), 10.0, np.ones(3), Z, 2, full,
                                     compensated, 2, 1e-13, 30, 2.0 ** -53, 1.8)
    _subspace.jacobi_rotations(np.array([[2.0, 1.0], [1.0, 3.0]]), np.eye(2), 30, 0.0)


def _subspace_steps() -> None:
    """The steps that the loops of ``eigen.top_eigenpairs`` and
    ``eigen.krylov_eigenpairs`` call from Python (large K): orthonormalisation, the
    Krylov basis's extension, the Rayleigh-Ritz matrices and the Krylov method's
    tridiagonal eigen-solve. (No fit calls the compiled loop
    ``_subspace.subspace_iteration`` on its own: it runs inside :func:`_subspace`'s
    ``profile_moment``.)"""
    from ..gls import _subspace, _tridiagonal

    Z = np.arange(6.0).reshape(3, 2)
    for compensated in (True, False):
        Q = _subspace.orthonormalize(Z, compensated)
        _subspace.rayleigh_matrix(Q, Z, compensated)
        BT = np.zeros((2, 3))
        _subspace.extend_basis(BT, 0, Z, compensated)
        _subspace.rayleigh_extend(BT, BT, np.zeros((2, 2)), 0, 2, compensated)
        _tridiagonal.top_eigenpairs_tridiagonal(np.eye(3), 2, compensated)


def _prox() -> None:
    from . import prox

    v = np.array([1.0, 2.0, 3.0])
    prox.soft_threshold(v, 1.0, "cpu")
    prox.soft_threshold(v, v, "cpu")
    prox.soft_threshold_box(v, 1.0, -1.0, 1.0, "cpu")
    prox.prox_elastic_net(v, 1.0, 0.5, 1.0, device="cpu")
    prox.fista_step(v, v, 0.1, v, 0.5, 1.0, device="cpu")


#: name -> (compile function, single-core compile seconds beyond what the tasks before it
#: in this table compiled; used only to balance the workers). Ninth session (2026-12-03,
#: 2-core Zen 3 box, each task alone in a fresh process with an empty cache, imports
#: included): woodbury 16.1 s, large 15.3, sur_matvec 4.5, dense 7.7, fused 23.5 (~14
#: after woodbury: it inlines the same Woodbury block), blocks 33.1 (the block kernels'
#: layouts), sur_rmatvec 19.9 alone but 6.1 after woodbury (its ``X^T vec(R Sigma^-1)``
#: calls ``woodbury_solve``), gemv_t 3.5, reductions 11.8, elementary 1.4, prox 2.1.
#: With these weights the demo's FIT_TASKS split into woodbury + sur_rmatvec +
#: elementary (23.6 s measured together) and reductions + dense + sur_matvec (24 s).
#: Tenth session (2-core Zen 4, the Woodbury block of the fused operators and the
#: block kernels behind one compiled entry point, :mod:`.cpu.woodbury_rows`): woodbury
#: 18.1, sur_rmatvec 7.3 after it, fused 10.8 after both (with the entry point), blocks
#: 13.7 after those (20.3 after woodbury alone). Twenty-second session (Emerald Rapids
#: VM): fused 10.2 -> 14.5 s after woodbury, once it interleaved the lane steps with the
#: eight-row dots (:mod:`.cpu.fused_rows`: the dots' trees in four variants, span x mode).
#: Twenty-fifth session (same VM): the Cholesky solves moved from woodbury to dense, and
#: gemv_t joined FIT_TASKS; the weights were left as they were, which split the demo's
#: tasks into woodbury + sur_rmatvec + gemv_t (18.6 s) and reductions + dense +
#: sur_matvec + elementary (17.1 s); woodbury measured 15.8 s alone before the move,
#: sur_rmatvec 5.5 after it and 18 without it, reductions 10.5, dense 4.7 after it.
#: Thirty-third session (2-core Zen 3 VM; ``woodbury_rows.woodbury_block`` and
#: ``_subspace.subspace_iteration`` inlined into their one compiled caller each, no
#: array slice assignments in ``streamed``, the subspace steps called from Python moved
#: to ``large``): FIT_TASKS in one process, in their order, three runs: woodbury
#: 15.9-17.0, dense 8.2-8.7, sur_matvec 2.0-2.4, sur_rmatvec 2.7-3.0 (6.7-7.7 before),
#: gemv_t 1.1, reductions 10.8-12.1 (12.1-12.8), elementary 0.3; 41-45 s in all against
#: 48-53 s for the previous commit running beside it on the other core. Each task alone
#: (a fresh process each, both cores busy): woodbury 21.9, blocks 38.5, fused 26.2,
#: reductions 14.4, dense 10.6, large 18.9, sur_matvec 4.4, prox 2.0, sur_rmatvec 18.3
#: (2.9 after woodbury), gemv_t 3.4, elementary 1.4; blocks 19.0 after fused. The
#: weights below are rounded from these, a partnered task's (:data:`PARTNERS`) after its
#: partner. Forty-fifth session: ``large`` also compiles the tiled, pipelined Jacobi
#: sweeps (1.5 s on the Zen 4 box; ``_subspace.tiled_rotations``). Forty-sixth: and the
#: block Krylov steps (1.2 s; ``_subspace.extend_basis``, ``rayleigh_extend``). Fiftieth:
#: and the Krylov method's Householder-QL solver (5.4 s in a fresh process, imports
#: excluded; ``_tridiagonal.top_eigenpairs_tridiagonal``).
TASKS: dict[str, tuple[Callable[[], None], float]] = {
    "woodbury": (_woodbury, 19.0),
    "large": (_large, 24.5),
    "sur_matvec": (_sur_matvec, 3.5),
    "dense": (_dense, 9.5),
    "fused": (_fused, 25.0),
    "blocks": (_block_layouts, 19.0),
    "sur_rmatvec": (_sur_rmatvec, 3.0),
    "gemv_t": (_gemv_t, 2.0),
    "reductions": (_reductions, 13.0),
    "elementary": (_elementary, 1.0),
    "prox": (_prox, 2.0),
}
#: task -> the task it shares a worker with when both are compiled: most of what it
#: compiles, its partner has compiled already (``sur_rmatvec``'s ``X^T vec(R Sigma^-1)``
#: runs ``woodbury_solve``: 18.3 s alone, 2.9 after ``woodbury``; ``blocks`` reuses the
#: fused operator's block kernels and Woodbury entry point: 38.5 alone, 19.0 after
#: ``fused``).
PARTNERS: dict[str, str] = {"sur_rmatvec": "woodbury", "blocks": "fused"}
#: What :func:`reprogls.gls.fit` on the gram path needs (the demo's fit).
FIT_TASKS = ("woodbury", "dense", "sur_matvec", "sur_rmatvec", "gemv_t", "reductions",
             "elementary")


def _checked(names: Iterable[str]) -> list[str]:
    """The task names, de-duplicated in order; a ValueError names an unknown one."""
    names = list(dict.fromkeys(names))
    for name in names:
        if name not in TASKS:
            raise ValueError(f"unknown warm-up task {name!r}; choose from {sorted(TASKS)}")
    return names


def compile_tasks(names: Iterable[str]) -> None:
    """Run the named tasks in this process (compiles, or loads from Numba's cache)."""
    for name in _checked(names):
        TASKS[name][0]()


class CacheMissError(Exception):
    """Raised inside :func:`no_compiling` where Numba was about to compile a function."""


@contextmanager
def no_compiling() -> Iterator[None]:
    """Within the block, any compilation by Numba raises :class:`CacheMissError` at its
    start: a kernel in Numba's on-disk cache still loads, one that is not stops the
    block before any compile work. Numba announces every compile of a ``jit``
    function (a ``numba:compile`` event, after its cache lookup failed) and every
    compiler pass (``numba:run_pass``, which also covers ``cfunc`` entry points); the
    listener raises at the start of either. The function that was stopped compiles
    normally later. Numba's listeners are process-wide: a compile that another thread
    starts during the block is stopped too (the error is raised in that thread)."""
    from numba.core import event

    class _Stop(event.Listener):
        def on_start(self, ev):
            raise CacheMissError(f"Numba was about to compile ({ev.kind})")

        def on_end(self, ev):
            pass

    stop = _Stop()
    with event.install_listener("numba:compile", stop), \
            event.install_listener("numba:run_pass", stop):
        yield


def load_cached(names: Iterable[str]) -> bool:
    """Run the named tasks here if every kernel they use is in Numba's cache (then they
    only load it): True; False, having compiled nothing, at the first kernel that is
    not (the kernels loaded before it stay loaded)."""
    names = _checked(names)
    try:
        with no_compiling():
            compile_tasks(names)
    except CacheMissError:
        return False
    return True


def _groups(names: list[str]) -> list[list[str]]:
    """The tasks in groups that go to one worker together: each task of
    :data:`PARTNERS` joins its partner's group when both are named (in the order named)."""
    groups: dict[str, list[str]] = {}
    for name in names:
        partner = PARTNERS.get(name)
        groups.setdefault(partner if partner in names else name, []).append(name)
    return list(groups.values())


def _cost(names: list[str]) -> float:
    """The weights (:data:`TASKS`) of the named tasks, summed."""
    return sum(TASKS[n][1] for n in names)


def _shares(names: list[str], jobs: int) -> list[list[str]]:
    """Split the tasks over ``jobs`` workers: the groups of :func:`_groups`, costliest
    first, each onto the least loaded worker (the longest-processing-time rule)."""
    shares: list[list[str]] = [[] for _ in range(jobs)]
    loads = [0.0] * jobs
    for group in sorted(_groups(names), key=lambda g: -_cost(g)):
        w = loads.index(min(loads))
        shares[w].extend(group)
        loads[w] += _cost(group)
    return [s for s in shares if s]


def worker_command(share: list[str]) -> list[str]:
    """The command line of a worker compiling ``share``: this interpreter, importing
    *this* ``reprogls`` -- its parent directory first on ``sys.path`` -- whatever the
    working directory holds. (``python -m reprogls.kernels.warm`` puts the working
    directory first: run from a source checkout after ``pip install .``, the workers
    imported the checkout, wrote their compiled kernels into its cache, and the caller,
    which imports the installed copy, compiled everything again -- the README's
    quick-start demo took 80.7 s instead of 29.0 on a 2-core Zen 4.)"""
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__))))
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from reprogls.kernels.warm import compile_tasks; compile_tasks(sys.argv[2:])")
    return [sys.executable, "-c", code, package_parent, *share]


#: Seconds between checks of whether a worker of :func:`warm_parallel` has finished.
_POLL_SECONDS = 0.02


def warm_parallel(names: Iterable[str] = tuple(TASKS), jobs: int | None = None,
                  meanwhile: Callable[[], object] | None = None) -> float:
    """Compile the named tasks in ``jobs`` processes (default: one per CPU, at most one
    per task), then load them here. Returns the wall-clock seconds.

    ``meanwhile``, if given, is the caller's work that needs no compiled kernel (making
    data, say): it runs here once the first worker has finished, when a core is free
    while the others still compile (with one job: before compiling), and the seconds
    returned include it. (The workers' shares are rarely equal: the demo's two took
    21.5 and 16.5 s on the 2-core test VM, twenty-fifth session.)

    A worker that fails only costs time: this process then compiles what is missing
    itself (and raises any real error there). No worker starts when every kernel is
    already in Numba's cache (:func:`load_cached`; ``meanwhile`` then runs after the
    loading), nor where the kernels could not take the package's locked cache
    (:func:`.cpu.jit.cache_is_locked` False: a Numba whose cache internals changed),
    since workers compiling one shared helper at once can break Numba's own.
    """
    from .cpu.jit import cache_is_locked

    names = _checked(names)
    t0 = time.perf_counter()
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(names)))
    if jobs > 1 and load_cached(names):  # all in the cache, loaded here: no worker needed
        if meanwhile is not None:
            meanwhile()
    elif jobs == 1 or not cache_is_locked():
        # one process; or Numba's own cache (see cache_is_locked, decided as load_cached
        # imported the kernel modules), whose entries workers can break
        if meanwhile is not None:
            meanwhile()
        compile_tasks(names)
    else:
        workers = [subprocess.Popen(worker_command(share), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
                   for share in _shares(names, jobs)]
        try:
            if meanwhile is not None:
                while all(worker.poll() is None for worker in workers):
                    time.sleep(_POLL_SECONDS)
                meanwhile()
        finally:  # (an error in ``meanwhile`` is raised once the workers are done)
            for worker in workers:
                worker.wait()
        compile_tasks(names)
    return time.perf_counter() - t0


if __name__ == "__main__":  # a worker of warm_parallel
    compile_tasks(sys.argv[1:])
