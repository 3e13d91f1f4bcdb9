"""The small dense steps of the Sigma-step's subspace iteration, compiled with Numba.

:func:`.eigen.top_eigenpairs` works on a K x k basis (k = the rank, a handful of
columns). Called from Python, every CRO-1 dot, norm and the k x k Jacobi solve of an
iteration was a separate call (a parallel kernel launch each, for vectors of K values):
at K = 50 the Sigma-step spent most of its time in call overhead. Here each step is one
call, with the same arithmetic in the same order, so the same bits (since the sixth
session of 2026-12-02 also the k x k Jacobi rotations, :func:`jacobi_rotations`: in
Python they took ~95 us per call, 79 calls and 12% of an S-size fit):

* dots: :func:`reprogls.kernels.cpu._cro.dot_segment`, the CRO-1 dot of the ``dot``
  kernel chunk by chunk (the chunk partials do not depend on which thread computes them);
* norms: :func:`reprogls.kernels.cpu._cro.nrm2_segment`, the ``nrm2`` kernel's chunk
  partials on one thread;
* elementwise updates rounded as NumPy rounds them (``v - (d * q)``, ``v / norm``).

The oracles are :func:`.eigen.orthonormalize_reference`, :func:`reprogls.kernels.reference
.cro_nrm2` and CRO-1 dots through the public kernels (``tests/test_subspace.py``).
"""

from __future__ import annotations

import numpy as np

from ..kernels.cpu._cro import CHUNK, dot_pair_prefix, dot_segment, nrm2_segment
from ..kernels.cpu.blocked import runtime_int
from ..kernels.cpu.elementwise import log_scalar
from ..kernels.cpu.jit import njit
from ..kernels.cpu.linalg import ROW_BLOCK
from ..kernels.cpu.multi import _rows_times_tasks
from ..kernels.cpu.simd import transpose8x8
from ..kernels.cpu.tasks import in_background, run_tasks

__all__ = ["apply_rotations", "descending_order", "extend_basis", "full_space_eigenpairs",
           "jacobi_rotations", "jacobi_sweep", "orthonormalize", "profile_moment",
           "rayleigh_extend", "rayleigh_matrix", "subspace_iteration", "tiled_rotations"]


@njit(cache=True)
def orthonormalize(Z, compensated):
    """Modified Gram-Schmidt on the columns of ``Z`` (K x k): column ``c`` becomes
    ``v / ||v||`` (left as ``v`` when the norm is 0) with ``v = z_c`` and, for
    ``b < c`` in order, ``v <- v - fl(dot(q_b, v) * q_b)``; CRO-1 dots and norm."""
    K, k = Z.shape
    Q = np.empty((K, k))
    for c in range(k):
        v = Z[:, c].copy()
        for b in range(c):
            q = np.ascontiguousarray(Q[:, b])
            d = dot_segment(q, v, compensated)
            for i in range(K):
                v[i] = v[i] - d * q[i]
        norm = nrm2_segment(v, compensated)
        for i in range(K):
            Q[i, c] = v[i] / norm if norm > 0.0 else v[i]
    return Q


@njit(cache=True)
def _symmetrised(G, n):
    """``(G + G^T) / 2`` on the leading ``n x n`` of ``G``, entry by entry as
    ``(G[a, b] + G[b, a]) * 0.5`` (symmetric bit for bit: IEEE addition commutes)."""
    T = np.empty((n, n))
    for a in range(n):
        for b in range(n):
            T[a, b] = (G[a, b] + G[b, a]) * 0.5
    return T


@njit(cache=True, inline="always")
def _dots_with_rows(G, a, x, Y, b0, b1, compensated):
    """``G[a, b]`` = CRO-1 dot of ``x`` and ``Y[b]`` for ``b0 <= b < b1``: two rows of
    ``Y`` at a time sharing each load of ``x`` (:func:`._cro.dot_pair_prefix`, each
    entry the bits of :func:`._cro.dot_segment`; the terms ``fl(x[m] Y[b, m])``
    commute) where they are one chunk, one at a time where longer."""
    n = x.shape[0]
    b = b0
    while n <= CHUNK and b + 1 < b1:
        G[a, b], G[a, b + 1] = dot_pair_prefix(Y, b, b + 1, x, n, compensated)
        b += 2
    for c in range(b, b1):
        G[a, c] = dot_segment(x, Y[c], compensated)


