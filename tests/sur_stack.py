"""The SUR system as one stacked regression, for the oracles of the estimator's tests."""

from __future__ import annotations

import numpy as np


def whitened_stack(Xs, Y, F, d):
    """The stacked system ``(y*, X*)`` (N K rows) whitened by ``Sigma = F F^T + diag(d)``:
    OLS on it is GLS on the SUR system."""
    Sigma = F @ F.T + np.diag(d)
    W = np.linalg.inv(np.linalg.cholesky(Sigma))  # whitening: W Sigma W^T = I
    N, K = Y.shape
    P = sum(x.shape[1] for x in Xs)
    Xstack = np.zeros((N, K, P))
    col = 0
    for j, Xj in enumerate(Xs):
        Xstack[:, j, col:col + Xj.shape[1]] = Xj
        col += Xj.shape[1]
    yw = (Y @ W.T).reshape(-1)
    Xw = np.einsum("kj,njp->nkp", W, Xstack).reshape(N * K, P)
    return yw, Xw
