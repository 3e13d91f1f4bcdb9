"""Fit time and peak memory as N and K double (CG beta-step), one subprocess per size.

Usage::

    python profiling/scaling.py [--base-n 2500] [--base-k 250] [--p 5] [--k 10] [--steps 3]

Rows: N doubling at K = 2 * base-k, then K doubling at N = 2 * base-n, then the scale
target N = 5000, K = 2000 (p = 5, k = 10). Each size runs in a fresh process (kernels
from Numba's cache, a small fit first so no compilation is timed) with
``beta_solver="cg"`` and ``cov_type="none"``, twice: the first fit's time and peak
memory, then the second fit's time. Peak extra memory is the growth of the resident-set
high-water mark during the first fit (Linux ``/proc/self/clear_refs`` resets it first),
against the bytes of the packed X.

Why two times (thirty-fourth session): the first fit of a process touches fresh memory,
which on the 2-core KVM test VMs (free page reporting) cost a varying amount -- the
scale fit took 6.94 s in one run of this script and 4.22 s in the next, and 6.82 / 3.45
/ 3.45 / 3.67 s as the first fit of four processes whose second fits took 3.26-3.42 s.
The second fit, on memory the process already holds, is the steadier number, but the
box's noise still moves it by 30% between runs (4.87 s in the run that printed
4.50 s first). Growth in K is more than linear around K = 1000: up to ``K = 100 rank``
the Sigma-step forms the K x K residual moment matrix (``N K^2 / 2`` products a
sweep); there, at N = 5000, K = 1000, k = 10, working from the residuals instead took
2.16-2.28 s against 2.38-2.81 s, and at K = 500 1.26-1.27 against 1.04-1.05 s, so the
switch point stays.
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
peak_extra = status("VmHWM") - base
t0 = time.perf_counter()
gls.fit(Xs, Y, rank=k, beta_solver="cg", cov_type="none")
second = time.perf_counter() - t0
print(json.dumps({"N": N, "K": K, "seconds": seconds, "second": second,
                  "sweeps": res.n_iter, "converged": res.converged,
                  "x_bytes": N * K * p * 8, "peak_extra": peak_extra}))
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
    print("| N | K | first fit s | second fit s | second s per (N K) x 1e6 | sweeps | "
          "peak extra / X bytes |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for N, K in dict.fromkeys(sizes):
        r = run(N, K, args.p, args.k)
        print(f"| {N} | {K} | {r['seconds']:.2f} | {r['second']:.2f} | "
              f"{r['second'] / (N * K) * 1e6:.2f} | "
              f"{r['sweeps']}{'' if r['converged'] else ' (not converged)'} | "
              f"{r['peak_extra'] / r['x_bytes']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
