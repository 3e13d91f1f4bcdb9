"""Speed of the linear-algebra and elementwise CPU kernels against NumPy/BLAS, one process.

Usage::

    python profiling/kernel_bandwidth.py [--repeat 5] [--only NAME ...] [--back-to-back]
        [--threads N]

For each kernel: bytes of its inputs read once and of its outputs written once (the
vectors of ``gemv``/``gemv_t`` and the fused operator, under 0.5 MB, left out), best
wall time, GB/s, the fraction of the BLAS ``ddot`` read bandwidth measured in the same
run, and the time of what it is compared with and the speed-up over it: the NumPy/BLAS
equivalent, or for the fused operator ``sur_normal_matvec`` the three kernels
``sur_matvec``, ``woodbury_solve``, ``sur_rmatvec`` called in sequence in the same mode
(the kernels issue's 1.6x; a row of its own, ``normal (3 kernels)``, until the
forty-first session). Sizes are beyond cache (X of 400 MB).
``sur_matvec`` writes U and ``sur_rmatvec`` reads W, N x K each (40 MB, 10% of X):
until the twenty-seventh session only X was counted for them, so their percentages
before then are 10% lower than these for the same time.

Each timed call comes after a 0.3 s pause (the numbers of the README); with
``--back-to-back`` every call (BLAS ``ddot`` and the NumPy equivalents included) runs
in a row after one untimed call, as in a loop -- faster for the SUR kernels on the
2-core test VMs, the same for ``ddot`` (``profiling/README.md``).

``--threads N`` runs the kernels and BLAS (NumPy's, through ``threadpoolctl``) on ``N``
threads each. On the shared 2-core VMs one-thread runs were the steadier comparison: in
the thirty-first session two-thread BLAS ``A @ x`` ranged 9.1-14.1 ms between runs of
one hour, one-thread 17-20 ms.
"""

from __future__ import annotations

import argparse

import numpy as np

from reprogls import kernels
from reprogls.kernels.cpu.pages import page_policy

try:
    from ._timing import best_seconds, best_seconds_back_to_back, blas_read_bandwidth
except ImportError:  # run as a script
    from _timing import best_seconds, best_seconds_back_to_back, blas_read_bandwidth


#: Kernels whose baseline runs in the kernel's mode (timed per mode); a NumPy/BLAS
#: baseline ignores the mode and is timed once.
MODE_DEPENDENT_BASELINES = frozenset({"sur_normal_matvec"})


