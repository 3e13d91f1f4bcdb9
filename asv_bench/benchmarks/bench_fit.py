"""End-to-end fits at sizes S and M (alsgls-style data), and alsgls at the same sizes."""

from __future__ import annotations

from reprogls import gls, kernels

from ._common import require_device, sizes

SIZES = {"S": (2000, 50, 5, 3), "M": (20000, 200, 10, 5)}


class Fit:
    params = (sizes(["S", "M"]),)
    param_names = ["size"]
    timeout = 900
    number = 1
    repeat = (1, 3, 60.0)

    def setup(self, size):
        N, K, p, k = SIZES[size]
        self.Xs, self.Y, *_ = gls.simulate_sur(N, K, p, k, seed=0)
        self.k = k
        # plug-in SEs at M (X^T X and a 2000 x 2000 inverse, 4.5-5.4 s on the 2-core Zen 4
        # box): benchmarked without
        self.cov = "plugin" if size == "S" else "none"
        kernels.warmup(("cpu",))  # every CPU kernel (a small fit misses the CG path's)

    def time_fit(self, size):
        gls.fit(self.Xs, self.Y, rank=self.k, cov_type=self.cov)

    def peakmem_fit(self, size):
        gls.fit(self.Xs, self.Y, rank=self.k, cov_type=self.cov)


class FitOneDesign:
    """A VAR's layout: every equation has the same design (N = 20000, K = 200, p = 10,
    five factors), fitted with plug-in standard errors, which are ``Sigma (x) (X_0^T
    X_0)^-1`` there (``covariance.kronecker_inverse_normal_matrix``, no ``X^T X``), with
    robust ones, the Gram of ``e_i (x) (X_0^T X_0)^-1 x_i``
    (``covariance.kronecker_robust_covariance``, no ``A^-1``), and without. 2-core Zen 4,
    forty-eighth session: plug-in 0.58-0.68 s (4.9-5.1 s with the general ``X^T X`` and
    inverse of order 2000), none 0.61-0.74 s; forty-ninth: robust 5.1-5.2 s (9.7-10.0 s
    with the general sandwich)."""

    params = (sizes(["plugin", "robust", "none"]),)
    param_names = ["cov_type"]
    timeout = 600
    number = 1
    repeat = (1, 3, 30.0)

    def setup(self, cov_type):
        import numpy as np

        rng = np.random.default_rng(0)
        N, K, p, k = SIZES["M"]
        X0 = rng.standard_normal((N, p))
        F = rng.standard_normal((K, k))
        self.Y = (X0 @ rng.standard_normal((p, K)) + rng.standard_normal((N, k)) @ F.T
                  + rng.standard_normal((N, K)))
        self.Xs, self.k = [X0] * K, k
        kernels.warmup(("cpu",))

    def time_fit(self, cov_type):
        gls.fit(self.Xs, self.Y, rank=self.k, cov_type=cov_type)


class FitOnGPU:
    """The S and M fits on the GPU (``device="cuda"``), from host data (X and Y cross to
    the GPU once) and from the same data already there as CuPy arrays (packed on the GPU,
    only the result crosses). Skipped without a usable CUDA device."""

    params = (sizes(["S", "M"]), ["numpy", "cupy"])
    param_names = ["size", "inputs"]
    timeout = 900
    number = 1
    repeat = (1, 3, 60.0)

    def setup(self, size, inputs):
        require_device("cuda")
        N, K, p, k = SIZES[size]
        self.Xs, self.Y, *_ = gls.simulate_sur(N, K, p, k, seed=0)
        if inputs == "cupy":
            import cupy

            self.Xs, self.Y = [cupy.asarray(x) for x in self.Xs], cupy.asarray(self.Y)
        self.k = k
        self.time_fit(size, inputs)  # NVRTC compilation and the CPU kernels are not fit time

    def time_fit(self, size, inputs):
        gls.fit(self.Xs, self.Y, rank=self.k, cov_type="none", device="cuda")


