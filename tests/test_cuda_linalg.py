"""CUDA linear-algebra and elementwise kernels equal the reference bit for bit (GPU only)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reprogls import kernels
from reprogls.kernels import reference as ref
from tests.corpus import same_bits
from tests.linalg_cases import ROWS, factor_problem, sur_problem, wide
from tests.test_elementwise import exp_inputs, log_inputs

pytestmark = pytest.mark.gpu
MODES = ("compensated", "plain")



@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n_rows", ROWS)
def test_sur_kernels(n_rows, mode):
    X, offsets, beta, W = sur_problem(n_rows)
    assert same_bits(kernels.sur_matvec(X, offsets, beta, mode, "cuda"),
                     ref.sur_matvec(X, offsets, beta, mode))
    assert same_bits(kernels.sur_rmatvec(X, offsets, W, mode, "cuda"),
                     ref.sur_rmatvec(X, offsets, W, mode))
    assert same_bits(kernels.gemv(X, beta, mode, "cuda"), ref.gemv(X, beta, mode))
    assert same_bits(kernels.gemv_t(X, W[:, 0], mode, "cuda"), ref.gemv_t(X, W[:, 0], mode))


def test_out_on_the_gpu():
    """``out=`` is a host array on every device: the GPU result is copied into it (the
    solve also in place, ``out=R``), with the reference's bits."""
    X, offsets, beta, _ = sur_problem(300)
    K = len(offsets) - 1
    out = np.full((300, K), np.nan)
    assert kernels.sur_matvec(X, offsets, beta, "compensated", "cuda", out=out) is out
    assert same_bits(out, ref.sur_matvec(X, offsets, beta, "compensated"))
    F, d = factor_problem(K, 2)
    factor, spec = kernels.woodbury_factor(F, d), ref.woodbury_factor(F, d)
    R = wide(np.random.default_rng(5), (300, K))
    expect = ref.woodbury_solve(spec, R)
    assert kernels.woodbury_solve(factor, R, "cuda", out=out) is out
    assert same_bits(out, expect)
    assert kernels.woodbury_solve(factor, R, "cuda", out=R) is R
    assert same_bits(R, expect)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("widths", [tuple(range(33)), (32, 1, 0, 31), (40, 2)],
                         ids=["0-32", "edges", "past-32"])
def test_sur_matvec_special_values(widths, mode):
    """Thread-per-output (widths <= 32) and warp-per-output dots with inf, NaN and -0.0
    products, and order-sensitive (not wide) magnitudes."""
    X, offsets, beta, _ = sur_problem(100, widths, seed=3)
    X, beta = np.log1p(np.abs(X)) - 5.0, np.log1p(np.abs(beta)) - 2.0
    X[0, :3], X[-1, ::4], beta[1::7] = np.inf, np.nan, -0.0
    assert same_bits(kernels.sur_matvec(X, offsets, beta, mode, "cuda"),
                     ref.sur_matvec(X, offsets, beta, mode))


def test_long_equation_spans_chunks():
    X, offsets, beta, _ = sur_problem(3, widths=(2, 8200, 1))
    for mode in MODES:
        assert same_bits(kernels.sur_matvec(X, offsets, beta, mode, "cuda"),
                         ref.sur_matvec(X, offsets, beta, mode))


OPERATORS = ("three_kernels", "one_pass")


@pytest.fixture(params=OPERATORS)
def normal_operator(request, monkeypatch):
    """Each way of the GPU's normal operator (``cuda.linalg.NORMAL_OPERATOR``) in turn."""
    from reprogls.kernels.cuda import linalg as cuda_linalg

    monkeypatch.setattr(cuda_linalg, "NORMAL_OPERATOR", request.param)
    return request.param


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("K,k", [(7, 1), (7, 6), (40, 3), (33, 32), (300, 10)])
def test_woodbury_and_normal_operator(K, k, mode, normal_operator):
    F, d = factor_problem(K, k)
    factor, spec = kernels.woodbury_factor(F, d, mode), ref.woodbury_factor(F, d, mode)
    R = wide(np.random.default_rng(K), (8193, K))
    assert same_bits(kernels.woodbury_solve(factor, R, "cuda"), ref.woodbury_solve(spec, R))
    widths = [1 + (j % 4) for j in range(K)]
    X, offsets, v, _ = sur_problem(2000, widths=widths)
    assert same_bits(kernels.sur_normal_matvec(X, offsets, factor, v, "cuda"),
                     kernels.sur_normal_matvec(X, offsets, factor, v, "cpu"))


