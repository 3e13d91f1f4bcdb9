"""Results do not depend on the CPU thread count (subprocesses with NUMBA_NUM_THREADS)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reprogls.kernels import reference as ref
from tests.corpus import bits, cases

ROOT = Path(__file__).resolve().parents[1]

_CHILD = """
import hashlib, json, sys
import numba
from reprogls import kernels
from tests.corpus import bits, cases
digest = hashlib.sha256()
for big in (False, True):
    for label, x, y in cases(big=big):
        for mode in ("compensated", "plain"):
            for value in (kernels.sum(x, mode, "cpu"), kernels.dot(x, y, mode, "cpu"),
                          kernels.nrm2(x, mode, "cpu")):
                digest.update(bits(value).to_bytes(8, "little"))
print(json.dumps({"threads": numba.get_num_threads(), "digest": digest.hexdigest()}))
"""


def _reference_digest() -> str:
    digest = hashlib.sha256()
    for big in (False, True):
        for _, x, y in cases(big=big):
            for mode in ("compensated", "plain"):
                for value in (ref.cro_sum(x, mode), ref.cro_dot(x, y, mode),
                              ref.cro_nrm2(x, mode)):
                    digest.update(bits(value).to_bytes(8, "little"))
    return digest.hexdigest()


@pytest.fixture(scope="module")
def reference_digest() -> str:
    return _reference_digest()


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 2, 8])
def test_bits_do_not_depend_on_thread_count(threads, reference_digest):
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=600)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["threads"] == threads
    assert result["digest"] == reference_digest