class FitFewEquations:
    """Small systems whose factor analysis has a Heywood case (a uniqueness heading for
    zero): N = 600, K = 6, two true factors, fitted with ranks 1-3. The Sigma-step's
    closed-form iteration alone took 2.9-21.8 s here; ``track_sweeps`` and
    ``track_loglik`` watch the iteration and the optimum it reaches."""

    params = ([1, 2, 3],)
    param_names = ["rank"]
    timeout = 300

    def setup(self, rank):
        self.Xs, self.Y, *_ = gls.simulate_sur(600, 6, 2, 2, seed=1)
        gls.fit(self.Xs[:3], self.Y[:, :3], rank=1, cov_type="none")  # JIT warm-up

    def time_fit(self, rank):
        gls.fit(self.Xs, self.Y, rank=rank)

    def track_sweeps(self, rank):
        return gls.fit(self.Xs, self.Y, rank=rank).n_iter

    track_sweeps.unit = "sweeps"

    def track_loglik(self, rank):
        return gls.fit(self.Xs, self.Y, rank=rank).llf

    track_loglik.unit = "log-likelihood"


class FitBeyondTheFactors:
    """Ranks at and far beyond the data's three factors (N = 5000, K = 50, p = 5): there
    the top eigenvalues of ``D^-1/2 S D^-1/2`` crowd above 1, and the Sigma-step's
    subspace iteration hit its iteration cap in every evaluation (k = 25: 17 s, k = 37:
    60 s) until the whole eigenproblem replaced it for ``16 k >= K`` (forty-third
    session: 0.58 s and 1.2 s; forty-fourth, Jacobi row by row: 0.37 and 0.81 s);
    k = 3 keeps the subspace iteration."""

    params = ([3, 25, 37],)
    param_names = ["rank"]
    timeout = 300
    number = 1
    repeat = (1, 3, 30.0)

    def setup(self, rank):
        import warnings

        self.Xs, self.Y, *_ = gls.simulate_sur(5000, 50, 5, 3, seed=1, shared=False)
        warnings.simplefilter("ignore", gls.IdentificationWarning)  # F not unique
        gls.fit(self.Xs[:3], self.Y[:, :3], rank=1, cov_type="none")  # JIT warm-up

    def time_fit(self, rank):
        gls.fit(self.Xs, self.Y, rank=rank, cov_type="none")


#: (N, K, rank) of :class:`FitBeyondTheFactorsLargeK`: ``gls.simulate_sur(N, K, 5, 3)``.
LARGE_K_BEYOND = {"K=100 k=6": (10000, 100, 6), "K=200 k=12": (20000, 200, 12),
                  "K=300 k=10": (10000, 300, 10), "K=400 k=25": (20000, 400, 25)}


