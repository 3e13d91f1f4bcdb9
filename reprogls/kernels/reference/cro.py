"""The executable specification of the canonical reduction order CRO-1.

Pure NumPy, written to be read. Every CPU (Numba) and CUDA (CuPy) kernel in
:mod:`reprogls.kernels` must return exactly the bits this module returns: it is the
oracle of the test-suite. Changing any constant or any step below changes results, so
such a change must bump :data:`CRO_VERSION`.

CRO-1, for a sequence of ``n`` float64 terms ``v[0..n)``
--------------------------------------------------------

1. **Chunks.** Chunk ``c`` holds the terms ``[c*CHUNK, min(n, (c+1)*CHUNK))`` with
   ``CHUNK = 8192``.
2. **Lanes.** Inside a chunk, lane ``l`` (``0 <= l < LANES = 32``) accumulates the terms
   ``v[c*CHUNK + l + j*LANES]`` for ``j = 0, 1, ...`` in that order, starting from the
   identity ``s = -0.0`` (and ``comp = -0.0``):

   * plain mode: ``s = s + v``;
   * compensated mode: ``(s, e) = TwoSum(s, v); comp = comp + e``, where
     ``TwoSum(a, b)``: ``s = a + b; t = s - a; e = (a - (s - t)) + (b - t)``.

3. **Lane tree.** For ``w = 16, 8, 4, 2, 1``, lane ``l < w`` merges lane ``l + w``:
   plain ``sa = sa + sb``; compensated ``(t, e) = TwoSum(sa, sb); comp = (ca + cb) + e;
   sa = t``. Lane 0 is the chunk's partial.
4. **Chunk tree.** The partials are merged in pairs ``(2i, 2i + 1)`` with the same merge,
   level by level; an odd last partial passes up to the next level unchanged.
5. **Result** (:func:`finalize`). The empty sum (``n = 0``) is ``+0.0``. Plain mode: ``s``.
   Compensated mode: ``s + comp``, except that the result is ``s`` itself when ``s`` is
   not finite (IEEE inf/NaN semantics win over the NaN that TwoSum makes of infinities in
   ``comp``) or when ``comp`` is zero (an exactly representable sum keeps the sign of zero
   that plain summation gives it, e.g. the sum of ``[-0.0]`` is ``-0.0``). Every NaN
   result is the canonical quiet NaN ``0x7ff8000000000000``.

Every operation is a single IEEE-754 binary64 ``+``, ``-`` or ``*`` in round-to-nearest;
no fused multiply-add. Padding the terms with ``-0.0`` up to a whole number of chunks
adds exactly nothing and is an allowed implementation (this module does it).

Term formulas
-------------
* :func:`cro_sum`: ``v[i] = x[i]``.
* :func:`cro_dot`: ``v[i] = x[i] * y[i]`` rounded once.
* :func:`cro_nrm2`: see its docstring (a max pass, a power-of-two scaling, a CRO-1 sum of
  squares).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "CANONICAL_NAN",
    "CHUNK",
    "CRO_VERSION",
    "LANES",
    "check_mode",
    "cro_dot",
    "cro_nrm2",
    "cro_sum",
    "finalize",
    "finalize_rows",
    "nrm2_finish",
    "nrm2_plan",
    "nrm2_scaling",
    "reduce_rows",
]

#: Version of the canonical reduction order. Bump it when any bit of any result changes.
CRO_VERSION = 1
#: Number of interleaved accumulators (one warp on the GPU).
LANES = 32
#: Terms per chunk; a chunk is one unit of parallel work (one warp on the GPU).
CHUNK = 8192
#: The one NaN every kernel returns: the default quiet NaN, positive sign, zero payload.
CANONICAL_NAN = float(np.array(0x7FF8000000000000, dtype=np.uint64).view(np.float64))

_MODES = ("compensated", "plain")


def check_mode(mode: str) -> bool:
    """Return True for compensated mode; raise ``ValueError`` on an unknown mode."""
    if mode not in _MODES:
        raise ValueError(f"mode must be 'compensated' or 'plain', got {mode!r}")
    return mode == "compensated"


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knuth's TwoSum, elementwise: ``s = fl(a + b)`` and the rounding error ``e``."""
    s = a + b
    t = s - a
    e = (a - (s - t)) + (b - t)
    return s, e


def _merge(
    sa: np.ndarray, ca: np.ndarray, sb: np.ndarray, cb: np.ndarray, compensated: bool
) -> tuple[np.ndarray, np.ndarray]:
    """CRO-1 merge of two partials ``(sa, ca)`` and ``(sb, cb)``, elementwise."""
    if not compensated:
        return sa + sb, ca
    t, e = _two_sum(sa, sb)
    return t, (ca + cb) + e


