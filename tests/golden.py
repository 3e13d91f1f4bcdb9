"""Golden fingerprints: canonical fits whose result bits are committed.

``tests/golden_fingerprints.json`` holds the fingerprint (SHA-256 of params, F, d, llf
and bse; :attr:`reprogls.gls.GLSResult.fingerprint`) of each problem below, as computed
when the file was written. Every machine, thread count and device must reproduce them
(DESIGN.md section 7): CI checks them on a fresh machine, and a kernel rewrite that
changes one bit of a fit fails here. Regenerate only for a deliberate change of the bits
(a new CRO version or a changed algorithm), and say so in the commit::

    python -m tests.golden --write
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from reprogls.gls.simulate import simulate_sur

PATH = Path(__file__).with_name("golden_fingerprints.json")


def _named_unequal():
    """Named equations of different widths (1-3 regressors) with added constants."""
    Xs, Y, *_ = simulate_sur(500, 5, 3, 2, 21, False)
    return {f"eq{j}": (Y[:, j], Xs[j][:, : 1 + j % 3]) for j in range(5)}


def _unequal_shared():
    """Equations of 1-3 regressors from shared designs (a common base plus noise): the CG
    path's coupled preconditioner with zero-padded widths, plus constants."""
    Xs, Y, *_ = simulate_sur(900, 6, 3, 2, 23, True)
    return [X[:, : 1 + j % 3] for j, X in enumerate(Xs)], Y


#: name -> (data builder, fit keyword arguments)
PROBLEMS = {
    "gram-compensated": (lambda: simulate_sur(700, 6, 3, 2, 11, True)[:2],
                         {"rank": 2, "beta_solver": "gram"}),
    "gram-plain": (lambda: simulate_sur(700, 6, 3, 2, 11, True)[:2],
                   {"rank": 2, "beta_solver": "gram", "mode": "plain"}),
    "cg-compensated": (lambda: simulate_sur(700, 6, 3, 2, 11, True)[:2],
                       {"rank": 2, "beta_solver": "cg"}),
    "cg-plain-residuals": (lambda: simulate_sur(700, 6, 3, 2, 11, True)[:2],
                           {"rank": 2, "beta_solver": "cg", "sigma_step": "residuals",
                            "mode": "plain"}),
    "robust": (lambda: simulate_sur(700, 6, 3, 2, 11, True)[:2],
               {"rank": 2, "cov_type": "robust"}),
    "named-unequal-constant": (lambda: (_named_unequal(), None),
                               {"rank": 1, "add_constant": True, "ridge": 0.25}),
    "wide-cg": (lambda: simulate_sur(17000, 40, 4, 3, 5, True)[:2],
                {"rank": 3, "beta_solver": "cg", "cov_type": "none"}),
    "unequal-cg-constant": (_unequal_shared,
                            {"rank": 2, "beta_solver": "cg", "add_constant": True}),
}


def fingerprints(names=None) -> dict[str, str]:
    """Fit every problem (or those in ``names``) and return its fingerprint."""
    from reprogls import gls

    out = {}
    for name in names or PROBLEMS:
        build, kwargs = PROBLEMS[name]
        Xs, Y = build()
        out[name] = gls.fit(Xs, Y, **kwargs).fingerprint
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="print or rewrite the golden fingerprints")
    parser.add_argument("--write", action="store_true", help=f"rewrite {PATH.name}")
    args = parser.parse_args(argv)
    prints = fingerprints()
    text = json.dumps(prints, indent=2, sort_keys=True) + "\n"
    if args.write:
        PATH.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