class FitBeyondTheFactorsLargeK:
    """Fits above the data's three factors at larger K: K = 400, k = 25 solved the whole
    eigenproblem (``16 k >= K``), whose ``O(K^3)`` Jacobi sweeps set the time, until the
    fifty-first session, and is on the block Krylov method since (from K = 250 where ``K
    >= 10 k``, ``eigen.uses_full_space``); K = 100,
    k = 6, K = 200, k = 12 and K = 300, k = 10 started on the subspace iteration,
    stalled and turned to the whole space until the forty-seventh session, and are on
    the thick-restarted block Krylov method since (``eigen.eigensolver_for``; K = 300,
    k = 10 1.78-2.09 -> 0.95-1.06 s, alternating processes). 2-core Zen 4, forty-fifth
    session: 0.34-0.48 / 1.00-1.20 / 4.9-6.1 s with the tiled column copies and the
    eigenvectors rotated on a second thread (0.32-0.39 / 1.23-1.27 / 9.9-10.9 s before);
    0.63 / 2.15 / 21.2 s before the forty-fourth session's rows-only rotations and turn.
    Forty-seventh session, the first two: 0.35-0.39 / 1.11-1.17 s on the turn, 0.35-0.41
    / 0.92-1.01 s on Krylov. Fifty-first session (a script of the same fits, alternating
    processes; the first two with a Krylov basis of K / 2, ``eigen.krylov_depth``): K =
    100, k = 6 0.48-0.54 -> 0.42-0.47 s, K = 200, k = 12 1.20-2.43 -> 1.08-1.34, K = 400,
    k = 25 6.3-6.7 -> 4.8-5.1."""

    params = (sizes(list(LARGE_K_BEYOND)),)
    param_names = ["size"]
    timeout = 600
    number = 1
    repeat = (1, 3, 60.0)
    #: the sizes, and ``simulate_sur``'s factors, seed and ``shared``
    cases, factors, seed, shared = LARGE_K_BEYOND, 3, 1, False

    def setup(self, size):
        import warnings

        N, K, self.rank = self.cases[size]
        self.Xs, self.Y, *_ = gls.simulate_sur(N, K, 5, self.factors, seed=self.seed,
                                               shared=self.shared)
        warnings.simplefilter("ignore", gls.IdentificationWarning)
        gls.fit(self.Xs[:3], self.Y[:, :3], rank=1, cov_type="none")  # JIT warm-up

    def time_fit(self, size):
        gls.fit(self.Xs, self.Y, rank=self.rank, cov_type="none")


#: (N, K, rank) of :class:`FitBeyondTheFactorsKrylov`: ``gls.simulate_sur(N, K, 5, 5)``.
KRYLOV_BEYOND = {"K=800 k=6": (2000, 800, 6), "K=2000 k=6": (5000, 2000, 6),
                 "K=2000 k=10": (5000, 2000, 10), "K=2000 k=25": (5000, 2000, 25)}


class FitBeyondTheFactorsKrylov(FitBeyondTheFactorsLargeK):
    """Fits above the data's five factors with ``K > 32 k``, where the Sigma-step's
    eigenproblems are solved by the block Krylov method (``eigen.krylov_eigenpairs``;
    the k-th eigenvalue at the crowded edge of the noise's bulk). 2-core Zen 4,
    forty-sixth session: 1.6-1.9 / 6.1-6.4 / 13.8-16.0 s (K = 2000, k = 25: 46-58 s);
    12.7-13.0 / 59-62 / 91 s before (K = 2000, k = 10 the forty-fifth session's), on
    the subspace iteration at its 200-iteration cap. Forty-seventh session, thick
    restarts and the turn from the residuals to S (``fit.moment_pays``): 1.35-1.42 /
    6.6 / 9.1 / 25.5-26.0 s against 1.8-1.9 / 6.3-7.3 / 12.8-14.6 / 46.8-50.7 s for the
    forty-sixth session's code in the same run. Fiftieth session, the Rayleigh-Ritz
    solves by Householder and QL (``eigen.tridiagonal_eigh``), by a script of the same
    fits with ``cov_type="none"``, alternating processes: K = 800, k = 6 1.3 -> 1.1 s,
    K = 2000, k = 10 9.4 -> 8.4-8.6 s, k = 25 22.8-23.9 -> 18.2-20.6 s."""

    params = (sizes(list(KRYLOV_BEYOND)),)
    cases, factors, seed, shared = KRYLOV_BEYOND, 5, 0, True


