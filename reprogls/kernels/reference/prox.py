"""Executable spec of the soft-thresholding family (elementwise, exact zeros).

All functions are elementwise with the term formulas stated; ``lam`` (and ``lo``/``hi``)
may be scalars or arrays of the shape of ``x``. A NaN in ``x`` gives the canonical NaN
(it is never thresholded to zero).
"""

from __future__ import annotations

import numpy as np

from .cro import CANONICAL_NAN

__all__ = ["fista_step", "prox_elastic_net", "soft_threshold", "soft_threshold_box"]


def _canonical(out: np.ndarray, x: np.ndarray) -> np.ndarray:
    out[np.isnan(out) | np.isnan(x)] = CANONICAL_NAN
    return out


def soft_threshold(x: np.ndarray, lam) -> np.ndarray:
    """``S_lam(x)``: ``x - lam`` if ``x > lam``, ``x + lam`` if ``x < -lam``, else ``+0.0``.

    The proximal operator of ``lam |x|``. Inside the band the result is exactly ``+0.0``.
    """
    x = np.asarray(x, dtype=np.float64)
    lam = np.broadcast_to(np.asarray(lam, dtype=np.float64), x.shape)
    with np.errstate(invalid="ignore"):
        out = np.where(x > lam, x - lam, np.where(x < -lam, x + lam, 0.0))
    return _canonical(out, x)


def _clip(v: np.ndarray, lo, hi) -> np.ndarray:
    """``lo`` if ``v < lo``, ``hi`` if ``v > hi``, else ``v`` (NaN stays NaN)."""
    return np.where(v < lo, lo, np.where(v > hi, hi, v))


def soft_threshold_box(x: np.ndarray, lam, lo, hi) -> np.ndarray:
    """Prox of ``lam |x|`` plus the indicator of ``[lo, hi]``: ``clip(S_lam(x), lo, hi)``.

    In one dimension the prox of a convex function plus a box indicator is the clip of
    its prox, so this is exact (``lo <= hi`` required).
    """
    x = np.asarray(x, dtype=np.float64)
    return _canonical(_clip(soft_threshold(x, lam), lo, hi).astype(np.float64), x)


def prox_elastic_net(x: np.ndarray, lam, l1_ratio: float, step: float,
                     lo=-np.inf, hi=np.inf) -> np.ndarray:
    """Prox of ``step * lam * (l1_ratio |x| + (1 - l1_ratio) x^2 / 2)`` (+ box ``[lo, hi]``).

    Term formula::

        a     = fl(step * lam)
        thr   = fl(a * l1_ratio)
        denom = fl(1 + fl(a * fl(1 - l1_ratio)))
        out   = clip(fl(S_thr(x) / denom), lo, hi)
    """
    x = np.asarray(x, dtype=np.float64)
    a = np.asarray(step, dtype=np.float64) * np.asarray(lam, dtype=np.float64)
    thr = a * np.float64(l1_ratio)
    denom = 1.0 + a * (1.0 - np.float64(l1_ratio))
    out = _clip(soft_threshold(x, thr) / denom, lo, hi).astype(np.float64)
    return _canonical(out, x)


def fista_step(z: np.ndarray, grad: np.ndarray, step: float, x_prev: np.ndarray,
               momentum: float, lam, l1_ratio: float = 1.0, lo=-np.inf,
               hi=np.inf) -> tuple[np.ndarray, np.ndarray]:
    """One proximal-gradient (FISTA) step, fused::

        x_new  = prox_elastic_net(fl(z - fl(step * grad)), lam, l1_ratio, step, lo, hi)
        z_next = fl(x_new + fl(momentum * fl(x_new - x_prev)))

    Returns ``(x_new, z_next)``.
    """
    z = np.asarray(z, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        a = z - np.float64(step) * np.asarray(grad, dtype=np.float64)
    x_new = prox_elastic_net(a, lam, l1_ratio, step, lo, hi)
    with np.errstate(invalid="ignore", over="ignore"):
        z_next = x_new + np.float64(momentum) * (x_new - np.asarray(x_prev, dtype=np.float64))
    z_next[np.isnan(z_next)] = CANONICAL_NAN
    return x_new, z_next
