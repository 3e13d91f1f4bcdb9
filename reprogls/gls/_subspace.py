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
* norms: :func:`reprogls.kernels.cpu._cro.nrm2_segment`, the ``nrm2`` kernel's chunk
  partials on one thread;
* elementwise updates rounded as NumPy rounds them (``v - (d * q)``, ``v / norm``).

The oracles are :func:`.sigma.orthonormalize_reference`, :func:`reprogls.kernels.reference
.cro_nrm2` and CRO-1 dots through the public kernels (``tests/test_subspace.py``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..kernels.cpu._cro import dot_segment, nrm2_segment, segment_scratch

__all__ = ["orthonormalize", "rayleigh_matrix"]


@njit(cache=True)
def orthonormalize(Z, compensated):
    """Modified Gram-Schmidt on the columns of ``Z`` (K x k): column ``c`` becomes
    ``v / ||v||`` (left as ``v`` when the norm is 0) with ``v = z_c`` and, for
    ``b < c`` in order, ``v <- v - fl(dot(q_b, v) * q_b)``; CRO-1 dots and norm."""
    K, k = Z.shape
    Q = np.empty((K, k))
    ps, pc = segment_scratch(K)
    for c in range(k):
        v = Z[:, c].copy()
        for b in range(c):
            q = np.ascontiguousarray(Q[:, b])
            d = dot_segment(q, v, compensated, ps, pc)
            for i in range(K):
                v[i] = v[i] - d * q[i]
        norm = nrm2_segment(v, compensated)
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
    QT, MQT = np.ascontiguousarray(Q.T), np.ascontiguousarray(MQ.T)  # contiguous columns
    G = np.empty((k, k))
    for a in range(k):
        for b in range(k):
            G[a, b] = dot_segment(QT[a], MQT[b], compensated, ps, pc)
    T = np.empty((k, k))
    for a in range(k):
        for b in range(k):
            T[a, b] = (G[a, b] + G[b, a]) * 0.5
    return T
