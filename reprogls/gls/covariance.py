"""Covariance of the GLS coefficients: plug-in and cluster-robust (sandwich).

With the GLS normal matrix ``A = X^T (Sigma^-1 (x) I_N) X + ridge I`` at the estimated
Sigma:

* plug-in: :math:`\\widehat{V} = A^{-1}`;
* robust (clustered by observation across equations):
  :math:`\\widehat{V} = A^{-1} B A^{-1}` with :math:`B = \\sum_i s_i s_i^T` and the
  per-observation score :math:`s_i[m] = X[i, m] \\, (e_i \\Sigma^{-1})[eq(m)]`, where
  :math:`e_i` is row i of the residuals. It stays valid when Sigma is misspecified
  (e.g. the true covariance is not low-rank) or differs across observations.

Everything runs on the audited path: ``A^-1 = L^-T L^-1`` from the fixed-order
Cholesky (:mod:`reprogls.kernels.cpu.spd`, in parallel), ``B`` by the tiled Gram kernel
on the scores, the products by CRO-1 dots. Cost: ``O(N P^2)`` for ``X^T X`` and ``B``,
``O(P^3)`` for the inverse and products; at P = 2000, N = 20000 the compensated plug-in
covariance takes 4.5-5.4 s on two Zen 4 cores and 6.2-7.0 s on two Zen 3 cores (AVX2),
~85% of it ``X^T X``; plain mode 2.2-3.3 s, where BLAS ``X.T @ X`` and LAPACK's inverse
take 1.4-1.7 s on the same Zen 3 box (``profiling/compare_alsgls.py``,
``profiling/dense_kernels.py``, docs/performance.md, "Dense kernels"), so
``cov_type="none"`` skips it.

Where every equation has the same design ``X_0`` (a VAR's layout) and there is no
ridge, ``A = Sigma^-1 (x) X_0^T X_0`` and the plug-in covariance is
``Sigma (x) (X_0^T X_0)^-1`` (:func:`kronecker_inverse_normal_matrix`): ``O(K^2 p^2)``,
no ``X^T X``; at N = 20000, K = 200, p = 10 the fit with it took 0.58-0.68 s against
4.9-5.1 s. There the robust covariance is ``sum_i (e_i (x) z_i)(e_i (x) z_i)^T`` with
``z_i = G^-1 x_i`` (:func:`kronecker_robust_covariance`): one Gram of an (N, P)
matrix, without ``A^-1`` and the sandwich's two products of order ``P``.
"""

from __future__ import annotations

import numpy as np

from ..kernels.cpu import spd
from ..kernels.linalg import WoodburyFactor
from . import beta as beta_step
from ._dense import gram, matmul, mirror_lower, on_device, symmetric_matmul
from ._resident import on_host, resident_matmul, resident_solve

__all__ = ["dense_sigma", "inverse_from_cholesky", "inverse_normal_matrix",
           "kronecker_inverse_normal_matrix", "kronecker_robust_covariance",
           "robust_covariance"]


def inverse_normal_matrix(XtX: np.ndarray, offsets: np.ndarray, factor: WoodburyFactor,
                          ridge: float, L: np.ndarray | None = None) -> np.ndarray:
    """``A^-1`` (the plug-in covariance) as ``L^-T L^-1``.

    ``L`` is the fixed-order Cholesky factor of ``A``; ``Z = (L^-1)^T`` comes from one
    forward solve per column and ``A^-1[a, b] = CRO-1 dot(Z[a, a:], Z[b, a:])`` for
    ``a >= b`` (:mod:`reprogls.kernels.cpu.spd`), mirrored onto the upper triangle.
    ``P^3 / 2`` multiply-adds in all, spread over the threads (Numba's thread count).

    ``L``: that factor if the caller already has it (the fit's last dense beta-step
    factored this very ``A``: same ``XtX``, ``factor`` and ``ridge``); else it is formed
    here (``P^3 / 6`` of the multiply-adds).
    """
    if L is None:
        L = beta_step.cholesky(beta_step.normal_matrix(XtX, offsets, factor, ridge),
                               factor.mode)
    return inverse_from_cholesky(L, factor.mode)


def inverse_from_cholesky(L: np.ndarray, mode: str) -> np.ndarray:
    """``A^-1 = L^-T L^-1`` for the lower Cholesky factor ``L`` of an SPD ``A``:
    ``Z = (L^-1)^T`` by one forward solve per column, then ``A^-1[a, b]`` = CRO-1
    dot of ``Z[a, a:]`` and ``Z[b, a:]`` for ``a >= b`` (:mod:`reprogls.kernels.cpu.spd`),
    mirrored onto the upper triangle (symmetric bitwise)."""
    compensated = mode == "compensated"
    Z = np.empty_like(L)
    spd.inverse_factor(L, compensated, Z)
    inv = np.empty_like(L)
    spd.gram_of_rows_from_diagonal(Z, compensated, inv)
    return mirror_lower(inv)


