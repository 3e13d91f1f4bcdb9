"""Roofline of the kernels: achieved GB/s against the machine's measured bandwidth.

Usage::

    python profiling/roofline.py --device cpu  [--out profiling/out] [--quick]
    python profiling/roofline.py --device cuda [--out profiling/out]

Measures a STREAM-like read bandwidth (BLAS ``ddot`` on the CPU, ``cupy.dot`` on the
GPU — off the audited path, used only as a yardstick) and copy bandwidth (``np.copyto``
/ a device-to-device ``cupy`` copy), then runs every kernel at sizes beyond the caches
and writes ``roofline-<device>.md`` (kernel, size, bytes moved, GB/s, % of read peak)
and ``roofline-<device>.png`` (GB/s against bytes moved per kernel, peaks as lines).
Bytes moved count each input read once and each output written once; the fused normal
operator and the three kernels it fuses (``normal (3 kernels)``) both count X once, so
their GB/s compare their speed on one operator application.

On the GPU this times the public kernels, whose array results are copied to the host
(3-6 GB/s on the H100 of 2026-12-06, which hid every kernel with an N x K or n-long
result): ``profiling/gpu_kernels.py`` times the CUDA kernels themselves on
device-resident data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from reprogls import kernels

try:  # as a module of the profiling package, or run as a script from its folder
    from ._timing import best_seconds as cpu_best_seconds
    from ._timing import cuda_median_seconds
except ImportError:
    from _timing import best_seconds as cpu_best_seconds
    from _timing import cuda_median_seconds


def best_seconds(fn, device: str, repeat: int, pause: float) -> float:
    """Best wall time of calls after ``pause`` s on the CPU
    (:func:`_timing.best_seconds`); on the GPU the median of ``20 * repeat`` CUDA-event
    times (:func:`_timing.cuda_median_seconds`)."""
    if device == "cuda":
        return cuda_median_seconds(fn, 20 * repeat)
    return cpu_best_seconds(fn, repeat, pause)


def peaks(device: str, repeat: int, pause: float) -> dict[str, float]:
    """STREAM-like read and copy bandwidth in GB/s."""
    n = 32_000_000
    if device == "cuda":
        import cupy as cp

        x, y = cp.random.standard_normal(n), cp.random.standard_normal(n)
        dst = cp.empty_like(x)
        read = lambda: cp.dot(x, y)  # noqa: E731
        copy = lambda: dst.__setitem__(Ellipsis, x)  # noqa: E731
    else:
        rng = np.random.default_rng(0)
        x, y = rng.standard_normal(n), rng.standard_normal(n)
        dst = np.empty_like(x)
        read = lambda: np.dot(x, y)  # noqa: E731
        copy = lambda: np.copyto(dst, x)  # noqa: E731
    read(), copy()
    return {"read": 16 * n / best_seconds(read, device, repeat, pause) / 1e9,
            "copy": 16 * n / best_seconds(copy, device, repeat, pause) / 1e9}


def kernel_cases(device: str, quick: bool):
    """Yield ``(kernel, size label, bytes, fn)``; data lives on ``device``."""
    rng = np.random.default_rng(0)
    xp = np
    if device == "cuda":
        import cupy as xp
    # beyond the caches: the CPU's L3 and the GPU's 50-60 MB L2
    big = device == "cuda"
    vec_sizes = ([2**24, 2**26] if big else [2**22, 2**24]) if quick else [2**22, 2**24, 2**26]
    for n in vec_sizes:
        x, y = xp.asarray(rng.standard_normal(n)), xp.asarray(rng.standard_normal(n))
        for mode in ("plain", "compensated"):
            yield f"sum {mode}", f"n={n}", 8 * n, lambda x=x, m=mode: kernels.sum(x, m, device)
            yield (f"dot {mode}", f"n={n}", 16 * n,
                   lambda x=x, y=y, m=mode: kernels.dot(x, y, m, device))
        yield "nrm2 compensated", f"n={n}", 16 * n, lambda x=x: kernels.nrm2(x, device=device)
        yield ("soft_threshold", f"n={n}", 16 * n,
               lambda x=x: kernels.soft_threshold(x, 0.5, device))
    K, p, k = 200, 10, 5
    F = rng.standard_normal((K, k))
    d = 0.05 + 0.2 * rng.uniform(size=K)
    factor = kernels.woodbury_factor(F, d)
    offsets = np.arange(0, K * p + 1, p)
    row_counts = ([8_000, 25_000] if big else [2_000, 8_000]) if quick else [2_000, 8_000, 25_000]
    for N in row_counts:
        X = xp.asarray(rng.standard_normal((N, K * p)))
        beta = xp.asarray(rng.standard_normal(K * p))
        W = xp.asarray(rng.standard_normal((N, K)))
        nb = X.nbytes
        label = f"N={N},K={K},p={p}"
        for mode in ("plain", "compensated"):
            yield (f"gemv {mode}", label, nb + 8 * N,
                   lambda X=X, b=beta, m=mode: kernels.gemv(X, b, m, device))
            yield (f"gemv_t {mode}", label, nb + 8 * K * p,
                   lambda X=X, W=W, m=mode: kernels.gemv_t(X, W[:, 0].copy(), m, device))
            yield (f"sur_matvec {mode}", label, nb + W.nbytes,
                   lambda X=X, b=beta, m=mode: kernels.sur_matvec(X, offsets, b, m, device))
            yield (f"sur_rmatvec {mode}", label, nb + W.nbytes,
                   lambda X=X, W=W, m=mode: kernels.sur_rmatvec(X, offsets, W, m, device))
        yield ("sur_normal_matvec compensated", label, nb,
               lambda X=X, b=beta: kernels.sur_normal_matvec(X, offsets, factor, b, device))
        # the three kernels the fused operator replaces (same bits, X read twice and the
        # N x K products written and read): whether the single pass pays on this device
        yield ("normal (3 kernels) compensated", label, nb,
               lambda X=X, b=beta: kernels.sur_rmatvec(
                   X, offsets, kernels.woodbury_solve(
                       factor, kernels.sur_matvec(X, offsets, b, device=device), device),
                   device=device))
        yield ("woodbury_solve compensated", label, 2 * W.nbytes,
               lambda W=W: kernels.woodbury_solve(factor, W, device))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pause", type=float, default=0.2)
    parser.add_argument("--quick", action="store_true", help="fewer, smaller sizes")
    args = parser.parse_args(argv)
    if args.device == "cuda" and "cuda:0" not in kernels.available_devices():
        parser.error("no usable CUDA device here")
    kernels.warmup((args.device,))
    peak = peaks(args.device, args.repeat, args.pause)
    rows = []
    for name, label, nbytes, fn in kernel_cases(args.device, args.quick):
        fn()
        t = best_seconds(fn, args.device, args.repeat, args.pause)
        rows.append((name, label, nbytes, nbytes / t / 1e9))
        print(f"{name:<32} {label:<22} {nbytes / 1e6:9.1f} MB {rows[-1][3]:7.1f} GB/s",
              flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    md = args.out / f"roofline-{args.device}.md"
    lines = [f"Roofline on {args.device}: read peak {peak['read']:.1f} GB/s, copy "
             f"{peak['copy']:.1f} GB/s, {kernels.cpu_threads()} CPU threads.", "",
             "| kernel | size | MB moved | GB/s | % of read peak | % of copy |",
             "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {n} | {lab} | {b / 1e6:.1f} | {g:.1f} | {100 * g / peak['read']:.0f}% "
              f"| {100 * g / peak['copy']:.0f}% |" for n, lab, b, g in rows]
    md.write_text("\n".join(lines) + "\n")
    _plot(rows, peak, args.device, args.out / f"roofline-{args.device}.png")
    print(f"wrote {md} and {md.with_suffix('.png')}")
    return 0


def _plot(rows, peak, device, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 6))
    # one colour per kernel, solid for plain mode and dashed for compensated
    kernels_seen = list(dict.fromkeys(r[0].split()[0] for r in rows))
    colours = plt.cm.tab10(np.linspace(0, 1, max(10, len(kernels_seen))))
    for name in dict.fromkeys(r[0] for r in rows):
        pts = sorted((b, g) for n, _, b, g in rows if n == name)
        ax.plot([b / 1e6 for b, _ in pts], [g for _, g in pts], marker="o", label=name,
                color=colours[kernels_seen.index(name.split()[0])],
                linestyle="--" if "compensated" in name else "-")
    ax.axhline(peak["read"], color="black", linestyle="--", label="read peak (ddot)")
    ax.axhline(peak["copy"], color="grey", linestyle=":", label="copy peak")
    ax.set_xscale("log")
    ax.set_xlabel("bytes moved per call (MB)")
    ax.set_ylabel("achieved GB/s")
    ax.set_title(f"reprogls kernels on {device}")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