def finalize(s: float, comp: float, compensated: bool) -> float:
    """Turn a CRO-1 root partial ``(s, comp)`` into the result (step 5 of the spec).

    Parameters
    ----------
    s, comp : float
        The root partial after the chunk tree.
    compensated : bool
        Whether ``comp`` carries a compensation term.

    Returns
    -------
    float
        ``s`` in plain mode; ``s + comp`` in compensated mode unless ``s`` is not finite
        or ``comp == 0`` (then ``s``). A NaN result is :data:`CANONICAL_NAN`.
    """
    s = float(s)
    if compensated and math.isfinite(s) and comp != 0.0:
        s = s + float(comp)
    if s != s:
        return CANONICAL_NAN
    return s


def finalize_rows(s: np.ndarray, comp: np.ndarray, compensated: bool) -> np.ndarray:
    """:func:`finalize` applied elementwise to arrays of root partials."""
    with np.errstate(all="ignore"):
        out = np.where(compensated & np.isfinite(s) & (comp != 0.0), s + comp, s)
    out[np.isnan(out)] = CANONICAL_NAN
    return out


def _lane_terms(V: np.ndarray) -> np.ndarray:
    """View the terms of every row as ``terms[row, c, j, l] = V[row, c*CHUNK + j*LANES + l]``.

    Rows are padded with ``-0.0`` (which adds exactly nothing, also in compensated mode
    under :func:`finalize`): to whole chunks when a row spans several chunks, and only to
    a whole number of 32-term steps when it fits in one chunk.
    """
    m, n = V.shape
    n_chunks = max(1, -(-n // CHUNK))
    width = n_chunks * CHUNK if n_chunks > 1 else max(LANES, -(-n // LANES) * LANES)
    padded = np.full((m, width), -0.0)
    padded[:, :n] = V
    return padded.reshape(m, n_chunks, width // n_chunks // LANES, LANES)


def reduce_rows(V: np.ndarray, compensated: bool) -> np.ndarray:
    """CRO-1 reduction of every row of the term matrix ``V`` (m, n): steps 1-5 per row.

    Returns the (m,) results; rows of length 0 give ``+0.0``.
    """
    V = np.asarray(V, dtype=np.float64)
    m, n = V.shape
    if n == 0:
        return np.zeros(m)
    with np.errstate(all="ignore"):  # inf - inf and overflow are part of the semantics
        terms = _lane_terms(V)

        # Step 2: every lane of every chunk accumulates its terms in order j = 0, 1, ...
        s = np.full((*terms.shape[:2], LANES), -0.0)
        comp = np.full_like(s, -0.0)
        for j in range(terms.shape[2]):
            if compensated:
                s, e = _two_sum(s, terms[:, :, j, :])
                comp = comp + e
            else:
                s = s + terms[:, :, j, :]

        # Step 3: lane tree, w = 16, 8, 4, 2, 1; lane l < w merges lane l + w.
        w = LANES // 2
        while w >= 1:
            s_lo, c_lo = _merge(s[..., :w], comp[..., :w], s[..., w : 2 * w],
                                comp[..., w : 2 * w], compensated)
            s = np.concatenate([s_lo, s[..., w:]], axis=-1)
            comp = np.concatenate([c_lo, comp[..., w:]], axis=-1)
            w //= 2
        s, comp = s[..., 0], comp[..., 0]

        # Step 4: chunk tree, pairs (2i, 2i+1) level by level; an odd last one passes up.
        while s.shape[1] > 1:
            pairs = s.shape[1] // 2
            s_m, c_m = _merge(s[:, 0 : 2 * pairs : 2], comp[:, 0 : 2 * pairs : 2],
                              s[:, 1 : 2 * pairs : 2], comp[:, 1 : 2 * pairs : 2], compensated)
            if s.shape[1] % 2:
                s_m = np.concatenate([s_m, s[:, -1:]], axis=1)
                c_m = np.concatenate([c_m, comp[:, -1:]], axis=1)
            s, comp = s_m, c_m
    return finalize_rows(s[:, 0], comp[:, 0], compensated)


def _reduce(v: np.ndarray, compensated: bool) -> float:
    """CRO-1 reduction of one vector of terms ``v`` to the final result (steps 1-5)."""
    return float(reduce_rows(v[None, :], compensated)[0])


def _as_vector(x: np.ndarray, name: str) -> np.ndarray:
    """Minimal checks for the oracle: a 1-D float64 NumPy array."""
    x = np.asarray(x)
    if x.dtype != np.float64 or x.ndim != 1:
        raise ValueError(f"{name} must be a 1-D float64 array, got {x.dtype} {x.shape}")
    return x


def cro_sum(x: np.ndarray, mode: str = "compensated") -> float:
    """CRO-1 sum of a 1-D float64 array.

    .. math:: \\operatorname{sum}(x) = \\sum_{i=0}^{n-1} x_i

    with terms ``v[i] = x[i]`` reduced in CRO-1 order (module docstring).

    Parameters
    ----------
    x : ndarray of float64, shape (n,)
    mode : {"compensated", "plain"}

    Returns
    -------
    float
    """
    compensated = check_mode(mode)
    return _reduce(_as_vector(x, "x"), compensated)


def cro_dot(x: np.ndarray, y: np.ndarray, mode: str = "compensated") -> float:
    """CRO-1 dot product of two 1-D float64 arrays of equal length.

    .. math:: x \\cdot y = \\sum_{i=0}^{n-1} x_i y_i

    with terms ``v[i] = fl(x[i] * y[i])`` (one rounding, never fused with the addition)
    reduced in CRO-1 order.
    """
    compensated = check_mode(mode)
    x, y = _as_vector(x, "x"), _as_vector(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
    with np.errstate(all="ignore"):
        products = x * y
    return _reduce(products, compensated)


def nrm2_plan(amax: float, has_nan: bool) -> tuple[float | None, int, float, float]:
    """Steps 1-3 of :func:`cro_nrm2` for a non-empty vector, given ``max |x_i|``.

    Returns ``(result, e, f1, f2)``: ``result`` is the final norm when it is already
    decided (NaN, ``+inf``, ``+0.0``), else ``None`` and the scaling of
    :func:`nrm2_scaling`. Shared by every device, so the special cases agree.
    """
    if has_nan:
        return CANONICAL_NAN, 0, 1.0, 1.0
    if math.isinf(amax):
        return math.inf, 0, 1.0, 1.0
    if amax == 0.0:
        return 0.0, 0, 1.0, 1.0
    return (None, *nrm2_scaling(amax))


def nrm2_scaling(amax: float) -> tuple[int, float, float]:
    """The power-of-two scaling of :func:`cro_nrm2` for a finite, nonzero ``amax``.

    Returns ``(e, f1, f2)`` with ``amax = m * 2**e``, ``0.5 <= m < 1`` (``frexp``) and
    ``f1 = 2**(-e // 2)``, ``f2 = 2**(-e - (-e // 2))``, so ``f1 * f2 = 2**-e`` and each
    factor is a normal power of two even when ``2**-e`` itself is not representable
    (subnormal ``amax``).
    """
    _, e = math.frexp(amax)
    first = (-e) // 2
    return e, math.ldexp(1.0, first), math.ldexp(1.0, -e - first)


def nrm2_finish(ssq: float, e: int) -> float:
    """``sqrt(ssq) * 2**e`` (IEEE ``ldexp``: one rounding at most, ``inf`` on overflow)."""
    with np.errstate(over="ignore", under="ignore"):
        r = float(np.ldexp(math.sqrt(ssq), e))
    return CANONICAL_NAN if r != r else r


def cro_nrm2(x: np.ndarray, mode: str = "compensated") -> float:
    """Euclidean norm without spurious overflow or underflow.

    .. math:: \\lVert x \\rVert_2 = 2^{e} \\sqrt{\\sum_i \\left((x_i f_1) f_2\\right)^2}

    The specification, step by step:

    1. ``n = 0`` gives ``+0.0``. A NaN anywhere gives NaN; otherwise an infinity gives
       ``+inf``.
    2. ``amax = max |x_i|`` (exact; order does not matter). ``amax = 0`` gives ``+0.0``.
    3. ``(e, f1, f2) = nrm2_scaling(amax)``: powers of two with ``f1 * f2 = 2**-e`` and
       ``amax * 2**-e`` in ``[0.5, 1)``. The scaled values ``(x_i * f1) * f2`` are exact
       unless they fall below the normal range, where their squares no longer matter.
    4. Terms ``v[i] = ((x[i] * f1) * f2) * ((x[i] * f1) * f2)``, each product rounded
       once, reduced in CRO-1 order to ``ssq`` (``0.25 <= ssq <= n``, so it cannot overflow).
    5. Result :func:`nrm2_finish`: ``ldexp(sqrt(ssq), e)``.

    This is the LAPACK ``dnrm2`` idea (scale before squaring), with the scale fixed by a
    first pass so that the sum of squares is an ordinary CRO-1 reduction.
    """
    compensated = check_mode(mode)
    x = _as_vector(x, "x")
    if x.shape[0] == 0:
        return 0.0
    result, e, f1, f2 = nrm2_plan(float(np.abs(x).max()), bool(np.isnan(x).any()))
    if result is not None:
        return result
    with np.errstate(all="ignore"):  # squares of tiny scaled values underflow harmlessly
        scaled = (x * f1) * f2
        squares = scaled * scaled
    return nrm2_finish(_reduce(squares, compensated), e)
