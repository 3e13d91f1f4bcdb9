"""Judge audit reports: does every run reproduce the committed fingerprints and the NumPy
spec, and where exactly do two runs -- or two machines' reports -- part?

The kernel probes come first in every listing: the fits are built on the kernels, so a
kernel that parts from the spec is where a divergence begins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bits import decode, difference

#: Fields of the environment worth naming when two reports differ in them.
_ENVIRONMENT_FIELDS = ("reprogls", "cro_version", "python", "numpy", "numba", "llvmlite",
                       "cupy", "machine", "system", "cpu_model", "cpu_threads")


@dataclass(frozen=True)
class Finding:
    """One line of an audit verdict.

    Attributes
    ----------
    divergence : bool
        True where the audit fails: bits differ that the contract says must be equal, or
        the process flushes subnormals (the contract keeps them, DESIGN.md section 3, so
        no result of such a process can vouch for another machine's). False for a note
        (an environment difference that is allowed).
    where : str
        The kernel probe or fit problem, and its component where known.
    detail : str
        Which runs part, and how (:class:`reprogls.audit.bits.ArrayDifference`).
    """

    divergence: bool
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{'DIVERGES' if self.divergence else 'note'}  {self.where}: {self.detail}"


def _kernel_findings(base: dict, other: dict, base_name: str, other_name: str,
                     skip: frozenset[str] = frozenset()):
    for probe in base["kernels"]:
        if probe not in other["kernels"] or probe in skip:
            continue
        for key, entry in base["kernels"][probe].items():
            if key not in other["kernels"][probe]:
                continue
            diff = difference(entry, other["kernels"][probe][key])
            if diff is not None:
                yield Finding(True, f"kernel {key} ({probe})",
                              f"{base_name} vs {other_name}: {diff.detail}")


def _first_parting_sweep(a: dict, b: dict) -> int | None:
    """The first sweep (from 1) after which two fits' log-likelihoods differ in their
    bits, or the sweep after the shorter run's last where one path extends the other;
    None where the paths are equal or were not stored."""
    if "llf_history" not in a or "llf_history" not in b:
        return None
    pa, pb = decode(a["llf_history"]), decode(b["llf_history"])
    if pa is None or pb is None:
        return None
    n = min(pa.size, pb.size)
    parted = np.flatnonzero(pa[:n].view(np.uint64) != pb[:n].view(np.uint64))
    if parted.size:
        return int(parted[0]) + 1
    return n + 1 if pa.size != pb.size else None


def _fit_findings(base: dict, other: dict, base_name: str, other_name: str):
    for name, a in base["fits"].items():
        b = other["fits"].get(name)
        if b is None or a["fingerprint"] == b["fingerprint"]:
            continue
        parts = [] if a["n_iter"] == b["n_iter"] else [
            f"iterations {a['n_iter']} vs {b['n_iter']} (control flow parted)"]
        sweep = _first_parting_sweep(a, b)
        if sweep is not None:
            parts.append(f"the log-likelihood first parts after sweep {sweep}")
        for key, entry in a["components"].items():
            diff = difference(entry, b["components"][key])
            if diff is not None:
                parts.append(f"{key}: {diff.detail}")
        yield Finding(True, f"fit {name}", f"{base_name} vs {other_name}: " + "; ".join(parts))


def _runs(report: dict) -> tuple[dict | None, list[dict]]:
    """The report's spec run (or None) and its device runs."""
    spec = next((r for r in report["runs"] if r["device"] is None), None)
    return spec, [r for r in report["runs"] if r["device"] is not None]


def check(report: dict) -> list[Finding]:
    """Findings of one report: subnormal flushing in the process, the spec's results
    against their committed digests, every device run's kernels against the spec, every
    run's fits against the committed fingerprints, and every run against the first
    device run (to name the components that part)."""
    findings = []
    flags = [name.upper() for name, on in report["environment"]["subnormals"].items() if on]
    if flags:
        findings.append(Finding(True, "environment",
                                f"the process has {' and '.join(flags)} set: subnormal "
                                "inputs or results become zero, so bits differ from other "
                                "machines wherever they occur (a library built with "
                                "-ffast-math can set this when it is loaded)"))
    spec, runs = _runs(report)
    if spec is not None:
        findings += _golden_kernel_findings(spec, report.get("probe_inputs", {}),
                                            report.get("golden_kernels", {}))
        for run in runs:
            findings += _kernel_findings(spec, run, "spec", run["label"])
    for run in runs:
        for name, fit in run["fits"].items():
            want = report["golden"].get(name)
            if want is not None and fit["fingerprint"] != want:
                findings.append(Finding(True, f"fit {name}",
                                        f"{run['label']}: fingerprint {fit['fingerprint'][:16]}"
                                        f" is not the committed {want[:16]}"))
    for run in runs[1:]:
        findings += _fit_findings(runs[0], run, runs[0]["label"], run["label"])
    return _ordered(findings)


def _golden_kernel_findings(spec: dict, inputs: dict, golden: dict) -> list[Finding]:
    """The probes whose inputs are not the committed ones (one finding each; their
    results are not compared: other inputs give other bits), then the spec's results
    whose digest is not the committed one (the spec is the NumPy reference on exact
    inputs, so its bits are the same on every machine: one that differs here means this
    machine's NumPy computes the reference differently, or the package's reference or
    probes changed without ``python -m tests.golden --write``)."""
    findings = []
    want_inputs, want_results = golden.get("inputs", {}), golden.get("results", {})
    for probe, results in spec["kernels"].items():
        want, have = want_inputs.get(probe), inputs.get(probe)
        if want is not None and have is not None and have != want:
            findings.append(Finding(True, f"kernel inputs ({probe})",
                                    f"this machine built SHA-256 {have[:16]}, not the "
                                    f"committed {want[:16]} (another NumPy random stream, "
                                    "or a process that flushes subnormals), so its results "
                                    "are not held to the committed ones"))
            continue
        for key, entry in results.items():
            want = want_results.get(probe, {}).get(key)
            if want is not None and entry["sha256"] != want:
                findings.append(Finding(True, f"kernel {key} ({probe})",
                                        f"spec: SHA-256 {entry['sha256'][:16]} is not the "
                                        f"committed {want[:16]} (NumPy computes the "
                                        "reference differently here, or the probes "
                                        "changed without new golden digests)"))
    return findings


def _ordered(findings: list[Finding]) -> list[Finding]:
    """Environment and kernel findings first (the kernels are where a divergence
    begins), then the fits; by place within each."""
    return sorted(findings, key=lambda f: (not f.where.startswith(("environment", "kernel")),
                                           f.where))


def labelled(findings: list[Finding], name: str) -> list[Finding]:
    """``findings`` with ``name: `` before each detail (whose report they are)."""
    return [Finding(f.divergence, f.where, f"{name}: {f.detail}") for f in findings]


def between(a: dict, b: dict, names: tuple[str, str] = ("A", "B")) -> list[Finding]:
    """Findings between two reports only: environment differences (notes), B's spec
    against A's, and every device run of B against A's first device run."""
    na, nb = names
    findings = []
    cpu_a, cpu_b = a["environment"].get("cpu", {}), b["environment"].get("cpu", {})
    pairs = [(field, a["environment"].get(field), b["environment"].get(field))
             for field in _ENVIRONMENT_FIELDS]
    pairs += [(f"cpu.{key}", cpu_a.get(key), cpu_b.get(key))
              for key in sorted(set(cpu_a) | set(cpu_b)) if key != "vector_features"]
    for field, va, vb in pairs:
        if va != vb:
            findings.append(Finding(False, "environment", f"{field}: {va} ({na}) vs {vb} ({nb})"))
    if a["golden"] != b["golden"]:
        findings.append(Finding(False, "environment", "the committed golden fingerprints "
                                "differ (different package versions?)"))
    unequal_inputs, input_findings = _input_findings(a, b, names)
    findings += input_findings
    spec_a, runs_a = _runs(a)
    spec_b, runs_b = _runs(b)
    if spec_a is not None and spec_b is not None:
        findings += _kernel_findings(spec_a, spec_b, f"spec {na}", f"spec {nb}",
                                     unequal_inputs)
    if runs_a:
        base = runs_a[0]
        for run in runs_b:
            findings += _kernel_findings(base, run, f"{base['label']} {na}",
                                         f"{run['label']} {nb}", unequal_inputs)
            findings += _fit_findings(base, run, f"{base['label']} {na}",
                                      f"{run['label']} {nb}")
    return _ordered(findings)


def _input_findings(a: dict, b: dict, names: tuple[str, str]
                    ) -> tuple[frozenset[str], list[Finding]]:
    """The kernel probes whose inputs differ between two reports (their results are not
    compared: different inputs give different bits whatever the kernels do), with a
    divergence for each (the audit cannot vouch for them); a note where a report has no
    input digests (written before 2026-12-06), whose results are compared on trust."""
    if _runs(a)[0] is None or _runs(b)[0] is None:  # a report without kernel probes
        return frozenset(), []
    da, db = a.get("probe_inputs"), b.get("probe_inputs")
    if da is None or db is None:
        missing = [n for n, d in zip(names, (da, db), strict=True) if d is None]
        return frozenset(), [Finding(False, "environment",
                                     f"{' and '.join(missing)} records no digests of the "
                                     "kernel probes' inputs (a report written before "
                                     "2026-12-06): the kernels' results are compared as if "
                                     "both machines had built the same inputs")]
    unequal = frozenset(p for p in da if p in db and da[p] != db[p])
    return unequal, [Finding(True, f"kernel inputs ({p})",
                             f"{names[0]} and {names[1]} fed the kernels different inputs "
                             f"(SHA-256 {da[p][:16]} vs {db[p][:16]}): NumPy built them "
                             "differently there (another random stream, or a process "
                             "that flushes subnormals), so their results are not "
                             "compared") for p in sorted(unequal)]


def compare(a: dict, b: dict, names: tuple[str, str] = ("A", "B")) -> list[Finding]:
    """Findings of two reports (two machines, say): those :func:`between` them, then each
    report's own :func:`check`, labelled with its name."""
    return _ordered(between(a, b, names) + labelled(check(a), names[0])
                    + labelled(check(b), names[1]))


def summary(report: dict, findings: list[Finding]) -> str:
    """A few lines for a person: what ran, and the verdict with every finding."""
    env = report["environment"]
    spec, runs = _runs(report)
    n_kernels = sum(len(v) for v in spec["kernels"].values()) if spec else 0
    n_fits = len(runs[0]["fits"]) if runs else 0
    flush = [k.upper() for k, on in env["subnormals"].items() if on]
    lines = [f"reprogls {env['reprogls']} determinism audit (CRO-{env['cro_version']}) on "
             f"{env['cpu_model'] or env['machine']} (LLVM target {env['cpu']['llvm_cpu']}), "
             f"NumPy {env['numpy']}, Numba {env['numba']}",
             f"subnormals: {'FLUSHED (' + ', '.join(flush) + ')' if flush else 'kept'}; "
             f"GPUs: {', '.join(d['name'] for d in env['cuda']['devices']) or 'none'}",
             f"runs: {', '.join(r['label'] for r in runs)}",
             f"checked: {n_kernels} kernel results against the NumPy spec, "
             f"{n_fits} fit{'s' * (n_fits != 1)} against the committed fingerprints and "
             "across runs"]
    lines += [str(f) for f in findings]
    failed = any(f.divergence for f in findings)
    lines.append("verdict: DIVERGES (see above)" if failed else
                 "verdict: every run gives the same bits (kernels equal the spec, fits "
                 "equal the committed fingerprints)")
    return "\n".join(lines)
