"""The small dense steps of the Sigma-step's subspace iteration, compiled with Numba.

:func:`.sigma.top_eigenpairs` works on a K x k basis (k = the rank, a handful of
columns). Called from Python, every CRO-1 dot, norm and the k x k Jacobi solve of an
iteration was a separate call (a parallel kernel launch each, for vectors of K values):
at K = 50 the Sigma-step spent most of its time in call overhead. Here each step is one
call, with the same arithmetic in the same order, so the same bits (the k x k Jacobi
solve stays in Python, :func:`.sigma.jacobi_eigh`: at k <= 10 it costs a fit less than
compiling it (~1.5 s) costs a fresh install):

* dots: :func:`reprogls.kernels.cpu._cro.dot_segment`, the CRO-1 dot of the ``dot``
  kernel chunk by chunk (the chunk partials do not depend on which thread computes them);
* norms: :func:`_nrm2`, the steps of :func:`reprogls.kernels.reference.cro_nrm2` (exact
  ``max |x_i|``, power-of-two scaling, CRO-1 sum of squares, ``ldexp(sqrt(ssq), e)``);
* elementwise updates rounded as NumPy rounds them (``v - (d * q)``, ``v / norm``).

The oracles are :func:`.sigma.orthonormalize_reference`, :func:`reprogls.kernels.reference
.cro_nrm2` and CRO-1 dots through the public kernels (``tests/test_subspace.py``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..kernels.cpu._cro import (
    CHUNK,
    chunk_tree,
    dot_segment,
    finalize,
    lane_tree,
    lanes_scaled_squares,
    new_lanes,
    segment_scratch,
)
from ..kernels.reference.cro import CANONICAL_NAN

__all__ = ["orthonormalize", "rayleigh_matrix"]


@njit(cache=True)
def _nrm2(x, compensated):
    """CRO-1 ``nrm2`` of a C-contiguous vector, bitwise :func:`reference.cro_nrm2`."""
    n = x.shape[0]
    if n == 0:
        return 0.0
    amax, has_nan = 0.0, False
    for i in range(n):
        a = abs(x[i])
        has_nan |= a != a
        amax = a if a > amax else amax
    if has_nan:
        return CANONICAL_NAN
    if math.isinf(amax):
        return math.inf
    if amax == 0.0:
        return 0.0
    e = math.frexp(amax)[1]
    first = (-e) // 2
    f1, f2 = math.ldexp(1.0, first), math.ldexp(1.0, -e - first)
    n_chunks = (n + CHUNK - 1) // CHUNK
    ps, pc = np.empty(n_chunks), np.empty(n_chunks)
    for c in range(n_chunks):
        s, comp = new_lanes()
        lanes_scaled_squares(x[c * CHUNK:min(n, (c + 1) * CHUNK)], f1, f2, s, comp,
                             compensated)
        ps[c], pc[c] = lane_tree(s, comp, compensated)
    ssq = finalize(*chunk_tree(ps, pc, compensated), compensated)
    r = math.ldexp(math.sqrt(ssq), e)
    return CANONICAL_NAN if r != r else r


@njit(cache=True)
def orthonormalize(Z, compensated):
    """Modified Gram-Schmidt on the columns of ``Z`` (K x k): column ``c`` becomes
    ``v / ||v||`` (left as ``v`` when the norm is 0) with ``v = z_c`` and, for
    ``b < c`` in order, ``v <- v - fl(dot(q_b, v) * q_b)``; CRO-1 dots and norm."""
    K, k = Z.shape
    Q = np.empty((K, k))
    ps, pc = segment_scratch(K)
    for c in range(k):
        v = np.ascontiguousarray(Z[:, c]).copy()
        for b in range(c):
            q = np.ascontiguousarray(Q[:, b])
            d = dot_segment(q, v, compensated, ps, pc)
            for i in range(K):
                v[i] = v[i] - d * q[i]
        norm = _nrm2(v, compensated)
        for i in range(K):
            Q[i, c] = v[i] / norm if norm > 0.0 else v[i]
    return Q


@njit(cache=True)
def rayleigh_matrix(Q, MQ, compensated):
    """``T = (G + G^T) / 2`` with ``G[a, b]`` the CRO-1 dot of ``Q[:, a]`` and
    ``MQ[:, b]`` (the Rayleigh-Ritz matrix ``Q^T M Q``, symmetrised entry by entry as
    ``(G[a, b] + G[b, a]) * 0.5``)."""
    K, k = Q.shape
    ps, pc = segment_scratch(K)
    G = np.empty((k, k))
    for a in range(k):
        qa = np.ascontiguousarray(Q[:, a])
        for b in range(k):
            G[a, b] = dot_segment(qa, np.ascontiguousarray(MQ[:, b]), compensated, ps, pc)
    T = np.empty((k, k))
    for a in range(k):
        for b in range(k):
            T[a, b] = (G[a, b] + G[b, a]) * 0.5
    return T
