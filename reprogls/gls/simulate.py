"""Simulated SUR systems for demos, tests and benchmarks."""

from __future__ import annotations

import numpy as np

__all__ = ["simulate_sur"]


def simulate_sur(N: int, K: int, p: int, k: int, seed: int = 0, shared: bool = True):
    """A SUR system as alsgls's ``simulate_sur`` draws it.

    Regressors: a shared base ``(N, p)`` plus ``0.5 N(0, 1)`` noise per equation
    (``shared=False``: independent ``N(0, 1)`` designs); ``beta_j ~ N(0, I)``;
    ``F ~ N(0, 1)`` (K, k); ``d ~ 0.05 + 0.2 U(0, 1)``; ``e_i ~ N(0, F F^T + diag(d))``.

    Returns ``(Xs, Y, B, F, d)`` with ``B`` of shape (K, p). The draws come from NumPy's
    seeded generator and the products from the CRO-1 kernels (not BLAS), so the data —
    and the demo's fingerprint — are the same on every machine.
    """
    from ..kernels import gemv, pack_sur, sur_matvec

    rng = np.random.default_rng(seed)
    base = rng.standard_normal((N, p))
    Xs = [base + 0.5 * rng.standard_normal((N, p)) if shared else rng.standard_normal((N, p))
          for _ in range(K)]
    B = rng.standard_normal((K, p))
    F = rng.standard_normal((K, k))
    d = 0.05 + 0.2 * rng.uniform(size=K)
    U = rng.standard_normal((N, k))
    common = np.column_stack([gemv(U, F[j], device="cpu") for j in range(K)])  # U F^T
    E = common + rng.standard_normal((N, K)) * np.sqrt(d)
    X, offsets = pack_sur(Xs)
    Y = sur_matvec(X, offsets, B.ravel(), device="cpu") + E
    return Xs, Y, B, F, d