@njit(cache=True)
def rayleigh_matrix(Q, MQ, compensated):
    """``T = (G + G^T) / 2`` with ``G[a, b]`` the CRO-1 dot of ``Q[:, a]`` and
    ``MQ[:, b]`` (the Rayleigh-Ritz matrix ``Q^T M Q``, symmetrised entry by entry as
    ``(G[a, b] + G[b, a]) * 0.5``)."""
    k = Q.shape[1]
    QT, MQT = np.ascontiguousarray(Q.T), np.ascontiguousarray(MQ.T)  # contiguous columns
    G = np.empty((k, k))
    for a in range(k):
        _dots_with_rows(G, a, QT[a], MQT, 0, k, compensated)
    return _symmetrised(G, k)


@njit(cache=True, inline="always")
def _project_out(BT, j0, j1, v, compensated):
    """For rows ``j = j0 .. j1-1`` of ``BT`` in order: ``v <- v - fl(dot(b_j, v) * b_j)``
    (CRO-1 dots)."""
    K = v.shape[0]
    for j in range(j0, j1):
        d = dot_segment(BT[j], v, compensated)
        for i in range(K):
            v[i] = v[i] - d * BT[j, i]


@njit(cache=True, nogil=True)
def _first_projections_tasks(t0, t1, BT, n, Z, V, compensated):
    """Columns ``t0 .. t1-1`` of :func:`extend_basis`' first pass against the ``n`` rows
    it starts from, into the rows of ``V``: they read no new basis vector, so the
    columns are independent."""
    K = Z.shape[0]
    for c in range(t0, t1):
        v = V[c]
        for i in range(K):
            v[i] = Z[i, c]
        _project_out(BT, 0, n, v, compensated)


@njit(cache=True)
def _finish_basis(BT, n, V, compensated):
    """Column by column, the rest of :func:`extend_basis`: the first pass against the
    new rows ``n .. n+c-1``, the second pass against all ``n + c``, the norm."""
    K = V.shape[1]
    for c in range(V.shape[0]):
        v = V[c]
        _project_out(BT, n, n + c, v, compensated)
        _project_out(BT, 0, n + c, v, compensated)
        norm = nrm2_segment(v, compensated)
        for i in range(K):
            BT[n + c, i] = v[i] / norm if norm > 0.0 else v[i]


def extend_basis(BT, n, Z, compensated):
    """Orthonormalise the columns of ``Z`` (K x b) against the basis vectors in rows
    ``0 .. n-1`` of ``BT`` and against each other, into rows ``n .. n+b-1`` of ``BT``
    (the block Krylov basis of :func:`.eigen.krylov_eigenpairs`, one vector per row).

    Column ``c``: ``v = z_c``; twice ("twice is enough", Kahan-Parlett), for each row
    ``j < n + c`` in order, ``v <- v - fl(dot(b_j, v) * b_j)`` (CRO-1 dots); then
    ``v / ||v||`` (left as ``v`` when the norm is 0), as :func:`orthonormalize`
    normalises. The first pass's projections against the ``n`` old rows, about half the
    work, read no new vector: the columns take them on the threads at once
    (:func:`reprogls.kernels.cpu.tasks.run_tasks`), the rest goes column by column. The
    same operations in the same order per column: the bits do not depend on the thread
    count."""
    K, b = Z.shape
    V = np.empty((b, K))
    run_tasks(_first_projections_tasks, b, BT, n, Z, V, compensated,
              work=16 * K * n * b)
    _finish_basis(BT, n, V, compensated)


@njit(cache=True, nogil=True)
def _rayleigh_rows_tasks(t0, t1, BT, MBT, G, lo, hi, compensated):
    """Rows ``t0 .. t1 - 1`` of :func:`rayleigh_extend`'s ``G``: row ``a``'s entries
    ``G[a, b]`` with ``max(a, b) >= lo`` (all ``hi`` of them from ``a = lo`` on)."""
    for a in range(t0, t1):
        _dots_with_rows(G, a, BT[a], MBT, 0 if a >= lo else lo, hi, compensated)


