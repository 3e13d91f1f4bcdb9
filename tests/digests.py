"""One SHA-256 over the bits of every kernel's results on the corpus, per implementation.

``digest("reference")`` runs the NumPy spec; ``digest("cpu")`` the public API on the CPU.
The thread-count tests compare the two in subprocesses with different NUMBA_NUM_THREADS.
"""

from __future__ import annotations

import hashlib

import numpy as np

from reprogls import kernels
from reprogls.kernels import reference as ref
from reprogls.kernels.cpu import spd
from reprogls.kernels.cpu.gram import block_pair_plan, column_pair_grams, lower_gram
from reprogls.kernels.cpu.multi import lower_rows_times, rows_times, rows_transposed_times
from reprogls.kernels.cpu.rowgroups import solved_rmatvecs
from tests.corpus import cases
from tests.linalg_cases import factor_problem, sur_problem

MODES = ("compensated", "plain")


def _reductions(impl: str):
    for big in (False, True):
        for _, x, y in cases(big=big):
            for mode in MODES:
                if impl == "reference":
                    yield ref.cro_sum(x, mode), ref.cro_dot(x, y, mode), ref.cro_nrm2(x, mode)
                else:
                    yield (kernels.sum(x, mode, "cpu"), kernels.dot(x, y, mode, "cpu"),
                           kernels.nrm2(x, mode, "cpu"))


def reference_pair_grams(X, plan, mode):
    """The oracle of the column-pair kernel: ``gemv_t(X, X[:, a])[m]`` of the reference."""
    columns = {a: ref.gemv_t(X, np.ascontiguousarray(X[:, a]), mode)
               for a in np.unique(plan.targets[:, 1]).tolist()}
    return np.array([columns[a][m] for m, a in plan.targets.tolist()])


def reference_lower_gram(X, mode):
    """The oracle of ``lower_gram``: column ``a`` is the reference ``gemv_t(X, X[:, a])``
    (only the lower triangle is compared)."""
    G = np.zeros((X.shape[1], X.shape[1]))
    for a in range(X.shape[1]):
        G[:, a] = ref.gemv_t(X, np.ascontiguousarray(X[:, a]), mode)
    return np.tril(G)


def reference_rows_times(A, B, mode):
    """The oracle of ``rows_times``: column ``q`` is the reference ``gemv(A, B[:, q])``."""
    out = np.zeros((A.shape[0], B.shape[1]))
    for q in range(B.shape[1]):
        out[:, q] = ref.gemv(A, np.ascontiguousarray(B[:, q]), mode) if A.size else 0.0
    return out


def reference_rows_transposed_times(A, B, mode):
    """The oracle of ``rows_transposed_times``: column ``q`` is ``gemv_t(A, B[:, q])``."""
    out = np.zeros((A.shape[1], B.shape[1]))
    for q in range(B.shape[1]):
        out[:, q] = ref.gemv_t(A, np.ascontiguousarray(B[:, q]), mode) if A.size else 0.0
    return out


def spd_problem(n: int, seed: int = 0) -> np.ndarray:
    """A well-conditioned symmetric positive definite (n, n) matrix."""
    rng = np.random.default_rng([seed, n])
    B = rng.standard_normal((n + 3, n))
    return B.T @ B / (n + 3) + 0.5 * np.eye(n)


def cpu_cholesky_inverse(C, mode, parallel=True):
    """``(L, C^-1)`` by the CPU kernels of :mod:`reprogls.kernels.cpu.spd`, forced onto
    the parallel drivers (whatever the order) or the serial ones; ``None``: by order."""
    compensated = mode == "compensated"
    L, Z, inv = np.empty_like(C), np.empty_like(C), np.empty_like(C)
    assert spd.cholesky(C, compensated, L, parallel) == -1
    spd.inverse_factor(L, compensated, Z, parallel)
    spd.gram_of_rows_from_diagonal(Z, compensated, inv, parallel)
    lower = np.tril_indices_from(inv, -1)
    inv[lower[1], lower[0]] = inv[lower]
    return L, inv


def _dense(impl: str):
    X = sur_problem(8193)[0]
    B = X[:, :3] * 0.5
    V = np.ascontiguousarray(X[:X.shape[1], :4])
    C = spd_problem(70)
    for mode in MODES:
        if impl == "reference":
            L = ref.cholesky(C, mode)
            yield (reference_lower_gram(X, mode), L, ref.cholesky_inverse(L, mode),
                   reference_rows_times(X, V, mode),
                   reference_rows_transposed_times(X, B, mode),
                   np.tril(reference_rows_times(C, C, mode)))
        else:
            compensated = mode == "compensated"
            yield (np.tril(lower_gram(X, compensated)), *cpu_cholesky_inverse(C, mode),
                   rows_times(X, np.ascontiguousarray(V.T), compensated),
                   rows_transposed_times(X, np.ascontiguousarray(B), compensated),
                   np.tril(lower_rows_times(C, np.ascontiguousarray(C.T), compensated)))


def _linalg(impl: str):
    for n_rows in (100, 8193, 20_000):
        X, offsets, beta, W = sur_problem(n_rows)
        F, d = factor_problem(len(offsets) - 1, 3)
        for mode in MODES:
            if impl == "reference":
                fac = ref.woodbury_factor(F, d, mode)
                yield (ref.sur_matvec(X, offsets, beta, mode), ref.sur_rmatvec(X, offsets, W, mode),
                       ref.gemv(X, beta, mode), ref.gemv_t(X, W[:, 0], mode),
                       reference_pair_grams(X, block_pair_plan(offsets), mode),
                       ref.woodbury_solve(fac, W), ref.sur_normal_matvec(X, offsets, fac, beta),
                       *(ref.sur_rmatvec(X, offsets, ref.woodbury_solve(fac, R), mode)
                         for R in (W, W[::-1])))
            else:
                fac = kernels.woodbury_factor(F, d, mode)
                yield (kernels.sur_matvec(X, offsets, beta, mode, "cpu"),
                       kernels.sur_rmatvec(X, offsets, W, mode, "cpu"),
                       kernels.gemv(X, beta, mode, "cpu"), kernels.gemv_t(X, W[:, 0], mode, "cpu"),
                       column_pair_grams(X, block_pair_plan(offsets), mode == "compensated"),
                       kernels.woodbury_solve(fac, W, "cpu"),
                       kernels.sur_normal_matvec(X, offsets, fac, beta, "cpu"),
                       *solved_rmatvecs(X, offsets, [W, np.ascontiguousarray(W[::-1])],
                                        fac.G, fac.d, fac.L, mode == "compensated"))
    x = np.random.default_rng(0).uniform(-700, 700, 100_003)
    if impl == "reference":
        yield ref.exp(x), ref.log(np.abs(x)), ref.soft_threshold(x, 3.0)
    else:
        yield kernels.exp(x, "cpu"), kernels.log(np.abs(x), "cpu"), kernels.soft_threshold(x, 3.0)


def digest(impl: str) -> str:
    h = hashlib.sha256()
    for group in (_reductions(impl), _linalg(impl), _dense(impl)):
        for results in group:
            for r in results:
                h.update(np.ascontiguousarray(np.asarray(r, dtype=np.float64)).view(np.uint64)
                         .tobytes())
    return h.hexdigest()
