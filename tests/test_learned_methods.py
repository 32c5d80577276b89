"""The learned LU methods as plugins: contract, parameters, refusals, fits, the worker."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from lubench_learned import DenseMaskedLU, GfmmLU
from lubench_learned.gfmm import factor_params, live_params
from lubench_learned.training import Schedule

from lubench.api import Budget, InvalidParameter, Operator, RunContext, Unsupported
from lubench.metrics.grading import grade
from lubench.testing import CheckSkipped, check_method, method_checks


def _exponential(n: int, rho: float = 0.5) -> Operator:
    i = np.arange(n)
    return Operator("exponential_kernel", rho ** np.abs(i[:, None] - i[None, :]),
                    symmetric=True, spd=True)


def _laplacian(n: int) -> Operator:
    A = sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1], format="csr")
    return Operator("laplacian_1d", A, symmetric=True, spd=True)


def _ctx(max_steps: int | None = 50, **kw) -> RunContext:
    return RunContext(device="cpu", seed=3, budget=Budget(max_steps=max_steps), **kw)


# The contract does not depend on the optimizer: L-BFGS keeps these checks quick (a
# Levenberg–Marquardt step costs ~80 small backward passes); LM has its own tests.
@pytest.mark.parametrize("check", method_checks(GfmmLU, P=4, optimizer="lbfgs") +
                         method_checks(DenseMaskedLU, optimizer="lbfgs"),
                         ids=lambda c: getattr(c, "__name__", ""))
def test_contract(check):
    try:
        check()
    except CheckSkipped as exc:
        pytest.skip(str(exc))


def test_registered_as_learned_plugins(registry):
    for name, cls in (("gfmm_lu", GfmmLU), ("dense_masked_lu", DenseMaskedLU)):
        assert registry.method(name) is cls
        assert cls.family == "learned"
        assert cls.resources == {"gpus_per_task": 1}


# --------------------------------------------------------------------------------------------
# Parameters and refusals
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("params, name", [
    ({"P": 0}, "P"), ({"M": 6}, "M"), ({"loss": "hinge"}, "loss"), ({"probes": 0}, "probes"),
    ({"lr": -1.0}, "lr"), ({"betas": (0.9, 1.0)}, "betas"), ({"optimizer": "sgd"}, "optimizer"),
    ({"dtype": "float16"}, "dtype"), ({"init": "zeros"}, "init"), ({"preset": "paper"}, "preset"),
    ({"diag": "band"}, "diag"), ({"keep": "first"}, "keep"), ({"pivot_floor": -1.0}, "pivot_floor"),
])
def test_bad_parameters_are_named(params, name):
    with pytest.raises(InvalidParameter, match=name):
        GfmmLU(**params).check(_exponential(16))


def test_too_few_leaves_is_unsupported():
    with pytest.raises(Unsupported, match="M·P"):
        GfmmLU(P=4, M=2).check(_exponential(16))


def test_dense_masked_refused_over_the_memory_limit():
    op = _laplacian(64)
    method = DenseMaskedLU()
    need = method.memory_estimate(op)
    assert need > 64 * 64 * 4 * 8  # at least weights, gradients and two Adam moments
    with pytest.raises(Unsupported, match=r"needs ~.* GiB .*n² .*memory limit"):
        method.factorize(op, _ctx(memory_limit=int(need // 2)))
    method.factorize(op, _ctx(max_steps=2, memory_limit=int(2 * need)))


@pytest.mark.parametrize("optimizer", ["adam", "lm"])
def test_gfmm_memory_is_order_n_p_with_probes(optimizer):
    # (L-BFGS keeps 2·50 vectors of the parameters: O(n·P) too, 50× larger)
    small = GfmmLU(P=32, loss="probes", optimizer=optimizer).memory_estimate(_laplacian(4096))
    large = GfmmLU(P=32, loss="probes", optimizer=optimizer).memory_estimate(_laplacian(65536))
    assert large < 20 * small  # 16× n, O(n·P)
    assert large < 4 * 2**30


# --------------------------------------------------------------------------------------------
# Factorizations
# --------------------------------------------------------------------------------------------
def test_gfmm_info_and_counts():
    op = _exponential(40)  # not a multiple of P·M: padded to 64 with an identity block
    fact = GfmmLU(P=8, init="identity").factorize(op, _ctx(max_steps=16))
    x = np.random.default_rng(0).standard_normal(40)
    # default: triangular diagonal blocks, L's with 28 numbers, U's with 36 (not 64 each)
    assert fact.n_params == factor_params(8, 8, True, "triangular") + \
        factor_params(8, 8, False, "triangular") == 2 * 64 * (6 * 8 - 6 - 3) + 8 * 64
    info = fact.info
    assert (info["M"], info["P"], info["N"], info["padding"]) == (8, 8, 64, 24)
    assert info["trainable_params"] == fact.n_params
    assert info["live_params"] == fact.n_params - 2 * 4 * 3 * 64 == \
        live_params(8, 8, True, "triangular") + live_params(8, 8, False, "triangular")
    post = GfmmLU(P=8, preset="post").factorize(op, _ctx(max_steps=16))
    assert post.n_params == 2 * factor_params(8, 8) == 2 * 64 * (7 * 8 - 6 - 3)
    assert post.info["live_params"] == 2 * live_params(8, 8)
    # the budget binds the post's Adam; the default's Newton ends at round-off before it
    # (the kernel's factors fit the pattern)
    assert post.info["iterations"] == 16 and post.info["stopped_because"] == "max_steps"
    assert post.history and post.history[-1]["step"] == 16
    assert info["iterations"] < 16 and info["stopped_because"] == "converged"
    assert info["train_rel_error"] <= 512 * np.finfo(np.float64).eps
    assert info["device"] == "cpu" and np.isfinite(info["final_loss"])
    assert fact.history and fact.history[-1]["step"] == info["iterations"]
    assert fact.solve(x).shape == (40,) and fact.apply(x).shape == (40,)


@pytest.mark.parametrize("n", [37, 40])
def test_gfmm_solve_inverts_apply_with_padding(n):
    """solve inverts exactly the n×n operator that apply applies, split leaf or not."""
    fact = GfmmLU(P=8, init="identity").factorize(_exponential(n), _ctx(max_steps=10))
    post = GfmmLU(P=8, preset="post").factorize(_exponential(n), _ctx(max_steps=10))
    x = np.random.default_rng(0).standard_normal(n)
    cond = np.linalg.cond(post.apply(np.eye(n)))  # full uniform blocks: far from I
    assert np.linalg.norm(post.apply(post.solve(x)) - x) <= 1e-13 * cond * np.linalg.norm(x)
    assert fact.info["padding"] == 64 - n
    x = np.random.default_rng(0).standard_normal(n)
    np.testing.assert_allclose(fact.apply(fact.solve(x)), x, rtol=0, atol=1e-10)
    np.testing.assert_allclose(fact.solve(fact.apply(x)), x, rtol=0, atol=1e-10)


def test_gfmm_apply_and_solve_take_blocks_of_columns():
    op = _exponential(32)
    fact = GfmmLU(P=4, init="identity").factorize(op, _ctx(max_steps=5))
    B = np.random.default_rng(1).standard_normal((32, 3))
    X = fact.solve(B)
    np.testing.assert_allclose(X, np.column_stack([fact.solve(B[:, j]) for j in range(3)]),
                               rtol=1e-12, atol=1e-12)
    dense = fact.apply(np.eye(32))
    np.testing.assert_allclose(X, np.linalg.solve(dense, B), rtol=1e-8, atol=1e-8)


def test_gfmm_reaches_a_small_error_on_the_exponential_kernel_quickly():
    """ρ^|i−j| has rank-1 off-diagonal blocks in A, L and U: the GFMM block represents its
    LU exactly, and L-BFGS (identity start) gets close within a few hundred steps."""
    op = _exponential(64)
    fact = GfmmLU(P=8, blockwise=False, transpose_loss=False, optimizer="lbfgs",
                  dtype="float64", init="identity").factorize(op, _ctx(max_steps=300))
    m = grade(op, fact, seed=0)
    assert m["factor_error"] < 5e-3
    assert m["solve_residual"] < 5e-2
    assert m["precond_iterations"] <= 10 and m["precond_converged"]


def test_dense_masked_keeps_the_triangles_to_the_bit():
    fact = DenseMaskedLU(lr=0.05).factorize(_laplacian(24), _ctx(max_steps=30))
    assert np.all(np.triu(fact.L, 1) == 0.0)
    assert np.all(np.diag(fact.L) == 1.0)
    assert np.all(np.tril(fact.U, -1) == 0.0)
    assert fact.n_params == 24 * 24


def test_dense_masked_fits_a_small_laplacian():
    op = _laplacian(32)
    fact = DenseMaskedLU(optimizer="lbfgs", dtype="float64").factorize(op, _ctx(max_steps=300))
    m = grade(op, fact, seed=0)
    assert m["factor_error"] < 1e-3
    assert m["solve_residual"] < 1e-2
    first, last = fact.history[0]["loss"], fact.history[-1]["loss"]
    assert last < 1e-6 * first


def test_post_adam_lowers_the_error():
    op = _laplacian(32)
    fact = DenseMaskedLU(preset="post").factorize(op, _ctx(max_steps=200))
    assert fact.history[-1]["loss"] < 0.5 * fact.history[0]["loss"]


def test_worker_records_histories(registry):
    from lubench.execution.worker import run_case
    from lubench.suite.load import build_suite

    suite = build_suite({
        "name": "learned", "seed": 0,
        "operators": [{"name": "exponential_kernel", "sizes": [32]}],
        "methods": [{"name": "gfmm_lu", "params": {"P": 8, "init": "identity"},
                     "budget": {"max_steps": 24}},
                    # the kernel is formed for it (8·32² bytes within a quarter of 40 kB),
                    # then it refuses what its own training would need
                    {"name": "dense_masked_lu", "budget": {"max_steps": 10},
                     "memory_limit": 40000}],
    }, registry)
    ok, refused = (run_case(case) for case in suite.cases)
    assert ok["status"] == "ok", ok["error"]
    assert 0 < ok["iterations"] <= 24 and ok["family"] == "learned"
    assert ok["history"] and {"step", "seconds", "loss"} <= ok["history"][0].keys()
    assert ok["precond_iterations"] is not None
    assert refused["status"] == "unsupported" and "memory limit" in refused["error"]


def test_check_method_passes_with_the_post_preset():
    assert all(r.passed for r in check_method(GfmmLU, P=4, preset="post"))


# --------------------------------------------------------------------------------------------
# Invertible by construction, presets, the watch
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer, lr", [("adam", 0.3), ("lbfgs", 1e-2), ("lm", 1e-2)])
def test_unit_lower_l_and_floored_pivots_after_any_training(optimizer, lr):
    """Whatever training does (here Adam at a reckless learning rate too), L's diagonal is
    exactly 1 and |U_ii| ≥ δ = pivot_floor · max|A|: both factors stay invertible."""
    op = _exponential(32, rho=0.9)
    floor = 1e-3
    for method in (GfmmLU(P=8, optimizer=optimizer, lr=lr, pivot_floor=floor,
                          keep="last", dtype="float32"),
                   DenseMaskedLU(optimizer=optimizer, lr=lr, pivot_floor=floor, keep="last")):
        fact = method.factorize(op, _ctx(max_steps=15))
        if isinstance(fact.L, np.ndarray):
            L, U = fact.L, fact.U
        else:
            L, U = fact.L.dense(), fact.U.dense()
        assert np.all(np.diag(L) == 1.0)
        assert np.all(np.abs(np.diag(U)) >= floor * (1 - 1e-6))
        assert np.all(np.isfinite(fact.solve(np.ones(32))))


def test_post_preset_is_the_posts_protocol():
    """The post: uniform start, full diagonal blocks, Adam 1e-2 with betas (0.999, 0.999),
    1e-3 from step 5 000 of a block, block-wise training with the transpose loss on identity
    inputs, float32, its plateau rule (0.1 % over 1 000 steps, twice), last weights kept."""
    method = GfmmLU(P=32, M=8, preset="post")
    cfg = method.config()
    expected = {"diag": "full", "init": "uniform", "init_scale": 0.1, "optimizer": "adam",
                "lr": 1e-2, "lr_late": 1e-3, "lr_drop_step": 5000, "betas": (0.999, 0.999),
                "blockwise": True, "transpose_loss": True, "loss": "identity",
                "dtype": "float32", "check_interval": 1000, "tol": 1e-3, "patience": 2,
                "max_steps_per_block": 50000, "keep": "last", "watch_patience": 0}
    assert {k: cfg[k] for k in expected} == expected
    assert method._schedule(cfg) == Schedule(optimizer="adam", lr=1e-2, lr_late=1e-3,
                                             lr_drop_step=5000, betas=(0.999, 0.999),
                                             max_steps_per_block=50000, check_interval=1000,
                                             tol=1e-3, patience=2)
    net = method.build_model(_laplacian(256), cfg, seed=0)
    assert net.L.diag_kind == net.U.diag_kind == "full"
    assert sum(p.numel() for p in net.parameters()) == net.n_trainable() == 96_256
    assert net.L.diag.dtype == torch.float32
    # uniform start: every weight within ±0.1, none of them the identity
    assert all(float(p.detach().abs().max()) <= 0.1 for p in net.parameters())
    # an explicit value wins over the preset's
    assert GfmmLU(preset="post", lr=1e-4).config()["lr"] == 1e-4
    assert DenseMaskedLU(preset="post").config()["pivots"] == "free"


def test_info_records_the_watch_and_the_config():
    fact = GfmmLU(P=8).factorize(_exponential(32), _ctx(max_steps=30))
    info = fact.info
    for key in ("heldout_residual", "cond_est", "growth", "inv_norm1_L", "inv_norm1_U",
                "kept_step"):
        assert np.isfinite(info[key]), key
    assert info["config"]["diag"] == "triangular" and info["preset"] == "default"
    assert any("cond_est" in row for row in fact.history)


@pytest.mark.parametrize("op", [_laplacian(40), _exponential(40, rho=0.9)],
                         ids=["laplacian", "exponential"])
@pytest.mark.parametrize("diag", ["triangular", "full"])
def test_projected_init_with_zero_steps_is_gfmm_compressed(op, diag):
    """init: projected loads gfmm_compressed's factors; with no training step the learned
    factorization is that one (to round-off of the softplus round trip), padding included."""
    from lubench_compressed import GfmmCompressed

    ctx = _ctx(max_steps=0)
    fact = GfmmLU(P=8, init="projected", diag=diag).factorize(op, ctx)
    ref = GfmmCompressed(P=8).factorize(op, ctx)
    assert fact.info["iterations"] == 0 and fact.info["start"] == "gfmm_compressed"
    np.testing.assert_array_equal(fact.perm, ref.perm)
    for mine, theirs in ((fact.L, ref.L), (fact.U, ref.U)):
        np.testing.assert_allclose(mine.dense(), theirs.dense(), rtol=0,
                                   atol=1e-12 * np.abs(theirs.dense()).max())
    b = np.random.default_rng(0).standard_normal(40)
    np.testing.assert_allclose(fact.solve(b), ref.solve(b), rtol=1e-10, atol=1e-12)


def test_projected_init_with_row_exchanges_trains_on_the_permuted_rows():
    """An operator whose LU needs row exchanges: the start carries gfmm_compressed's
    permutation (with zero steps: the same factorization, rows put back by apply and solve),
    and training fits A[perm] without making the held-out residual worse (keep: best)."""
    from lubench_compressed import GfmmCompressed

    rng = np.random.default_rng(3)
    A = rng.standard_normal((24, 24)) + 6 * np.eye(24)
    A[0, 0] = 0.0
    op = Operator("needs_pivoting", A, symmetric=False, spd=False)
    ref = GfmmCompressed(P=4).factorize(op, _ctx(max_steps=0))
    start = GfmmLU(P=4, init="projected").factorize(op, _ctx(max_steps=0))
    assert start.info["start_pivoting"] == "partial"
    assert not np.array_equal(start.perm, np.arange(24))
    x = rng.standard_normal(24)
    np.testing.assert_allclose(start.apply(x), ref.apply(x), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(start.solve(x), ref.solve(x), rtol=1e-9, atol=1e-12)
    trained = GfmmLU(P=4, init="projected").factorize(op, _ctx(max_steps=10))
    assert trained.info["heldout_residual"] <= start.info["heldout_residual"]


@pytest.mark.parametrize("diag", ["triangular", "full"])
def test_identity_start_has_the_scale_of_a(diag):
    """init: identity starts L's diagonal blocks at I and U's at diag(A) (|A_ii| with A's
    signs): a start at I is 41× too small on the smoke suite's convdiff_2d."""
    A = 41.0 * np.eye(16) + np.diag(-np.ones(15), 1)
    A[3, 3] = -7.0
    op = Operator("scaled", A, symmetric=False, spd=False)
    method = GfmmLU(P=4, diag=diag, init_scale=0.0)
    net = method.build_model(op, method.config(), seed=0)
    L, U = net.L.arrays().dense(), net.U.arrays().dense()
    np.testing.assert_allclose(L, np.eye(16), atol=1e-12)
    np.testing.assert_allclose(np.diag(U), np.diag(A), rtol=1e-12)
