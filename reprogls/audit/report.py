"""Run the determinism audit: the audit problems' fits and the kernel probes on every
device (and again at other CPU thread counts, in child processes), stored bit for bit.

A report is a JSON-ready dict::

    {"format": "reprogls-audit-1",
     "environment": {...},                     # environment.describe()
     "golden": {problem: fingerprint},         # the committed fingerprints
     "probe_inputs": {probe: sha256},          # what the kernel probes were fed
     "golden_kernels": {"inputs": ..., "results": ...},  # their committed digests
     "runs": [run, ...]}

and a run is ``{"label", "device", "threads", "fits", "kernels"}``: ``fits`` maps each
problem to its fingerprint, iteration count, log-likelihood after each sweep
(``llf_history``: where two runs part, its first differing entry is the first sweep that
differs) and the stored bits of params, F, d, llf and bse
(:func:`reprogls.audit.bits.encode`); ``kernels`` maps each probe to its stored results.
The first run is ``"spec"``: the kernel probes in the NumPy reference (no fits), which
every device must equal. ``probe_inputs`` (absent without kernel probes, and in reports
written before 2026-12-06) lets ``reprogls compare`` check that two machines fed their
kernels the same bits before it compares what came out; ``golden_kernels`` (likewise)
holds the committed digests of the probes' inputs and of the spec's results, which
:func:`~.compare.check` holds this machine's to. :mod:`reprogls.audit.compare`
reads reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence

from ..kernels import available_devices, cpu_threads
from .bits import encode
from .environment import describe
from .probes import golden_kernels, input_digests, probes
from .problems import check_names, fit_problem, golden

FORMAT = "reprogls-audit-1"


def _fits(device: str, names: list[str]) -> dict:
    out = {}
    for name in names:
        t0 = time.perf_counter()
        res = fit_problem(name, device)
        out[name] = {"fingerprint": res.fingerprint, "n_iter": int(res.n_iter),
                     "converged": bool(res.converged),
                     "llf_history": encode(res.llf_history),
                     "seconds": round(time.perf_counter() - t0, 3),
                     "components": {"params": encode(res.params), "F": encode(res.F),
                                    "d": encode(res.d), "llf": encode(res.llf),
                                    "bse": encode(res.bse)}}
    return out


def _kernels(device: str | None) -> dict:
    return {name: {key: encode(value) for key, value in probe(device).items()}
            for name, probe in probes().items()}


def device_run(device: str, problems: Sequence[str], kernels: bool = True) -> dict:
    """One device's fits of ``problems`` and (with ``kernels``) its kernel probes."""
    threads = cpu_threads() if device == "cpu" else None
    label = f"cpu ({threads} thread{'s' * (threads != 1)})" if device == "cpu" else device
    return {"label": label, "device": device, "threads": threads,
            "fits": _fits(device, list(problems)),
            "kernels": _kernels(device) if kernels else {}}


def spec_run() -> dict:
    """The kernel probes in the NumPy reference: what every device must equal."""
    return {"label": "spec", "device": None, "threads": None, "fits": {},
            "kernels": _kernels(None)}


def _check_devices(devices: Iterable[str] | None) -> list[str]:
    """``devices`` (every usable one when None) in canonical spelling (``"cuda"`` is
    ``"cuda:0"``); a device that is not usable here is a ValueError."""
    usable = available_devices()
    if devices is None:
        return usable
    chosen = ["cuda:0" if d == "cuda" else d for d in devices]
    missing = [d for d in chosen if d not in usable]
    if missing:
        raise ValueError(f"devices {missing} are not usable here; the usable ones are "
                         f"{usable} (a GPU needs CuPy and an NVIDIA driver)")
    return list(dict.fromkeys(chosen))


def default_threads(devices: Sequence[str]) -> list[int]:
    """The thread counts a CPU audit repeats its run at unless told otherwise: one
    thread, where the process itself runs more (so that every audit also checks that the
    bits do not depend on the thread count)."""
    return [1] if "cpu" in devices and cpu_threads() > 1 else []


def _check_threads(threads: Iterable[int]) -> list[int]:
    counts = list(threads)
    bad = [t for t in counts if not isinstance(t, int) or isinstance(t, bool) or t < 1]
    if bad:
        raise ValueError(f"threads must be positive integers (NUMBA_NUM_THREADS values), "
                         f"got {bad}")
    return counts


def thread_runs(threads: Iterable[int], problems: Sequence[str], kernels: bool = True,
                timeout: float = 1800) -> list[dict]:
    """The CPU run repeated in child processes with ``NUMBA_NUM_THREADS`` set to each
    count (Numba fixes its thread pool at start-up, so each count needs a process)."""
    runs = []
    for count in _check_threads(threads):
        cmd = [sys.executable, "-m", "reprogls", "audit", "--json", "--single-process",
               "--devices", "cpu", "--problems", *problems]
        if not kernels:
            cmd.append("--no-kernels")
        env = {**os.environ, "NUMBA_NUM_THREADS": str(count)}
        child = subprocess.run(cmd, env=env, capture_output=True, text=True,
                               timeout=timeout, check=False)
        if child.returncode not in (0, 1):  # 1: the child found a divergence; still a run
            raise RuntimeError(f"the audit child with NUMBA_NUM_THREADS={count} failed "
                               f"(exit {child.returncode}): {child.stderr[-2000:]}")
        runs.extend(r for r in json.loads(child.stdout)["runs"] if r["device"] == "cpu")
    return runs


def run_audit(devices: Iterable[str] | None = None, problems: Iterable[str] | None = None,
              threads: Iterable[int] | None = None, kernels: bool = True) -> dict:
    """Run the determinism audit in this process (and one child per entry of ``threads``).

    Parameters
    ----------
    devices : list of str, optional
        Devices to run on (default: every usable one, :func:`reprogls.available_devices`).
    problems : list of str, optional
        Audit problems to fit (default: all of :data:`reprogls.audit.problems.PROBLEMS`).
    threads : list of int, optional
        CPU thread counts to repeat the CPU run at, each in a child process (default:
        :func:`default_threads`, one thread where this process runs more; ``[]`` for
        none).
    kernels : bool
        Also run the kernel probes (default True).

    Returns
    -------
    dict
        The report (module docstring); :func:`reprogls.audit.compare.check` judges it.
    """
    names = check_names(problems)
    chosen = _check_devices(devices)
    counts = _check_threads(default_threads(chosen) if threads is None else threads)
    runs = [spec_run()] if kernels else []
    runs += [device_run(d, names, kernels) for d in chosen]
    if counts:
        runs += thread_runs(counts, names, kernels)
    report = {"format": FORMAT, "environment": describe(), "golden": golden(), "runs": runs}
    if kernels:
        report["probe_inputs"] = input_digests()
        report["golden_kernels"] = golden_kernels()
    return report


def load(path: str) -> dict:
    """Read a report written by ``reprogls audit --output`` (checks the format)."""
    with open(path, encoding="utf-8") as f:
        try:
            report = json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not an audit report (not JSON: {exc})") from None
    if not isinstance(report, dict) or report.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} report (write one with "
                         "'reprogls audit --output FILE')")
    return report