def _launches(monkeypatch):
    """The names of the ``linalg.cu`` kernels launched from now on, with their arguments
    (a list of ``(name, args)``)."""
    from reprogls.kernels.cuda import linalg as cuda_linalg

    launched = []
    real = cuda_linalg._k

    def recording(name):
        kernel = real(name)

        def launch(grid, block, args, *rest, **kw):
            launched.append((name, args))
            return kernel(grid, block, args, *rest, **kw)
        return launch

    monkeypatch.setattr(cuda_linalg, "_k", recording)
    return launched


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n_rows, widths, k, single_pass, registers, shared", [
    (8233, (0, 1, 33, 5, 2, 0, 7), 2, True, True, True),  # two chunks, empty/long eqs
    (20, (3, 1, 4, 2, 6), 4, True, True, True),           # fewer rows than lanes, k = K-1
    (300, (1500, 1600, 3), 1, True, False, True),         # P > 3072: accumulators in memory
    (300, (1, 2, 0, 3) * 130, 3, True, True, False),      # K = 520: U/W in device scratch
    (45, (3, 3) * 40, 65, False, True, True),             # rank 65 > 64: the three kernels
    (40, (8193, 2), 1, False, True, True),                # an equation past one chunk
])
def test_normal_operator_kernels(monkeypatch, n_rows, widths, k, single_pass, registers,
                                 shared, mode, normal_operator):
    """The GPU operator composes the three kernels, or (``NORMAL_OPERATOR = "one_pass"``,
    within rank 64 and chunk-wide equations) takes one pass over X (``sur_normal_lanes``,
    with its accumulators and rows where the sizes put them) for any P and K; every way
    the CPU's fused bits."""
    launched = _launches(monkeypatch)
    X, offsets, v, _ = sur_problem(n_rows, widths=widths)
    X, v = np.log1p(np.abs(X)) - 5.0, np.log1p(np.abs(v))  # order-sensitive sums: no
    F, d = factor_problem(len(widths), k)  # few huge terms that would absorb the rest
    factor = kernels.woodbury_factor(F, d, mode)
    if not single_pass and k > 64:  # the composition's Woodbury solve refuses it too
        with pytest.raises(NotImplementedError, match="rank <= 64"):
            kernels.sur_normal_matvec(X, offsets, factor, v, "cuda")
        return
    assert same_bits(kernels.sur_normal_matvec(X, offsets, factor, v, "cuda"),
                     kernels.sur_normal_matvec(X, offsets, factor, v, "cpu"))
    names = [name for name, _ in launched]
    one_pass = single_pass and normal_operator == "one_pass"
    assert ("sur_normal_lanes" in names) == one_pass
    assert any(n.startswith("woodbury_solve") for n in names) != one_pass
    if one_pass:
        args = dict(launched)["sur_normal_lanes"]
        assert (int(args[14]), int(args[15])) == (registers, shared)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("k, kernel", [
    (1, "woodbury_solve_4"), (4, "woodbury_solve_4"), (5, "woodbury_solve_8"),
    (9, "woodbury_solve_16"), (16, "woodbury_solve_16"), (17, "woodbury_solve_32"),
    (32, "woodbury_solve_32"), (33, "woodbury_solve"), (64, "woodbury_solve"),
])
@pytest.mark.parametrize("extra", [1, 40])  # K = k + 1 (one term per lane up to K = 32)
def test_woodbury_solve_kernel_by_rank(monkeypatch, extra, k, kernel, mode):
    """Each rank takes the register kernel sized for it (``woodbury_solve_4`` ... ``_32``,
    the generic one above 32) and gives the reference's bits, with K = k + 1 and
    K = k + 40 equations (lanes taking several)."""
    K = k + extra
    launched = _launches(monkeypatch)
    F, d = factor_problem(K, k)
    factor, spec = kernels.woodbury_factor(F, d, mode), ref.woodbury_factor(F, d, mode)
    R = wide(np.random.default_rng(k), (67, K))
    assert same_bits(kernels.woodbury_solve(factor, R, "cuda"), ref.woodbury_solve(spec, R))
    assert [name for name, _ in launched] == [kernel]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("widest, kernel", [
    (1, "sur_matvec_short_8"), (8, "sur_matvec_short_8"), (9, "sur_matvec_short_16"),
    (16, "sur_matvec_short_16"), (17, "sur_matvec_short_32"), (32, "sur_matvec_short_32"),
    (33, "sur_matvec"),
])
def test_sur_matvec_kernel_by_width(monkeypatch, widest, kernel, mode):
    """The thread-per-output kernel sized for the widest equation (its dot's lanes in
    registers), a warp per output past 32 columns; the reference's bits either way, with
    narrower and empty equations beside the widest."""
    launched = _launches(monkeypatch)
    X, offsets, beta, _ = sur_problem(45, widths=(widest, 0, 1, max(1, widest - 3), widest))
    X, beta = np.log1p(np.abs(X)) - 5.0, np.log1p(np.abs(beta))  # order-sensitive sums
    assert same_bits(kernels.sur_matvec(X, offsets, beta, mode, "cuda"),
                     ref.sur_matvec(X, offsets, beta, mode))
    assert [name for name, _ in launched] == [kernel]


