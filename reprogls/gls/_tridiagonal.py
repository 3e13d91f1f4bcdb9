"""Top eigenpairs of a small symmetric matrix: Householder tridiagonalisation, implicit
QL, back-transformation of the chosen vectors, compiled with Numba.

The block Krylov method's Rayleigh-Ritz solves (:func:`.eigen.krylov_eigenpairs`) need
the top ``m`` (at most ``2 k``) eigenpairs of ``T = B^T M B``, of order up to ~275 at
rank 25. Cyclic Jacobi (:func:`.eigen.jacobi_eigh`) finds all of them, ~9 sweeps of
``O(n^3)`` rotations; this takes one ``4/3 n^3`` reduction, ``~n^2`` rotations of rows
of ``n`` on the tridiagonal's eigenvectors and ``2 n^2 m`` for the back-transformation
(measured in :func:`.eigen.tridiagonal_eigh`'s docstring). Its eigenvalues are
accurate to a small multiple of ``eps ||T||`` (Jacobi's to ``eps |lambda|`` relative),
which is all the Krylov rule asks: it judges the top values' changes against a floor
of ``16 eps lambda_1``.

Every step is a fixed sequence of IEEE operations, the same on every machine:

* :func:`householder_tridiagonal`, bottom-up (EISPACK's ``tred2`` order): for ``i = n -
  1 .. 2`` the reflector ``P_i = I - b v v^T`` with ``v`` supported on ``0 .. i - 1``
  takes row ``i``'s prefix ``x = A[i, :i]`` to ``alpha e_{i-1}``, ``alpha = -sign(x_{i-1})
  ||x||`` (CRO-1 ``nrm2``), ``v = x - alpha e_{i-1}``, ``b = 1 / (||x|| |v_{i-1}|)`` (=
  ``2 / v^T v`` exactly in real arithmetic); ``p = fl(b * dot(A[r, :i], v))`` (CRO-1 dots),
  ``K = fl(fl(0.5 * b) * dot(v, p))``, ``w = p - fl(K v)``, and ``A[r, c] <- A[r, c] -
  (fl(v_r w_c) + fl(w_r v_c))`` for ``r, c < i``: the same two products summed in the
  other order at ``(c, r)``, so ``A`` stays symmetric bit for bit;
* :func:`implicit_ql`: the implicit QL iteration with Wilkinson's shift (EISPACK's
  ``tql2`` as in Numerical Recipes' ``tqli``; ``pythag`` by the scaled form),
  deflating when ``|e_m| + (|d_m| + |d_{m+1}|) == |d_m| + |d_{m+1}|``; each plane
  rotation updates two rows of ``ZT``, ``fl(s a + c b)`` and ``fl(c a - s b)``;
* :func:`back_transform`: ``W = P_{n-1} ... P_2 Z``, for the chosen rows of ``ZT``,
  ``P_2`` first: ``w <- w - fl(t v)`` with ``t = fl(b * dot(v, w[:i]))`` (CRO-1).

All on ``T 2^-e`` with ``max |T_ij| 2^-e`` in ``[1/2, 1)`` (exact; the eigenvalues are
scaled back), so that nothing overflows or underflows at the ends of the range.

The oracle is :func:`.eigen.tridiagonal_eigh_reference` (plain Python, the reference
CRO-1 dots; ``tests/test_tridiagonal.py``).
"""

from __future__ import annotations

import math

import numpy as np

from ..kernels.cpu._cro import dot_pair_prefix, dot_segment, nrm2_segment
from ..kernels.cpu.jit import njit
from ..kernels.cpu.views import unmanaged
from ._subspace import descending_order

__all__ = ["QL_MAX_ITERATIONS", "back_transform", "householder_tridiagonal",
           "implicit_ql", "pythag", "top_eigenpairs_tridiagonal"]

#: Most implicit QL iterations for one eigenvalue (EISPACK's and Numerical Recipes'
#: 30); more is an error, never a silent answer (NaN input ends here too).
QL_MAX_ITERATIONS = 30


@njit(cache=True)
def householder_tridiagonal(A, V, b, d, e, compensated):
    """Reduce the symmetric ``A`` (n x n, overwritten) to the tridiagonal ``(d, e)``
    (``e[j]`` couples ``j`` and ``j + 1``; ``e[n - 1] = 0``), storing reflector ``i``'s
    ``v`` in ``V[i, :i]`` and its ``b`` in ``b[i]`` (0: no reflection). The module
    docstring has the formulas."""
    n = A.shape[0]
    p = np.empty(n)
    rows, vectors = unmanaged(A), unmanaged(V)  # slices without reference counting
    for i in range(n):
        b[i] = 0.0
        e[i] = 0.0
    for i in range(n - 1, 1, -1):
        d[i] = A[i, i]
        norm = nrm2_segment(rows[i, :i], compensated)
        x0 = A[i, i - 1]
        if norm == 0.0:
            e[i - 1] = 0.0
            continue
        alpha = -norm if x0 >= 0.0 else norm
        v = vectors[i]
        for c in range(i - 1):
            v[c] = A[i, c]
        v[i - 1] = x0 - alpha
        bi = 1.0 / (norm * abs(v[i - 1]))
        b[i] = bi
        e[i - 1] = alpha
        r = 0
        while r + 1 < i:
            s0, s1 = dot_pair_prefix(A, r, r + 1, v, i, compensated)
            p[r], p[r + 1] = bi * s0, bi * s1
            r += 2
        if r < i:
            p[r] = bi * dot_segment(rows[r, :i], v[:i], compensated)
        half_k = (0.5 * bi) * dot_segment(v[:i], p[:i], compensated)
        for c in range(i):
            p[c] = p[c] - half_k * v[c]
        for r in range(i):
            vr, wr = v[r], p[r]
            row = rows[r]
            for c in range(i):
                row[c] = row[c] - (vr * p[c] + wr * v[c])
    if n >= 2:
        d[1], e[0] = A[1, 1], A[1, 0]
    if n >= 1:
        d[0] = A[0, 0]