class WholeSpaceEigen:
    """One whole-space eigen-solve of the Sigma-step (``eigen.full_space_eigenpairs``:
    cyclic Jacobi on ``M = D^-1/2 S D^-1/2``, rows only, from the identity to the
    ``2^-53`` stopping rule; ~11 sweeps) on simulated three-factor data, N = 4K,
    ``d = 0.6 diag(S)``. Forty-fifth session, 2-core Zen 4: K = 200 / 400 / 800 in
    0.017-0.023 / 0.11-0.12 / 0.86-0.95 s (``eigen.LARGE_JACOBI_MIN``: tiled column
    copies, the eigenvectors rotated on a second thread); 0.028-0.030 / 0.28-0.32 /
    2.51-2.71 s column by column; against 0.006 / 0.011 / 0.067 s for LAPACK's
    ``eigh`` (which the contract rules out, and which lacks Jacobi's high relative
    accuracy: docs/performance.md, the Sigma-step)."""

    params = (sizes([200, 400, 800]),)
    param_names = ["K"]
    timeout = 300
    number = 1
    repeat = (1, 3, 30.0)

    def setup(self, K):
        import numpy as np

        from reprogls.gls import eigen, sigma

        rng = np.random.default_rng(0)
        loadings = rng.standard_normal((K, 3))
        E = (rng.standard_normal((4 * K, 3)) @ loadings.T
             + rng.standard_normal((4 * K, K)) * np.sqrt(rng.uniform(0.5, 2.0, K)))
        S = sigma.residual_moment(E, "compensated")
        root_d = np.sqrt(0.6 * np.diag(S))
        self.M = S / root_d[:, None] / root_d[None, :]
        self.solve = eigen.full_space_eigenpairs
        self.solve(self.M)  # compile (or load) the rotations

    def time_eigen_solve(self, K):
        self.solve(self.M)


class RayleighRitzSolve:
    """One Rayleigh-Ritz solve of the block Krylov method: every eigenvalue and the top
    50 eigenvectors of a symmetric matrix of order 100 or 275 (rank 25's full basis)
    with three spikes above a crowded bulk (``6900, 3000, 1000`` over ``1 .. 3``), by
    ``eigen.tridiagonal_eigh`` (Householder, implicit QL; what the method uses since the
    fiftieth session) or ``eigen.jacobi_eigh`` (cyclic Jacobi, ``2^-53`` rule; before).
    Fiftieth session, 2-core Zen 4, one thread, compensated: order 100 0.78 / 3.6 ms,
    order 275 9.5 / 45 ms."""

    params = (sizes([275, 100]), ["tridiagonal", "jacobi"])
    param_names = ["order", "solver"]
    timeout = 120

    def setup(self, order, solver):
        import numpy as np

        from reprogls.gls import eigen

        rng = np.random.default_rng(0)
        U, _ = np.linalg.qr(rng.standard_normal((order, order)))
        w = np.r_[[6900.0, 3000.0, 1000.0], 3.0 - 2.0 * np.arange(order - 3) / order]
        T = (U * w) @ U.T
        self.T = (T + T.T) * 0.5
        if solver == "tridiagonal":
            self.solve = lambda T: eigen.tridiagonal_eigh(T, 50, "compensated")
        else:
            self.solve = lambda T: eigen.jacobi_eigh(T, eigen.JACOBI_SWEEPS,
                                                     eigen.NEGLIGIBLE)
        self.solve(self.T)  # compile (or load)

    def time_solve(self, order, solver):
        self.solve(self.T)


class SelectRank:
    """``gls.select_rank`` over ranks 1-8 at N = 2000, K = 40, p = 4 with three factors
    in the data (forty-fourth session: 0.32 s, BIC picks 3): eight candidate fits
    without SEs -- ranks 1 and 2 by subspace iteration, 3-8 on the whole space
    (``16 k >= K``) -- and the chosen rank again with plug-in SEs. Since the
    fifty-second session the candidates share the work no rank changes
    (``gls.fit.SharedFit``; 0.25-0.34 -> 0.21-0.23 s)."""

    timeout = 300
    number = 1
    repeat = (1, 3, 30.0)

    def setup(self):
        import warnings

        self.Xs, self.Y, *_ = gls.simulate_sur(2000, 40, 4, 3, seed=2, shared=False)
        warnings.simplefilter("ignore", gls.IdentificationWarning)
        gls.fit(self.Xs[:3], self.Y[:, :3], rank=1, cov_type="none")  # JIT warm-up

    def time_select_rank(self):
        gls.select_rank(self.Xs, self.Y, ranks=range(1, 9))

    def track_best_rank(self):
        return gls.select_rank(self.Xs, self.Y, ranks=range(1, 9), cov_type="none").best_rank


