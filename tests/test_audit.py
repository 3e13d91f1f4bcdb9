"""The determinism audit (``reprogls audit`` / ``reprogls compare``, :mod:`reprogls.audit`):
it passes on this machine, at other thread counts and on the GPU, and it catches and
locates real divergences -- a process that flushes subnormals, and results whose bits
were changed."""

from __future__ import annotations

import copy
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reprogls import audit, cli, kernels
from reprogls.audit.bits import BLOCK, decode, encode, ulp_distance
from tests.cuda_emulator import compiler

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def report() -> dict:
    """This machine's audit: every problem and kernel probe on the CPU, in this process
    (the thread-count children are tested below)."""
    return audit.run_audit(devices=["cpu"], threads=[])


def test_the_audit_of_this_machine_passes(report):
    assert audit.check(report) == []
    spec, cpu = report["runs"]
    assert spec["label"] == "spec" and cpu["device"] == "cpu"
    assert {name: fit["fingerprint"] for name, fit in cpu["fits"].items()} == audit.golden()
    assert sorted(cpu["kernels"]) == sorted(spec["kernels"])
    assert report["environment"]["numba_cache_locked"] is True
    # the probes cover every public kernel
    covered = {key for probe in spec["kernels"].values() for key in probe}
    assert {"sum", "dot", "nrm2", "gemv", "gemv_t", "sur_matvec", "sur_rmatvec",
            "woodbury_solve", "woodbury_logdet", "sur_normal_matvec", "soft_threshold",
            "soft_threshold_box", "prox_elastic_net", "fista_x", "log", "exp"} <= covered
    # a report survives JSON and agrees with itself
    again = json.loads(json.dumps(report))
    assert audit.compare(report, again) == []
    # another compile target is a note, not a divergence
    again["environment"]["cpu"]["llvm_cpu"] = "x86-64"
    assert [str(f) for f in audit.compare(report, again)] == [
        f"note  environment: cpu.llvm_cpu: {report['environment']['cpu']['llvm_cpu']} (A) "
        "vs x86-64 (B)"]


def test_stored_bits_round_trip():
    a = np.array([[1.0, -0.0], [np.nan, 5e-324]])
    entry = encode(a)
    assert entry["shape"] == [2, 2] and len(entry["blocks"]) == 1
    assert np.array_equal(decode(entry).view(np.uint64), a.view(np.uint64))
    big = encode(np.arange(3 * BLOCK + 1.0))
    assert big["data"] is None and len(big["blocks"]) == 4 and decode(big) is None


def test_ulp_distance():
    tiny = 5e-324
    a = np.array([0.0, 1.0, -1.0, tiny, 1.0, np.nan, np.nan, 1e308])
    b = np.array([-0.0, np.nextafter(1.0, 2.0), np.nextafter(-1.0, 0.0), -tiny, np.nan,
                  np.nan, 1.0, np.inf])
    # +0 and -0 are neighbours; tiny, +0, -0, -tiny are three steps; NaN meets a number: -1
    inf_steps = int(np.float64(np.inf).view(np.int64) - np.float64(1e308).view(np.int64))
    assert ulp_distance(a, b).tolist() == [1, 1, 1, 3, -1, 0, -1, inf_steps]


def _changed(entry: dict, index: int, flip: int = 1) -> dict:
    """``entry`` with the lowest bits of flat element ``index`` flipped (xor ``flip``)."""
    values = decode(entry).ravel().copy()
    values.view(np.uint64)[index] ^= np.uint64(flip)
    return encode(values.reshape(entry["shape"]))


def test_a_changed_kernel_result_is_located_to_the_element_and_the_ulp(report):
    other = copy.deepcopy(report)
    cpu = other["runs"][1]
    cpu["kernels"]["gemv/compensated"]["gemv"] = _changed(
        cpu["kernels"]["gemv/compensated"]["gemv"], 5)
    found = [f for f in audit.check(other) if f.divergence]
    assert len(found) == 1
    assert found[0].where == "kernel gemv (gemv/compensated)"
    assert "1 of 1000 elements differ (max 1 ulp); first at [5]" in found[0].detail
    # across two reports (two machines), the same element is named
    cross = [f for f in audit.compare(report, other) if f.divergence]
    assert [f.where for f in cross] == ["kernel gemv (gemv/compensated)"] * 2


