"""Kernel probes: every public kernel on fixed adversarial inputs, on a device and in the
NumPy spec (:mod:`reprogls.kernels.reference`).

A fit is built on the kernels, so when two machines' fits part, the kernels' results on
the same inputs say where it began: a kernel that differs from the spec on one machine is
the origin; if every kernel agrees everywhere, the difference lies in the estimator's own
code. Each probe returns named float64 arrays. The inputs come from a seeded NumPy
generator (the same draws everywhere) turned into values by exact operations only
(``ldexp``, sign flips, products by powers of two and the basic arithmetic of
``uniform``), so every machine builds the same inputs; their SHA-256
(:attr:`Probe.input_digest`) goes into the report, is committed with the spec's results
(:data:`GOLDEN_KERNELS_PATH`), and neither ``reprogls audit`` nor ``reprogls compare``
compares results of different inputs. (Magnitudes were ``10.0 ** U(a, b)`` until
2026-12-06: NumPy computes that power with SVML on AVX-512 CPUs and with glibc elsewhere,
and an H100 machine's Xeon built inputs that differed from a Zen 3's in the last bits, so
``compare`` called every kernel divergent.) They are large enough (over 1 MiB where the
kernel reduces) for the CPU kernels to split their work across threads and chunks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import kernels
from ..kernels import reference as ref

MODES = ("compensated", "plain")
#: Equation widths of the probes' SUR design: an empty and a one-regressor equation, a
#: full lane and one past it.
WIDTHS = (3, 0, 1, 32, 33, 5)


def _wide(rng: np.random.Generator, shape, low: int = -40, high: int = 40):
    """Magnitudes ``m 2**e`` (``m ~ U[1, 2)``, ``e`` an integer in ``[low, high)``: about
    24 decades by default), both signs: reductions that cancel. Exact operations only."""
    magnitudes = np.ldexp(rng.uniform(1.0, 2.0, shape), rng.integers(low, high, shape))
    return rng.choice([-1.0, 1.0], shape) * magnitudes


def _vector(n: int, seed: int) -> np.ndarray:
    """Wide magnitudes with subnormals, signed zeros and exact cancellations mixed in."""
    rng = np.random.default_rng([seed, n])
    x = _wide(rng, n)
    x[rng.integers(0, n, 64)] = rng.uniform(-1.0, 1.0, 64) * 2.0 ** -1022  # subnormal
    x[rng.integers(0, n, 16)] = -0.0
    x[1000:1003] = (1e16, 1.0, -1e16)
    return x


def _sur(n_rows: int, seed: int):
    rng = np.random.default_rng([seed, n_rows])
    offsets = np.concatenate([[0], np.cumsum(WIDTHS)]).astype(np.int64)
    P = int(offsets[-1])
    return (_wide(rng, (n_rows, P), -20, 20), offsets, _wide(rng, P, -20, 20),
            _wide(rng, (n_rows, len(WIDTHS)), -20, 20))


def _factor(K: int, k: int, seed: int):
    rng = np.random.default_rng([seed, K, k])
    return rng.standard_normal((K, k)), 0.05 + 0.2 * rng.uniform(size=K)


def _elementwise(seed: int):
    """Values on both sides of the thresholds, exactly on them, zeros and infinities."""
    rng = np.random.default_rng(seed)
    n = 1024
    x = rng.standard_normal(n) * 2.0
    lam = np.abs(rng.standard_normal(n))
    x[:64] = lam[:64]                     # exactly at +lam
    x[64:128] = -lam[64:128]              # exactly at -lam
    x[128:136] = (0.0, -0.0, np.inf, -np.inf, 1e300, -1e300, 5e-324, -5e-324)
    return x, lam


def _log_exp_inputs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    special = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 5e-324, 2.0 ** -1022,
                        1.7976931348623157e308, 0.5, 2.0, np.e])
    # every binade from the subnormals' to the largest (ldexp rounds the subnormals)
    logs = np.concatenate([special,
                           np.ldexp(rng.uniform(1.0, 2.0, 700), rng.integers(-1074, 1024, 700)),
                           1.0 + rng.uniform(-1e-3, 1e-3, 300)])
    exps = np.concatenate([special, rng.uniform(-750, 710, 700), rng.uniform(-1, 1, 300)])
    return logs, exps


@dataclass(frozen=True)
class Probe:
    """Kernels on fixed inputs: called with a device, that device's results; called with
    None, the spec's (named float64 arrays either way).

    Attributes
    ----------
    inputs : tuple of ndarray
        The arrays the probe feeds the kernels.
    run : callable
        ``device or None -> {name: result}``.
    """

    inputs: tuple[np.ndarray, ...]
    run: Callable[[str | None], dict[str, np.ndarray]]

    def __call__(self, device: str | None) -> dict[str, np.ndarray]:
        return self.run(device)

    @property
    def input_digest(self) -> str:
        """SHA-256 over each input's dtype, shape and bytes: equal on two machines when
        they fed the kernels the same bits."""
        digest = hashlib.sha256()
        for a in self.inputs:
            a = np.ascontiguousarray(a)
            digest.update(f"{a.dtype.str}{a.shape}".encode())
            digest.update(a.tobytes())
        return digest.hexdigest()


def _reductions(mode: str) -> Probe:
    x, y = _vector(200_003, 1), _vector(200_003, 2)
    # subnormals only: their sum is a normal number, and 0 where the CPU flushes them
    tiny = np.random.default_rng(13).uniform(-1.0, 1.0, 200_003) * 2.0 ** -1022

    def run(device):
        if device is None:
            return {"sum": ref.cro_sum(x, mode), "dot": ref.cro_dot(x, y, mode),
                    "nrm2": ref.cro_nrm2(x, mode), "sum_subnormal": ref.cro_sum(tiny, mode)}
        return {"sum": kernels.sum(x, mode, device), "dot": kernels.dot(x, y, mode, device),
                "nrm2": kernels.nrm2(x, mode, device),
                "sum_subnormal": kernels.sum(tiny, mode, device)}
    return Probe((x, y, tiny), run)


def _gemv(mode: str) -> Probe:
    rng = np.random.default_rng(3)
    A, x = _wide(rng, (1000, 192)), _wide(rng, 192)
    At, yt = _wide(rng, (20000, 13)), _wide(rng, 20000)

    def run(device):
        if device is None:
            return {"gemv": ref.gemv(A, x, mode), "gemv_t": ref.gemv_t(At, yt, mode)}
        return {"gemv": kernels.gemv(A, x, mode, device),
                "gemv_t": kernels.gemv_t(At, yt, mode, device)}
    return Probe((A, x, At, yt), run)


def _sur_operators(mode: str) -> Probe:
    X, offsets, beta, W = _sur(5000, 4)

    def run(device):
        if device is None:
            return {"sur_matvec": ref.sur_matvec(X, offsets, beta, mode),
                    "sur_rmatvec": ref.sur_rmatvec(X, offsets, W, mode)}
        return {"sur_matvec": kernels.sur_matvec(X, offsets, beta, mode, device),
                "sur_rmatvec": kernels.sur_rmatvec(X, offsets, W, mode, device)}
    return Probe((X, offsets, beta, W), run)


def _woodbury(mode: str) -> Probe:
    F, d = _factor(40, 3, 5)
    R = np.random.default_rng(6).standard_normal((4000, 40))
    X, offsets, _, _ = _sur(5000, 7)
    Fs, ds = _factor(len(WIDTHS), 2, 8)
    v = np.random.default_rng(9).standard_normal(int(offsets[-1]))

    def run(device):
        if device is None:
            factor, small = ref.woodbury_factor(F, d, mode), ref.woodbury_factor(Fs, ds, mode)
            return {"woodbury_solve": ref.woodbury_solve(factor, R),
                    "woodbury_logdet": ref.woodbury_logdet(factor),
                    "sur_normal_matvec": ref.sur_normal_matvec(X, offsets, small, v)}
        factor = kernels.woodbury_factor(F, d, mode)
        small = kernels.woodbury_factor(Fs, ds, mode)
        return {"woodbury_solve": kernels.woodbury_solve(factor, R, device),
                "woodbury_logdet": kernels.woodbury_logdet(factor),
                "sur_normal_matvec": kernels.sur_normal_matvec(X, offsets, small, v, device)}
    return Probe((F, d, R, X, offsets, Fs, ds, v), run)


def _proximal() -> Probe:
    x, lam = _elementwise(10)
    rng = np.random.default_rng(11)
    grad, prev = rng.standard_normal(x.size), rng.standard_normal(x.size)
    lo, hi = -1.0 - rng.uniform(size=x.size), 1.0 + rng.uniform(size=x.size)

    def run(device):
        impl, extra = (ref, {}) if device is None else (kernels, {"device": device})
        x_new, z_new = impl.fista_step(x, grad, 0.7, prev, 0.3, lam, 0.6, lo, hi, **extra)
        return {"soft_threshold": impl.soft_threshold(x, lam, **extra),
                "soft_threshold_scalar": impl.soft_threshold(x, 0.75, **extra),
                "soft_threshold_box": impl.soft_threshold_box(x, lam, lo, hi, **extra),
                "prox_elastic_net": impl.prox_elastic_net(x, lam, 0.6, 0.7, **extra),
                "fista_x": x_new, "fista_z": z_new}
    return Probe((x, lam, grad, prev, lo, hi), run)


def _elementary() -> Probe:
    logs, exps = _log_exp_inputs(12)

    def run(device):
        if device is None:
            return {"log": ref.log(logs), "exp": ref.exp(exps)}
        return {"log": kernels.log(logs, device), "exp": kernels.exp(exps, device)}
    return Probe((logs, exps), run)


def probes() -> dict[str, Probe]:
    """name -> probe; a probe called with a device returns that device's results, called
    with None the spec's."""
    out: dict[str, Probe] = {}
    for mode in MODES:
        out[f"reductions/{mode}"] = _reductions(mode)
        out[f"gemv/{mode}"] = _gemv(mode)
        out[f"sur/{mode}"] = _sur_operators(mode)
        out[f"woodbury/{mode}"] = _woodbury(mode)
    out["proximal"] = _proximal()
    out["log-exp"] = _elementary()
    return out