def cases(rng: np.random.Generator):
    """Yield ``(name, kernel(mode), baseline(mode) or None, bytes)`` for every benchmarked
    kernel; the baseline is what the kernel is compared with (NumPy/BLAS, which ignores
    the mode, or the three kernels the fused operator replaces)."""
    # gemv / gemv_t: A of 400 MB
    A = rng.standard_normal((50_000, 1_000))
    x, y = rng.standard_normal(1_000), rng.standard_normal(50_000)
    yield "gemv", lambda m: kernels.gemv(A, x, m), lambda m: A @ x, A.nbytes
    yield "gemv_t", lambda m: kernels.gemv_t(A, y, m), lambda m: A.T @ y, A.nbytes
    # SUR operators: N = 25000, K = 200, p = 10 (X of 400 MB)
    N, K, p = 25_000, 200, 10
    X = rng.standard_normal((N, K * p))
    offsets = np.arange(0, K * p + 1, p)
    beta = rng.standard_normal(K * p)
    W = rng.standard_normal((N, K))
    X3, B2 = X.reshape(N, K, p), beta.reshape(K, p)
    nk_bytes = N * K * 8  # U written by sur_matvec, W read by sur_rmatvec
    yield ("sur_matvec", lambda m: kernels.sur_matvec(X, offsets, beta, m),
           lambda m: np.einsum("nkp,kp->nk", X3, B2), X.nbytes + nk_bytes)
    # the same into a reused output (both sides): without the fresh 40 MB of U, whose
    # first touch costs 5-7 ms on the 2-core test VMs
    U, U_numpy = np.empty((N, K)), np.empty((N, K))
    yield ("sur_matvec (out=)", lambda m: kernels.sur_matvec(X, offsets, beta, m, out=U),
           lambda m: np.einsum("nkp,kp->nk", X3, B2, out=U_numpy), X.nbytes + nk_bytes)
    yield ("sur_rmatvec", lambda m: kernels.sur_rmatvec(X, offsets, W, m),
           lambda m: np.einsum("nkp,nk->kp", X3, W), X.nbytes + nk_bytes)
    F = rng.standard_normal((K, 5))
    d = 0.05 + 0.2 * rng.uniform(size=K)
    factors = {m: kernels.woodbury_factor(F, d, m) for m in ("plain", "compensated")}

    def composed(m):
        f = factors[m]
        U = kernels.sur_matvec(X, offsets, beta, m)
        return kernels.sur_rmatvec(X, offsets, kernels.woodbury_solve(f, U), m)

    yield ("sur_normal_matvec", lambda m: kernels.sur_normal_matvec(X, offsets, factors[m], beta),
           composed, X.nbytes)
    # Woodbury solve: N = 1e5, K = 1000, k = 10 (R of 800 MB)
    Nw, Kw, kw = 100_000, 1_000, 10
    R = rng.standard_normal((Nw, Kw))
    Fw = rng.standard_normal((Kw, kw))
    dw = 0.05 + 0.2 * rng.uniform(size=Kw)
    wf = {m: kernels.woodbury_factor(Fw, dw, m) for m in ("plain", "compensated")}
    Gw = Fw / dw[:, None]
    Cw = np.eye(kw) + Fw.T @ Gw

    def numpy_woodbury(mode):
        return R / dw - (R @ Gw) @ np.linalg.solve(Cw, Gw.T)

    yield ("woodbury_solve", lambda m: kernels.woodbury_solve(wf[m], R), numpy_woodbury,
           2 * R.nbytes)
    # soft-thresholding of 1e8 elements
    z = rng.standard_normal(100_000_000)
    yield ("soft_threshold", lambda m: kernels.soft_threshold(z, 0.5),
           lambda m: np.sign(z) * np.maximum(np.abs(z) - 0.5, 0), 2 * z.nbytes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", nargs="*", default=None, help="kernel names to run")
    parser.add_argument("--back-to-back", action="store_true",
                        help="time calls in a row instead of each after a 0.3 s pause")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads of the kernels and of BLAS (default: Numba's and "
                             "BLAS's own)")
    args = parser.parse_args(argv)
    if args.threads is None:
        return _run(args)
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        parser.error("--threads needs threadpoolctl to limit BLAS: pip install threadpoolctl")
    import numba

    numba.set_num_threads(args.threads)
    with threadpool_limits(args.threads):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    timer = best_seconds_back_to_back if args.back_to_back else best_seconds
    kernels.warmup(("cpu",))
    blas = blas_read_bandwidth(back_to_back=args.back_to_back)
    print(f"BLAS ddot read bandwidth: {blas:.1f} GB/s; threads = {kernels.cpu_threads()}; "
          f"{page_policy()}; calls "
          f"{'back to back' if args.back_to_back else 'each after a 0.3 s pause'}")
    print(f"{'kernel':<20} {'mode':<12} {'seconds':>8} {'GB/s':>6} {'vs BLAS':>8} "
          f"{'base s':>8} {'speed-up':>8}  (base: NumPy/BLAS; for sur_normal_matvec the "
          f"three kernels in sequence)")
    rng = np.random.default_rng(0)
    for name, fn, baseline, nbytes in cases(rng):
        if args.only and name not in args.only:
            continue
        modes = ("plain",) if name == "soft_threshold" else ("plain", "compensated")
        t_base: dict[str, float] = {}
        for mode in modes:
            if baseline is None:
                t_base[mode] = np.nan
            elif t_base and name not in MODE_DEPENDENT_BASELINES:
                t_base[mode] = t_base[modes[0]]
            else:
                baseline(mode)
                t_base[mode] = timer(lambda b=baseline, mode=mode: b(mode), args.repeat)
            fn(mode)
            t = timer(lambda fn=fn, mode=mode: fn(mode), args.repeat)
            gbs = nbytes / t / 1e9
            base = (f"{t_base[mode]:8.4f} {t_base[mode] / t:7.2f}x"
                    if np.isfinite(t_base[mode]) else f"{'--':>8} {'--':>8}")
            print(f"{name:<20} {mode:<12} {t:8.4f} {gbs:6.1f} {gbs / blas:8.0%} {base}",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
