"""The committed golden fingerprints (:mod:`tests.golden`) reproduce on this machine."""

from __future__ import annotations

import json

import pytest

from tests.golden import PATH, PROBLEMS, fingerprints

GOLDEN = json.loads(PATH.read_text())


def test_every_problem_has_a_committed_fingerprint():
    assert sorted(GOLDEN) == sorted(PROBLEMS)


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_cpu_fit_reproduces_the_golden_fingerprint(name):
    assert fingerprints([name])[name] == GOLDEN[name]


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_gpu_fit_reproduces_the_golden_fingerprint(name):
    from reprogls import gls

    build, kwargs = PROBLEMS[name]
    Xs, Y = build()
    res = gls.fit(Xs, Y, **{**kwargs, "device": "cuda"})
    assert res.device.startswith("cuda")
    assert res.fingerprint == GOLDEN[name]