#: The committed digests of the kernel probes: ``"inputs"`` (probe -> SHA-256 of what it
#: feeds the kernels, :attr:`Probe.input_digest`) and ``"results"`` (probe -> result ->
#: SHA-256 of the spec's result, as :func:`reprogls.audit.bits.encode` hashes it). With
#: the inputs exact, both are the same on every machine, so ``reprogls audit`` holds this
#: machine's inputs and spec -- and through the spec every device's kernels -- to these.
#: Regenerate with the fit fingerprints, only for a deliberate change of the bits:
#: ``python -m tests.golden --write``.
GOLDEN_KERNELS_PATH = Path(__file__).with_name("golden_kernels.json")


def golden_kernels() -> dict[str, dict]:
    """The committed digests (:data:`GOLDEN_KERNELS_PATH`): ``{"inputs": ..., "results":
    ...}``."""
    return json.loads(GOLDEN_KERNELS_PATH.read_text())


def input_digests() -> dict[str, str]:
    """This machine's probe inputs: probe -> :attr:`Probe.input_digest`."""
    return {name: probe.input_digest for name, probe in probes().items()}


def kernel_digests() -> dict[str, dict]:
    """This machine's :func:`golden_kernels`: the inputs' digests and every probe's
    result in the NumPy spec."""
    from .bits import encode

    return {"inputs": input_digests(),
            "results": {name: {key: encode(value)["sha256"] for key, value in
                               probe(None).items()} for name, probe in probes().items()}}