def rayleigh_extend(BT, MBT, G, lo, hi, compensated):
    """The Rayleigh-Ritz matrix of the basis in rows ``0 .. hi-1`` of ``BT`` with their
    products ``M b_a`` in the rows of ``MBT``, reusing the dots of the first ``lo``:
    ``G[a, b]`` = CRO-1 dot of ``BT[a]`` and ``MBT[b]``, computed where
    ``max(a, b) >= lo``; returns ``T = (G + G^T) / 2`` on the leading ``hi x hi``,
    entry by entry ``(G[a, b] + G[b, a]) * 0.5`` (the bits of :func:`rayleigh_matrix`
    of the same basis). The rows of ``G`` are shared among the threads
    (:func:`reprogls.kernels.cpu.tasks.run_tasks`): every entry is its own dot, so
    the bits do not depend on the thread count."""
    K = BT.shape[1]
    run_tasks(_rayleigh_rows_tasks, hi, BT, MBT, G, lo, hi, compensated,
              work=16 * K * (hi * hi - lo * lo))
    return _symmetrised(G, hi)


#: Side of the tiles of :func:`jacobi_sweep` (the ``simd.transpose8x8`` tile).
_TILE = 8


@njit(cache=True, inline="always")
def _rotate_rows(Ap, Aq, p, q, apq):
    """Rotation ``(p, q)`` of rows ``Ap = A[p]`` and ``Aq = A[q]`` of ``A`` (``A[p, q] =
    apq != 0``); returns ``(c, s)``. (The callers pass the rows: a slice taken in
    compiled code bumps the array's reference count, an atomic instruction.) The
    reference rotates columns ``p, q`` and then rows ``p, q``. Off the 2 x 2 block,
    column ``p``'s new entry ``c A[k, p] - s A[k, q]`` is, by symmetry, row ``p``'s new
    ``c A[p, k] - s A[q, k]``, the same bits; so only the rows are rotated here
    (contiguous, vectorised) and the callers copy them into the columns, and the block's
    four entries are computed as the reference computes them, column step then row step."""
    n = Ap.shape[0]
    app, aqq = Ap[p], Aq[q]
    theta = (aqq - app) / (2.0 * apq)
    t = (1.0 if theta >= 0.0 else -1.0) / (abs(theta) + np.sqrt(theta * theta + 1.0))
    c = 1.0 / np.sqrt(t * t + 1.0)
    s = t * c
    # the block as the reference computes it: columns p, q, then rows p, q
    col_pp, col_pq = c * app - s * apq, s * app + c * apq
    col_qp, col_qq = c * apq - s * aqq, s * apq + c * aqq
    new_pp, new_qq = c * col_pp - s * col_qp, s * col_pq + c * col_qq
    for k in range(n):  # rows p, q
        apk, aqk = Ap[k], Aq[k]
        Ap[k] = c * apk - s * aqk
        Aq[k] = s * apk + c * aqk
    Ap[p], Aq[q] = new_pp, new_qq
    Ap[q], Aq[p] = 0.0, 0.0
    return c, s


@njit(cache=True, inline="always")
def _rotate_vectors(Vp, Vq, c, s):
    """Rows ``Vp = VT[p]``, ``Vq = VT[q]`` become ``c v_p - s v_q`` and ``s v_p + c v_q``
    (the reference's columns ``p, q`` of ``V``)."""
    for k in range(Vp.shape[0]):
        vkp, vkq = Vp[k], Vq[k]
        Vp[k] = c * vkp - s * vkq
        Vq[k] = s * vkp + c * vkq


@njit(cache=True, inline="always")
def _negligible(apq, app, aqq, negligible):
    """The reference's skip rule: ``A[p, q] == 0`` or ``|A[p, q]| <= negligible *
    sqrt|A[p, p]| * sqrt|A[q, q]|`` (``apq, app, aqq``)."""
    return apq == 0.0 or abs(apq) <= negligible * (np.sqrt(abs(app)) * np.sqrt(abs(aqq)))