def test_the_probes_and_the_spec_give_the_committed_digests(report):
    """This machine builds the committed inputs and the NumPy spec gives the committed
    results on them (``reprogls/audit/golden_kernels.json``): a machine that builds other
    inputs (another NumPy stream, or a value computed through a library function again,
    as the magnitudes ``10.0 ** U(a, b)`` were until 2026-12-06, when an AVX-512 Xeon's
    SVML power gave other inputs than a Zen 3's glibc) fails here and in its audit."""
    golden = audit.golden_kernels()
    assert report["golden_kernels"] == golden
    assert report["probe_inputs"] == golden["inputs"]
    spec = report["runs"][0]
    assert sorted(golden["inputs"]) == sorted(spec["kernels"])
    assert {p: {k: e["sha256"] for k, e in r.items()} for p, r in spec["kernels"].items()} \
        == golden["results"]


def test_a_spec_or_inputs_other_than_the_committed_ones_fail_the_check(report):
    """A spec result that parts from its committed digest is named (every device equals
    the spec, so only the spec is); a probe whose inputs part is named once, as inputs,
    and its results are not held to the committed ones."""
    other = copy.deepcopy(report)
    other["golden_kernels"]["results"]["log-exp"]["log"] = "0" * 64
    found = [f for f in audit.check(other) if f.divergence]
    assert [f.where for f in found] == ["kernel log (log-exp)"]
    assert "is not the committed 0000000000000000" in found[0].detail
    other = copy.deepcopy(report)
    other["probe_inputs"]["log-exp"] = "0" * 64
    other["golden_kernels"]["results"]["log-exp"]["log"] = "0" * 64
    found = [f for f in audit.check(other) if f.divergence]
    assert [f.where for f in found] == ["kernel inputs (log-exp)"]
    assert "not the committed" in found[0].detail


def test_compare_does_not_compare_results_of_different_inputs(report):
    """Two machines that fed a probe different inputs: one divergence naming the probe's
    inputs, none for its results (they would differ whatever the kernels did); the other
    probes are compared as usual. A report without input digests is compared with a
    note saying so."""
    other = copy.deepcopy(report)
    other["probe_inputs"]["gemv/plain"] = "0" * 64
    for run in other["runs"]:  # other inputs, other results
        run["kernels"]["gemv/plain"]["gemv"] = _changed(run["kernels"]["gemv/plain"]["gemv"], 3)
    found = [f for f in audit.between(report, other) if f.divergence]
    assert [f.where for f in found] == ["kernel inputs (gemv/plain)"]
    assert "fed the kernels different inputs" in found[0].detail
    # B's own check holds its inputs to the committed digests: that probe parts there
    own = [f for f in audit.check(other) if f.divergence]
    assert [f.where for f in own] == ["kernel inputs (gemv/plain)"]
    assert "not the committed" in own[0].detail
    older = copy.deepcopy(report)
    del older["probe_inputs"]
    notes = [str(f) for f in audit.compare(report, older)]
    assert notes == ["note  environment: B records no digests of the kernel probes' inputs "
                     "(a report written before 2026-12-06): the kernels' results are "
                     "compared as if both machines had built the same inputs"]


def test_a_changed_large_result_is_located_to_its_block(report):
    other = copy.deepcopy(report)
    probe = other["runs"][1]["kernels"]["woodbury/plain"]
    entry = probe["woodbury_solve"]
    assert entry["data"] is None  # too large to store: only block digests
    blocks = list(entry["blocks"])
    blocks[7] = "0" * 16
    probe["woodbury_solve"] = {**entry, "sha256": "0" * 64, "blocks": blocks}
    found = [f for f in audit.check(other) if f.divergence]
    assert [f.where for f in found] == ["kernel woodbury_solve (woodbury/plain)"]
    assert f"1 of {len(blocks)} blocks of {BLOCK} (flat) elements differ: " \
           f"{7 * BLOCK}..{8 * BLOCK - 1}" in found[0].detail


def test_a_changed_fit_is_named_with_its_components(report):
    other = copy.deepcopy(report)
    fit = other["runs"][1]["fits"]["gram-compensated"]
    fit["components"]["bse"] = _changed(fit["components"]["bse"], 2, flip=3)
    fit["llf_history"] = _changed(fit["llf_history"], 1)
    fit["fingerprint"] = "f" * 64
    second = copy.deepcopy(other["runs"][1])
    second["label"] = "cpu (copy)"
    second["fits"]["gram-compensated"] = report["runs"][1]["fits"]["gram-compensated"]
    other["runs"].append(second)
    found = [f for f in audit.check(other) if f.divergence]
    assert [f.where for f in found] == ["fit gram-compensated"] * 2
    golden_line, pair_line = sorted(found, key=lambda f: "committed" not in f.detail)
    assert "is not the committed" in golden_line.detail
    label = report["runs"][1]["label"]
    assert pair_line.detail.startswith(f"{label} vs cpu (copy): the log-likelihood first "
                                       "parts after sweep 2; bse: 1 of ")
    assert "first at [2]" in pair_line.detail and "params" not in pair_line.detail