@pytest.mark.parametrize("tile", [8, 16])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n_rows, P, budget", [
    (0, 3, None), (1, 1, None), (20, 9, None),       # no rows, one entry, part tiles
    (8193, 17, None),                                 # two chunks, the second one row
    (300, 70, 3000),                                  # 45 / 15 tile pairs, 2 / 1 a launch
    (40, 600, None),                                  # 2850 / 741 tile pairs
])
def test_gram_equals_the_cpu(monkeypatch, n_rows, P, budget, mode, tile):
    """``X^T X`` on the GPU (tile pairs of columns, a block per pair and chunk) has the
    CPU's bits with either tile size, whatever the number of launches the partials'
    budget cuts it into; inf and NaN products included."""
    from reprogls.gls._dense import gram
    from reprogls.kernels.cuda import linalg as cuda_linalg

    monkeypatch.setattr(cuda_linalg, "GRAM_TILE", tile)
    if budget is not None:
        monkeypatch.setattr(cuda_linalg, "GRAM_PARTIAL_BYTES", budget)
    rng = np.random.default_rng(P)
    X = np.log1p(np.abs(rng.standard_normal((n_rows, P)))) - 2.0  # order-sensitive sums
    if n_rows > 2 and P > 2:
        X[1, 0], X[2, 2] = np.inf, np.nan
    launched = _launches(monkeypatch)
    assert same_bits(gram(X, mode, "cuda"), gram(X, mode, "cpu"))
    launches = [name for name, _ in launched].count(f"gram_tile_partials_{tile}")
    assert launches == (0 if n_rows == 0 else 1 if budget is None else
                        {8: 23, 16: 15}[tile])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(widths=st.lists(st.integers(0, 40), min_size=1, max_size=12),
       n_rows=st.integers(1, 400), rank=st.integers(1, 6), seed=st.integers(0, 2**16),
       compensated=st.booleans(),
       places=st.sampled_from(["three kernels", "fast", "memory"]))
def test_random_layouts_equal_the_cpu(widths, n_rows, rank, seed, compensated, places):
    """Random equation widths (0..40: both sur_matvec kernels, the fused operator's two
    ways of forming X v), row counts (partial lanes and batches) and ranks: every SUR
    operator on the GPU has the CPU's bits, the normal operator composed or in one pass;
    with ``places="memory"`` the single pass's accumulators and rows are forced into
    device memory (the places its large-P and large-K cases use)."""
    from reprogls.kernels.cuda import linalg as cuda_linalg

    mode = "compensated" if compensated else "plain"
    widths = tuple(widths)
    K = len(widths)
    X, offsets, v, W = sur_problem(n_rows, widths=widths, seed=seed)
    X, v = np.log1p(np.abs(X)) - 5.0, np.log1p(np.abs(v))  # order-sensitive sums
    assert same_bits(kernels.sur_matvec(X, offsets, v, mode, "cuda"),
                     ref.sur_matvec(X, offsets, v, mode))
    assert same_bits(kernels.sur_rmatvec(X, offsets, W, mode, "cuda"),
                     ref.sur_rmatvec(X, offsets, W, mode))
    if K >= 2:
        F, d = factor_problem(K, min(rank, K - 1), seed)
        factor = kernels.woodbury_factor(F, d, mode)
        saved = (cuda_linalg.FUSED_MAX_P, cuda_linalg.FUSED_MAX_K,
                 cuda_linalg.NORMAL_OPERATOR)
        cuda_linalg.NORMAL_OPERATOR = ("three_kernels" if places == "three kernels"
                                       else "one_pass")
        if places == "memory":
            cuda_linalg.FUSED_MAX_P = cuda_linalg.FUSED_MAX_K = 0
        try:
            fused = kernels.sur_normal_matvec(X, offsets, factor, v, "cuda")
        finally:
            (cuda_linalg.FUSED_MAX_P, cuda_linalg.FUSED_MAX_K,
             cuda_linalg.NORMAL_OPERATOR) = saved
        assert same_bits(fused, kernels.sur_normal_matvec(X, offsets, factor, v, "cpu"))


