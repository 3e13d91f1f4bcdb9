"""Fit time and peak memory as N and K double (CG beta-step), one subprocess per size.

Usage::

    python profiling/scaling.py [--base-n 2500] [--base-k 250] [--p 5] [--k 10] [--steps 3]

Rows: N doubling at K = 2 * base-k, then K doubling at N = 2 * base-n, then the scale
target N = 5000, K = 2000 (p = 5, k = 10). Each fit runs in a fresh process (kernels
from Numba's cache, a small fit first so no compilation is timed) with
``beta_solver="cg"`` and ``cov_type="none"``. Peak extra memory is the growth of the
resident-set high-water mark during the fit (Linux ``/proc/self/clear_refs`` resets it
first), against the bytes of the packed X.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

_CHILD = """
import json, sys, time
from reprogls import gls
N, K, p, k = (int(a) for a in sys.argv[1:5])
Xs, Y, *_ = gls.simulate_sur(N, K, p, k, seed=0)
for step in ("moment", "residuals"):  # both Sigma-steps: nothing compiles in the timing
    gls.fit([x[:200] for x in Xs[:3]], Y[:200, :3], rank=1, beta_solver="cg",
            cov_type="none", sigma_step=step)

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak RSS to the current RSS
base = status("VmRSS")
t0 = time.perf_counter()
res = gls.fit(Xs, Y, rank=k, beta_solver="cg", cov_type="none")
seconds = time.perf_counter() - t0
print(json.dumps({"N": N, "K": K, "seconds": seconds, "sweeps": res.n_iter,
                  "converged": res.converged, "x_bytes": N * K * p * 8,
                  "peak_extra": status("VmHWM") - base}))
"""


def run(N: int, K: int, p: int, k: int) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(N), str(K), str(p), str(k)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-n", type=int, default=2500)
    parser.add_argument("--base-k", type=int, default=250)
    parser.add_argument("--p", type=int, default=5)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    sizes = [(args.base_n * 2 ** s, 2 * args.base_k) for s in range(args.steps)]
    sizes += [(2 * args.base_n, args.base_k * 2 ** s) for s in range(args.steps)]
    sizes.append((5000, 2000))
    print("| N | K | fit s | s per (N K) x 1e6 | sweeps | peak extra / X bytes |")
    print("|---:|---:|---:|---:|---:|---:|")
    for N, K in dict.fromkeys(sizes):
        r = run(N, K, args.p, args.k)
        print(f"| {N} | {K} | {r['seconds']:.2f} | {r['seconds'] / (N * K) * 1e6:.2f} | "
              f"{r['sweeps']}{'' if r['converged'] else ' (not converged)'} | "
              f"{r['peak_extra'] / r['x_bytes']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