@njit(cache=True, inline="always")
def pythag(a, b):
    """``sqrt(a^2 + b^2)`` without overflow: ``|a| sqrt(1 + (b / a)^2)`` with the larger
    magnitude outside."""
    aa, ab = abs(a), abs(b)
    if aa > ab:
        r = ab / aa
        return aa * math.sqrt(1.0 + r * r)
    if ab == 0.0:
        return 0.0
    r = aa / ab
    return ab * math.sqrt(1.0 + r * r)


@njit(cache=True, inline="always")
def _rotate(a, b, c, s):
    """Rows ``a, b`` (the eigenvectors ``i, i + 1``) <- ``c a - s b``, ``s a + c b``."""
    for k in range(a.shape[0]):
        ak, bk = a[k], b[k]
        b[k] = s * ak + c * bk
        a[k] = c * ak - s * bk


@njit(cache=True)
def implicit_ql(d, e, ZT):
    """Eigenvalues of the tridiagonal ``(d, e)`` into ``d`` and its eigenvectors into the
    rows of ``ZT`` (rotated from what it holds: the identity for the tridiagonal's own).
    Returns False where an eigenvalue took more than :data:`QL_MAX_ITERATIONS`."""
    n = d.shape[0]
    if n == 0:
        return True
    Z = unmanaged(ZT)  # its row slices cost no reference counting (``views``)
    e[n - 1] = 0.0
    for top in range(n):
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
                return False
            iterations += 1
            g = (d[top + 1] - d[top]) / (2.0 * e[top])
            r = pythag(g, 1.0)
            g = d[end] - d[top] + e[top] / (g + (r if g >= 0.0 else -r))
            s, c, p = 1.0, 1.0, 0.0
            i = end - 1
            underflow = False
            while i >= top:
                f = s * e[i]
                bb = c * e[i]
                r = pythag(f, g)
                e[i + 1] = r
                if r == 0.0:  # recover from underflow: deflate here
                    d[i + 1] -= p
                    e[end] = 0.0
                    underflow = True
                    break
                s = f / r
                c = g / r
                g = d[i + 1] - p
                r = (d[i] - g) * s + 2.0 * c * bb
                p = s * r
                d[i + 1] = g + p
                g = c * r - bb
                _rotate(Z[i], Z[i + 1], c, s)
                i -= 1
            if underflow:
                continue
            d[top] -= p
            e[top] = g
            e[end] = 0.0
    return True


@njit(cache=True)
def back_transform(V, b, WT, compensated):
    """``WT``'s rows (tridiagonal eigenvectors) <- ``P_{n-1} ... P_2`` applied to each,
    in place, ``P_2`` first; the module docstring has the formulas."""
    m, n = WT.shape
    vectors, out = unmanaged(V), unmanaged(WT)  # slices without reference counting
    for i in range(2, n):
        bi = b[i]
        if bi == 0.0:
            continue
        v = vectors[i]
        c = 0
        while c < m:
            if c + 1 < m:
                s0, s1 = dot_pair_prefix(WT, c, c + 1, v, i, compensated)
                pairs = 2
            else:
                s0, s1 = dot_segment(out[c, :i], v[:i], compensated), 0.0
                pairs = 1
            for q in range(pairs):
                t = bi * (s0 if q == 0 else s1)
                row = out[c + q]
                for j in range(i):
                    row[j] = row[j] - t * v[j]
            c += pairs


@njit(cache=True)
def top_eigenpairs_tridiagonal(T, m, compensated):
    """``(values, order, WT, converged)``: every eigenvalue of the symmetric ``T`` (in
    QL's order), the order that sorts them descending (ties by index), and the
    eigenvectors of the top ``m`` as the rows of ``WT``. The work is on ``T 2^-e``
    (:func:`_scaled`), the values scaled back by ``2^e``."""
    n = T.shape[0]
    A, exponent = _scaled(T)
    V = np.zeros((n, n))
    b, d, e = np.empty(n), np.empty(n), np.empty(n)
    householder_tridiagonal(A, V, b, d, e, compensated)
    # the values alone (m = 0): rows of no columns, so the QL rotates nothing but d, e
    # (which the rows never feed: the same values)
    ZT = np.eye(n) if m > 0 else np.empty((n, 0))
    converged = implicit_ql(d, e, ZT)
    for i in range(n):
        d[i] = math.ldexp(d[i], exponent)
    order = descending_order(d)
    WT = np.empty((m, n))
    for q in range(m):
        for j in range(n):
            WT[q, j] = ZT[order[q], j]
    back_transform(V, b, WT, compensated)
    return d, order, WT, converged



@njit(cache=True)
def _scaled(T):
    """``(T 2^-e, e)`` with ``2^(e-1) <= max |T_ij| < 2^e`` (``e = 0`` for a zero ``T``
    or one with an infinite or NaN entry): exact but for entries that become
    subnormal. It keeps the reflectors' ``b = 1 / (||x|| |v|)`` and the rank-two
    updates' products from overflowing or underflowing at the ends of the range (as
    LAPACK's ``dsyev`` scales)."""
    n = T.shape[0]
    amax, finite = 0.0, True
    for i in range(n):
        for j in range(n):
            a = abs(T[i, j])
            finite &= a < math.inf
            amax = a if a > amax else amax
    e = 0
    if finite and amax > 0.0:
        e = math.frexp(amax)[1]
    A = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            A[i, j] = math.ldexp(T[i, j], -e)
    return A, e
