"""The Sigma-step's deterministic eigen-solvers: top eigenpairs of ``M = D^-1/2 S D^-1/2``.

The Sigma-step (:mod:`.sigma`) needs the top k eigenpairs of a symmetric K x K matrix
``M``, given as the matrix or as a function ``Q -> M Q`` (the residuals' ``S``,
:class:`.sigma.ResidualMoment`), in every likelihood evaluation. Three solvers, each
deterministic (CRO-1 dots and norms, Jacobi rotations in a fixed sweep order, plain IEEE
operations), and the rule that picks one (:func:`eigensolver_for`):

* :func:`top_eigenpairs`: subspace iteration, warm-started from the previous subspace;
* :func:`krylov_eigenpairs`: a thick-restarted block Krylov method, likewise
  warm-started, where a rank beyond the data's factors crowds the top eigenvalues and K
  is large;
* :func:`full_space_eigenpairs`: all K eigenpairs, by cyclic Jacobi rotations on ``M``.

The subspace iteration's Rayleigh-Ritz steps and the whole space are solved by
:func:`jacobi_eigh`, the Krylov method's by :func:`tridiagonal_eigh`; the compiled steps
are in :mod:`._subspace` and :mod:`._tridiagonal`. The oracles are
:func:`jacobi_eigh_reference`, :func:`tridiagonal_eigh_reference` and
:func:`orthonormalize_reference` (``tests/test_subspace.py``, ``tests/test_krylov.py``,
``tests/test_tridiagonal.py``).
"""

from __future__ import annotations

import math

import numpy as np

from ..kernels.cpu import reductions as _cpu_red
from ..kernels.cpu.tasks import threads
from ..kernels.reference.cro import check_mode, cro_dot, cro_nrm2
from ._dense import dot, matmul, matmul_t
from ._subspace import (
    extend_basis,
    jacobi_rotations,
    orthonormalize,
    rayleigh_extend,
    rayleigh_matrix,
    subspace_iteration,
    tiled_rotations,
)
from ._tridiagonal import QL_MAX_ITERATIONS, pythag, top_eigenpairs_tridiagonal

__all__ = ["COMPILED_MAX_WORK", "EIGENSOLVERS", "EIGEN_MAX_ITER", "EIGEN_TOL",
           "JACOBI_SWEEPS", "LARGE_JACOBI_MIN", "NEGLIGIBLE", "eigensolver_for",
           "full_space_eigenpairs", "jacobi_eigh", "jacobi_eigh_reference",
           "krylov_eigenpairs", "orthonormalize_columns", "orthonormalize_reference",
           "top_eigenpairs", "tridiagonal_eigh", "tridiagonal_eigh_reference",
           "uses_full_space"]

#: The Sigma-step's eigen-solvers: the subspace iteration (:func:`top_eigenpairs`), the
#: restarted block Krylov method (:func:`krylov_eigenpairs`), the whole eigenproblem
#: (:func:`full_space_eigenpairs`).
EIGENSOLVERS = ("subspace", "krylov", "whole")


#: Most Jacobi sweeps of a Rayleigh-Ritz step (:func:`jacobi_eigh`).
JACOBI_SWEEPS = 30
#: The whole-space eigen-solve skips a rotation whose off-diagonal entry is at most this
#: times ``sqrt|a_pp| sqrt|a_qq|`` (:func:`._subspace.jacobi_rotations`); the subspace
#: iteration's k x k solves rotate until the entries are exactly zero. (So did the
#: Krylov basis's Rayleigh-Ritz solves until :func:`tridiagonal_eigh` took them over.)
NEGLIGIBLE = 2.0 ** -53
#: Largest product ``M Q`` (``K^2 k`` multiply-adds) for which :func:`top_eigenpairs` of a
#: matrix runs as one compiled call on one thread; larger ones use the threads for each
#: product (the same bits either way). Measured on the 2-core Zen 3 box, three
#: iterations, compiled / threads: K = 200, k = 5 (2e5) 0.95 / 1.14 ms; K = 600, k = 5
#: (1.8e6) 5.1 / 5.9 ms; K = 1000, k = 5 (5e6) 12.3 / 7.6 ms.
COMPILED_MAX_WORK = 1 << 21
#: Order from which :func:`jacobi_eigh` defers and tiles the copies into the columns
#: (:func:`._subspace.jacobi_sweep`) and, with two threads or more, rotates the
#: eigenvectors on a second thread while the next sweep runs
#: (:func:`._subspace.tiled_rotations`): the same bits; their docstrings have the
#: times (1.7-1.8x at n = 400-800 tiled, 1.3-1.6x more pipelined; 12% at n = 64, none
#: at 100; at n = 128, whose 1 KiB rows put a column's entries in few cache sets, 15
#: ms column by column, 6 ms so). Smaller whole-space problems run inside the compiled
#: profile (:func:`.sigma.profile`), whose column-by-column rotations
#: (:func:`._subspace.jacobi_rotations`) compile in a third of the time.
LARGE_JACOBI_MIN = 128


def _checked_symmetric(T: np.ndarray) -> np.ndarray:
    """A C-contiguous float64 copy of ``T``, which must be square and equal to its
    transpose bit for bit (else a ``ValueError``)."""
    A = np.array(T, dtype=np.float64, order="C", copy=True)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or not (
            A.view(np.uint64) == A.T.view(np.uint64)).all():
        raise ValueError("T must be a square matrix equal to its transpose bit for bit; "
                         "pass (T + T.T) / 2")
    return A


