"""The demo runs and reports agreement."""

from __future__ import annotations

import subprocess
import sys

import pytest

from reprogls.cli import main


def test_demo_agrees(capsys):
    assert main(["demo", "--n", "20000"]) == 0
    out = capsys.readouterr().out
    assert "agree bit for bit" in out
    assert "cpu" in out and "bits 0x" in out


def test_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "reprogls", "--version"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.startswith("reprogls ")


def test_demo_fit_reports_the_fit_and_its_fingerprint(capsys):
    assert main(["demo", "--n", "1000"]) == 0
    out = capsys.readouterr().out
    assert "GLS fit of a simulated SUR system" in out and "max |beta_hat - beta|" in out
    lines = [line for line in out.splitlines() if line.startswith("fingerprint ")]
    assert len(lines) == 1 and lines[0].split()[2:4] == ["on", "cpu"]
    assert len(lines[0].split()[1]) == 64  # a SHA-256 in hex


def test_demo_fit_compares_devices(monkeypatch, capsys):
    """With more than one device the demo says whether the fingerprints agree, and exits
    with 1 when they do not (here: a fake second device whose fit differs)."""
    from reprogls import cli, gls

    real_fit = gls.fit

    def fit(*args, device="auto", **kwargs):
        if device == "other":
            return real_fit(*args, device="cpu", **{**kwargs, "mode": "plain"})
        return real_fit(*args, device=device, **kwargs)

    assert cli.demo_fit(200, 4, 2, 1, devices=["cpu", "cpu"]) == 0
    assert "agree bit for bit on every device" in capsys.readouterr().out
    monkeypatch.setattr(gls, "fit", fit)
    assert cli.demo_fit(200, 4, 2, 1, devices=["cpu", "other"]) == 1
    assert "MISMATCH" in capsys.readouterr().out


@pytest.mark.gpu
def test_demo_fit_agrees_on_the_gpu(capsys):
    """The demo's fit on the CPU and on the GPU: the same fingerprint."""
    from reprogls import cli

    assert cli.demo_fit(300, 5, 2, 2, devices=["cpu", "cuda"]) == 0
    out = capsys.readouterr().out
    assert "agree bit for bit on every device" in out and " on cuda:0 (" in out
