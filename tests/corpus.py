"""The adversarial corpus for the oracle tests (DESIGN.md section 7).

``cases()`` yields ``(label, x, y)`` with ``y`` a second vector of the same length for
``dot``. Deterministic: every case comes from a fixed seed.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

#: Lengths around the lane and chunk boundaries, powers of two +-1, primes.
LENGTHS = (0, 1, 2, 3, 31, 32, 33, 63, 64, 65, 97, 1023, 1025, 8191, 8192, 8193, 16383,
           16385, 65537, 100_003, 262_143, 262_145)
#: Lengths for the big cases (values: normal and wide only, to keep the suite quick).
BIG_LENGTHS = (1_000_003, 10_000_000)


def _values(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "normal":
        return rng.standard_normal(n)
    if kind == "wide":  # magnitudes 1e-300 .. 1e300, both signs
        return rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-300, 300, n)
    if kind == "cancel":  # 1e16, 1, -1e16 repeating: plain and compensated differ
        return np.resize(np.array([1e16, 1.0, -1e16]), n)
    if kind == "negzero":
        return np.full(n, -0.0)
    if kind == "subnormal":
        return rng.choice([-1.0, 1.0], n) * rng.uniform(0.0, 1.0, n) * 2.0**-1022
    if kind == "huge":  # sums overflow to inf in places
        return rng.choice([-1.0, 1.0], n) * rng.uniform(1e307, 1.7e308, n)
    if kind == "inf":
        v = rng.standard_normal(n)
        v[rng.integers(0, n)] = np.inf
        return v
    if kind == "infs":  # +inf and -inf: the sum is NaN
        v = rng.standard_normal(n)
        v[0], v[-1] = np.inf, -np.inf
        return v
    if kind == "nan":
        v = rng.standard_normal(n)
        v[rng.integers(0, n)] = -np.nan if n % 2 else np.nan
        return v
    raise ValueError(kind)


KINDS = ("normal", "wide", "cancel", "negzero", "subnormal", "huge", "inf", "infs", "nan")


def cases(big: bool = False) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield ``(label, x, y)`` over lengths x value kinds (big: the large lengths)."""
    lengths, kinds = (BIG_LENGTHS, ("normal", "wide")) if big else (LENGTHS, KINDS)
    for n in lengths:
        for kind in kinds:
            if (n < 2 and kind == "infs") or (n == 0 and kind in ("inf", "nan")):
                continue
            rng = np.random.default_rng([n, KINDS.index(kind)])
            x = _values(kind, n, rng)
            y = _values("wide" if kind == "normal" else "normal", n, rng)
            yield f"n={n}-{kind}", x, y


def bits(value: float) -> int:
    """The 64 bits of a float64 as an unsigned integer."""
    return int(np.float64(value).view(np.uint64))


def same_bits(a, b) -> bool:
    """Equal shapes and equal bits (``view(np.uint64)``), the contract's equality."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.array_equal(a.view(np.uint64), b.view(np.uint64)))
