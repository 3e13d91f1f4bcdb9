"""Determinism audit: the same fingerprint on every machine, thread count and device, or
a report that says exactly where two of them part.

``reprogls audit`` (:func:`run_audit`) fits the canonical audit problems
(:mod:`.problems`, whose fingerprints are committed with the package) and runs every
kernel on fixed adversarial inputs (:mod:`.probes`) on each device -- and, with
``--threads``, at several CPU thread counts -- storing the bits of every result
(:mod:`.bits`) beside a description of the machine (:mod:`.environment`).
:func:`check` judges one report (inputs and spec against their committed digests,
kernels against the spec, fits against the committed fingerprints and against each
other);
``reprogls compare A.json B.json`` (:func:`compare`) sets two machines' reports side by
side and names the first kernel, array element and ulp distance at which they part.
"""

from .compare import Finding, between, check, compare, labelled, summary
from .probes import golden_kernels, kernel_digests
from .problems import PROBLEMS, fingerprints, golden
from .report import FORMAT, load, run_audit

__all__ = ["FORMAT", "PROBLEMS", "Finding", "between", "check", "compare", "fingerprints",
           "golden", "golden_kernels", "kernel_digests", "labelled", "load", "run_audit",
           "summary"]
