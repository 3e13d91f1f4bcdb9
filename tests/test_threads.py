"""Results do not depend on the CPU thread count (subprocesses with NUMBA_NUM_THREADS)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.digests import digest

ROOT = Path(__file__).resolve().parents[1]

_CHILD = """
import json
import numba
from tests.digests import digest
print(json.dumps({"threads": numba.get_num_threads(), "digest": digest("cpu")}))
"""


@pytest.fixture(scope="module")
def reference_digest() -> str:
    return digest("reference")


@pytest.mark.slow
@pytest.mark.parametrize(("threads", "serial_bytes"), [(1, "0"), (2, "0"), (8, "0"), (2, "")],
                         ids=["1", "2", "8", "2-small-calls-serial"])
def test_bits_do_not_depend_on_thread_count(threads, serial_bytes, reference_digest):
    """``serial_bytes`` "0": every call takes the threads; "" (the default cutoff,
    ``kernels.cpu.tasks.SERIAL_BYTES``): the digest's small calls run the two-thread
    schedule on the calling thread."""
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), REPROGLS_SERIAL_BYTES=serial_bytes,
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=900)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["threads"] == threads
    assert result["digest"] == reference_digest
