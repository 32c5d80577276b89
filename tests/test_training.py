"""The shared training loop: losses, block-wise freezing, budgets, divergence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from lubench_learned.dense_masked_net import MaskedDenseLUNet
from lubench_learned.gfmm import GFMMProduct
from lubench_learned.training import (
    STOP_REASONS,
    LossSpec,
    Schedule,
    Target,
    Trainer,
    Watch,
    train,
)
from lubench_learned.training.loop import _Plateau

from lubench.api import Budget, Diverged, Operator

M, P = 4, 4
N = M * P


def _exponential(n: int = N, rho: float = 0.5) -> Operator:
    i = np.arange(n)
    return Operator("exponential_kernel", rho ** np.abs(i[:, None] - i[None, :]),
                    symmetric=True, spd=True)


def _laplacian(n: int = N) -> Operator:
    A = sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1], format="csr")
    return Operator("laplacian_1d", A, symmetric=True, spd=True)


def _net(seed: int = 0, diag: str = "full") -> GFMMProduct:
    return GFMMProduct(M, P, dtype=torch.float64, identity_diag=True, diag=diag,
                       generator=torch.Generator().manual_seed(seed))


def _target(op: Operator, dense: bool = True, n_pad: int = N) -> Target:
    return Target(op, n_pad, torch.float64, "cpu", dense=dense)


def _trainer(spec: LossSpec, net: GFMMProduct | None = None, op: Operator | None = None,
             schedule: Schedule | None = None) -> Trainer:
    net = net or _net()
    return Trainer(net, _target(op or _exponential(), dense=spec.kind == "identity"), spec,
                   schedule or Schedule(), seed=0, edge_groups=net.edge_views(), block_size=P)


def _probe(tr: Trainer) -> torch.Tensor:
    return torch.randn((tr.N, tr.spec.probes), generator=tr.gen, dtype=tr.dtype)


def _dense_residual(net: GFMMProduct, op: Operator) -> np.ndarray:
    with torch.no_grad():
        return net.full_product().numpy() - op.dense()


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("transpose", [False, True])
def test_identity_loss_is_the_frobenius_error(transpose):
    tr = _trainer(LossSpec("identity", transpose=transpose))
    tr.start_block(None)
    loss, rel = tr.loss(None)
    R = _dense_residual(tr.model, _exponential())
    sq = float((R ** 2).sum())
    # on the full identity batch ‖UᵀLᵀ − Aᵀ‖_F = ‖LU − A‖_F: the transpose term doubles it
    assert float(loss.detach()) == pytest.approx((2 if transpose else 1) * sq, rel=1e-12)
    assert rel == pytest.approx(math.sqrt(sq) / np.linalg.norm(_exponential().dense()))


@pytest.mark.parametrize("transpose", [False, True])
def test_blockwise_identity_loss_is_block_row_and_column(transpose):
    tr = _trainer(LossSpec("identity", transpose=transpose, blockwise=True))
    R = _dense_residual(tr.model, _exponential())
    for m in range(M):
        tr.start_block(m)
        s = slice(m * P, (m + 1) * P)
        expected = (R[s, :] ** 2).sum() + (transpose and (R[:, s] ** 2).sum())
        assert float(tr.loss(None)[0].detach()) == pytest.approx(expected, rel=1e-12)


def test_probe_loss_estimates_the_frobenius_error():
    """(1/k)‖(LU − A)Z‖²_F with Gaussian Z is an unbiased estimate of ‖LU − A‖²_F."""
    spec = LossSpec("probes", probes=4000, transpose=False)
    tr = _trainer(spec, op=_laplacian())
    tr.start_block(None)
    R = _dense_residual(tr.model, _laplacian())
    assert float(tr.loss(_probe(tr))[0].detach()) == pytest.approx((R ** 2).sum(), rel=0.1)


def test_sparse_and_dense_targets_agree():
    op = _laplacian()
    Z = torch.randn(N, 3, dtype=torch.float64)
    sparse, dense = _target(op, dense=False), _target(op, dense=True)
    for transpose in (False, True):
        np.testing.assert_allclose(sparse.mm(Z, transpose).numpy(),
                                   dense.mm(Z, transpose).numpy(), atol=1e-14)
    assert sparse.fro2 == pytest.approx(dense.fro2)


def test_padding_adds_an_identity_block():
    op = _exponential(10)
    t = _target(op, dense=True, n_pad=16)
    A = t.A.numpy()
    np.testing.assert_array_equal(A[:10, :10], op.dense())
    np.testing.assert_array_equal(A[10:, 10:], np.eye(6))
    assert not A[:10, 10:].any() and not A[10:, :10].any()


# --------------------------------------------------------------------------------------------
# Block-wise training
# --------------------------------------------------------------------------------------------
def test_freezing_keeps_finished_blocks_exactly():
    """After block 0 is frozen, training block 1 leaves block-row and block-column 0 of LU
    unchanged to the bit (Adam moments are rebuilt, frozen gradients are zero)."""
    op = _exponential()
    tr = _trainer(LossSpec("identity", transpose=True, blockwise=True), op=op)
    tr.start_block(0)
    for _ in range(5):
        tr.step()
    tr.freeze_through(0)
    before = _dense_residual(tr.model, op)
    weights = {k: v.clone() for k, v in tr.model.state_dict().items()}
    tr.start_block(1)
    losses = [tr.step()[0] for _ in range(20)]
    after = _dense_residual(tr.model, op)
    np.testing.assert_array_equal(after[:P, :], before[:P, :])
    np.testing.assert_array_equal(after[:, :P], before[:, :P])
    assert losses[-1] < losses[0]
    changed = [k for k, v in tr.model.state_dict().items() if not torch.equal(v, weights[k])]
    assert changed  # the unfrozen edges did train
    assert 0 < tr.freezer.frozen_numbers() < sum(p.numel() for p in tr.params)


def test_gradient_probe_freezes_only_what_influences_finished_blocks():
    net = _net()
    tr = _trainer(LossSpec("identity", transpose=False, blockwise=True), net=net)
    tr.freeze_through(0)
    # U's last diagonal block only reaches block-row M−1 of LU: it stays trainable;
    # L's first diagonal block reaches block-row 0: frozen
    groups = dict((id(p), fr) for (p, _), fr in zip(tr.freezer.groups, tr.freezer.frozen))
    assert bool(groups[id(net.L.diag)][0]) and not bool(groups[id(net.L.diag)][-1])
    assert not bool(groups[id(net.U.diag)][-1])


# --------------------------------------------------------------------------------------------
# The loop: budgets, stopping, divergence
# --------------------------------------------------------------------------------------------
def _run(spec: LossSpec, budget: Budget, schedule: Schedule | None = None, op=None, net=None,
         watch: bool = False, keep: str = "best", patience: int = 0):
    net = net or _net()
    op = op or _exponential()
    target = _target(op, dense=spec.kind == "identity")
    w = Watch(target, seed=0, keep=keep, patience=patience) if watch else None
    result = train(net, target, spec, schedule or Schedule(), budget, seed=0, log_every=5,
                   eval_every=20, edge_groups=net.edge_views(), block_size=P, watch=w)
    return (result, net, w) if watch else (result, net)


def test_training_lowers_the_loss_and_records_the_curve():
    result, _ = _run(LossSpec("identity", transpose=True), Budget(max_steps=150))
    first, last = result.history[0], result.history[-1]
    assert last["loss"] < first["loss"]
    assert result.final_loss < first["loss"]
    assert all({"step", "seconds", "loss"} <= row.keys() for row in result.history)
    assert any("rel_error" in row for row in result.history[:-1])
    steps = [row["step"] for row in result.history]
    assert steps == sorted(steps)
    assert result.iterations == 150
    assert result.stopped_because == "max_steps"


@pytest.mark.parametrize("blockwise", [False, True])
@pytest.mark.parametrize("kind", ["identity", "probes"])
def test_max_steps_stops_training(kind, blockwise):
    result, _ = _run(LossSpec(kind, probes=8, blockwise=blockwise), Budget(max_steps=13))
    assert result.iterations <= 13
    assert result.iterations >= (M if blockwise else 13)  # each block gets its share
    assert result.stopped_because == "max_steps"


def test_blockwise_budget_is_shared_among_blocks():
    result, _ = _run(LossSpec("identity", blockwise=True), Budget(max_steps=40))
    blocks = [row.get("block") for row in result.history if "block" in row]
    assert sorted(set(blocks)) == list(range(M))
    assert result.iterations == 40


def test_max_seconds_stops_training():
    result, _ = _run(LossSpec("identity"), Budget(max_seconds=0.3),
                     Schedule(max_steps_per_block=10**7, check_interval=0))
    assert result.stopped_because == "max_seconds"
    assert 0.3 <= result.seconds < 5.0
    assert result.iterations >= 1


def test_target_loss_stops_training():
    result, _ = _run(LossSpec("identity"), Budget(max_steps=500, target_loss=1e9))
    assert result.iterations == 1
    assert result.stopped_because == "target_loss"


def test_plateau_ends_a_block_as_converged():
    # tol = 1: every check counts as stalled, so the block ends at the second check
    result, _ = _run(LossSpec("identity"), Budget(max_steps=1000),
                     Schedule(check_interval=10, tol=1.0, patience=2))
    assert result.iterations == 30
    assert result.stopped_because == "converged"
    assert result.block_stops == ["plateau"]
    assert result.stopped_because in STOP_REASONS


def test_plateau_rule_is_the_posts():
    p = _Plateau(interval=10, tol=1e-3, patience=2)
    stops = [p.add(1.0) for _ in range(40)]
    assert stops.index(True) == 29  # checks at steps 20 and 30 (0-based 19 and 29)
    p = _Plateau(interval=10, tol=1e-3, patience=2)
    assert not any(p.add(0.9 ** t) for t in range(200))  # 65 % better per interval


def test_lbfgs_fits_the_exponential_kernel():
    result, _ = _run(LossSpec("identity", transpose=False), Budget(max_steps=150),
                     Schedule(optimizer="lbfgs"))
    assert result.rel_error < 1e-3


def test_nan_in_the_operator_diverges_at_the_first_step():
    A = _exponential().dense()
    A[3, 5] = np.nan
    op = Operator("broken", A, symmetric=False, spd=None)
    with pytest.raises(Diverged) as info:
        _run(LossSpec("identity"), Budget(max_steps=50), op=op)
    assert info.value.step == 1
    assert info.value.history and not math.isfinite(info.value.history[-1]["loss"])


def test_absurd_learning_rate_diverges():
    net = GFMMProduct(M, P, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    op = _exponential()
    with pytest.raises(Diverged) as info:
        train(net, Target(op, N, torch.float32, "cpu", dense=True), LossSpec("identity"),
              Schedule(lr=1e30), Budget(max_steps=100), seed=0)
    assert 1 < info.value.step <= 100


def test_same_seed_same_training():
    a, _ = _run(LossSpec("probes", probes=8), Budget(max_steps=30))
    b, _ = _run(LossSpec("probes", probes=8), Budget(max_steps=30))
    assert a.final_loss == b.final_loss
    assert [r["loss"] for r in a.history] == [r["loss"] for r in b.history]


def test_dense_masked_model_trains_in_the_same_loop():
    op = _laplacian()
    net = MaskedDenseLUNet(N, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    result = train(net, _target(op), LossSpec("identity", transpose=False), Schedule(),
                   Budget(max_steps=200), seed=0)
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_dense_masked_model_products():
    net = MaskedDenseLUNet(9, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        L, U = net.factors()
        X = torch.randn(9, 2, dtype=torch.float64)
        torch.testing.assert_close(net(X), L @ U @ X)
        torch.testing.assert_close(net(X, transpose=True), (L @ U).T @ X)
        torch.testing.assert_close(net.full_product(), L @ U)
    assert torch.equal(torch.diagonal(L), torch.ones(9, dtype=torch.float64))


def test_lm_fits_the_exponential_kernel():
    """Levenberg–Marquardt (matrix-free CG on JᵀJ) reaches a small error in a few steps."""
    result, _ = _run(LossSpec("identity", transpose=False), Budget(max_steps=30),
                     Schedule(optimizer="lm"), net=_net(diag="triangular"))
    assert result.rel_error < 1e-3
    assert result.history[-1]["loss"] < 1e-4 * result.history[0]["loss"]


def test_lm_keeps_frozen_edges_fixed():
    tr = _trainer(LossSpec("identity", transpose=True, blockwise=True),
                  schedule=Schedule(optimizer="lm"))
    tr.start_block(0)
    for _ in range(3):
        tr.step()
    tr.freeze_through(0)
    before = _dense_residual(tr.model, _exponential())
    tr.start_block(1)
    for _ in range(3):
        tr.step()
    after = _dense_residual(tr.model, _exponential())
    np.testing.assert_array_equal(after[:P, :], before[:P, :])
    np.testing.assert_array_equal(after[:, :P], before[:, :P])


# --------------------------------------------------------------------------------------------
# The watch: conditioning, held-out residual, the kept checkpoint
# --------------------------------------------------------------------------------------------
def test_watch_rows_carry_the_conditioning():
    result, net, w = _run(LossSpec("identity", transpose=False), Budget(max_steps=40),
                          Schedule(optimizer="lbfgs"), watch=True)
    rows = [r for r in result.history if "heldout_residual" in r]
    assert [r["step"] for r in rows] == [0, 20, 40]  # the start, every 20 steps
    L, U = (f.arrays().dense() for f in (net.L, net.U))
    last = w.measure(net)
    # cond_est is a Hager–Higham lower bound of ‖A‖₁‖(LU)⁻¹‖₁ within a factor 3
    A = _exponential().dense()
    exact = np.abs(A).sum(0).max() * np.abs(np.linalg.inv(L @ U)).sum(0).max()
    assert exact / 3 <= last["cond_est"] <= exact * (1 + 1e-9)
    growth = (np.abs(L) @ np.abs(U)).sum(1).max() / np.abs(A).sum(1).max()
    assert last["growth"] == pytest.approx(growth, rel=1e-12)
    assert {"cond_est", "growth", "inv_norm1_L", "inv_norm1_U"} <= result.watch.keys()


@pytest.mark.parametrize("keep", ["best", "last"])
def test_kept_checkpoint_is_the_best_held_out_residual(keep):
    """keep=best restores the weights of the check with the smallest held-out residual (not
    the smallest loss); keep=last the weights training ended with. Adam at a large learning
    rate from a good start makes the two differ."""
    net = _net(diag="triangular")
    _run(LossSpec("identity", transpose=False), Budget(max_steps=60),
         Schedule(optimizer="lbfgs"), net=net)
    result, net, w = _run(LossSpec("identity", transpose=False), Budget(max_steps=200),
                          Schedule(lr=0.05, betas=(0.999, 0.999), check_interval=0),
                          net=net, watch=True, keep=keep)
    rows = [r for r in result.history if "heldout_residual" in r]
    best = min(rows, key=lambda r: r["heldout_residual"])
    now = w.measure(net)["heldout_residual"]
    if keep == "best":
        assert now == best["heldout_residual"]
        assert result.watch["kept_step"] == best["step"]
    else:
        assert now == rows[-1]["heldout_residual"]
        assert result.watch["kept_step"] == result.iterations


def test_watch_stops_when_the_residual_only_gets_worse():
    net = _net(diag="triangular")
    _run(LossSpec("identity", transpose=False), Budget(max_steps=60),
         Schedule(optimizer="lbfgs"), net=net)
    result, _, w = _run(LossSpec("identity", transpose=False), Budget(max_steps=2000),
                        Schedule(lr=0.5, check_interval=0), net=net, watch=True, patience=3)
    rows = [r["heldout_residual"] for r in result.history if "heldout_residual" in r]
    if result.stopped_because == "residual_worse":
        assert all(r > 2 * min(rows) for r in rows[-3:])
    else:  # the run never got worse three checks in a row: it went to the end
        assert result.iterations == 2000


def test_watch_counts_a_factor_with_a_singular_block_as_infinite_whichever_solve_breaks():
    """A trained block that LAPACK finds singular ends no run: every figure of that check
    is infinite, whether the residual's solve or an estimate's transposed solve breaks."""
    from lubench_learned.training import Watch

    from lubench.api import FactorizationError

    net = _net(diag="triangular")
    w = Watch(_target(_exponential()), seed=0)
    assert math.isfinite(w.measure(net)["heldout_residual"])
    L, U = net.float64_factors()
    calls = {"n": 0}

    def breaks_on_second_solve(B, transpose=False):
        calls["n"] += 1
        if calls["n"] >= 2:
            raise FactorizationError("diagonal block 3 is singular")
        return L.__class__.solve(L, B, transpose)

    L.solve = breaks_on_second_solve      # the residual's solve works, the estimate's breaks

    class Model:
        def float64_factors(self):
            return L, U

    m = w.measure(Model())
    assert calls["n"] >= 2
    assert m["heldout_residual"] == m["inv_norm1_L"] == m["cond_est"] == math.inf
