"""The covariances where every equation has the same design: the plug-in ``A^-1 = Sigma
(x) G^-1`` (``covariance.kronecker_inverse_normal_matrix``), without ``X^T X``, and the
sandwich as the Gram of ``e_i (x) G^-1 x_i`` (``covariance.kronecker_robust_covariance``),
without ``A^-1``."""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest

from reprogls import gls
from reprogls.gls.data import prepare
from reprogls.kernels import woodbury_factor
from tests.corpus import same_bits

MODES = ["compensated", "plain"]
#: the module (``reprogls.gls.fit`` is also the function's name in ``reprogls.gls``)
fit_module = importlib.import_module("reprogls.gls.fit")


def _shared_system(N=300, K=5, p=3, seed=2):
    """One design for every equation (a VAR's layout), Y with two factors."""
    rng = np.random.default_rng(seed)
    X0 = rng.standard_normal((N, p))
    F = rng.standard_normal((K, 2))
    E = rng.standard_normal((N, 2)) @ F.T + rng.standard_normal((N, K)) * 0.5
    Y = X0 @ rng.standard_normal((p, K)) + E
    return [X0.copy() for _ in range(K)], Y


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cov_type", ["plugin", "robust"])
def test_kronecker_covariance_is_the_inverse_normal_matrix(mode, cov_type):
    """Sigma (x) G^-1 against the inverse of the assembled normal matrix (the general
    path, forced by leaving the design's factor out) and against LAPACK's inverse: the
    same matrix to 1e-12 relative, symmetric bit for bit."""
    Xs, Y = _shared_system()
    res = gls.fit(Xs, Y, rank=2, cov_type="none", mode=mode)
    data = prepare(Xs, Y)
    factor = woodbury_factor(res.F, res.d, mode)
    L = fit_module.shared_design_factor(data, 0.0, mode, "cpu")
    assert L is not None and L.shape == (3, 3)
    args = (cov_type, data.X, data.offsets, factor, 0.0, res.resid, mode, "cpu")
    kron = fit_module.covariance(*args, design_factor=L)
    general = fit_module.covariance(*args)
    scale = np.abs(general).max()
    np.testing.assert_allclose(kron, general, rtol=0, atol=1e-12 * scale)
    assert same_bits(kron, kron.T)
    if cov_type == "plugin":
        Sigma = res.F @ res.F.T + np.diag(res.d)
        A = np.kron(np.linalg.inv(Sigma), Xs[0].T @ Xs[0])
        np.testing.assert_allclose(kron, np.linalg.inv(A), rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize("mode", MODES)
def test_one_design_robust_covariance_is_the_ols_sandwich_of_each_equation(mode):
    """With one design the sandwich does not depend on Sigma: it is
    ``sum_i (e_i (x) z_i)(e_i (x) z_i)^T`` with ``z_i = G^-1 x_i``, the cluster-robust
    covariance of OLS equation by equation (NumPy/LAPACK here, to 1e-12 relative)."""
    Xs, Y = _shared_system(K=4, p=2)
    res = gls.fit(Xs, Y, rank=1, cov_type="robust", mode=mode)
    Z = Xs[0] @ np.linalg.inv(Xs[0].T @ Xs[0])
    T = (res.resid[:, :, None] * Z[:, None, :]).reshape(Y.shape[0], -1)
    expected = T.T @ T
    np.testing.assert_allclose(res.cov, expected, rtol=0,
                               atol=1e-12 * np.abs(expected).max())


def test_only_identical_designs_without_ridge_take_the_kronecker_form():
    """One value changed in one equation's design, a ridge, unequal widths, or one
    equation: the general path (``None``)."""
    Xs, Y = _shared_system()
    data = prepare(Xs, Y)
    assert fit_module.shared_design_factor(data, 0.0, "plain", "cpu") is not None
    assert fit_module.shared_design_factor(data, 0.5, "plain", "cpu") is None
    other = [X.copy() for X in Xs]
    other[3][150, 1] = np.nextafter(other[3][150, 1], np.inf)
    data = prepare(other, Y)
    assert fit_module.shared_design_factor(data, 0.0, "plain", "cpu") is None
    data = prepare([*Xs[:4], Xs[4][:, :2]], Y)
    assert fit_module.shared_design_factor(data, 0.0, "plain", "cpu") is None
    data = prepare(Xs[:1], Y[:, :1])
    assert fit_module.shared_design_factor(data, 0.0, "plain", "cpu") is None


@pytest.mark.parametrize("cov_type", ["plugin", "robust"])
def test_a_fit_with_one_design_uses_it_and_with_covariance_gives_the_same_bits(cov_type):
    """A fit with one design for every equation (and an added constant) takes the
    Kronecker form (the fit's block factor, not formed again), and ``with_covariance``
    reproduces the fit's bits."""
    Xs, Y = _shared_system()
    direct = gls.fit(Xs, Y, rank=2, cov_type=cov_type, add_constant=True)
    data = prepare(Xs, Y, add_constant=True)
    L = fit_module.shared_design_factor(data, 0.0, "compensated", "cpu")
    factor = woodbury_factor(direct.F, direct.d, "compensated")
    expected = fit_module.covariance(cov_type, data.X, data.offsets, factor, 0.0,
                                     direct.resid, "compensated", "cpu", design_factor=L)
    assert same_bits(direct.cov, expected)
    fast = gls.fit(Xs, Y, rank=2, cov_type="none", add_constant=True)
    assert fast.with_covariance(Xs, Y, cov_type).fingerprint == direct.fingerprint


@pytest.mark.gpu
@pytest.mark.parametrize("cov_type", ["plugin", "robust"])
def test_one_design_on_the_gpu_has_the_cpu_bits(cov_type):
    """NumPy inputs fitted on the GPU, and CuPy inputs (packed there, the designs
    compared there), fitted with the covariance or given it afterwards: the CPU's
    fingerprint."""
    import cupy

    Xs, Y = _shared_system()
    Xd, Yd = [cupy.asarray(X) for X in Xs], cupy.asarray(Y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gls.IdentificationWarning)
        cpu = gls.fit(Xs, Y, rank=2, cov_type=cov_type, device="cpu")
        assert gls.fit(Xs, Y, rank=2, cov_type=cov_type, device="cuda").fingerprint == \
            cpu.fingerprint
        on_gpu = gls.fit(Xd, Yd, rank=2, cov_type=cov_type)
        fast = gls.fit(Xd, Yd, rank=2, cov_type="none")
    assert on_gpu.device.startswith("cuda") and on_gpu.fingerprint == cpu.fingerprint
    assert fast.with_covariance(Xd, Yd, cov_type).fingerprint == cpu.fingerprint


@pytest.mark.gpu
@pytest.mark.parametrize("cov_type", ["plugin", "robust"])
@pytest.mark.parametrize("shared", [True, False])
def test_with_covariance_on_a_second_gpu_has_the_cpu_bits(second_gpu, shared, cov_type):
    """CuPy inputs on GPU 1 while CuPy's current device is 0, one design for every
    equation or not: the fit with the covariance, and the fit without it given it
    afterwards, have the CPU's fingerprint (every step under the fit's device; CuPy,
    and the emulator, refuse arrays of another GPU in their own kernels)."""
    import cupy

    Xs, Y = _shared_system()
    if not shared:
        Xs = [X + 0.1 * j for j, X in enumerate(Xs)]
    cpu = gls.fit(Xs, Y, rank=2, cov_type=cov_type, device="cpu")
    with cupy.cuda.Device(1):
        Xd, Yd = [cupy.asarray(X) for X in Xs], cupy.asarray(Y)
    assert cupy.cuda.Device().id == 0
    on_gpu = gls.fit(Xd, Yd, rank=2, cov_type=cov_type)
    fast = gls.fit(Xd, Yd, rank=2, cov_type="none")
    assert on_gpu.device == second_gpu and on_gpu.fingerprint == cpu.fingerprint
    assert fast.with_covariance(Xd, Yd, cov_type).fingerprint == cpu.fingerprint