def jacobi_eigh(T: np.ndarray, sweeps: int = JACOBI_SWEEPS, negligible: float = 0.0
                ) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of a symmetric matrix by cyclic Jacobi rotations (``T`` equal
    to its transpose bit for bit, else a ``ValueError``: the compiled rotations rely on
    it).

    Fixed order: sweeps over pairs ``(p, q)``, ``p < q``, row by row; a rotation is
    skipped when ``T_pq`` is zero or ``|T_pq| <= negligible sqrt|T_pp| sqrt|T_qq|`` (the
    current entries); stops after a sweep without rotations or after ``sweeps`` sweeps.
    Only ``+ - * /`` and ``sqrt``: the same bits everywhere.
    The rotations are compiled (:func:`._subspace.jacobi_rotations`; the bits of
    :func:`jacobi_eigh_reference`); from order :data:`LARGE_JACOBI_MIN` with the
    copies tiled, and on two threads when there are two
    (:func:`._subspace.tiled_rotations`, the same bits). Returns ``(eigenvalues
    descending, eigenvectors as columns)``.
    """
    A = _checked_symmetric(T)
    n = A.shape[0]
    VT = np.eye(n)
    if n >= LARGE_JACOBI_MIN:
        tiled_rotations(A, VT, int(sweeps), float(negligible), threads() >= 2)
    else:
        jacobi_rotations(A, VT, sweeps, float(negligible))
    values = np.array([A[i, i] for i in range(n)])
    order = sorted(range(n), key=lambda i: (-values[i], i))
    return values[order], np.ascontiguousarray(VT[order].T)


def jacobi_eigh_reference(T: np.ndarray, sweeps: int = 30, negligible: float = 0.0
                          ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`jacobi_eigh` in plain Python (the tests' oracle for the compiled rotations).

    Eigen-decomposition of a small symmetric matrix by cyclic Jacobi rotations.

    Fixed order: sweeps over pairs ``(p, q)``, ``p < q``, row by row; a rotation is
    skipped when ``T_pq`` is zero or ``|T_pq| <= negligible sqrt|T_pp| sqrt|T_qq|``;
    stops after a sweep without rotations or after ``sweeps`` sweeps. Only ``+ - * /``
    and ``sqrt``: the same bits everywhere.
    Returns ``(eigenvalues descending, eigenvectors as columns)``.
    """
    A = [[float(v) for v in row] for row in T]
    n = len(A)
    V = [[1.0 if i == j else 0.0 for j in range(n)] for i in range(n)]
    for _ in range(sweeps):
        rotated = False
        for p in range(n):
            for q in range(p + 1, n):
                apq = A[p][q]
                if apq == 0.0 or abs(apq) <= negligible * (math.sqrt(abs(A[p][p]))
                                                            * math.sqrt(abs(A[q][q]))):
                    continue
                rotated = True
                theta = (A[q][q] - A[p][p]) / (2.0 * apq)
                t = (1.0 if theta >= 0.0 else -1.0) / (abs(theta) + math.sqrt(theta * theta
                                                                               + 1.0))
                c = 1.0 / math.sqrt(t * t + 1.0)
                s = t * c
                for k in range(n):  # columns p, q
                    akp, akq = A[k][p], A[k][q]
                    A[k][p] = c * akp - s * akq
                    A[k][q] = s * akp + c * akq
                for k in range(n):  # rows p, q
                    apk, aqk = A[p][k], A[q][k]
                    A[p][k] = c * apk - s * aqk
                    A[q][k] = s * apk + c * aqk
                A[p][q] = A[q][p] = 0.0
                for k in range(n):
                    vkp, vkq = V[k][p], V[k][q]
                    V[k][p] = c * vkp - s * vkq
                    V[k][q] = s * vkp + c * vkq
        if not rotated:
            break
    values = np.array([A[i][i] for i in range(n)])
    order = sorted(range(n), key=lambda i: (-values[i], i))
    return values[order], np.array(V)[:, order]


def _checked_count(m: int, n: int) -> int:
    """``m`` as an int in ``0 .. n`` (else a ``ValueError``)."""
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not 0 <= m <= n:
        raise ValueError(f"m (the eigenvectors wanted) must be an int from 0 to the order "
                         f"{n}, got {m!r}")
    return int(m)