class CGSteps:
    """CG steps of a whole CG-path fit (N = 4000, K = 40, p = 4, k = 3), the sum over its
    solves: designs sharing their regressors (alsgls's, where the coupled preconditioner
    applies), independent ones, and independent ones with an intercept each (where its
    guards keep block-Jacobi). Eighth session: 6, 6 and 6 steps (shared designs with
    block-Jacobi: 18)."""

    params = (["shared", "independent", "intercept"],)
    param_names = ["designs"]
    timeout = 300

    def setup(self, designs):
        import sys

        Xs, self.Y, *_ = gls.simulate_sur(4000, 40, 4, 3, seed=3,
                                          shared=designs == "shared")
        self.Xs = Xs if designs != "intercept" else [X[:, 1:] for X in Xs]
        self.add_constant = designs == "intercept"
        self.beta = sys.modules["reprogls.gls.beta"]
        gls.fit(self.Xs[:3], self.Y[:, :3], rank=1, beta_solver="cg", cov_type="none")

    def track_cg_steps(self, designs):
        steps = []
        solve = self.beta.solve_cg

        def counted(*args, **kwargs):
            out = solve(*args, **kwargs)
            steps.append(out[1])
            return out

        self.beta.solve_cg = counted
        try:
            gls.fit(self.Xs, self.Y, rank=3, beta_solver="cg", cov_type="none",
                    add_constant=self.add_constant)
        finally:
            self.beta.solve_cg = solve
        return sum(steps)

    track_cg_steps.unit = "CG steps"


class FitL1:
    """The lasso fit (``l1``, FISTA beta-step) at size S, at a light and at a heavy
    penalty (the heavy one runs ~44 sweeps: Sigma grows with the shrinkage); the track
    is the number of coefficients set exactly to zero."""

    params = ([100.0, 1000.0],)
    param_names = ["l1"]
    timeout = 300
    number = 1
    repeat = (1, 5, 30.0)

    def setup(self, l1):
        N, K, p, k = SIZES["S"]
        self.Xs, self.Y, *_ = gls.simulate_sur(N, K, p, k, seed=0)
        self.k = k
        gls.fit(self.Xs, self.Y, rank=k, l1=l1)  # compiles the penalised path

    def time_fit_l1(self, l1):
        gls.fit(self.Xs, self.Y, rank=self.k, l1=l1)

    def track_zeros(self, l1):
        return int((gls.fit(self.Xs, self.Y, rank=self.k, l1=l1).params == 0).sum())

    track_zeros.unit = "coefficients"


class PeerAlsgls:
    """alsgls 2.2.0 ``ALSGLS(rank=k)`` on the same data (skipped when not installed)."""

    params = (sizes(["S", "M"]),)
    param_names = ["size"]
    timeout = 900
    number = 1
    repeat = (1, 3, 60.0)

    def setup(self, size):
        try:
            import alsgls
        except ImportError as exc:
            raise NotImplementedError("alsgls is not installed") from exc
        self.alsgls = alsgls
        N, K, p, k = SIZES[size]
        self.Xs, self.Y, *_ = gls.simulate_sur(N, K, p, k, seed=0)
        self.k = k

    def time_fit(self, size):
        self.alsgls.ALSGLS(rank=self.k).fit(self.Xs, self.Y)

    def peakmem_fit(self, size):
        self.alsgls.ALSGLS(rank=self.k).fit(self.Xs, self.Y)


