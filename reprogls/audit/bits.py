"""The bits of result arrays, as a report stores them, and distances between them.

A stored array keeps its shape, the SHA-256 of its little-endian float64 bytes, one short
digest per block of :data:`BLOCK` elements (so that two reports can name the elements
where they part even when the values are not stored), and, up to :data:`MAX_STORED`
elements, the values themselves (base64 of the bytes), from which a comparison reports
the first differing element and the largest distance in units in the last place.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

import numpy as np

#: Elements per block digest.
BLOCK = 1024
#: Arrays of at most this many elements are stored in full.
MAX_STORED = 2048


def _le_bytes(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype="<f8").tobytes()


def encode(value) -> dict:
    """A float64 array (or a float) as a JSON-ready dict: ``shape``, ``sha256``,
    ``blocks`` (16 hex digits of each block's SHA-256) and ``data`` (base64 of the
    little-endian bytes, or None above :data:`MAX_STORED` elements)."""
    a = np.asarray(value, dtype=np.float64)
    flat = a.ravel()
    raw = _le_bytes(flat)
    width = 8 * BLOCK
    return {"shape": list(a.shape),
            "sha256": hashlib.sha256(raw).hexdigest(),
            "blocks": [hashlib.sha256(raw[i:i + width]).hexdigest()[:16]
                       for i in range(0, len(raw), width)],
            "data": base64.b64encode(raw).decode("ascii") if flat.size <= MAX_STORED
            else None}


def decode(entry: dict) -> np.ndarray | None:
    """The array an :func:`encode` entry stored, or None when only digests were kept."""
    if entry.get("data") is None:
        return None
    flat = np.frombuffer(base64.b64decode(entry["data"]), dtype="<f8").astype(np.float64)
    return flat.reshape(entry["shape"])


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in units in the last place between float64 arrays, elementwise.

    The bit patterns map to integers that are monotone in the value (negative numbers
    count down from ``-0.0``, which sits at 0 beside ``+0.0``), and the distance is the
    difference of those integers: 0 for the same bits, 1 for neighbours (``+0.0`` and
    ``-0.0`` are 1 apart). Where one side is NaN the distance is ``-1`` (0 if both are
    the same NaN bits); a result is capped at ``2**62`` to stay an ``int64``.
    """
    ia = np.ascontiguousarray(a, dtype=np.float64).view(np.int64).astype(object)
    ib = np.ascontiguousarray(b, dtype=np.float64).view(np.int64).astype(object)

    def ordered(i):
        # -0.0 is the int64 minimum; it maps to -1 so that it sits just below +0.0 (0)
        return i if i >= 0 else -(i - np.iinfo(np.int64).min) - 1

    dist = np.empty(np.shape(a), dtype=np.int64)
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    for idx in np.ndindex(dist.shape):
        if nan_a[idx] or nan_b[idx]:
            dist[idx] = 0 if ia[idx] == ib[idx] else -1
        else:
            dist[idx] = min(abs(ordered(ia[idx]) - ordered(ib[idx])), 2 ** 62)
    return dist


@dataclass(frozen=True)
class ArrayDifference:
    """Where two stored arrays part.

    Attributes
    ----------
    detail : str
        One line for a person: how many elements differ, the first one (its index and
        both values with their bits) and the largest ulp distance; or, with only digests
        stored, which blocks of elements differ.
    differing : int or None
        Number of differing elements (None when only block digests were compared).
    max_ulp : int or None
        Largest ulp distance (``-1`` if a NaN meets a number; None without values).
    first : tuple of int or None
        Index of the first differing element (None without values, or for shapes that
        differ).
    """

    detail: str
    differing: int | None
    max_ulp: int | None
    first: tuple[int, ...] | None = None


def _bits(x: float) -> str:
    return f"0x{int(np.float64(x).view(np.uint64)):016x}"


def difference(a: dict, b: dict) -> ArrayDifference | None:
    """None when two :func:`encode` entries hold the same bits, else where they part."""
    if a["shape"] != b["shape"]:
        return ArrayDifference(f"shapes differ: {tuple(a['shape'])} vs {tuple(b['shape'])}",
                               None, None)
    if a["sha256"] == b["sha256"]:
        return None
    va, vb = decode(a), decode(b)
    if va is None or vb is None:
        blocks = [i for i, (x, y) in enumerate(zip(a["blocks"], b["blocks"], strict=True))
                  if x != y]
        spans = ", ".join(f"{i * BLOCK}..{i * BLOCK + BLOCK - 1}" for i in blocks[:5])
        more = f" and {len(blocks) - 5} more blocks" if len(blocks) > 5 else ""
        return ArrayDifference(f"{len(blocks)} of {len(a['blocks'])} blocks of {BLOCK} "
                               f"(flat) elements differ: {spans}{more}", None, None)
    same = va.view(np.uint64) == vb.view(np.uint64)
    where = np.argwhere(~same)
    first = tuple(int(i) for i in where[0])
    ulps = ulp_distance(va[~same], vb[~same])
    max_ulp = -1 if (ulps < 0).any() else int(ulps.max())
    x, y = float(va[first]), float(vb[first])
    index = first if len(first) != 1 else first[0]
    shown = "a NaN meets a number" if max_ulp < 0 else f"max {max_ulp} ulp"
    return ArrayDifference(
        f"{len(where)} of {va.size} elements differ ({shown}); first at [{index}]: "
        f"{x!r} ({_bits(x)}) vs {y!r} ({_bits(y)})" if va.ndim else
        f"{x!r} ({_bits(x)}) vs {y!r} ({_bits(y)}) ({shown})",
        len(where), max_ulp, first)