def test_elementwise():
    x = log_inputs(50_000)
    assert same_bits(kernels.log(x, "cuda"), ref.log(x))
    y = exp_inputs(50_000)
    assert same_bits(kernels.exp(y, "cuda"), ref.exp(y))
    rng = np.random.default_rng(0)
    z = rng.standard_normal(100_001)
    lam = np.abs(rng.standard_normal(z.size))
    assert same_bits(kernels.soft_threshold(z, 0.3, "cuda"), ref.soft_threshold(z, 0.3))
    assert same_bits(kernels.soft_threshold(z, lam, "cuda"), ref.soft_threshold(z, lam))
    assert same_bits(kernels.soft_threshold_box(z, lam, -0.5, 1.0, "cuda"),
                     ref.soft_threshold_box(z, lam, -0.5, 1.0))
    assert same_bits(kernels.prox_elastic_net(z, 0.4, 0.3, 0.9, -1.0, 1.0, "cuda"),
                     ref.prox_elastic_net(z, 0.4, 0.3, 0.9, -1.0, 1.0))
    g, xp = rng.standard_normal(z.size), rng.standard_normal(z.size)
    mine = kernels.fista_step(z, g, 0.1, xp, 0.6, lam, 0.5, -3.0, 3.0, "cuda")
    spec = ref.fista_step(z, g, 0.1, xp, 0.6, lam, 0.5, -3.0, 3.0)
    assert same_bits(mine[0], spec[0]) and same_bits(mine[1], spec[1])


def test_device_copies_of_a_layout_and_a_factor_are_reused_and_keyed_by_value(monkeypatch):
    """The launchers keep the device copies of a SUR layout (offsets, column-to-equation
    map) and of a Woodbury factor (``G``, ``d``, ``L``, ``L^T``) for the next call: a
    repeated call copies only its data across. The keys are the values, so a factor
    changed in place is copied again and the result is the reference's for the new
    values."""
    import cupy

    rng = np.random.default_rng(41)
    N, K, p, k = 60, 7, 3, 2
    X = rng.standard_normal((N, K * p))
    offsets = np.arange(0, K * p + 1, p)
    v = rng.standard_normal(K * p)
    factor = kernels.woodbury_factor(rng.standard_normal((K, k)), 0.5 + rng.uniform(size=K))
    copies = []
    real_asarray = cupy.asarray

    def counting_asarray(a, *args, **kwargs):
        if isinstance(a, np.ndarray):
            copies.append(a.shape)
        return real_asarray(a, *args, **kwargs)

    kernels.sur_normal_matvec(X, offsets, factor, v, device="cuda")
    monkeypatch.setattr(cupy, "asarray", counting_asarray)
    again = kernels.sur_normal_matvec(X, offsets, factor, v, device="cuda")
    assert sorted(copies) == sorted([(N, K * p), (K * p,)]), copies  # X and v only
    assert same_bits(again, kernels.sur_normal_matvec(X, offsets, factor, v, device="cpu"))
    copies.clear()
    factor.G[0, 0] *= 2.0  # (in place: the cached copy is stale)
    changed = kernels.sur_normal_matvec(X, offsets, factor, v, device="cuda")
    assert (K, k) in copies, copies
    assert same_bits(changed, kernels.sur_normal_matvec(X, offsets, factor, v, device="cpu"))
    assert not same_bits(changed, again)
