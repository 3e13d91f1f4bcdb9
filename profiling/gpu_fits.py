"""GLS fits on the GPU against the CPU: time, and whether the fingerprints are equal.

Usage::

    python profiling/gpu_fits.py [--sizes S M L] [--repeat 3] [--cov none|plugin]

Needs CuPy and an NVIDIA GPU. The S and M systems of the alsgls comparison and the
scale case L (N=5000, K=2000, p=5, k=10: the fused operator's accumulators and rows in
device memory, the Sigma-step from the residuals), data from
:func:`reprogls.gls.simulate_sur`, fitted with ``device="cuda"`` and ``device="cpu"``
(``--cov``: without SEs by default), and once more from the same data already in GPU
memory as CuPy arrays (``device="auto"``: packed on the GPU, nothing crosses but the
result): the best of ``--repeat`` fits after one warm-up fit (NVRTC and Numba
compilation are not fit time), and the three fingerprints, which must be equal. The
kernels' own GB/s against a device-to-device copy: ``profiling/roofline.py --device
cuda``.

On an NVIDIA H100 (2026-12-06, ``profiling/results/h100-2026-12-06/fits.log``; the
CPU there a 16-core Xeon) the three fingerprints were equal at every size, and the best
fits took: S 0.047 s (CuPy inputs 0.039, CPU 0.073), M 0.154 s (0.088, CPU 0.369),
L 0.635 s (0.623, CPU 2.0); with plug-in SEs S 0.044 s, M 0.570 s (0.473, CPU 1.87).
On the host emulator (``REPROGLS_CUDA_EMULATOR=1``, from the repository root;
``tests/test_cuda_emulator.py`` runs ``--sizes S --repeat 1``) the times mean nothing:
it shows that the script runs and that the fingerprints agree.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

if os.environ.get("REPROGLS_CUDA_EMULATOR", "").strip() not in ("", "0"):
    sys.path.insert(0, os.getcwd())
    from tests import cuda_emulator

    cuda_emulator.install()

from reprogls import gls, kernels

SIZES = {"S": (2000, 50, 5, 3), "M": (20000, 200, 10, 5), "L": (5000, 2000, 5, 10)}


def fits(names, repeat: int, cov: str = "none") -> None:
    """Print, per size, the best GPU and CPU fit times and whether the fingerprints agree."""
    sizes = SIZES
    for name in names:
        N, K, p, k = sizes[name]
        Xs, Y, *_ = gls.simulate_sur(N, K, p, k, seed=0)
        import cupy

        on_gpu = ([cupy.asarray(x) for x in Xs], cupy.asarray(Y))
        runs = {"cuda": (Xs, Y, "cuda"), "cupy": (*on_gpu, "auto"), "cpu": (Xs, Y, "cpu")}
        seconds, prints = {}, {}
        for key, (designs, responses, device) in runs.items():
            gls.fit(designs, responses, rank=k, cov_type=cov, device=device)  # warm up
            best = np.inf
            for _ in range(repeat):
                t0 = time.perf_counter()
                res = gls.fit(designs, responses, rank=k, cov_type=cov, device=device)
                best = min(best, time.perf_counter() - t0)
            seconds[key], prints[key] = best, res.fingerprint
        same = "equal" if len(set(prints.values())) == 1 else "DIFFERENT"
        print(f"fit {name} (N={N} K={K} p={p} k={k}, SEs {cov}): cuda "
              f"{seconds['cuda']:.3f} s   cuda from CuPy inputs {seconds['cupy']:.3f} s   "
              f"cpu {seconds['cpu']:.3f} s   fingerprints {same} ({prints['cpu'][:16]})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", default=["S", "M"], choices=list(SIZES))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cov", choices=["none", "plugin"], default="none")
    args = parser.parse_args(argv)
    if "cuda:0" not in kernels.available_devices():
        parser.error(f"no usable CUDA device here: {kernels.devices.cuda_status().reason}")
    fits(args.sizes, args.repeat, args.cov)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
