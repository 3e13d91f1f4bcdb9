"""Print or rewrite the golden fingerprints of the audit problems and the digests of the
kernel probes' inputs and spec results.

The problems and the committed file live in the package (:mod:`reprogls.audit.problems`,
``reprogls/audit/golden_fingerprints.json``) so that ``reprogls audit`` can check them on
any machine the package is installed on; the tests import them from here. Regenerate only
for a deliberate change of the bits (a new CRO version or a changed algorithm), and say so
in the commit::

    python -m tests.golden --write
"""

from __future__ import annotations

import argparse
import json

from reprogls.audit.probes import GOLDEN_KERNELS_PATH, kernel_digests
from reprogls.audit.problems import GOLDEN_PATH as PATH
from reprogls.audit.problems import PROBLEMS, fingerprints

__all__ = ["PATH", "PROBLEMS", "fingerprints", "main"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="print or rewrite the golden fingerprints "
                                     "and the kernel probes' digests")
    parser.add_argument("--write", action="store_true",
                        help=f"rewrite {PATH.name} and {GOLDEN_KERNELS_PATH.name}")
    args = parser.parse_args(argv)
    text = json.dumps(fingerprints(), indent=2, sort_keys=True) + "\n"
    kernels_text = json.dumps(kernel_digests(), indent=2, sort_keys=True) + "\n"
    if args.write:
        PATH.write_text(text)
        GOLDEN_KERNELS_PATH.write_text(kernels_text)
    print(text, end="")
    print(kernels_text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
