"""Adversarial inputs for the linear-algebra and elementwise kernels."""

from __future__ import annotations

import numpy as np

#: Equation widths with 0 and 1 regressors, a full lane, and widths past 32.
WIDTHS = (3, 0, 1, 32, 33, 5, 70)
#: Widths classes interleaved, so that a tile of one width holds non-consecutive
#: equations (the block kernels' gather order), with a long class of width 2.
INTERLEAVED = (2, 3, 2, 0, 3, 2, 40, 2, 1, 2, 3) + (2,) * 40 + (7,)
#: Row counts around the lane and chunk boundaries.
ROWS = (1, 31, 100, 8191, 8193)


def wide(rng: np.random.Generator, shape) -> np.ndarray:
    """Values of magnitude 1e-12 .. 1e12, both signs (cancellation inside reductions)."""
    return rng.choice([-1.0, 1.0], shape) * 10.0 ** rng.uniform(-12, 12, shape)


def sur_problem(n_rows: int, widths=WIDTHS, seed: int = 0):
    """``(X, offsets, beta, W)`` for a SUR system with the given equation widths."""
    rng = np.random.default_rng([seed, n_rows])
    offsets = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
    X = wide(rng, (n_rows, int(offsets[-1])))
    beta = wide(rng, int(offsets[-1]))
    W = wide(rng, (n_rows, len(widths)))
    return X, offsets, beta, W


def factor_problem(K: int, k: int, seed: int = 0):
    """Loadings ``F`` (K, k) and a positive diagonal ``d`` (well conditioned)."""
    rng = np.random.default_rng([seed, K, k])
    return rng.standard_normal((K, k)), 0.05 + 0.2 * rng.uniform(size=K)
