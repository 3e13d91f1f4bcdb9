"""The demo runs and reports agreement."""

from __future__ import annotations

import subprocess
import sys

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
