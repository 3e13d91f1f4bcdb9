"""Simulated SUR systems for demos, tests and benchmarks."""

from __future__ import annotations

import numpy as np

__all__ = ["simulate_sur"]


def simulate_sur(N: int, K: int, p: int, k: int, seed: int = 0, shared: bool = True):
    """A SUR system as alsgls's ``simulate_sur`` draws it.

    Regressors: a shared base ``(N, p)`` plus ``0.5 N(0, 1)`` noise per equation
    (``shared=False``: independent ``N(0, 1)`` designs); ``beta_j ~ N(0, I)``;
    ``F ~ N(0, 1)`` (K, k); ``d ~ 0.05 + 0.2 U(0, 1)``; ``e_i ~ N(0, F F^T + diag(d))``.

    Returns ``(Xs, Y, B, F, d)`` with ``B`` of shape (K, p).
    """
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((N, p))
    Xs = [base + 0.5 * rng.standard_normal((N, p)) if shared else rng.standard_normal((N, p))
          for _ in range(K)]
    B = rng.standard_normal((K, p))
    F = rng.standard_normal((K, k))
    d = 0.05 + 0.2 * rng.uniform(size=K)
    E = rng.standard_normal((N, k)) @ F.T + rng.standard_normal((N, K)) * np.sqrt(d)
    Y = np.column_stack([Xs[j] @ B[j] for j in range(K)]) + E
    return Xs, Y, B, F, d