def _flush_library(tmp_path) -> Path:
    """A shared library that sets FTZ and DAZ when it is loaded, as a library built with
    ``-ffast-math`` (GCC's crtfastmath) does."""
    source = tmp_path / "flush.c"
    source.write_text("#include <xmmintrin.h>\n"
                      "__attribute__((constructor)) static void flush(void) {\n"
                      "    _mm_setcsr(_mm_getcsr() | 0x8040);\n}\n")
    lib = tmp_path / "libflush.so"
    subprocess.run([compiler.compiler(), "-x", "c", "-shared", "-fPIC", "-O2", "-o", str(lib),
                    str(source)], check=True, capture_output=True)
    return lib


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or sys.platform != "linux"
                    or (compiler.compiler() is None
                        and os.environ.get("REPROGLS_REQUIRE_CXX") != "1"),
                    reason="needs x86-64 Linux and a C compiler (g++ or $CXX)")
def test_a_process_that_flushes_subnormals_is_caught(report, tmp_path):
    """Negative control: the audit in a process where a loaded library set FTZ/DAZ fails,
    and the comparison with this machine's report names the probes whose inputs
    changed."""
    lib = _flush_library(tmp_path)
    env = {**os.environ, "LD_PRELOAD": str(lib)}
    child = subprocess.run([sys.executable, "-m", "reprogls", "audit", "--json", "--devices",
                            "cpu", "--problems", "gram-compensated"], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert child.returncode == 1, child.stderr[-2000:]
    flushed = json.loads(child.stdout)
    assert flushed["environment"]["subnormals"] == {"ftz": True, "daz": True}
    # the process itself is named first; it builds other inputs than the committed ones
    # where subnormals occur
    own = [f.where for f in audit.check(flushed) if f.divergence]
    assert own[0] == "environment"
    assert {"kernel inputs (log-exp)", "kernel inputs (reductions/compensated)"} <= set(own)
    # the flushing process even builds other inputs (a product that should be
    # subnormal is zero there): the comparison names those probes' inputs, not results
    diverging = {f.where for f in audit.between(report, flushed) if f.divergence}
    assert {"kernel inputs (reductions/compensated)", "kernel inputs (log-exp)"} <= diverging
    assert not any(w.startswith(("kernel sum_subnormal", "kernel log ")) for w in diverging)


def test_thread_counts_give_the_same_bits():
    report = audit.run_audit(devices=["cpu"], problems=["wide-cg"], threads=[1, 3])
    labels = [run["label"] for run in report["runs"]]
    assert labels[0] == "spec" and labels[2:] == ["cpu (1 thread)", "cpu (3 threads)"]
    assert audit.check(report) == []


def test_cli_writes_a_report_and_compares_two(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert cli.main(["audit", "--problems", "robust", "--no-kernels", "-o", str(a)]) == 0
    out = capsys.readouterr().out
    assert "verdict: every run gives the same bits" in out and f"written to {a}" in out
    assert cli.main(["audit", "--problems", "robust", "--no-kernels", "--single-process",
                     "--against", str(a)]) == 0
    report = json.loads(a.read_text())
    # by default the CPU run is repeated on one thread, where the process runs more
    labels = [run["label"] for run in report["runs"]]
    assert labels[1:] == (["cpu (1 thread)"] if kernels.cpu_threads() > 1 else []), labels
    fit = report["runs"][0]["fits"]["robust"]
    fit["fingerprint"] = "0" * 64
    fit["components"]["llf"] = encode(np.nextafter(decode(fit["components"]["llf"]), 0.0))
    b.write_text(json.dumps(report))
    capsys.readouterr()
    assert cli.main(["compare", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "DIVERGES  fit robust:" in out and "llf: " in out and "(max 1 ulp)" in out
    assert out.rstrip().endswith("verdict: DIVERGES (see above)")


@pytest.mark.parametrize("argv, message", [
    (["audit", "--problems", "nope"], "unknown audit problem"),
    (["audit", "--devices", "cuda:7"], "are not usable here"),
    (["audit", "--threads", "0"], "must be >= 1"),
])
def test_cli_rejects_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_compare_rejects_a_file_that_is_not_a_report(tmp_path, capsys):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(SystemExit):
        cli.main(["compare", str(path), str(path)])
    assert "is not a reprogls-audit-1 report" in capsys.readouterr().err


@pytest.mark.gpu
def test_the_gpu_gives_the_cpu_bits_in_the_audit():
    report = audit.run_audit(devices=["cpu", "cuda:0"], problems=["gram-compensated",
                                                                  "cg-compensated"],
                             threads=[])
    assert [r["label"] for r in report["runs"]][2] == "cuda:0"
    assert audit.check(report) == []