@njit(cache=True)
def jacobi_rotations(A, VT, sweeps, negligible):
    """Cyclic Jacobi rotations on the symmetric ``A`` (n x n, C-contiguous, overwritten;
    ends diagonal up to the stopping rule), accumulated into the rows of ``VT`` (start:
    the identity; the eigenvectors end as its rows): the loop of
    :func:`.eigen.jacobi_eigh_reference` (sweeps over ``p < q`` row by row, a rotation
    skipped when ``A[p, q] == 0`` or ``|A[p, q]| <= negligible * sqrt|A[p, p]| *
    sqrt|A[q, q]|``, stop after a sweep without rotations or after ``sweeps``), with
    only ``+ - * /``, ``sqrt`` and ``abs``: the same bits as the Python loop, for an
    ``A`` that is exactly symmetric (which every caller's is, and the rotations keep).

    ``negligible = 0`` rotates until the off-diagonal entries are exactly zero (the
    subspace iteration's small problems); ``2^-53`` stops at the classical threshold,
    below which a rotation would change no diagonal entry by more than a fraction of an
    ulp (the eigenvalues keep their high relative accuracy), and skips the rotations
    that only drive entries from ~1e-16 of the diagonal towards underflow (the
    whole-space solve: fits at K = 50 and k = 6, 25, 37 took 0.07, 0.51-0.52 and
    1.16 s with it, 0.09, 0.76-0.77 and 1.82 s without).

    Rows only (:func:`_rotate_rows`), each rotated row copied into its column at once.
    Column ``p`` is copied once, after the last ``q``: in between, the rotations read
    its entries only in their blocks (``A[q, p]`` as row ``q`` is rotated), whose
    results are overwritten. ``VT`` holds the reference's ``V`` transposed, for the
    same reason. (One sweep at n = 400 / 800 took 86 / 900 ms rotating the strided
    columns, 35 / 273 ms so; forty-fourth session.) Large matrices take
    :func:`jacobi_sweep`, which defers most of the copies (the same bits)."""
    n = A.shape[0]
    for _ in range(sweeps):
        rotated = False
        for p in range(n):
            Ap, Vp = A[p], VT[p]
            for q in range(p + 1, n):
                apq = Ap[q]
                if _negligible(apq, Ap[p], A[q, q], negligible):
                    continue
                rotated = True
                Aq = A[q]
                c, s = _rotate_rows(Ap, Aq, p, q, apq)
                for k in range(n):  # column q: the row's entries, by symmetry
                    A[k, q] = Aq[k]
                _rotate_vectors(Vp, VT[q], c, s)
            # column p once per p: until here its entries were read only in the blocks
            # of the rotations (A[q, p] in row q's rotation), which are overwritten
            for k in range(n):
                A[k, p] = Ap[k]
        if not rotated:
            break


