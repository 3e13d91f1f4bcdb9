"""Command-line interface (also ``python -m reprogls``).

``reprogls demo``: the kernels compiled, a sum and a GLS fit on every available device,
their bits compared. ``reprogls audit``: the determinism audit (:mod:`reprogls.audit`) of
this machine, optionally written to a JSON report. ``reprogls compare A.json B.json``:
where two machines' reports part."""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from . import __version__, kernels


def _bits(value: float) -> str:
    return f"0x{int(np.float64(value).view(np.uint64)):016x}"


def demo(n: int = 10_000_000, seed: int = 0) -> int:
    """Sum one vector on every available device and show that the bits agree.

    The vector mixes magnitudes from 1e-8 to 1e8 with both signs, so a different
    summation order would change the low bits of the result.
    """
    from .kernels import warm

    devices = kernels.available_devices()
    print(f"reprogls {__version__}, CRO-{kernels.CRO_VERSION}; devices: {', '.join(devices)}")
    data = {}

    def make_data() -> None:
        """The vector and its NumPy sums, made while the last warm-up worker compiles."""
        rng = np.random.default_rng(seed)
        # x = N(0, 1) 10^U(-8, 8) in place: every new 80 MB array costs its first touch
        # (0.4-0.8 s each on the 2-core test VMs: :mod:`.kernels.cpu.pages`)
        x = rng.standard_normal(n)
        scale = rng.uniform(-8, 8, n)
        x *= np.power(10.0, scale, out=scale)
        data.update(x=x, reference=kernels.reference.cro_sum(x), pairwise=float(np.sum(x)))

    jobs = os.cpu_count() or 1
    seconds = warm.warm_parallel(warm.FIT_TASKS, jobs, meanwhile=make_data)
    print(f"CPU kernels ready in {seconds:.1f} s (loaded from Numba's cache, or compiled "
          f"by {jobs} processes where missing; the data below made meanwhile)")
    x = data["x"]
    print(f"sum of {n:,} float64 values (seed {seed}), compensated mode:")
    results = {}
    for device in devices:
        t0 = time.perf_counter()
        value = kernels.sum(x, device=device)
        dt = time.perf_counter() - t0
        results[device] = value
        print(f"  {device:<8} {value!r:>26}  bits {_bits(value)}  ({dt * 1e3:.1f} ms)")
    reference, pairwise = data["reference"], data["pairwise"]
    print(f"  {'spec':<8} {reference!r:>26}  bits {_bits(reference)}  (NumPy reference)")
    print(f"  {'np.sum':<8} {pairwise!r:>26}  bits {_bits(pairwise)}  "
          "(NumPy pairwise order, for comparison)")
    agree = len({_bits(v) for v in [*results.values(), reference]}) == 1
    print("all devices agree bit for bit with the spec" if agree else "MISMATCH between devices")
    return 0 if agree else 1


def demo_fit(N: int = 2000, K: int = 50, p: int = 5, k: int = 3, seed: int = 0,
             devices: list[str] | None = None) -> int:
    """Simulate a SUR system and fit it on every available device (or ``devices``): print
    the summary head of the first fit, then each device's fingerprint and time, and
    whether the fingerprints agree (the exit status is 1 if they do not)."""
    from . import gls
    from .gls.simulate import simulate_sur

    devices = devices or kernels.available_devices()
    Xs, Y, B, _, _ = simulate_sur(N, K, p, k, seed)
    fingerprints = []
    for device in devices:
        t0 = time.perf_counter()
        res = gls.fit(Xs, Y, rank=k, device=device)
        dt = time.perf_counter() - t0
        if not fingerprints:
            print(f"\nGLS fit of a simulated SUR system: N={N}, K={K}, p={p}, rank={k}")
            print("\n".join(res.summary().splitlines()[:16]))
            print(f"max |beta_hat - beta| = "
                  f"{float(np.max(np.abs(res.params - B.ravel()))):.4f}")
        fingerprints.append(res.fingerprint)
        print(f"fingerprint {res.fingerprint} on {res.device} ({dt:.2f} s)")
    if len(fingerprints) == 1:
        return 0
    agree = len(set(fingerprints)) == 1
    print("the fits agree bit for bit on every device" if agree else
          "MISMATCH between the devices' fits")
    return 0 if agree else 1