class EstimatorPasses:
    """The estimator's own passes at N = 8000 rows of the M layout (K = 200, p = 10,
    k = 5; X of 128 MB): packing the K designs into X with the NaN/inf check
    (``gls.prepare``, one compiled pass; with ``add_constant``, whose "already has a
    constant" test read every column once more until the nineteenth session: +85 ms at
    N = 20000) against NumPy's concatenation, and the CG
    start's ``b`` and ``r0`` from one pass over X (``rowgroups.solved_rmatvecs``)
    against the Woodbury solves and ``sur_rmatvec`` calls it replaced."""

    params = (["prepare", "prepare, add_constant", "numpy concatenate",
               "solved_rmatvecs (b, r0)",
               "woodbury_solve + sur_rmatvec, twice"], ["plain", "compensated"])
    param_names = ["step", "mode"]
    timeout = 300

    def setup(self, step, mode):
        import numpy as np

        from reprogls.kernels.cpu.rowgroups import solved_rmatvecs

        N, K, p, k = 8000, 200, 10, 5
        Xs, Y, *_ = gls.simulate_sur(N, K, p, k, seed=0)
        if step in ("prepare", "prepare, add_constant", "numpy concatenate"):
            if mode == "compensated":  # (packing has no mode)
                raise NotImplementedError("packing has no reduction mode")
            self.fn = {"prepare": lambda: gls.prepare(Xs, Y),
                       "prepare, add_constant": lambda: gls.prepare(Xs, Y, add_constant=True),
                       "numpy concatenate": lambda: np.concatenate(Xs, axis=1)}[step]
        else:
            data = gls.prepare(Xs, Y)
            X, offsets = data.X, data.offsets
            rng = np.random.default_rng(1)
            factor = kernels.woodbury_factor(rng.standard_normal((K, k)),
                                             0.05 + 0.2 * rng.uniform(size=K), mode)
            E = np.ascontiguousarray(Y - 0.5)

            def composed():
                return [kernels.sur_rmatvec(X, offsets, kernels.woodbury_solve(factor, R),
                                            mode) for R in (data.Y, E)]

            self.fn = {"solved_rmatvecs (b, r0)": lambda: solved_rmatvecs(
                X, offsets, [data.Y, E], factor.G, factor.d, factor.L,
                mode == "compensated"),
                "woodbury_solve + sur_rmatvec, twice": composed}[step]
        self.fn()

    def time_step(self, step, mode):
        self.fn()


class SmallFitSteps:
    """The steps that dominate an S-size fit (N = 2000, K = 50, p = 5, k = 3; P = 250),
    none of them a pass over a large X: the fixed-order Cholesky of the P x P normal
    matrix (three per fit), the plug-in inverse from its factor, ``E^T E`` and one
    likelihood profile of the Sigma-step (~27 per fit: an eigen-solve and the loadings)."""

    params = (["cholesky P=250", "inverse from factor P=250", "E^T E K=50",
               "sigma profile K=50"], ["plain", "compensated"])
    param_names = ["step", "mode"]

    def setup(self, step, mode):
        import numpy as np

        from reprogls.gls import sigma
        from reprogls.gls._dense import gram
        from reprogls.kernels.cpu import spd

        compensated = mode == "compensated"
        rng = np.random.default_rng(0)
        if step.startswith(("cholesky", "inverse")):
            B = rng.standard_normal((1000, 250))
            C = gram(B, mode) + np.eye(250)
            L, Z, inv = np.empty_like(C), np.empty_like(C), np.empty_like(C)
            spd.cholesky(C, compensated, L)

            def inverse():
                spd.inverse_factor(L, compensated, Z)
                spd.gram_of_rows_from_diagonal(Z, compensated, inv)

            self.fn = (lambda: spd.cholesky(C, compensated, L)) if step.startswith(
                "cholesky") else inverse
        elif step.startswith("E^T E"):
            E = rng.standard_normal((2000, 50))
            self.fn = lambda: sigma.residual_moment(E, mode)
        else:
            _, Y, _, F, d = gls.simulate_sur(2000, 50, 5, 3, seed=0)
            E = Y - Y.mean(axis=0)
            S = sigma.MomentMatrix(sigma.residual_moment(E, mode), mode)
            Q = np.linalg.qr(F)[0]
            self.fn = lambda: sigma.profile(S, 2000, mode, d, Q)
        self.fn()

    def time_step(self, step, mode):
        self.fn()
