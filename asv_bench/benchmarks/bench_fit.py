"""End-to-end fits at sizes S and M (alsgls-style data), and alsgls at the same sizes."""

from __future__ import annotations

from reprogls import gls

SIZES = {"S": (2000, 50, 5, 3), "M": (20000, 200, 10, 5)}


class Fit:
    params = (["S", "M"],)
    param_names = ["size"]
    timeout = 900
    number = 1
    repeat = (1, 3, 60.0)

    def setup(self, size):
        N, K, p, k = SIZES[size]
        self.Xs, self.Y, *_ = gls.simulate_sur(N, K, p, k, seed=0)
        self.k = k
        # plug-in SEs at M (X^T X and a 2000 x 2000 inverse, ~20 s): benchmarked without
        self.cov = "plugin" if size == "S" else "none"
        gls.fit(self.Xs[:3], self.Y[:, :3], rank=1, cov_type="none")  # JIT warm-up

    def time_fit(self, size):
        gls.fit(self.Xs, self.Y, rank=self.k, cov_type=self.cov)

    def peakmem_fit(self, size):
        gls.fit(self.Xs, self.Y, rank=self.k, cov_type=self.cov)


class FitL1:
    """Penalised (L1) fitting does not exist yet."""

    def setup(self):
        raise NotImplementedError("L1-penalised fitting is not implemented yet")

    def time_fit_l1(self):
        pass


class PeerAlsgls:
    """alsgls 2.2.0 ``ALSGLS(rank=k)`` on the same data (skipped when not installed)."""

    params = (["S", "M"],)
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
