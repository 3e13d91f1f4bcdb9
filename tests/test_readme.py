"""The README's Python examples run as printed (``tests/test_readme.py``).

Each ```` ```python ```` block of README.md runs in one namespace, in order, as a reader
pasting them would, with small simulated data bound to the names the examples take as
given (``Xs``, ``Y``, ``Xs_new``, ``y1``, ``X1``, ``new_eqs``, ...; the dict example's
designs as pandas frames with named columns). Two kinds of line are adapted,
and nothing else: lines that need CuPy or a GPU are left out unless a CUDA device is
usable, and the placeholder ``, ...}`` that stands for more equations in a dict literal
is dropped. A renamed function, argument or attribute in the library then fails here
instead of in a user's session.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from reprogls.gls.simulate import simulate_sur
from reprogls.kernels.devices import cuda_status

README = Path(__file__).resolve().parent.parent / "README.md"
#: Lines that run only where CuPy and a GPU are usable.
GPU_LINE = re.compile(r"\bcupy\b|\bcp\.|device=\"cuda")


def python_blocks() -> list[str]:
    """The README's ```` ```python ```` blocks, in order."""
    return re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"),
                      re.S | re.M)


def runnable(block: str, gpu: bool) -> str:
    """``block`` with the two adaptations of the module docstring."""
    lines = [line.replace(", ...}", "}") for line in block.splitlines()
             if gpu or not GPU_LINE.search(line)]
    return "\n".join(lines) + "\n"


def test_the_readme_has_the_examples_this_test_expects():
    """The fit, penalised-fit and kernel examples (a README without them would pass the
    test below vacuously)."""
    text = "\n".join(python_blocks())
    for needle in ("gls.fit(Xs, Y, rank=3)", "l1=50.0", "kernels.sum(x)", "LowRankGLS",
                   "wald_test", "select_rank"):
        assert needle in text, needle


@pytest.mark.filterwarnings("ignore::reprogls.gls.IdentificationWarning")  # the dict
def test_readme_python_examples_run():  # example's rank 1 with only its two equations
    pd = pytest.importorskip("pandas")
    gpu = cuda_status().usable
    Xs, Y, _, F, d = simulate_sur(300, 6, 3, 2, seed=1)
    Xs_new, Y_new, *_ = simulate_sur(120, 6, 3, 2, seed=2)

    def named(X):  # the dict example's designs carry regressor names, as a user's would
        return pd.DataFrame(X, columns=["price", "income", "size"])

    namespace = {"Xs": Xs, "Y": Y, "Xs_new": Xs_new, "Y_new": Y_new, "F": F, "d": d,
                 "y1": Y[:, 0], "y2": Y[:, 1], "X1": named(Xs[0]), "X2": named(Xs[1]),
                 "new_eqs": {"food": (Y_new[:, 0], named(Xs_new[0])),
                             "fuel": (Y_new[:, 1], named(Xs_new[1]))},
                 "weights": np.full(sum(X.shape[1] for X in Xs), 0.5)}
    for number, block in enumerate(python_blocks()):
        code = runnable(block, gpu)
        try:
            exec(compile(code, f"README.md python block {number}", "exec"), namespace)
        except Exception as error:  # name the block: the traceback shows only its line
            pytest.fail(f"README python block {number} failed: {error!r}\n{code}")