def tridiagonal_eigh(T: np.ndarray, m: int, mode: str = "compensated"
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Every eigenvalue of a symmetric matrix and the eigenvectors of the top ``m``, by
    Householder tridiagonalisation, implicit QL and back-transformation
    (:mod:`._tridiagonal`, whose docstring has the formulas; CRO-1 dots and norms in
    ``mode``; the bits of :func:`tridiagonal_eigh_reference`).

    ``T`` must equal its transpose bit for bit (else a ``ValueError``). Returns
    ``(eigenvalues descending (ties by index), the top m eigenvectors as columns)``;
    with ``m = 0`` the QL iteration rotates no eigenvectors (order 275: 4 ms instead of
    9.5) and the values have the same bits as with any ``m``. An
    eigenvalue that does not converge in :data:`._tridiagonal.QL_MAX_ITERATIONS` QL
    iterations (NaN or infinite entries) raises ``numpy.linalg.LinAlgError``.

    What the Krylov method's Rayleigh-Ritz solves use (:func:`krylov_eigenpairs`): the
    eigenvalues are accurate to a small multiple of ``eps ||T||``, not to ``eps
    |lambda|`` as :func:`jacobi_eigh`'s, which that method's rule (a floor of
    ``RITZ_NOISE lambda_1``) does not need. Measured (2-core Zen 4 VM, one thread, ``m``
    = 50, a spiked spectrum, compensated / plain): order 100 / 150 / 200 / 275 0.78 /
    0.61, 2.0 / 1.7, 3.9 / 3.2, 9.5 / 8.3 ms, against ``jacobi_eigh``'s 3.6, 9.9-11.7,
    19.5-23.6 and 45-46 ms and LAPACK's ``eigh`` 0.57, 1.2, 2.3 and 4.4 ms.
    """
    A = _checked_symmetric(T)
    m = _checked_count(m, A.shape[0])
    values, order, WT, converged = top_eigenpairs_tridiagonal(
        A, m, check_mode(mode))
    if not converged:
        raise np.linalg.LinAlgError(
            "the implicit QL iteration did not converge (is T finite?)")
    return values[order], np.ascontiguousarray(WT.T)


def tridiagonal_eigh_reference(T: np.ndarray, m: int, mode: str = "compensated"
                               ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`tridiagonal_eigh` in plain Python with the reference CRO-1 dots and norms
    (the tests' oracle for :mod:`._tridiagonal`)."""
    T = _checked_symmetric(T)
    n = T.shape[0]
    m = _checked_count(m, n)
    finite = bool(np.isfinite(T).all())
    amax = float(np.abs(T).max()) if n and finite else 0.0
    scale = math.frexp(amax)[1] if amax > 0.0 else 0
    A = [[math.ldexp(float(v), -scale) for v in row] for row in T]
    d, e, b = [0.0] * n, [0.0] * n, [0.0] * n
    V = [[0.0] * n for _ in range(n)]
    for i in range(n - 1, 1, -1):  # Householder, bottom-up
        d[i] = A[i][i]
        norm = cro_nrm2(np.array(A[i][:i]), mode)
        x0 = A[i][i - 1]
        if norm == 0.0:
            continue
        alpha = -norm if x0 >= 0.0 else norm
        v = [*A[i][:i - 1], x0 - alpha]
        V[i][:i] = v
        b[i] = 1.0 / (norm * abs(v[i - 1]))
        e[i - 1] = alpha
        p = [b[i] * cro_dot(np.array(A[r][:i]), np.array(v), mode) for r in range(i)]
        half_k = (0.5 * b[i]) * cro_dot(np.array(v), np.array(p), mode)
        w = [p[c] - half_k * v[c] for c in range(i)]
        for r in range(i):
            for c in range(i):
                A[r][c] = A[r][c] - (v[r] * w[c] + w[r] * v[c])
    if n >= 2:
        d[1], e[0] = A[1][1], A[1][0]
    if n >= 1:
        d[0] = A[0][0]
    ZT = [[1.0 if i == j else 0.0 for j in range(n)] for i in range(n)]
    if n:
        e[n - 1] = 0.0
    for top in range(n):  # implicit QL
        iterations = 0
        while True:
            end = top
            while end < n - 1:
                dd = abs(d[end]) + abs(d[end + 1])
                if abs(e[end]) + dd == dd:
                    break
                end += 1
            if end == top:
                break
            if iterations == QL_MAX_ITERATIONS:
                raise np.linalg.LinAlgError(
                    "the implicit QL iteration did not converge (is T finite?)")
            iterations += 1
            g = (d[top + 1] - d[top]) / (2.0 * e[top])
            r = pythag.py_func(g, 1.0)
            g = d[end] - d[top] + e[top] / (g + (r if g >= 0.0 else -r))
            s, c, p_ = 1.0, 1.0, 0.0
            underflow = False
            for i in range(end - 1, top - 1, -1):
                f, bb = s * e[i], c * e[i]
                r = pythag.py_func(f, g)
                e[i + 1] = r
                if r == 0.0:
                    d[i + 1] -= p_
                    e[end] = 0.0
                    underflow = True
                    break
                s, c = f / r, g / r
                g = d[i + 1] - p_
                r = (d[i] - g) * s + 2.0 * c * bb
                p_ = s * r
                d[i + 1] = g + p_
                g = c * r - bb
                zi, zj = ZT[i], ZT[i + 1]
                for k in range(n):
                    ak, bk = zi[k], zj[k]
                    zj[k] = s * ak + c * bk
                    zi[k] = c * ak - s * bk
            if underflow:
                continue
            d[top] -= p_
            e[top] = g
            e[end] = 0.0
    d = [math.ldexp(x, scale) for x in d]
    order = sorted(range(n), key=lambda i: (-d[i], i))
    WT = [list(ZT[order[q]]) for q in range(m)]
    for i in range(2, n):  # back-transformation, P_2 first
        if b[i] == 0.0:
            continue
        v = V[i][:i]
        for row in WT:
            t = b[i] * cro_dot(np.array(row[:i]), np.array(v), mode)
            for j in range(i):
                row[j] = row[j] - t * v[j]
    return np.array([d[i] for i in order]), np.array(WT).reshape(m, n).T


def orthonormalize_columns(Z: np.ndarray, mode: str) -> np.ndarray:
    """Modified Gram-Schmidt on the columns of Z with CRO-1 dots and norms (compiled,
    :func:`._subspace.orthonormalize`; the bits of :func:`orthonormalize_reference`)."""
    return orthonormalize(np.ascontiguousarray(Z, dtype=np.float64), mode == "compensated")


def orthonormalize_reference(Z: np.ndarray, mode: str) -> np.ndarray:
    """:func:`orthonormalize_columns` through the public kernels: the tests' oracle."""
    Q = np.array(Z, dtype=np.float64)
    for c in range(Q.shape[1]):
        v = Q[:, c].copy()
        for b in range(c):
            v = v - dot(Q[:, b], v, mode) * Q[:, b]
        norm = _cpu_red.cro_nrm2(v, mode == "compensated")
        Q[:, c] = v / norm if norm > 0.0 else v
    return Q


#: Most iterations and the relative change of the Ritz values at which
#: :func:`top_eigenpairs` stops.
EIGEN_MAX_ITER, EIGEN_TOL = 200, 1e-13


def top_eigenpairs(M, Q0: np.ndarray, mode: str, max_iter: int = EIGEN_MAX_ITER,
                   tol: float = EIGEN_TOL) -> tuple[np.ndarray, np.ndarray, bool]:
    """Top-k eigenpairs of a symmetric K x K ``M`` by subspace iteration from ``Q0``.

    ``M`` is the matrix or a function ``Q -> M Q``. Each iteration: ``Z = M Q`` (CRO-1
    dots), orthonormalise, Rayleigh-Ritz
    ``T = Q^T M Q`` (symmetrised), ``jacobi_eigh(T)``, rotate. Stops when every Ritz
    value changed by at most ``tol`` relative (``converged``), or after ``max_iter``
    iterations. Returns ``(values descending, Q, converged)``.

    A matrix with ``K^2 k <= COMPILED_MAX_WORK`` runs the whole loop as one compiled call
    (:func:`._subspace.subspace_iteration`, the same steps and bits): each iteration was
    about ten calls from Python, which made the Sigma-step of an S-size fit (K = 50,
    k = 3; 27 eigen-solves of ~3 iterations) mostly call overhead.

    When ``M`` is a function (the residuals' ``S``, :class:`.sigma.ResidualMoment`: each product
    two passes over the N x K residuals) the next iteration's ``M Q`` is not computed
    again but carried as ``(M Q) V``, the same matrix in exact arithmetic as
    ``M (Q V)``: one product per iteration (plus one to start) instead of two. At
    N = 5000, K = 2000, k = 10 the fit's eigen-solves took 64 products (13 solves),
    most of the Sigma-step. A matrix ``M`` keeps the two products per iteration (its
    products are cheap, and the golden fits pin its bits).
    """
    if not callable(M):
        M = np.ascontiguousarray(M, dtype=np.float64)
        if M.shape[0] ** 2 * Q0.shape[1] <= COMPILED_MAX_WORK:
            return subspace_iteration(M, np.ascontiguousarray(Q0, dtype=np.float64),
                                      mode == "compensated", max_iter, tol, JACOBI_SWEEPS)
    carry = callable(M)
    product = M if carry else (lambda Q: matmul(M, Q, mode))
    Q = orthonormalize_columns(Q0, mode)
    lam = np.full(Q.shape[1], np.inf)
    converged = False
    Z = product(Q) if carry else None
    for _ in range(max_iter):
        Q = orthonormalize_columns(Z if carry else product(Q), mode)
        MQ = product(Q)
        T = rayleigh_matrix(Q, np.ascontiguousarray(MQ), mode == "compensated")
        new_lam, V = jacobi_eigh(T)
        Q = matmul(Q, V, mode)
        if carry:
            Z = matmul(MQ, V, mode)
        converged = np.all(np.abs(new_lam - lam) <= tol * np.abs(new_lam))
        lam = new_lam
        if converged:
            break
    return lam, Q, bool(converged)


#: Most blocks of k vectors the Krylov basis of :func:`krylov_eigenpairs` grows by beside
#: its first block, and most vectors beside it (the basis's Rayleigh-Ritz matrix is
#: diagonalised after every block: ``O(n^3)`` for n vectors; the basis is also at most a
#: fraction of K, :func:`krylov_depth`); most restarts; the rounding noise of its Ritz
#: values relative to the largest (the floor of its stopping rule); how many Ritz vectors
#: a restart keeps, in blocks of k (thick restart; :func:`krylov_eigenpairs` has the
#: measurements).
KRYLOV_DEPTH, KRYLOV_BASIS, KRYLOV_MAX_RESTARTS, RITZ_NOISE = 16, 256, 40, 16.0 * 2.0 ** -52
KRYLOV_KEEP_BLOCKS = 2


def krylov_depth(K: int, k: int, depth: int = KRYLOV_DEPTH) -> int:
    """Blocks of k vectors the Krylov basis grows by beside its first (less than 1: no
    room for one, the subspace iteration): at most ``depth``, ``KRYLOV_BASIS / k``, and a
    basis of K / 4 vectors, or K / 2 where K / 4 would hold at most four blocks (K < 20 k).

    Where the products are cheap (the moment matrix at small K) a deep basis's
    Rayleigh-Ritz steps cost more than they save: at K = 300, k = 10, 17 blocks made the
    fit 4.1 s, 7 blocks 1.9 s (forty-seventh session, Jacobi's solves), so the basis is
    at most K / 4 vectors. With the fiftieth session's cheaper solves K / 2 was no faster
    there (K = 240 / 300 / 400, k = 10: 0.57 / 0.91 / 0.94 s against 0.65 / 1.02 / 1.14),
    but where K / 4 leaves the basis a few blocks it converges slowly or stops short of
    the rule (K = 200, k = 20: 7.0 s against 1.4, the log-likelihood 3e-10 off), and K / 2
    was faster from K = 20 k down (K = 100, k = 6: 0.32 -> 0.23 s; K = 200, k = 12: 0.77
    -> 0.66; K = 400, k = 25: 2.85 -> 2.41; K = 300, k = 20: 3.78 -> 1.30); fifty-first
    session, 2-core Zen 4, one run each, docs/performance.md).
    """
    k = max(int(k), 1)
    blocks = K // (4 * k)
    if blocks <= 4:
        blocks = K // (2 * k)
    return min(int(depth), KRYLOV_BASIS // k, blocks - 1)


def _restart_keeps(k: int, n: int) -> int:
    """Ritz vectors a restart of a basis of at most ``n`` vectors keeps: ``KRYLOV_KEEP_BLOCKS
    k``, less where that would leave room for fewer than two blocks after the restart's
    (``n - 2 k``), at least k."""
    return max(k, min(KRYLOV_KEEP_BLOCKS * k, n - 2 * k))


def _ritz_converged(new_lam: np.ndarray, lam: np.ndarray, tol: float) -> bool:
    """Every Ritz value changed by at most ``max(tol |lambda_q|, RITZ_NOISE |lambda_1|)``."""
    floor = RITZ_NOISE * abs(new_lam[0])
    return bool(np.all(np.abs(new_lam - lam) <= np.maximum(tol * np.abs(new_lam), floor)))


def krylov_eigenpairs(M, Q0: np.ndarray, mode: str, depth: int = KRYLOV_DEPTH,
                      max_restarts: int = KRYLOV_MAX_RESTARTS, tol: float = EIGEN_TOL
                      ) -> tuple[np.ndarray, np.ndarray, bool]:
    """Top-k eigenpairs of a symmetric K x K ``M`` by a thick-restarted block Krylov
    method from ``Q0`` (K x k): what the Sigma-step uses where a rank beyond the data's
    factors would stall the subspace iteration of :func:`top_eigenpairs` and the whole
    eigenproblem is too large (``K > 32 k``, or ``K > 16 k`` from K = 100,
    :func:`eigensolver_for`).

    ``M`` is the matrix or a function ``Q -> M Q``. The basis ``B`` of n vectors, at
    most ``(depth + 1) k`` (``depth`` at most ``KRYLOV_BASIS / k``, and the basis at most
    K / 4 vectors, K / 2 below K = 20 k: :func:`krylov_depth`; with no block beside the
    first, the subspace iteration), starts as
    ``Q0`` orthonormalised and grows a block at a time: ``V_j`` is ``M V_{j-1}``
    orthonormalised against every earlier vector, twice
    (:func:`._subspace.extend_basis`), and ``M V_j`` one product of k vectors. After
    each block, Rayleigh-Ritz: ``T = B^T (M B)`` (symmetrised,
    :func:`._subspace.rayleigh_extend`), its top eigenpairs by
    :func:`tridiagonal_eigh` (values to a few ``eps lambda_1``, well inside the rule's
    floor; the Jacobi rotations used until the fiftieth session took 5x as long at
    order 275, the values to ``eps |lambda|``), the Ritz vectors only where the basis
    stops growing (the values alone skip the QL's rotations of the eigenvectors; the
    same values either way); it stops when every one of the top k
    Ritz values changed by at most ``max(tol |lambda_q|, RITZ_NOISE |lambda_1|)`` since
    the previous Rayleigh-Ritz step.

    A full basis restarts, thick: the next block ``V`` (``M V_last`` orthonormalised
    against the whole basis, as if it grew) and the top m Ritz vectors ``Y = B W_m``
    (m = :data:`KRYLOV_KEEP_BLOCKS` k, less where fewer than two blocks would fit
    after, at least k: :func:`_restart_keeps`), orthonormalised again, with ``V``
    orthonormalised against them, make the new basis ``[Y, V]``, with fresh products
    (not ``(M B) W_m`` carried: the basis's departure from orthonormality, ~1e-14 after
    a restart, grew to ~1e-12 over a 17-block basis, and the Ritz values of a converged
    basis sat 30-80 ``eps lambda_1`` off; so, within 3), then Rayleigh-Ritz. In exact
    arithmetic the residuals ``M y - theta y`` of the Ritz vectors lie in ``span V``,
    so ``[Y, V]`` continues the Krylov space in the directions that matter. After
    ``max_restarts`` restarts it stops unconverged. Returns ``(values descending,
    Q = B W_k, converged)``.

    Why Krylov: at a rank beyond the data's factors the k-th eigenvalue of ``M`` sits at
    the edge of the noise's Marchenko-Pastur bulk, a gap of 1.5-3% to the next
    (``lambda_{k+1} / lambda_k`` = 0.985 at N = 2000, K = 800; 0.972 at N = 5000,
    K = 2000, five factors, k = 6; 0.994-0.9994 at k = 25). Subspace iteration
    converges at that ratio per product, the Krylov space at about its square root (a
    Chebyshev polynomial): in NumPy on the stalled evaluations, 2600-3000 and ~1500
    vectors multiplied against ~300 and ~150. The Krylov space of j blocks holds the
    subspace iteration's j-th iterate, so where the gap is wide it needs no more
    products than the iteration. And the subspace iteration's stopping rule, ``tol =
    1e-13`` relative to each value, lies below the rounding noise of a value far below
    the largest (``lambda_6 = 2.7`` next to ``lambda_1 = 6900``: changes of ~1e-12
    relative between iterations at the converged subspace, about ``2 eps lambda_1``),
    so even converged it met the rule by chance only; here the rule is floored at
    ``16 eps lambda_1``.

    Why thick: at k = 25, K = 2000 (a basis of 11 blocks) a restart keeping only the top
    k Ritz vectors discarded the directions next to the k-th, at a gap of 0.3%; the
    solves took 6-13 restarts. Keeping 2k (in NumPy, three of that fit's
    eigenproblems): 3 restarts, 875-975 vectors multiplied against 1700-3650, the
    Rayleigh-Ritz work (``sum n^3``) 2.4-5x less, the values closer to the exact ones
    (5-10 against 15-59 ``eps lambda_1``); keeping 3k about the same, 4k-6k more
    products again (each restart multiplies its m vectors anew). The fit (N = 5000,
    five factors, rank 25) took 25-28 s against 45-46 s (the Rayleigh-Ritz solves'
    :data:`NEGLIGIBLE` rule alone: 36 s). At k = 6 and 10, which restart at most once
    there, 6-12% fewer vectors multiplied.
    """
    product = M if callable(M) else (lambda Q: matmul(M, Q, mode))
    compensated = mode == "compensated"
    K, k = Q0.shape
    depth = krylov_depth(K, k, depth)
    if depth < 1 or k == 0:
        return top_eigenpairs(M, Q0, mode, tol=tol)
    n = (depth + 1) * k
    keep = _restart_keeps(k, n)
    # one block more than the basis: a restart's next block is built on the full basis
    BT, MBT, G = np.empty((n + k, K)), np.empty((n, K)), np.empty((n, n))

    def multiply(lo: int, hi: int) -> None:  # the products of basis rows lo .. hi-1
        MBT[lo:hi] = product(np.ascontiguousarray(BT[lo:hi].T)).T

    def next_block(filled: int) -> None:  # rows filled .. filled+k: M (the last block)
        extend_basis(BT, filled, np.ascontiguousarray(MBT[filled - k:filled].T),
                     compensated)

    def ritz_values(known: int, filled: int) -> tuple[np.ndarray, np.ndarray]:
        T = rayleigh_extend(BT, MBT, G, known, filled, compensated)
        return tridiagonal_eigh(T, 0, mode)[0], T

    BT[:k] = orthonormalize_columns(Q0, mode).T
    multiply(0, k)
    filled, known, lam, W, converged = k, 0, np.full(k, np.inf), None, False
    for restart in range(max_restarts + 1):
        if restart:  # thick restart: [Y, V] from the full basis B
            next_block(filled)
            V = np.ascontiguousarray(BT[filled:filled + k].T)
            Y = matmul_t(BT[:filled], np.ascontiguousarray(W[:, :keep]), mode)
            BT[:keep] = orthonormalize_columns(Y, mode).T
            extend_basis(BT, keep, V, compensated)
            multiply(0, keep + k)
            filled, known = keep + k, 0
        while True:
            if filled > k:  # (the start Q0 alone has no Ritz values to compare)
                values, T = ritz_values(known, filled)
                new_lam = values[:k]
                converged = _ritz_converged(new_lam, lam, tol)
                lam, known = new_lam, filled
                if converged or filled == n:  # the vectors, only now (same values)
                    W = tridiagonal_eigh(T, min(keep, filled), mode)[1]
                    break
            next_block(filled)
            multiply(filled, filled + k)
            filled += k
        if converged:
            break
    Q = matmul_t(BT[:filled], np.ascontiguousarray(W[:, :k]), mode)
    return lam, Q, converged

#: The Sigma-step solves the whole eigenproblem of ``M``
#: (:func:`full_space_eigenpairs`) instead of iterating on a k-dimensional subspace when
#: ``FULL_SPACE_RANK_FRACTION * rank >= K``, except from ``K = KRYLOV_OVER_WHOLE_SIZE``
#: where ``K >= KRYLOV_OVER_WHOLE_RATIO * rank``: there the block Krylov method is faster
#: (:func:`uses_full_space` has the measurements).
FULL_SPACE_RANK_FRACTION = 16
KRYLOV_OVER_WHOLE_SIZE, KRYLOV_OVER_WHOLE_RATIO = 250, 10


def uses_full_space(K: int, rank: int) -> bool:
    """Whether the Sigma-step of K equations at ``rank`` factors solves the whole
    eigenproblem of ``M = D^-1/2 S D^-1/2`` (all K eigenpairs, :func:`full_space_eigenpairs`)
    rather than the top ``rank`` by subspace iteration (:func:`top_eigenpairs`).

    The subspace iteration converges at the rate ``lambda_{k+1} / lambda_k``. At a rank
    beyond the data's factors the top eigenvalues of ``M`` at the likelihood's optimum
    crowd just above 1 (e.g. 1.09 and 1.07 at k = 25, K = 50), so each evaluation ran
    into the 200-iteration cap, and a fit at K = 50 (N = 5000, p = 5, three factors in
    the data) took 17 s at k = 25 and 60 s at k = 37 (0.05 s at k = 3): 0.58 and 1.2 s
    with the whole-space solve, which costs ``O(K^3)`` per evaluation whatever the
    spectrum. Where the rank is at most the data's factors the subspace iteration is
    faster. Fit times, subspace / whole space (2-core Zen 4, forty-third session; the
    same data, three factors; N = 5000 up to K = 50, then 10000 and 20000):

    ========  ===============================  =====================================
    K         k <= 3 (the data's factors)      k above them
    ========  ===============================  =====================================
    20        0.025-0.030 / 0.029-0.048 s      k = 5, 10, 15: 0.09-5.3 / 0.02-0.11
    50        0.047 / 0.070                    k = 6, 12: 0.19-0.88 / 0.07-0.11;
                                               k = 25, 37: 17-60 / 0.58-1.2
    100       0.24 / 0.37                      k = 6, 12, 25: 0.57-8.3 / 0.42-0.98
    200       k = 5: 1.56 / 2.29               k = 12: 2.16 / 2.47; k = 25: 5.5 / 2.9
    ========  ===============================  =====================================

    The whole space's loss where the subspace wins is bounded (at most ~1.6x: 23 ms at
    K = 50, 0.7 s at K = 200), the subspace's where it loses is not (up to 50x), and
    the rank a user tries often exceeds the data's factors (choosing k by AIC/BIC fits
    several), so the rule leans to the whole space: ``16 k >= K`` (the alsgls sizes S,
    K = 50, k = 3, and M, K = 200, k = 5, keep the subspace iteration, and their
    fingerprints). The whole-space answers reached the same or a higher likelihood (by
    up to 2e-3 at K = 100, k = 25, where the subspace iteration stopped on inexact
    eigenpairs). (Forty-fourth session: the rotations run row by row, the same bits,
    1.4-2.4x faster; fits at K = 50, k = 25 / 37 0.37 / 0.81 s, K = 200, k = 25 1.6 s.
    Below the rule, :func:`eigensolver_for` turns to the whole space where the
    subspace iteration stalls, or uses the block Krylov method.)

    The exception, from K = 250 where ``K >= 10 k`` (fifty-first session): the whole
    space's ``O(K^3)`` per evaluation grows past the block Krylov method's cost there,
    since the method's Rayleigh-Ritz solves became 5x cheaper (the fiftieth session)
    and its basis may hold K / 2 vectors below ``K = 20 k`` (:func:`krylov_depth`). Fits
    (N = 5000, p = 5, three factors in the data, ``cov_type="none"``; 2-core Zen 4, one
    run each), whole space / Krylov:

    ===========  ======  =================  ===========  ======  ================
    K, k         K / k   whole / Krylov     K, k         K / k   whole / Krylov
    ===========  ======  =================  ===========  ======  ================
    100, 8       12.5    0.23 / 0.26 s      400, 25      16      4.86 / 2.41 s
    200, 15      13.3    0.67 / 0.77        400, 40      10      5.98 / 4.52
    200, 20      10      1.27 / 1.37        600, 40      15      13.5 / 7.7
    250, 20      12.5    1.46 / 1.22        300, 40      7.5     3.41 / 14.8
    256, 16      16      1.48 / 0.78        400, 50      8       5.65 / 7.29
    300, 20      15      2.19 / 1.30        400, 60      6.7     7.12 / 31.3
    300, 30      10      2.65 / 2.34        600, 80      7.5     20.0 / 92
    ===========  ======  =================  ===========  ======  ================

    Below ``K = 10 k`` the basis holds too few blocks and the whole space stays. The two
    reach the same optimum (the log-likelihoods 1e-14 relative apart or closer).
    """
    return (FULL_SPACE_RANK_FRACTION * rank >= K
            and (K < KRYLOV_OVER_WHOLE_SIZE or K < KRYLOV_OVER_WHOLE_RATIO * rank))


#: Where ``K > KRYLOV_RANK_RATIO * rank``, or ``K >= KRYLOV_MIN_SIZE`` (and
#: ``K > FULL_SPACE_RANK_FRACTION * rank``), the Sigma-step solves its eigenproblems by
#: the block Krylov method from the start; elsewhere above
#: :data:`FULL_SPACE_RANK_FRACTION` it turns from the subspace iteration to the whole
#: eigenproblem once a subspace iteration stops at its cap (:func:`eigensolver_for`).
KRYLOV_RANK_RATIO, KRYLOV_MIN_SIZE = 32, 100


def eigensolver_for(K: int, rank: int) -> str:
    """The eigen-solver the Sigma-step of K equations at ``rank`` factors starts on
    (:data:`EIGENSOLVERS`):

    * ``"whole"`` where ``16 k >= K``, except from K = 250 where ``K >= 10 k``
      (:func:`uses_full_space`): every evaluation solves the whole eigenproblem;
    * ``"krylov"`` where ``K > 32 k``, or ``K > 16 k`` and ``K >= 100``, or that
      exception: the thick-restarted block Krylov method (:func:`krylov_eigenpairs`)
      throughout;
    * ``"subspace"`` elsewhere (``16 k < K <= 32 k``, ``K < 100``): the subspace
      iteration, until an evaluation stops at its cap (:data:`EIGEN_MAX_ITER`
      iterations, inexact eigenpairs); that one is made again on the whole space, which
      the rest of the fit uses.

    The subspace iteration either converges in a few warm-started iterations (at most
    6 per evaluation at K = 50, k = 3 and K = 200, k = 5 with as many factors in the
    data) or, at a rank above the data's factors, stalls at the cap in every evaluation
    (K = 100, k = 6; K = 200, k = 5 and 12, three factors: 200 iterations in all but the
    first). One such evaluation costs about ``400 K^2 k`` multiply-adds, one whole-space
    solve about ``c K^3`` with ``c`` near 8. Past ``48 k`` the fit stayed on the stalled
    iteration (forty-fifth session: N = 5000, K = 2000, five factors, rank 6 in 59 s and
    rank 10 in 91 s, rank 5 in 1.6 s). The Krylov method converges where the iteration
    stalls, and where the iteration converges it costs about as much (its basis holds the
    iterates), so it is the default from the size where it beats the whole space: past
    ``32 k`` with the forty-sixth session's restarts (which kept k Ritz vectors), past
    ``16 k`` with the thick restarts of the forty-seventh, except for small K, where
    the subspace iteration's and the whole space's single compiled calls cost a few
    milliseconds less than the Krylov method's steps from Python (K = 24, k = 1: 11-12
    against 15-16 ms; K = 40, k = 2: 32-34 against 42-44; K = 50, k = 3: 37-39 against
    32-48). Below ``16 k`` the whole space wins (K = 100, k = 8: 0.22 against 0.36 s
    Krylov; K = 200, k = 15: 0.68 against 1.57; K = 300, k = 20: 2.2 against 5.1; K =
    400, k = 40: 5.4 against 14.3; K = 600, k = 40: 18.1 against 28.0), with one
    exception seen (K = 400, k = 25: 4.2 against 3.1 s). Fits, subspace then whole
    space at a stall (the rule up to ``32 k`` until the forty-seventh session) / Krylov
    (forty-sixth session's restarts, then thick) / whole space throughout (2-core Zen 4,
    N = 5000, three factors in the data unless said; the best of two runs; forty-sixth
    and forty-seventh sessions):

    ==============  =====  ==============  ===================  =========
    K, k            K / k  subspace/whole  Krylov 46th / thick  whole
    ==============  =====  ==============  ===================  =========
    100, 6          16.7   0.26 s          0.35 / 0.25-0.27 s   0.24 s
    200, 12         16.7   0.73            1.14 / 0.65-0.67     0.58-0.61
    100, 5 (5 f.)   20     0.14            -- / 0.14            0.23
    200, 10 (5 f.)  20     0.67            -- / 0.41            0.57
    240, 10         24     1.06            1.51 / 0.65-0.70     1.06
    120, 5          24     0.31-0.33       0.38 / 0.23-0.26     0.31
    300, 10         30     2.31-2.51       2.52 / 0.97-1.01     2.16-2.31
    300, 10 (10 f.) 30     0.28            -- / 0.29            1.27
    150, 5          30     0.36-0.37       0.26 / 0.21          0.35
    160, 5 (5 f.)   32     0.13            -- / 0.14            0.30
    200, 5          40     0.58 (45th)     0.53 / 0.38          0.56
    200, 5 (5 f.)   40     0.18 (45th)     0.17 / 0.16          --
    400, 10         40     2.83 (45th)     1.92 / 1.33          --
    300, 4          75     1.05 (45th)     0.70 / 0.47          --
    300, 3          100    0.21-0.24       0.22-0.23 / 0.25     --
    100, 1 (1 f.)   100    0.15            0.13 / 0.13          --
    ==============  =====  ==============  ===================  =========

    (Past ``48 k`` the forty-fifth session's rule was the stalled subspace iteration.)

    The decision at a stall rests on the iteration count, itself a function of the bits,
    so the path is the same everywhere.
    """
    if uses_full_space(K, rank):
        return "whole"
    if K > KRYLOV_RANK_RATIO * rank or K >= KRYLOV_MIN_SIZE:
        return "krylov"
    return "subspace"


def full_space_eigenpairs(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All eigenpairs of the symmetric K x K ``M``, eigenvalues descending: cyclic Jacobi
    rotations (:func:`jacobi_eigh`, rotations skipped below :data:`NEGLIGIBLE`) on
    ``(M + M^T) / 2`` itself, from the identity.

    Jacobi on ``M`` itself, not on ``Q^T M Q`` for a basis ``Q`` near the eigenvectors
    (a warm start of a few sweeps): ``M = D^-1/2 S D^-1/2`` is a scaled matrix whose
    eigenvalues Jacobi finds to high relative accuracy, the small ones included, while
    the products of a rotated basis carry errors of ``eps lambda_max`` into every
    entry. In a Heywood case (``lambda_max`` ~ 1e7) that noise in the log-likelihood
    (~1e-9 relative) kept the Sigma-step from meeting its stopping rule: 115
    evaluations against 45 with Jacobi on ``M`` (and with the subspace iteration).
    The rotations are compiled (:func:`._subspace.jacobi_rotations`); the compiled
    profile runs the same steps (:func:`._subspace.full_space_eigenpairs`).
    """
    M = np.asarray(M, dtype=np.float64)
    return jacobi_eigh((M + M.T) * 0.5, JACOBI_SWEEPS, NEGLIGIBLE)
