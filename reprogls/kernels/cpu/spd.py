"""Dense symmetric positive definite matrices on the audited path, in parallel:
the fixed-order Cholesky factor and the inverse ``C^-1 = L^-T L^-1``.

Every entry is one CRO-1 dot (:func:`._cro.dot_segment`) of fixed segments, so the bits
do not depend on the thread count; threads only split *which* entries they compute.

* :func:`cholesky` has exactly the bits of :func:`.linalg.cholesky_kernel` (the
  row-by-row reference ``reference.cholesky``). Its parallel form works in blocks of
  ``BLOCK`` columns: the rows of the diagonal block first (serially), then every row
  below computes its entries of that block, two rows of a task side by side
  (:func:`.linalg.cholesky_pair`); each entry sees the same finished operands as in the
  row-by-row order. (The serial kernel goes column by column, also in pairs of rows.)
* :func:`inverse_factor` returns ``Z = (L^-1)^T`` (upper triangular): row ``c`` of Z is
  column ``c`` of ``L^-1``, the forward solve of ``L z = e_c`` restricted to ``t >= c``::

      Z[c, c] = 1 / L[c, c]
      Z[c, i] = -(CRO-1 over t = c..i-1 of fl(L[i, t] * Z[c, t])) / L[i, i]   (i > c)

* :func:`gram_of_rows_from_diagonal` returns the lower triangle of ``Z Z^T`` restricted
  to the common support: ``out[a, b] = CRO-1 over t = a..n-1 of fl(Z[a, t] * Z[b, t])``
  for ``a >= b`` -- with ``Z = (L^-1)^T`` this is ``(L^-T L^-1)[a, b] = C^-1[a, b]``.

Cost: ``n^3 / 6`` multiply-adds each; rows are dealt to threads interleaved from both
ends (``0, n-1, 1, n-2, ...``) so that long and short rows balance. The oracle is
``reference.cholesky`` and ``reference.cholesky_inverse``.
"""

from __future__ import annotations

import numpy as np

from ._cro import dot_segment
from .jit import njit
from .linalg import cholesky_entry, cholesky_kernel, cholesky_pair
from .tasks import run_tasks, threads
from .views import unmanaged

__all__ = ["BLOCK", "CHOLESKY_PARALLEL_MIN", "PARALLEL_MIN", "cholesky",
           "gram_of_rows_from_diagonal", "inverse_factor"]

#: Columns per block of the parallel :func:`cholesky` (one parallel region per block).
BLOCK = 32
#: From this order on (``parallel=None``) the functions below use the threads (:mod:`.tasks`);
#: smaller matrices run the same entries serially (same bits). Measured on the 2-core
#: Zen 3 box, compensated, serial / parallel, ms: Cholesky 0.47 / 0.47 at order 96,
#: 0.86 / 0.80 at 128, 2.08 / 1.63 at 192, 3.7 / 2.4 at 250; inverse 0.73 / 0.50 at 96,
#: 1.37 / 0.88 at 128 (it was 384 before 2026-12-02, sixth session, when the parallel
#: drivers still used ``prange``). The S-size fit (P = 250) went from 65-72 to 59-63 ms.
PARALLEL_MIN = 128
#: The same for :func:`cholesky` alone. Sixteenth session, 2-core Zen 4, two threads,
#: serial and parallel alternating in one process (25 times each, medians, ms, plain /
#: compensated): order 250 1.78 / 1.50 serial against 1.90 / 1.70 parallel, 320 1.70 /
#: 2.55 against 2.40 / 3.10, 384 3.02 / 4.26 against 3.84 / 3.87, 500 8.89 / 8.09
#: against 6.53 / 8.41. Since ``dot_segment`` lost its reference counts an entry costs
#: about half as much, and a column block's dispatch to the threads (one per 32
#: columns) no longer pays for itself below ~384; the inverse still gains from 192 on.
#: Thirty-fourth session (entries two rows at a time, :func:`.linalg.cholesky_pair`),
#: 2-core Zen 3, two threads, best of 15, two runs, serial / parallel, ms: plain 0.59-0.64
#: / 0.84-0.88 at order 250, 0.92-0.95 / 1.10-1.16 at 288, 2.05-2.26 / 1.97-2.06 at 384;
#: compensated 1.35-1.85 / 1.18-1.52 at 224, 1.76-2.30 / 1.57-1.97 at 250, 0.89-1.24 /
#: 0.89-1.09 at 192. Hence one threshold per mode: ``CHOLESKY_PARALLEL_MIN[compensated]``.
CHOLESKY_PARALLEL_MIN = (384, 224)


