"""Portable ``log`` and ``exp``: one algorithm, the same bits on every device.

The C library's ``log``/``exp`` (and CUDA's) are not correctly rounded and differ
between platforms, so the package computes them itself from operations that *are*
correctly rounded everywhere: ``+ - * /``, comparisons, ``frexp``/``ldexp`` and the exact
float-to-int truncation. The algorithms are fdlibm's (Sun Microsystems, 1993:
``e_log.c`` and ``e_exp.c``), with the bit manipulations replaced by ``frexp``/``ldexp``
and comparisons against double constants. Measured accuracy: see
``profiling/elementary_accuracy.py`` (max error below 1 ulp against mpmath).

The scalar functions :func:`log_scalar` and :func:`exp_scalar` are the specification; the
Numba kernels compile these very functions, and the CUDA source is a line-by-line port.
Special values: ``log(x<0) = NaN``, ``log(+-0) = -inf``, ``log(inf) = inf``;
``exp(x > 709.78...) = inf``, ``exp(x < -745.13...) = +0.0``; NaN in, canonical NaN out.
"""

from __future__ import annotations

import math

import numpy as np

from .cro import CANONICAL_NAN

__all__ = ["exp", "exp_scalar", "log", "log_scalar"]

_LN2_HI = 6.93147180369123816490e-01  # 0x3fe62e42 fee00000: k * LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10  # 0x3dea39ef 35793c76
_SQRT_HALF = 0.70710678118654752440
_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01

_INV_LN2 = 1.44269504088896338700e+00
_O_THRESHOLD = 7.09782712893383973096e+02
_U_THRESHOLD = -7.45133219101941108420e+02
_HALF_LN2 = 0.34657359027997264  # below: no argument reduction
_THREE_HALVES_LN2 = 1.0397207708399179  # below: k = +-1
_TINY = 3.725290298461914e-09  # 2**-28: exp(x) = 1 + x
_P1 = 1.66666666666666019037e-01
_P2 = -2.77777777770155933842e-03
_P3 = 6.61375632143793436117e-05
_P4 = -1.65339022054652515390e-06
_P5 = 4.13813679705723846039e-08


def log_scalar(x: float) -> float:
    """Natural logarithm (fdlibm ``__ieee754_log``).

    ``x = m 2^k`` with ``m`` in ``[sqrt(1/2), sqrt(2))``, ``f = m - 1`` (exact),
    ``s = f / (2 + f)``, ``R`` a degree-14 minimax polynomial in ``s`` and
    ``log(x) = k ln2_hi - ((hfsq - (s (hfsq + R) + k ln2_lo)) - f)``, ``hfsq = f^2 / 2``.
    """
    if x != x:
        return CANONICAL_NAN
    if x < 0.0:
        return CANONICAL_NAN
    if x == 0.0:
        return -math.inf
    if x == math.inf:
        return math.inf
    m, k = math.frexp(x)  # x = m * 2**k, 0.5 <= m < 1
    if m < _SQRT_HALF:
        m = m * 2.0
        k = k - 1
    f = m - 1.0
    s = f / (2.0 + f)
    dk = float(k)
    z = s * s
    w = z * z
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    R = t2 + t1
    hfsq = 0.5 * f * f
    return dk * _LN2_HI - ((hfsq - (s * (hfsq + R) + dk * _LN2_LO)) - f)


def exp_scalar(x: float) -> float:
    """Exponential (fdlibm ``__ieee754_exp``).

    ``x = k ln2 + r`` with ``|r| <= ln2 / 2`` (``k = trunc(x / ln2 +- 1/2)``, ``r = hi - lo``
    with ``hi = x - k ln2_hi`` exact), ``c = r - r^2 (P1 + r^2 (P2 + ...))``,
    ``exp(r) = 1 - ((lo - r c / (2 - c)) - hi)``, result ``ldexp(exp(r), k)``.
    """
    if x != x:
        return CANONICAL_NAN
    if x > _O_THRESHOLD:
        return math.inf
    if x < _U_THRESHOLD:
        return 0.0
    ax = abs(x)
    k = 0
    hi = 0.0
    lo = 0.0
    if ax > _HALF_LN2:
        if ax < _THREE_HALVES_LN2:
            if x > 0.0:
                hi = x - _LN2_HI
                lo = _LN2_LO
                k = 1
            else:
                hi = x + _LN2_HI
                lo = -_LN2_LO
                k = -1
        else:
            k = int(_INV_LN2 * x + (0.5 if x > 0.0 else -0.5))
            t = float(k)
            hi = x - t * _LN2_HI
            lo = t * _LN2_LO
        x = hi - lo
    elif ax < _TINY:
        return 1.0 + x
    t = x * x
    c = x - t * (_P1 + t * (_P2 + t * (_P3 + t * (_P4 + t * _P5))))
    if k == 0:
        return 1.0 - ((x * c) / (c - 2.0) - x)
    y = 1.0 - ((lo - (x * c) / (2.0 - c)) - hi)
    # y * 2**k with one IEEE rounding (also into the subnormal range): powers of two
    # are split so that every factor is a normal number and only the last product rounds.
    if k > 1000:
        return (y * 2.0**1000) * math.ldexp(1.0, k - 1000)
    if k < -1000:
        return (y * math.ldexp(1.0, k + 1000)) * 2.0**-1000
    return y * math.ldexp(1.0, k)


def log(x: np.ndarray) -> np.ndarray:
    """:func:`log_scalar` elementwise over a float64 array."""
    x = np.asarray(x, dtype=np.float64)
    return np.array([log_scalar(float(v)) for v in x.ravel()]).reshape(x.shape)


def exp(x: np.ndarray) -> np.ndarray:
    """:func:`exp_scalar` elementwise over a float64 array."""
    x = np.asarray(x, dtype=np.float64)
    return np.array([exp_scalar(float(v)) for v in x.ravel()]).reshape(x.shape)
