"""The CUDA kernels on device-resident data: GB/s against a device-to-device copy.

Usage (on a machine with an NVIDIA GPU and CuPy)::

    python profiling/gpu_kernels.py [--out DIR] [--repeat 30]

The public kernels (``reprogls.kernels.gemv`` & co.) return NumPy arrays, so timing them
on the GPU times the copy of their result to the host as well (``roofline.py --device
cuda`` does; on the H100 of 2026-12-06 that copy ran at 3-6 GB/s and hid every kernel
with an N x K or n-long result). This script calls the CUDA launchers
(``reprogls.kernels.cuda.*``) on CuPy arrays instead and times them with CUDA events
(``cupyx.profiler.benchmark``: the median of ``--repeat`` calls after 3 untimed ones; the
Python dispatch of a launcher is inside the events, as it is in a fit): the reductions,
the elementwise kernels (soft-thresholding family, the FISTA step, ``log``, ``exp``) and
the linear algebra. Bytes count each input read once and each output written once; the
normal operator's rows count X once (one application of the operator), whichever way it
runs:

* ``normal one pass``: ``sur_normal_lanes`` (X read once, ``n_chunks * 32`` blocks);
* ``normal 3 kernels``: ``sur_matvec``, ``woodbury_solve``, ``sur_rmatvec`` (the
  default, ``reprogls.kernels.cuda.linalg.NORMAL_OPERATOR``);

the Woodbury solve in its register kernel and (``WOODBURY_REGISTER_RANKS = ()``) in the
generic one, whose arrays are in local memory, checked for equal bits;

at the roofline's shape and at the fit sizes S, M and L of ``gpu_fits.py``, checked to
give the same bits; and ``X^T X`` (``gram_lower``, the plug-in SEs' Gram) at M with each
tile size (``GRAM_TILES``), checked for equal bits. First,
copies of 320 MB (X at the size M) to and from the GPU, from pageable and from pinned
host memory: a fit from NumPy inputs copies X from pageable memory (66 ms at M on the
H100 machine, ~5 GB/s). The table goes to stdout and ``DIR/gpu-kernels.md``.
``--small`` runs tiny sizes: a dry run on the host emulator (``REPROGLS_CUDA_EMULATOR=1``,
from the repository root; ``tests/test_cuda_emulator.py`` runs it).
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path

import numpy as np

if os.environ.get("REPROGLS_CUDA_EMULATOR", "").strip() not in ("", "0"):
    sys.path.insert(0, os.getcwd())
    from tests import cuda_emulator

    cuda_emulator.install()

from reprogls import kernels

try:  # as a module of the profiling package, or run as a script from its folder
    from ._timing import cuda_median_seconds as median_seconds
except ImportError:
    from _timing import cuda_median_seconds as median_seconds

#: (N, K, p, k) of the normal-operator shapes: the roofline's, and the fits' S, M, L.
NORMAL_SHAPES = {"roofline": (25_000, 200, 10, 5), "S": (2_000, 50, 5, 3),
                 "M": (20_000, 200, 10, 5), "L": (5_000, 2_000, 5, 10)}


#: Tiny shapes for ``--small``: a dry run on the host emulator (times mean nothing).
SMALL_SHAPES = {"roofline": (300, 7, 3, 2), "S": (200, 5, 2, 1), "M": (250, 6, 40, 2),
                "L": (100, 600, 1, 3)}


def copy_peak(repeat: int, n: int = 2**26) -> float:
    """GB/s of a device-to-device copy of ``n`` doubles (bytes read plus written)."""
    import cupy as cp

    x = cp.asarray(np.random.default_rng(1).standard_normal(n))
    dst = cp.empty_like(x)
    return 2 * x.nbytes / median_seconds(lambda: dst.__setitem__(Ellipsis, x), repeat) / 1e9


def _normal_ways(X, offsets, v, factor, compensated):
    """The GPU's two ways of the normal operator as ``{name: fn}``."""
    from reprogls.kernels.cuda import linalg as cl

    def way(operator):
        def run():
            cl.NORMAL_OPERATOR = operator
            return cl.sur_normal_matvec(X, offsets, v, factor.G, factor.d, factor.L,
                                        compensated)
        return run

    return {"normal one pass": way("one_pass"), "normal 3 kernels": way("three_kernels")}


