"""The CPU profiling scripts that reach into the package's internals still run.

``profiling/fused_phases.py`` and ``profiling/lane_steps.py`` call private functions of
:mod:`reprogls.kernels.cpu` (the fused operator's task loop, its phases, the lane
steps) to time them apart, and ``profiling/compare_peers.py`` calls the Sigma-step
(:func:`reprogls.gls.sigma.factor_analysis`) and the peers' APIs (linearmodels,
statsmodels, scikit-learn: the test extras); a refactor or a peer's new release that
renames or re-signs one of those would otherwise break them silently. Each runs here
once at a tiny size, as a script in a child process, and must print a time on every
row it promises, once (the numbers themselves are not checked: timings belong to the
scripts, not to the tests). The two with Numba functions of their own get a Numba
cache directory of their own: loaded in this process under another module name, their
cached functions would be stored under that name and then fail to load when the script
runs. ``compare_peers.py`` has none, and shares the package's cache (with a fresh one
it would compile every kernel it reaches again). ``profiling/krylov_solves.py`` wraps
the Krylov Sigma-step's functions: its fit must keep the bits of the same fit without
the wrappers.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NUMBER = r"(\d+(?:\.\d+)?)"
#: Scripts that define Numba functions of their own.
OWN_NUMBA_CACHE = ("lane_steps", "fused_phases")


@pytest.mark.parametrize("name, argv, rows", [
    ("lane_steps", ["--equations", "3", "--width", "8", "--repeat", "1"],
     [rf"^\s+{mode}\s+{layout}\s+{NUMBER} ns per column-row\s+{NUMBER} cycles"
      for mode in ("plain", "compensated") for layout in ("block", "lane-major")]),
    ("fused_phases", ["--equations", "3", "--width", "8", "--rank", "2", "--chunks", "1",
                      "--repeat", "1"],
     [rf"^\s+{mode}\s+{phase}\s+in cache\s+{NUMBER}\s+memory\s+{NUMBER}$"
      for mode in ("plain", "compensated")
      for phase in ("dots", "woodbury", "steps", "all three")]
     + [rf"^\s+{mode}\s+the kernel \(.*\)\s+memory\s+{NUMBER}$"
        for mode in ("plain", "compensated")]),
    ("rank_selection", ["--n", "300", "--k", "8", "--p", "2", "--factors", "2", "--ranks",
                        "0", "1", "2", "3", "--rounds", "1"],
     [rf"^round 1: select_rank {NUMBER} s \(shared work {NUMBER} s\), one fit per rank "
      rf"{NUMBER} s$",
      rf"^best: select_rank {NUMBER} s, one fit per rank {NUMBER} s, {NUMBER}x; best rank "
      rf"\d+, the same bits$"]),
    ("compare_peers", ["--small", "--repeat", "1"],
     [rf"^\s+N=\s*200 K=\s*4 p=2: reprogls\s+{NUMBER} s \(\d+ sweeps\)\s+linearmodels\s+"
      rf"{NUMBER} s .* max rel beta diff {NUMBER}e",
      rf"^\s+N=\s*200 K=\s*6 p=2 k=2: reprogls\s+{NUMBER} s .*linearmodels\s+{NUMBER} s",
      rf"^\s+N=\s*60 K=\s*4 p=2: reprogls\s+{NUMBER} s$",
      rf"^\s+GLS \(sigma \d+ MB\)\s+{NUMBER} s .* max rel diff beta {NUMBER}e",
      rf"^\s+OLS, whitened by hand\s+{NUMBER} s .* max rel diff beta {NUMBER}e"]
     + [rf"^\s+N=\s*300 K=\s*8 k=2 \(2 in the data\) {mode}\s*: reprogls\s+{NUMBER} s "
        rf".* scikit-learn\s+{NUMBER} s" for mode in ("compensated", "plain")]),
])
def test_cpu_profiling_script_runs(name, argv, rows, tmp_path):
    env = dict(os.environ)
    if name in OWN_NUMBA_CACHE:
        env["NUMBA_CACHE_DIR"] = str(tmp_path)
    run = subprocess.run([sys.executable, str(ROOT / "profiling" / f"{name}.py"), *argv],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    for pattern in rows:
        matching = [line for line in lines if re.search(pattern, line)]
        assert len(matching) == 1, (pattern, lines)
        values = re.search(pattern, matching[0]).groups()
        assert all(float(v) >= 0 for v in values), matching[0]


def test_krylov_solves_records_every_solve_and_leaves_the_fit_its_bits():
    """``profiling/krylov_solves.py`` wraps the Krylov method's functions to record each
    solve; the fit it prints must have the fingerprint of the same fit without them, and
    a row per solve that adds up to the totals."""
    from reprogls import gls

    argv = ["--n", "400", "--k", "100", "--p", "2", "--factors", "2", "--rank", "3"]
    run = subprocess.run([sys.executable, str(ROOT / "profiling" / "krylov_solves.py"),
                          *argv], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert "eigensolver_for gives 'krylov'" in out
    printed = re.search(r"fingerprint ([0-9a-f]{16})", out).group(1)
    Xs, Y = gls.simulate_sur(400, 100, 2, 2, seed=0)[:2]
    assert gls.fit(Xs, Y, rank=3, cov_type="none").fingerprint[:16] == printed
    rows = re.findall(r"^\s+\d+\s+3\s+(\d+)\s+(\d+)\s+(\d+)\s+yes\s", out, re.MULTILINE)
    total = re.search(r"^total: (\d+) solves, (\d+) Rayleigh-Ritz steps, (\d+) restarts, "
                      r"(\d+) vectors, 0 unconverged$", out, re.MULTILINE)
    assert rows and total, out
    sums = [sum(int(r[i]) for r in rows) for i in range(3)]
    assert [len(rows), *sums] == [int(g) for g in total.groups()]
    assert re.search(r"^held back by index: q=\d+: \d+", out, re.MULTILINE), out