@njit(cache=True)
def _balanced(u, n):
    """The ``u``-th index of ``0, n-1, 1, n-2, ...`` (long and short work alternate)."""
    return u // 2 if u % 2 == 0 else n - 1 - u // 2


def _use_threads(n: int, parallel: bool | None, minimum: int = PARALLEL_MIN) -> bool:
    return n >= minimum if parallel is None else parallel


def cholesky(C: np.ndarray, compensated: bool, L: np.ndarray,
             parallel: bool | None = None) -> int:
    """Fixed-order Cholesky of the lower triangle of the C-contiguous ``C`` into ``L``;
    returns the first failing pivot index (not positive and finite) or -1.

    ``parallel``: ``None`` uses the threads from order
    ``CHOLESKY_PARALLEL_MIN[compensated]`` on (column blocks, module docstring), else
    :func:`.linalg.cholesky_kernel`; the bits are the same either way.
    """
    if not _use_threads(C.shape[0], parallel, CHOLESKY_PARALLEL_MIN[int(compensated)]):
        return cholesky_kernel(C, compensated, L)
    return _cholesky_blocks(C, compensated, L, 4 * threads())


@njit(cache=True)
def _diagonal_block(C, L, j0, j1, compensated):
    """Rows ``j0 .. j1 - 1`` of L within the column block ``j0 .. j1 - 1``, in row order;
    the first failing pivot row, or -1."""
    Cv, Lv = unmanaged(C), unmanaged(L)  # row slices without atomic reference counts
    for i in range(j0, j1):
        for j in range(j0, i + 1):
            if not cholesky_entry(Cv, Lv, i, j, compensated):
                return i
    return -1


@njit(nogil=True, cache=True)
def _below_block(t0, t1, C, L, j0, j1, n_tasks, compensated):
    """Tasks ``t0 .. t1 - 1`` of ``n_tasks``: task ``t`` computes the entries in columns
    ``j0 .. j1 - 1`` of the rows ``j1 + t, j1 + t + n_tasks, ...`` (below the diagonal
    block: no pivots, always succeeds), two of its rows at a time
    (:func:`.linalg.cholesky_pair`; each row's entries in column order)."""
    n = C.shape[0]
    Cv, Lv = unmanaged(C), unmanaged(L)  # row slices without atomic reference counts
    for task in range(t0, t1):
        i = j1 + task
        while i + n_tasks < n:
            for j in range(j0, j1):
                cholesky_pair(Cv, Lv, i, i + n_tasks, j, compensated)
            i += 2 * n_tasks
        if i < n:
            for j in range(j0, j1):
                cholesky_entry(Cv, Lv, i, j, compensated)


def _cholesky_blocks(C, compensated, L, tasks_per_block):
    """Column blocks in order: the diagonal block serially, then the rows below it over
    the threads. Returns the first failing pivot row, or -1."""
    n = C.shape[0]
    L[:, :] = 0.0
    for j0 in range(0, n, BLOCK):
        j1 = min(n, j0 + BLOCK)
        failed = _diagonal_block(C, L, j0, j1, compensated)
        if failed >= 0:
            return int(failed)
        n_tasks = min(n - j1, tasks_per_block)
        run_tasks(_below_block, n_tasks, C, L, j0, j1, n_tasks, compensated,
                  work=8 * (n - j1) * (j1 - j0) * j1)  # entries times their dots' terms
    return -1


#: Rows of Z (or of ``Z Z^T``) that :func:`_inverse_factor_rows` / :func:`_gram_rows`
#: compute together, so that each row of L (of Z) they read is read once for all of
#: them while it is in L1 (at order 2000 the rows streamed from memory: ~10 GB per stage).
ROW_BLOCK = 8