def transfers(repeat: int, n_bytes: int):
    """Yield ``(copy, size, bytes, seconds, note)`` rows for copies of ``n_bytes`` between
    the host and the GPU, from pageable memory (what ``cp.asarray`` / ``.get()`` of a
    NumPy array do: a fit from NumPy inputs copies X so) and from pinned memory (what a
    staging buffer would give). None on the emulator (no pinned memory there)."""
    try:
        import cupyx
    except ImportError:
        return
    import cupy as cp

    host = np.random.default_rng(2).standard_normal(n_bytes // 8)
    pinned = cupyx.empty_pinned(host.shape, dtype=host.dtype)
    pinned[...] = host
    dev = cp.empty(host.shape, dtype=host.dtype)
    size = f"{host.nbytes / 1e6:.0f} MB"
    yield ("to the GPU, pageable", size, host.nbytes,
           median_seconds(partial(dev.set, host), repeat), "cp.asarray of NumPy")
    yield ("to the GPU, pinned", size, host.nbytes,
           median_seconds(partial(dev.set, pinned), repeat), "cupyx.empty_pinned")
    yield ("to the host, pageable", size, host.nbytes,
           median_seconds(partial(cp.asnumpy, dev, out=host), repeat), "")
    yield ("to the host, pinned", size, host.nbytes,
           median_seconds(partial(cp.asnumpy, dev, out=pinned), repeat), "")


def cases(repeat: int, small: bool = False):
    """Yield ``(kernel, size, bytes, seconds, note)``."""
    import cupy as cp

    from reprogls.kernels.cuda import elementwise as ce
    from reprogls.kernels.cuda import linalg as cl
    from reprogls.kernels.cuda import reductions as cr

    rng = np.random.default_rng(0)
    n = 2**12 if small else 2**26
    x, y = cp.asarray(rng.standard_normal(n)), cp.asarray(rng.standard_normal(n))
    for mode, comp in (("plain", False), ("compensated", True)):
        yield (f"sum {mode}", f"n={n}", 8 * n,
               median_seconds(partial(cr.cro_sum, x, comp), repeat), "")
        yield f"dot {mode}", f"n={n}", 16 * n, median_seconds(
            partial(cr.cro_dot, x, y, comp), repeat), ""
    yield "nrm2 compensated", f"n={n}", 8 * n, median_seconds(partial(cr.cro_nrm2, x, True),
                                                              repeat), ""
    yield "soft_threshold", f"n={n}", 16 * n, median_seconds(
        partial(ce.soft_threshold, x, 0.5), repeat), ""
    yield "soft_threshold_box", f"n={n}", 16 * n, median_seconds(
        partial(ce.soft_threshold_box, x, 0.5, -1.0, 1.0), repeat), "scalar lam, lo, hi"
    yield "prox_elastic_net", f"n={n}", 16 * n, median_seconds(
        partial(ce.prox_elastic_net, x, 0.5, 0.6, 0.7, -np.inf, np.inf), repeat), ""
    yield "fista_step", f"n={n}", 40 * n, median_seconds(
        partial(ce.fista_step, x, y, 0.1, x, 0.3, 0.5, 0.6, -np.inf, np.inf), repeat), \
        "reads z, grad, x_prev; writes x, z"
    positive = cp.asarray(np.abs(rng.standard_normal(n)))
    yield "log", f"n={n}", 16 * n, median_seconds(partial(ce.log, positive), repeat), \
        "fdlibm, ~40 flops per element"
    yield "exp", f"n={n}", 16 * n, median_seconds(partial(ce.exp, x), repeat), ""
    saved, registers = cl.NORMAL_OPERATOR, cl.WOODBURY_REGISTER_RANKS
    try:
        for shape, (N, K, p, k) in (SMALL_SHAPES if small else NORMAL_SHAPES).items():
            P = K * p
            X = cp.asarray(rng.standard_normal((N, P)))
            offsets = np.arange(0, P + 1, p, dtype=np.int64)
            v = cp.asarray(rng.standard_normal(P))
            W = cp.asarray(rng.standard_normal((N, K)))
            F = rng.standard_normal((K, k))
            dvec = 0.05 + 0.2 * rng.uniform(size=K)
            label = f"{shape}: N={N},K={K},p={p},k={k}"
            for mode, comp in (("plain", False), ("compensated", True)):
                if shape == "roofline":
                    col = X[:, 0].copy()
                    yield (f"gemv {mode}", label, X.nbytes + 8 * N,
                           median_seconds(partial(cl.gemv, X, v, comp), repeat), "")
                    yield (f"gemv_t {mode}", label, X.nbytes + 8 * P,
                           median_seconds(partial(cl.gemv_t, X, col, comp), repeat), "")
                    yield (f"sur_matvec {mode}", label, X.nbytes + W.nbytes,
                           median_seconds(partial(cl.sur_matvec, X, offsets, v, comp),
                                          repeat), "")
                    yield (f"sur_rmatvec {mode}", label, X.nbytes + W.nbytes,
                           median_seconds(partial(cl.sur_rmatvec, X, offsets, W, comp),
                                          repeat), "")
                factor = kernels.woodbury_factor(F, dvec, mode)
                solve = partial(cl.woodbury_solve, W, factor.G, factor.d, factor.L, comp)
                yield (f"woodbury_solve {mode}", label, 2 * W.nbytes,
                       median_seconds(solve, repeat), "registers" if k <= 32 else "")
                if k <= 32:  # the generic kernel (its arrays in local memory), same bits
                    fast = cp.asnumpy(solve()).view(np.uint64)
                    cl.WOODBURY_REGISTER_RANKS = ()
                    try:
                        same = np.array_equal(cp.asnumpy(solve()).view(np.uint64), fast)
                        yield (f"woodbury_solve {mode}", label, 2 * W.nbytes,
                               median_seconds(solve, repeat),
                               "local memory, " + ("bits equal" if same else "BITS DIFFER"))
                    finally:
                        cl.WOODBURY_REGISTER_RANKS = registers
                ways = _normal_ways(X, offsets, v, factor, comp)
                results = {name: cp.asnumpy(fn()) for name, fn in ways.items()}
                first = next(iter(results.values())).view(np.uint64)
                same = all(np.array_equal(r.view(np.uint64), first) for r in results.values())
                for name, fn in ways.items():
                    yield (f"{name} {mode}", label, X.nbytes, median_seconds(fn, repeat),
                           "bits equal" if same else "BITS DIFFER")
            if shape == "M":
                for mode, comp in (("plain", False), ("compensated", True)):
                    yield from _gram_tiles(X, comp, mode, label, max(3, repeat // 10))
    finally:
        cl.NORMAL_OPERATOR = saved


def _gram_tiles(X, compensated: bool, mode: str, label: str, repeat: int):
    """``gram_lower`` (``X^T X``, result on the host) with each tile size of
    ``GRAM_TILES``, their bits compared."""
    from reprogls.kernels.cuda import linalg as cl

    saved = cl.GRAM_TILE
    try:
        results = {}
        for tile in cl.GRAM_TILES:
            cl.GRAM_TILE = tile
            results[tile] = cl.gram_lower(X, compensated).view(np.uint64)
            yield (f"gram_lower {mode}, tile {tile}", label, X.nbytes,
                   median_seconds(partial(cl.gram_lower, X, compensated), repeat),
                   "X^T X, result on the host; " + (
                       "bits equal" if all(np.array_equal(r, results[tile])
                                           for r in results.values()) else "BITS DIFFER"))
    finally:
        cl.GRAM_TILE = saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--small", action="store_true",
                        help="tiny sizes: a dry run on the host emulator")
    args = parser.parse_args(argv)
    if "cuda:0" not in kernels.available_devices():
        parser.error(f"no usable CUDA device here: {kernels.devices.cuda_status().reason}")
    import cupy as cp

    kernels.warmup(("cuda",))
    peak = copy_peak(args.repeat, 2**12 if args.small else 2**26)
    try:
        name = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)["name"].decode()
    except AttributeError:  # the emulator
        name = "the host emulator"
    lines = [f"CUDA kernels on {name}, device-resident data: copy peak {peak:.0f} GB/s "
             f"(median of {args.repeat} CUDA-event timings per row).", "",
             "| kernel | size | MB | us | GB/s | % of copy | note |",
             "|---|---|---:|---:|---:|---:|---|"]
    print(lines[0], flush=True)
    rows = transfers(max(3, args.repeat // 5), 4096 if args.small else 320_000_000)
    for kernel, size, nbytes, seconds, note in (*rows, *cases(args.repeat, args.small)):
        gbs = nbytes / seconds / 1e9
        lines.append(f"| {kernel} | {size} | {nbytes / 1e6:.1f} | {seconds * 1e6:.0f} | "
                     f"{gbs:.0f} | {100 * gbs / peak:.0f}% | {note} |")
        print(lines[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu-kernels.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
