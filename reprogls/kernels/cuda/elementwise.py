"""CuPy launchers of the elementwise kernels (``elementwise.cu``)."""

from __future__ import annotations

import cupy as cp
import numpy as np

from ._launch import kernel, thread_grid


def _k(name):
    return kernel("elementwise.cu", name)


def _param(v):
    """A scalar or per-element parameter as ``(device array, stride)``."""
    a = cp.ascontiguousarray(cp.asarray(v, dtype=cp.float64).ravel())
    return a, np.int64(0 if a.size == 1 else 1)


def _unary(name, x):
    out = cp.empty_like(x)
    grid, block = thread_grid(x.shape[0])
    _k(name)(grid, block, (x, np.int64(x.shape[0]), out))
    return out


def log(x):
    return _unary("log_kernel", x)


def exp(x):
    return _unary("exp_kernel", x)


def soft_threshold(x, lam):
    out = cp.empty_like(x)
    grid, block = thread_grid(x.shape[0])
    _k("soft_threshold_kernel")(grid, block, (x, np.int64(x.shape[0]), *_param(lam), out))
    return out


def soft_threshold_box(x, lam, lo, hi):
    out = cp.empty_like(x)
    grid, block = thread_grid(x.shape[0])
    _k("soft_threshold_box_kernel")(grid, block, (x, np.int64(x.shape[0]), *_param(lam),
                                                  *_param(lo), *_param(hi), out))
    return out


def prox_elastic_net(x, lam, l1_ratio, step, lo, hi):
    out = cp.empty_like(x)
    grid, block = thread_grid(x.shape[0])
    _k("prox_elastic_net_kernel")(grid, block, (x, np.int64(x.shape[0]), *_param(lam),
                                                np.float64(l1_ratio), np.float64(step),
                                                *_param(lo), *_param(hi), out))
    return out


def fista_step(z, grad, step, x_prev, momentum, lam, l1_ratio, lo, hi):
    x_new, z_next = cp.empty_like(z), cp.empty_like(z)
    grid, block = thread_grid(z.shape[0])
    _k("fista_step_kernel")(grid, block, (z, grad, np.int64(z.shape[0]), np.float64(step),
                                          x_prev, np.float64(momentum), *_param(lam),
                                          np.float64(l1_ratio), *_param(lo), *_param(hi),
                                          x_new, z_next))
    return x_new, z_next