def dense_sigma(F: np.ndarray, d: np.ndarray, mode: str) -> np.ndarray:
    """``Sigma = F F^T + diag(d)`` (K x K): ``Sigma[a, b]`` = CRO-1 dot of ``F[a]`` and
    ``F[b]`` (symmetric bitwise: the products commute), plus ``d[a]`` on the diagonal."""
    from ..kernels import gemv

    F = np.ascontiguousarray(F, dtype=np.float64)
    FFt = np.column_stack([gemv(F, F[b], mode, "cpu") for b in range(F.shape[0])])
    FFt[np.diag_indices_from(FFt)] += d
    return FFt


def kronecker_inverse_normal_matrix(factor: WoodburyFactor, design_factor: np.ndarray
                                    ) -> np.ndarray:
    """``A^-1`` where every equation has the same design ``X_0`` (N x p) and no ridge.

    Then ``A = Sigma^-1 (x) G`` with ``G = X_0^T X_0``, so

    .. math:: A^{-1} = \\Sigma \\otimes G^{-1},

    entry ``[j p + a, l p + b] = fl(Sigma[j, l] * G^-1[a, b])`` (one rounded product;
    ``Sigma`` by :func:`dense_sigma`, ``G^-1`` from its Cholesky factor
    ``design_factor`` by :func:`inverse_from_cholesky`): ``O(K^2 p^2 + p^3)`` instead of
    the ``O(N P^2 + P^3)`` of ``X^T X`` and the inverse of order ``P = K p`` (at N =
    20000, K = 200, p = 10 that was 4.5-5.4 s). The same matrix as
    :func:`inverse_normal_matrix` in exact arithmetic; other roundings.
    """
    Sigma = dense_sigma(factor.F, factor.d, factor.mode)
    return np.kron(Sigma, inverse_from_cholesky(design_factor, factor.mode))


def kronecker_robust_covariance(X0, E, design_factor: np.ndarray, mode: str, device: str
                                ) -> np.ndarray:
    """The sandwich ``A^-1 B A^-1`` where every equation has the same design ``X_0``
    (N x p) and there is no ridge.

    There ``A^-1 = Sigma (x) G^-1`` and observation ``i``'s score is
    ``s_i = (Sigma^-1 e_i) (x) x_i``, so ``A^-1 s_i = e_i (x) z_i`` with
    ``z_i = G^-1 x_i`` and

    .. math:: \\widehat{V} = \\sum_i (e_i \\otimes z_i)(e_i \\otimes z_i)^T = T^T T,
              \\qquad T[i, j p + a] = e_{ij} z_{ia}

    (Sigma drops out: it is the equation-by-equation OLS sandwich, as GLS with one
    design is OLS). ``Z = X_0 G^-1`` by CRO-1 dots (``G^-1`` from ``design_factor``,
    the Cholesky factor of ``G``, by :func:`inverse_from_cholesky`), ``T`` by one
    rounded product per entry, ``T^T T`` by the Gram kernel (:func:`._dense.gram`, on
    the fit's device): ``N P^2 / 2`` multiply-adds, as many as the general path's ``B``
    alone, without its ``A^-1`` and its two products of order ``P`` (``2 P^3``). The
    same matrix in exact arithmetic; other roundings.
    """
    from ..kernels.devices import resolve_device
    from ..kernels.dispatch import cuda_context

    Z = resident_matmul(X0, inverse_from_cholesky(design_factor, mode), mode, device)
    dev = resolve_device(device)
    with cuda_context(dev):  # (CuPy works on the current GPU; nothing on the CPU)
        T = (on_device(E, dev)[:, :, None] * Z[:, None, :]).reshape(E.shape[0], -1)
    return gram(T, mode, device)


def score_gram(X, offsets: np.ndarray, E, factor: WoodburyFactor, device: str
               ) -> np.ndarray:
    """``B = sum_i s_i s_i^T`` with ``s_i[m] = fl(X[i, m] * W[i, eq(m)])``,
    ``W = E Sigma^-1`` (``woodbury_solve``); one pass over the (N, P) scores. On a GPU
    ``X`` and ``E`` are there (the fit's copies) and ``W`` and the scores are formed
    there too (:mod:`._resident`): the products are the same IEEE multiplications."""
    W = resident_solve(factor, E, device)
    eq = np.repeat(np.arange(offsets.shape[0] - 1), np.diff(offsets))
    if on_host(device):
        scores = np.multiply(X, W[:, eq])
    else:
        import cupy

        from ..kernels.devices import resolve_device
        from ..kernels.dispatch import cuda_context

        with cuda_context(resolve_device(device)):  # (CuPy works on the current GPU)
            scores = X * W[:, cupy.asarray(eq)]
    return gram(scores, factor.mode, device)


def robust_covariance(Ainv: np.ndarray, X: np.ndarray, offsets: np.ndarray, E: np.ndarray,
                      factor: WoodburyFactor, device: str) -> np.ndarray:
    """The sandwich ``A^-1 B A^-1`` (module docstring), symmetric bitwise."""
    B = score_gram(X, offsets, E, factor, device)
    return symmetric_matmul(Ainv, matmul(B, Ainv, factor.mode), factor.mode)