def audit(args: argparse.Namespace) -> int:
    """``reprogls audit``: run the audit, print the verdict (or the JSON report with
    ``--json``), write the report, compare with another machine's; exit 1 on divergence."""
    import json

    from . import audit as aud
    from .kernels import warm

    if not args.json:  # compile (or load) the CPU kernels in parallel first, as the demo
        seconds = warm.warm_parallel()
        print(f"CPU kernels compiled (or loaded from the cache) in {seconds:.1f} s")
    threads = [] if args.single_process else args.threads  # None: the default
    report = aud.run_audit(args.devices, args.problems, threads, not args.no_kernels)
    findings = aud.check(report)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
    if args.json:
        json.dump(report, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(aud.summary(report, findings))
        if args.output:
            print(f"report written to {args.output}")
    if args.against:
        other = aud.load(args.against)
        # (this machine's own findings are listed above)
        cross = (aud.between(other, report, (args.against, "this machine"))
                 + aud.labelled(aud.check(other), args.against))
        print(f"\nagainst {args.against}:")
        print("\n".join(str(f) for f in cross) or "the same bits everywhere")
        findings += cross
    return 1 if any(f.divergence for f in findings) else 0


def compare(paths: list[str]) -> int:
    """``reprogls compare A.json B.json``: print where the two reports part."""
    from . import audit as aud

    a, b = aud.load(paths[0]), aud.load(paths[1])
    findings = aud.compare(a, b, (paths[0], paths[1]))
    print("\n".join(str(f) for f in findings))
    failed = any(f.divergence for f in findings)
    print("verdict: DIVERGES (see above)" if failed else
          "verdict: the two reports hold the same bits")
    return 1 if failed else 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``reprogls`` console script."""
    parser = argparse.ArgumentParser(prog="reprogls", description=__doc__)
    parser.add_argument("--version", action="version", version=f"reprogls {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser(
        "demo", help="compile the kernels, sum a vector and fit a simulated SUR system on "
                     "every device, and compare the bits",
        description="Compile (or load) the CPU kernels; sum one vector on every available "
                    "device against the NumPy reference; fit a simulated SUR system (N = "
                    "2000, K = 50, p = 5, rank 3) on every device and print the summary "
                    "head, the fingerprints and whether they agree. Exit status 1 on any "
                    "mismatch.")
    p_demo.add_argument("--n", type=int, default=10_000_000,
                        help="length of the summed vector (default 10,000,000)")
    p_demo.add_argument("--seed", type=int, default=0, help="random seed")
    p_audit = sub.add_parser(
        "audit", help="determinism audit of this machine: kernels against the spec, fits "
                      "against the committed fingerprints",
        description="Fit the canonical audit problems and run every kernel on fixed "
                    "adversarial inputs on each device, and on the CPU again at one thread "
                    "(or the --threads counts), in a child process; check the kernels "
                    "against the NumPy spec and the fits against the fingerprints "
                    "committed with the package. Exit status 1 "
                    "on any divergence. Write the report with --output and compare it "
                    "with another machine's with 'reprogls compare'.")
    p_audit.add_argument("--output", "-o", metavar="FILE", help="write the JSON report here")
    p_audit.add_argument("--against", metavar="FILE",
                         help="also compare with another machine's report")
    p_audit.add_argument("--devices", nargs="+", metavar="DEVICE",
                         help="devices to audit (default: every usable one)")
    threads = p_audit.add_mutually_exclusive_group()
    threads.add_argument("--threads", nargs="+", type=_positive, metavar="N",
                         help="repeat the CPU run with NUMBA_NUM_THREADS=N, in a child "
                              "process each (default: 1, where this process runs more "
                              "threads; e.g. --threads 1 8)")
    threads.add_argument("--single-process", action="store_true",
                         help="no child processes: the CPU at this process's thread count "
                              "only")
    p_audit.add_argument("--problems", nargs="+", metavar="NAME",
                         help="audit problems to fit (default: all)")
    p_audit.add_argument("--no-kernels", action="store_true",
                         help="fits only, no kernel probes")
    p_audit.add_argument("--json", action="store_true",
                         help="print the JSON report instead of the verdict")
    p_compare = sub.add_parser(
        "compare", help="where two audit reports (two machines, say) part",
        description="Compare two reports written by 'reprogls audit --output': environment "
                    "differences, then every kernel result and fit of B against A's (the "
                    "first differing element, its bits and the ulp distance). Exit status 1 "
                    "on any divergence.")
    p_compare.add_argument("reports", nargs=2, metavar="REPORT")
    args = parser.parse_args(argv)
    if args.command == "audit" and args.json and args.against:
        parser.error("--json prints the report alone; compare it afterwards with "
                     "'reprogls compare' instead of --against")
    if args.command == "audit":
        try:
            return audit(args)
        except ValueError as exc:
            parser.error(str(exc))
    if args.command == "compare":
        try:
            return compare(args.reports)
        except (OSError, ValueError) as exc:
            parser.error(str(exc))
    if args.command == "demo":
        if args.n < 0:
            parser.error("--n must be >= 0")
        status = demo(args.n, args.seed)
        return status or demo_fit(seed=args.seed)
    return 2  # pragma: no cover (argparse enforces the sub-command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