@njit(cache=True)
def _inverse_factor_rows(L, compensated, Z, u0, u1):
    """Row blocks ``v = _balanced(u)``, ``u0 <= u < u1`` (rows ``8 v .. 8 v + 7``), of
    ``Z = (L^-1)^T``: for ``i`` in order, entry ``Z[c, i]`` of every row ``c < i`` of the
    block (each row's entries still in increasing ``i``, as its forward solve needs)."""
    n = L.shape[0]
    n_blocks = (n + ROW_BLOCK - 1) // ROW_BLOCK
    Lv, Zv = unmanaged(L), unmanaged(Z)
    for u in range(u0, u1):
        c0 = _balanced(u, n_blocks) * ROW_BLOCK
        c1 = min(n, c0 + ROW_BLOCK)
        for c in range(c0, c1):
            Zv[c, :c] = 0.0
            Zv[c, c] = 1.0 / Lv[c, c]
        for i in range(c0 + 1, n):
            for c in range(c0, min(c1, i)):
                acc = dot_segment(Lv[i, c:i], Zv[c, c:i], compensated)
                Zv[c, i] = -acc / Lv[i, i]


@njit(cache=True)
def _gram_rows(Z, compensated, out, u0, u1):
    """Row blocks ``v = _balanced(u)``, ``u0 <= u < u1`` (rows ``8 v .. 8 v + 7``), of the
    lower triangle of ``Z Z^T``, column ``b`` by column."""
    n = Z.shape[0]
    n_blocks = (n + ROW_BLOCK - 1) // ROW_BLOCK
    Zv, outv = unmanaged(Z), unmanaged(out)
    for u in range(u0, u1):
        a0 = _balanced(u, n_blocks) * ROW_BLOCK
        a1 = min(n, a0 + ROW_BLOCK)
        for b in range(a1):
            for a in range(max(a0, b), a1):
                outv[a, b] = dot_segment(Zv[a, a:], Zv[b, a:], compensated)


@njit(nogil=True, cache=True)
def _parallel_rows(t0, t1, M, compensated, out, stage, n_tasks):
    """Runs ``t0 .. t1 - 1`` of the split of the row blocks ``u = 0 .. ceil(n / 8) - 1``
    into ``n_tasks`` runs of the stage's row function."""
    n_blocks = (M.shape[0] + ROW_BLOCK - 1) // ROW_BLOCK
    for task in range(t0, t1):
        u0 = task * n_blocks // n_tasks
        u1 = (task + 1) * n_blocks // n_tasks
        if stage == 0:
            _inverse_factor_rows(M, compensated, out, u0, u1)
        else:
            _gram_rows(M, compensated, out, u0, u1)


def _rows(M: np.ndarray, compensated: bool, out: np.ndarray, stage: int,
          parallel: bool | None) -> None:
    n = M.shape[0]
    n_blocks = -(-n // ROW_BLOCK)
    if _use_threads(n, parallel):
        n_tasks = min(n_blocks, 8 * threads())
        run_tasks(_parallel_rows, n_tasks, M, compensated, out, stage, n_tasks,
                  work=8 * n ** 3 // 6)  # n^2 / 2 entries, dots of n / 3 terms on average
    else:
        (_inverse_factor_rows if stage == 0 else _gram_rows)(M, compensated, out, 0,
                                                             n_blocks)


def inverse_factor(L: np.ndarray, compensated: bool, Z: np.ndarray,
                   parallel: bool | None = None) -> None:
    """``Z = (L^-1)^T`` for a lower-triangular C-contiguous ``L`` with a positive
    diagonal (module docstring); ``Z`` is overwritten, zero below the diagonal.
    ``parallel`` as in :func:`cholesky` (same bits either way)."""
    _rows(L, compensated, Z, 0, parallel)


def gram_of_rows_from_diagonal(Z: np.ndarray, compensated: bool, out: np.ndarray,
                               parallel: bool | None = None) -> None:
    """Lower triangle ``out[a, b] = CRO-1 dot(Z[a, a:], Z[b, a:])``, ``a >= b`` (module
    docstring); the strict upper triangle of ``out`` is left as it was. ``parallel`` as
    in :func:`cholesky` (same bits either way)."""
    _rows(Z, compensated, out, 1, parallel)