@njit(cache=True, nogil=True)
def jacobi_sweep(A, negligible, rotated_column, log_p, log_q, log_c, log_s):
    """One sweep of :func:`jacobi_rotations` over ``A`` with the copies into the columns
    deferred and tiled; returns how many rotations it made, rotation ``r`` written to
    ``log_p[r], log_q[r], log_c[r], log_s[r]`` (arrays of at least ``n (n - 1) / 2``)
    for :func:`apply_rotations` to apply to ``VT`` -- the same operations in the same
    order as :func:`jacobi_rotations` makes them as it goes. ``rotated_column``: n
    booleans, all false (and left so). The same bits (A and V;
    ``tests/test_subspace.py``).

    Copying each rotated row into its whole column costs n strided stores, ~2 cycles
    each, most of a sweep at large n. Here a copy is made only before its entries are
    read, and in 8 x 8 transposes (:func:`_rows_into_columns`,
    :func:`_upper_from_lower`) where it can wait: within the ``p`` loop a rotation
    ``(p, k)`` reads row ``k`` whole, so it needs column ``q`` below ``q`` for every
    ``q < k`` rotated before it -- inside ``q``'s 8-aligned block by a strided copy
    right away, below the block by one tiled copy of the block's rows when the loop
    leaves the block (``q`` in the first, partial block and in a partial last block
    copies the whole column below it). Rows above ``q`` are not read again in the
    ``p`` loop, so the lower triangle is exact throughout and the upper one is copied
    from it in tiles: after the ``p`` loop for rows below ``p`` (the column tiles that
    hold a rotated column), and after the sweep for the rest. Sweeps from the identity
    to the stopping rule on the scaled moment matrix of simulated three-factor data
    (2-core Zen 4, forty-fifth session), :func:`jacobi_rotations` / these: n = 25
    151 / 194 us, n = 50 0.88 / 0.98 ms, n = 64 1.80 / 1.58 ms, n = 100 3.3-6.0 /
    3.3-6.0 ms, n = 200 30 / 26 ms, n = 400 288-290 / 163-166 ms, n = 800 2.46-2.47 /
    1.34-1.37 s (``eigen.LARGE_JACOBI_MIN`` picks them)."""
    n = A.shape[0]
    count = 0
    for p in range(n):
        Ap = A[p]
        rotated_p = False
        first_whole = (p // _TILE + 1) * _TILE  # q from here on lie in whole blocks
        pending = False  # a whole block rotated; the rows below it lack its columns
        for q in range(p + 1, n):
            if pending and q % _TILE == 0:
                _rows_into_columns(A, q - _TILE)
                pending = False
            apq = Ap[q]
            if _negligible(apq, Ap[p], A[q, q], negligible):
                continue
            rotated_p = True
            rotated_column[q] = True
            Aq = A[q]
            c, s = _rotate_rows(Ap, Aq, p, q, apq)
            # column q below q: within its block now, below the block when it ends
            block_end = (q // _TILE + 1) * _TILE
            end = n
            if q >= first_whole and block_end <= n:
                end = block_end
                pending = True
            for k in range(q + 1, end):
                A[k, q] = Aq[k]
            log_p[count], log_q[count], log_c[count], log_s[count] = p, q, c, s
            count += 1
        if rotated_p:  # (a pending last block has no rows below it)
            for k in range(p + 1, n):  # column p below p
                A[k, p] = Ap[k]
            _upper_from_lower(A, p + 1, rotated_column, False)
            for k in range(p + 1, n):
                rotated_column[k] = False
    if count > 0:
        _upper_from_lower(A, 0, rotated_column, True)  # the rows above each p
    return count


@njit(cache=True, nogil=True)
def apply_rotations(VT, log_p, log_q, log_c, log_s, count):
    """The first ``count`` rotations that :func:`jacobi_sweep` recorded, on the rows of
    ``VT``, in order (:func:`_rotate_vectors`)."""
    for r in range(count):
        _rotate_vectors(VT[log_p[r]], VT[log_q[r]], log_c[r], log_s[r])


def tiled_rotations(A: np.ndarray, VT: np.ndarray, sweeps: int, negligible: float,
                    pipelined: bool) -> None:
    """:func:`jacobi_rotations` by sweeps of :func:`jacobi_sweep`, each sweep's recorded
    rotations then applied to ``VT`` (:func:`apply_rotations`): the same bits.

    ``pipelined``: on two threads -- the calling thread sweeps ``A``, a pool thread
    (:func:`reprogls.kernels.cpu.tasks.in_background`) applies each sweep's rotations to
    ``VT`` while the next sweep of ``A`` runs, since ``A``'s rotations never read
    ``VT``. Every operation and its order are the serial loop's; two logs of ``n (n - 1)
    / 2`` rotations alternate (24 bytes each: 3.8 MB at n = 400), and a sweep's log is
    written again only after its rotations were applied. Forty-fifth session, 2-core Zen
    4, from the identity to the stopping rule (``eigen.full_space_eigenpairs``, asv
    ``bench_fit.WholeSpaceEigen``, alternating processes), serial / pipelined: n = 200
    23-25 / 17-23 ms, n = 400 168-181 / 108-119 ms, n = 800 1.39-1.51 / 0.86-0.95 s
    (``A`` alone: 18 / 113 / 788 ms)."""
    n = A.shape[0]
    rotated_column = np.zeros(n, dtype=np.bool_)
    size = n * (n - 1) // 2
    logs = [(np.empty(size, dtype=np.int32), np.empty(size, dtype=np.int32),
             np.empty(size), np.empty(size)) for _ in range(2 if pipelined else 1)]
    applying = None  # the future of the previous sweep's rotations of VT
    try:
        for sweep in range(sweeps):
            log = logs[sweep % len(logs)]
            count = jacobi_sweep(A, negligible, rotated_column, *log)
            if applying is not None:
                applying.result()  # before the next sweep writes its log again
                applying = None
            if count == 0:
                break
            if pipelined:
                applying = in_background(apply_rotations, VT, *log, count)
            else:
                apply_rotations(VT, *log, count)
    finally:
        if applying is not None:
            applying.result()


@njit(cache=True)
def _rows_into_columns(A, b0):
    """``A[k, c] = A[c, k]`` for the block ``b0 <= c < b0 + 8`` and every ``k >= b0 + 8``:
    8 x 8 transposes (:func:`reprogls.kernels.cpu.simd.transpose8x8`), a scalar copy
    for the last rows when n is not a multiple of 8."""
    n = A.shape[0]
    b1 = b0 + _TILE
    k = b1
    while k + _TILE <= n:
        transpose8x8(A, b0, k, A, k, b0)
        k += _TILE
    while k < n:
        Ak = A[k]
        for c in range(b0, b1):
            Ak[c] = A[c, k]
        k += 1


@njit(cache=True)
def _upper_from_lower(A, lo, rotated_column, every_column):
    """``A[r, c] = A[c, r]`` for ``lo <= r < c``, by 8-aligned column tiles: those
    holding a column marked in ``rotated_column`` (every one with ``every_column``).
    Whole tiles above the diagonal are 8 x 8 transposes; the rows from ``lo`` to the
    next multiple of 8, the diagonal tiles and a last, partial tile are copied entry
    by entry."""
    n = A.shape[0]
    for tile in range(lo // _TILE, (n + _TILE - 1) // _TILE):
        c0 = tile * _TILE
        c1 = min(c0 + _TILE, n)
        if not every_column:
            marked = False
            for c in range(c0, c1):
                marked = marked or rotated_column[c]
            if not marked:
                continue
        whole = c1 - c0 == _TILE
        r = lo
        while r < c1 - 1:
            if whole and r % _TILE == 0 and r + _TILE <= c0:
                transpose8x8(A, c0, r, A, r, c0)
                r += _TILE
            else:
                Ar = A[r]
                for c in range(max(c0, r + 1), c1):
                    Ar[c] = A[c, r]
                r += 1


@njit(cache=True)
def descending_order(values):
    """Indices sorting ``values`` descending, ties by index: the order of Python's
    ``sorted(range(n), key=lambda i: (-values[i], i))`` for every ordered ``values``
    (NaN keys, which Python's sort leaves in an order of its own, come out last here)."""
    n = values.shape[0]
    order = np.arange(n)
    for a in range(1, n):  # insertion sort on the key (-value, index)
        i = order[a]
        b = a
        while b > 0:
            j = order[b - 1]
            if -values[i] < -values[j] or (-values[i] == -values[j] and i < j):
                order[b] = j
                b -= 1
            else:
                break
        order[b] = i
    return order


@njit(cache=True)
def _times(A, B, compensated):
    """``A B`` with the bits of :func:`reprogls.gls._dense.matmul` (the ``rows_times``
    kernel's tasks, run here on one thread)."""
    out = np.empty((A.shape[0], B.shape[1]))
    BT = np.ascontiguousarray(B.T)
    # (runtime_int: a literal 0 here compiled the whole kernel again, 1.2 s of a cold start)
    _rows_times_tasks(runtime_int(0), -(-A.shape[0] // ROW_BLOCK), A, BT, compensated, out)
    return out


@njit(cache=True, inline="always")
def subspace_iteration(M, Q0, compensated, max_iter, tol, sweeps):
    """Top-k eigenpairs of the symmetric ``M`` (K x K, C-contiguous) from the start
    ``Q0`` (K x k): the loop of :func:`.eigen.top_eigenpairs` in one compiled call, step
    for step (each product one CRO-1 dot per entry, :func:`orthonormalize`,
    :func:`rayleigh_matrix`, :func:`jacobi_rotations` with at most ``sweeps`` sweeps, the
    Ritz values sorted by :func:`descending_order`), so the same bits. Returns
    ``(values, Q, converged)`` (``converged``: the Ritz values met ``tol`` before
    ``max_iter`` iterations ended).

    ``inline="always"``: its one compiled caller, :func:`profile_moment`, takes its typed
    IR, so it is not also compiled and optimised on its own there (the ``reductions``
    warm-up task, thirty-third session: 1-2 s less of ~13). Called from Python it
    compiles as usual."""
    k = Q0.shape[1]
    Q = orthonormalize(Q0, compensated)
    lam = np.full(k, np.inf)
    converged = False
    for _ in range(max_iter):
        Q = orthonormalize(_times(M, Q, compensated), compensated)
        T = rayleigh_matrix(Q, _times(M, Q, compensated), compensated)
        VT = np.eye(k)
        jacobi_rotations(T, VT, sweeps, 0.0)
        values = np.empty(k)
        for i in range(k):
            values[i] = T[i, i]
        order = descending_order(values)
        new_lam = values[order]
        Q = _times(Q, VT[order].T, compensated)
        converged = True
        for i in range(k):
            if not abs(new_lam[i] - lam[i]) <= tol * abs(new_lam[i]):
                converged = False
        lam = new_lam
        if converged:
            break
    return lam, Q, converged


@njit(cache=True, inline="always")
def full_space_eigenpairs(M, sweeps, negligible):
    """All eigenpairs of ``M`` (K x K) by Jacobi rotations on ``T = (M + M^T) / 2``
    (entry by entry ``(M[a, b] + M[b, a]) * 0.5``) from the identity:
    :func:`jacobi_rotations` (``negligible``, at most ``sweeps`` sweeps), sorted by
    :func:`descending_order` -- the steps of :func:`.eigen.full_space_eigenpairs`, the
    same bits. Returns ``(values, vectors as columns)``."""
    K = M.shape[0]
    T = np.empty((K, K))
    for a in range(K):
        for b in range(K):
            T[a, b] = (M[a, b] + M[b, a]) * 0.5
    VT = np.eye(K)
    jacobi_rotations(T, VT, sweeps, negligible)
    values = np.empty(K)
    for i in range(K):
        values[i] = T[i, i]
    order = descending_order(values)
    return values[order], np.ascontiguousarray(VT[order].T)


@njit(cache=True)
def _log_sum(x, compensated):
    """CRO-1 sum of the portable ``log`` of each value (``cro_sum(log(x))``)."""
    logs = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        logs[i] = log_scalar(x[i])
    return dot_segment(logs, None, compensated)


@njit(cache=True)
def profile_moment(S, diag_S, N, d, Q0, k, full, compensated, max_iter, tol, sweeps,
                   negligible, log_2pi):
    """:func:`.sigma.profile` of a K x K moment matrix ``S`` at rank ``k`` in one compiled
    call, step for step (the scaled matrix entry by entry, :func:`subspace_iteration`
    from ``Q0`` -- or, if ``full``, :func:`full_space_eigenpairs` and its top ``k``, ``Q0``
    unused -- the loadings, ``diag(F F^T)`` as CRO-1 dots with ones, the portable
    ``log``, CRO-1 sums): the same bits. Returns ``(F, Q, ll, grad, update, converged)``
    (``converged``: the subspace iteration's; true for the whole space)."""
    K = S.shape[0]
    sqrt_d = np.sqrt(d)
    M = np.empty((K, K))
    for a in range(K):
        for b in range(K):
            M[a, b] = (S[a, b] / sqrt_d[a]) / sqrt_d[b]
    if full:
        lam_all, Q_all = full_space_eigenpairs(M, sweeps, negligible)
        lam, Q = lam_all[:k].copy(), np.ascontiguousarray(Q_all[:, :k])
        converged = True
    else:
        lam, Q, converged = subspace_iteration(M, Q0, compensated, max_iter, tol, sweeps)
    root_gain = np.empty(k)
    n_above = 0
    for q in range(k):
        g = lam[q] - 1.0
        root_gain[q] = np.sqrt(g if (g > 0.0 or g != g) else 0.0)  # np.maximum(g, 0)
        n_above += lam[q] > 1.0
    F = np.empty((K, k))
    FF = np.empty((K, k))
    for i in range(K):
        for q in range(k):
            F[i, q] = (sqrt_d[i] * Q[i, q]) * root_gain[q]
            FF[i, q] = F[i, q] * F[i, q]
    ones = np.ones(k)
    update = np.empty(K)
    ratio = np.empty(K)
    for i in range(K):
        update[i] = diag_S[i] - dot_segment(FF[i], ones, compensated)
        ratio[i] = update[i] / d[i]
    above = np.empty(n_above)
    n_above = 0
    for q in range(k):
        if lam[q] > 1.0:
            above[n_above] = lam[q]
            n_above += 1
    log_terms = _log_sum(d, compensated) + _log_sum(above, compensated)
    nll2 = (K * log_2pi + log_terms) + dot_segment(ratio, None, compensated)
    grad = np.empty(K)
    for i in range(K):
        grad[i] = 0.5 * (1.0 - ratio[i])
    return F, Q, -0.5 * N * nll2, grad, update, converged
