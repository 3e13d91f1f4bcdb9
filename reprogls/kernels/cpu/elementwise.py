"""Numba elementwise kernels: soft-thresholding family and portable log/exp.

The scalar bodies are the reference's own scalar functions compiled by Numba
(``log_scalar``, ``exp_scalar``) or written out with the same term formulas as
:mod:`reprogls.kernels.reference.prox`; each runs over blocks of elements, the blocks
split over the threads by :func:`.tasks.run_tasks`.
A scalar-or-array parameter is passed as a float or as a contiguous array of length n,
and :func:`element` reads it; Numba compiles one specialisation per combination used.
(A stride-0 broadcast view compiles to a non-contiguous layout that runs 10x slower; an
array of length 1 or n read as ``lam[i * inc]``, as the CUDA kernels do, kept LLVM from
vectorising the loop outside a ``prange`` body: 10 ns per element, against ~1 ns.)
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload

from ..reference import cro as _cro
from ..reference import elementary as _elem
from .jit import njit
from .pages import fresh
from .tasks import run_tasks

CANONICAL_NAN = _cro.CANONICAL_NAN
BLOCK = 16384

log_scalar = njit(cache=True)(_elem.log_scalar)
exp_scalar = njit(cache=True)(_elem.exp_scalar)


@njit(nogil=True, cache=True)
def log_tasks(b0, b1, x, out):
    for b in range(b0, b1):
        for i in range(b * BLOCK, min(x.shape[0], (b + 1) * BLOCK)):
            out[i] = log_scalar(x[i])


@njit(nogil=True, cache=True)
def exp_tasks(b0, b1, x, out):
    for b in range(b0, b1):
        for i in range(b * BLOCK, min(x.shape[0], (b + 1) * BLOCK)):
            out[i] = exp_scalar(x[i])


def element(p, i):
    """``p`` if ``p`` is a scalar, else ``p[i]`` (compiled per argument type, below)."""
    raise NotImplementedError("element() is only usable in compiled code")


@overload(element, inline="always")
def _element(p, i):
    if isinstance(p, types.Float):
        return lambda p, i: p
    return lambda p, i: p[i]


@njit(inline="always", cache=True)
def soft_threshold_scalar(v, lam):
    """``v - lam`` if ``v > lam``, ``v + lam`` if ``v < -lam``, else ``+0.0``; NaN -> NaN.

    Written with conditional expressions (selects): with branches, random signs cost a
    branch miss per element (measured 10x slower).
    """
    r = v - lam if v > lam else (v + lam if v < -lam else 0.0)
    return r if v == v else CANONICAL_NAN


@njit(inline="always", cache=True)
def clip_scalar(v, lo, hi):
    """``lo`` if ``v < lo``, ``hi`` if ``v > hi``, else ``v`` (selects, NaN stays NaN)."""
    return lo if v < lo else (hi if v > hi else v)


@njit(inline="always", cache=True)
def prox_scalar(v, lam, l1_ratio, step, lo, hi):
    """Elastic-net prox with box, term formula of ``reference.prox_elastic_net``."""
    a = step * lam
    r = clip_scalar(soft_threshold_scalar(v, a * l1_ratio) / (1.0 + a * (1.0 - l1_ratio)),
                    lo, hi)
    return CANONICAL_NAN if r != r else r


@njit(nogil=True, cache=True)
def soft_threshold_tasks(b0, b1, x, lam, out):
    for b in range(b0, b1):
        for i in range(b * BLOCK, min(x.shape[0], (b + 1) * BLOCK)):
            out[i] = soft_threshold_scalar(x[i], element(lam, i))


@njit(nogil=True, cache=True)
def soft_threshold_box_tasks(b0, b1, x, lam, lo, hi, out):
    for b in range(b0, b1):
        for i in range(b * BLOCK, min(x.shape[0], (b + 1) * BLOCK)):
            r = clip_scalar(soft_threshold_scalar(x[i], element(lam, i)), element(lo, i),
                            element(hi, i))
            out[i] = CANONICAL_NAN if r != r else r


@njit(nogil=True, cache=True)
def prox_elastic_net_tasks(b0, b1, x, lam, l1_ratio, step, lo, hi, out):
    for b in range(b0, b1):
        for i in range(b * BLOCK, min(x.shape[0], (b + 1) * BLOCK)):
            out[i] = prox_scalar(x[i], element(lam, i), l1_ratio, step, element(lo, i),
                                 element(hi, i))


@njit(nogil=True, cache=True)
def fista_step_tasks(b0, b1, z, grad, step, x_prev, momentum, lam, l1_ratio, lo, hi, x_new,
                     z_next):
    """``x_new = prox(z - step*grad)``, ``z_next = x_new + momentum*(x_new - x_prev)``."""
    for b in range(b0, b1):
        for i in range(b * BLOCK, min(z.shape[0], (b + 1) * BLOCK)):
            xn = prox_scalar(z[i] - step * grad[i], element(lam, i), l1_ratio, step,
                             element(lo, i), element(hi, i))
            x_new[i] = xn
            zn = xn + momentum * (xn - x_prev[i])
            z_next[i] = CANONICAL_NAN if zn != zn else zn


def _blocks(x) -> int:
    """Tasks of the elementwise kernels: blocks of ``BLOCK`` elements."""
    return -(-x.shape[0] // BLOCK)


def _param(v):
    """A scalar or per-element parameter: a float, or a contiguous float64 array."""
    a = np.ascontiguousarray(np.asarray(v, dtype=np.float64).ravel())
    return float(a[0]) if a.shape[0] == 1 else a


def log(x):
    out = fresh(x.shape)
    run_tasks(log_tasks, _blocks(x), x, out)
    return out


def exp(x):
    out = fresh(x.shape)
    run_tasks(exp_tasks, _blocks(x), x, out)
    return out


def soft_threshold(x, lam):
    out = fresh(x.shape)
    run_tasks(soft_threshold_tasks, _blocks(x), x, _param(lam), out)
    return out


def soft_threshold_box(x, lam, lo, hi):
    out = fresh(x.shape)
    run_tasks(soft_threshold_box_tasks, _blocks(x), x, _param(lam), _param(lo), _param(hi),
              out)
    return out


def prox_elastic_net(x, lam, l1_ratio, step, lo, hi):
    out = fresh(x.shape)
    run_tasks(prox_elastic_net_tasks, _blocks(x), x, _param(lam), float(l1_ratio),
              float(step), _param(lo), _param(hi), out)
    return out


def fista_step(z, grad, step, x_prev, momentum, lam, l1_ratio, lo, hi):
    x_new, z_next = fresh(z.shape), fresh(z.shape)
    run_tasks(fista_step_tasks, _blocks(z), z, grad, float(step), x_prev, float(momentum),
              _param(lam), float(l1_ratio), _param(lo), _param(hi), x_new, z_next)
    return x_new, z_next
