"""The inverse-side loss term: differentiable block substitution and its use in training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from lubench_learned import GfmmLU
from lubench_learned.gfmm import GFMMProduct, dense_factor, solve_factor
from lubench_learned.training import LossSpec, Schedule, Target, Trainer

from lubench.api import Budget, InvalidParameter, Operator, RunContext


def _laplacian(n: int) -> Operator:
    A = sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1], format="csr")
    return Operator("laplacian_1d", A, symmetric=True, spd=True)


def _exponential(n: int, rho: float = 0.5) -> Operator:
    i = np.arange(n)
    return Operator("exponential_kernel", rho ** np.abs(i[:, None] - i[None, :]),
                    symmetric=True, spd=True)


def _random_product(M: int, P: int, diag: str, seed: int = 0, n_valid: int | None = None,
                    dtype: torch.dtype = torch.float64) -> GFMMProduct:
    """A product far from its start: every weight perturbed, pivots of both signs."""
    g = torch.Generator().manual_seed(seed)
    sign = torch.where(torch.rand(M * P, generator=g) < 0.3, -1.0, 1.0).double()
    net = GFMMProduct(M, P, diag=diag, init_scale=0.3, n_valid=n_valid, pivot_sign=sign,
                      pivot_floor=0.05, dtype=dtype, generator=g)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=torch.float64).to(dtype))
        if diag == "full":  # keep the free blocks comfortably invertible
            for f in (net.L, net.U):
                f.diag.add_(torch.eye(P, dtype=dtype))
    return net


SHAPES = [(1, 4), (2, 3), (2, 5), (4, 3), (8, 2), (16, 3)]


@pytest.mark.parametrize("M,P", SHAPES)
@pytest.mark.parametrize("diag", ["triangular", "full"])
def test_substitution_equals_the_float64_solve(M, P, diag):
    net = _random_product(M, P, diag, seed=M * 10 + P)
    B = torch.randn(M * P, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for f in (net.L, net.U):
        X = solve_factor(f, B).detach().numpy()
        dense = dense_factor(f)
        assert not np.allclose(dense, np.eye(M * P))  # not the identity start
        ref = f.arrays().solve(B.numpy())
        scale = np.abs(ref).max()
        assert np.abs(X - ref).max() <= 1e-12 * scale
        assert np.abs(X - np.linalg.solve(dense, B.numpy())).max() <= 1e-12 * scale
    # the product's solve is U⁻¹L⁻¹
    X = net.solve(B).detach().numpy()
    LU = dense_factor(net.L) @ dense_factor(net.U)
    assert np.abs(LU @ X - B.numpy()).max() <= 1e-11 * np.abs(B.numpy()).max() * \
        np.linalg.cond(LU)


def test_substitution_with_padding_and_float32():
    """Padding (n < M·P, a split leaf: masked full blocks) and float32, as the trainer
    builds them."""
    M, P, n = 4, 5, 17
    for diag in ("full", "triangular"):
        net = _random_product(M, P, diag, seed=3, n_valid=n)
        B = torch.randn(M * P, 2, dtype=torch.float64)
        ref = np.linalg.solve(dense_factor(net.L) @ dense_factor(net.U), B.numpy())
        assert np.allclose(net.solve(B).detach().numpy(), ref, rtol=0, atol=1e-12 *
                           np.abs(ref).max())
        net32 = _random_product(M, P, diag, seed=3, n_valid=n, dtype=torch.float32)
        X32 = net32.solve(B.float())
        assert X32.dtype == torch.float32
        ref32 = np.linalg.solve(dense_factor(net32.L) @ dense_factor(net32.U), B.numpy())
        assert np.allclose(X32.detach().numpy(), ref32, atol=1e-4 * np.abs(ref32).max())


class _InverseTerm(torch.nn.Module):
    """The inverse-side term (1/k)‖U⁻¹L⁻¹(AZ) − Z‖²_F of a product, as a module's forward
    (so that torch.func.functional_call can substitute the parameters)."""

    def __init__(self, net: GFMMProduct, A: torch.Tensor, Z: torch.Tensor):
        super().__init__()
        self.net, self.A, self.Z = net, A, Z

    def forward(self) -> torch.Tensor:
        R = self.net.solve(self.A @ self.Z) - self.Z
        return (R * R).sum() / self.Z.shape[1]


@pytest.mark.parametrize("diag", ["triangular", "full"])
def test_gradcheck_of_the_inverse_term(diag):
    M, P = 4, 2
    net = _random_product(M, P, diag, seed=5)
    g = torch.Generator().manual_seed(2)
    A = torch.randn(M * P, M * P, dtype=torch.float64, generator=g) + 3 * torch.eye(M * P)
    Z = torch.randn(M * P, 3, dtype=torch.float64, generator=g)
    term = _InverseTerm(net, A, Z)
    names = ["net.L.off", "net.L.diag", "net.U.diag", "net.U.enc.0", "net.L.dec.0",
             "net.U.bridge.0"]
    params = dict(term.named_parameters())
    inputs = tuple(params[k].detach().clone().requires_grad_(True) for k in names)

    def f(*ts: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(term, dict(zip(names, ts)), ())

    assert float(f(*inputs).detach()) > 0
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)
    # and twice (Levenberg–Marquardt's Jv by double backward)
    assert torch.autograd.gradgradcheck(f, inputs[:3], eps=1e-6, atol=1e-5, rtol=1e-4)


def _ctx(max_steps: int) -> RunContext:
    return RunContext(device="cpu", seed=3, budget=Budget(max_steps=max_steps))


@pytest.mark.parametrize("optimizer", ["adam", "lm"])
def test_weight_zero_is_bit_identical(optimizer):
    op = _exponential(32)
    runs = [GfmmLU(P=8, optimizer=optimizer, **kw).factorize(op, _ctx(6))
            for kw in ({}, {"inverse_weight": 0.0})]
    a, b = runs
    assert np.array_equal(a.L.dense(), b.L.dense())
    assert np.array_equal(a.U.dense(), b.U.dense())
    assert [r["loss"] for r in a.history] == [r["loss"] for r in b.history]
    assert b.info["config"]["inverse_weight"] == 0.0


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf, "big"])
def test_bad_inverse_weight_is_named(value):
    with pytest.raises(InvalidParameter, match="inverse_weight"):
        GfmmLU(P=8, inverse_weight=value)._validated()


@pytest.mark.parametrize("optimizer", ["newton", "als"])
def test_newton_and_als_refuse_the_inverse_term(optimizer):
    with pytest.raises(InvalidParameter, match="inverse_weight") as exc:
        GfmmLU(P=8, optimizer=optimizer, inverse_weight=0.1)._validated()
    assert "\n" not in str(exc.value)
    # fine without it
    assert GfmmLU(P=8, optimizer=optimizer)._validated()["optimizer"] == optimizer


def test_auto_is_lm_with_the_inverse_term():
    """``optimizer: auto`` resolves at the padded size: dense Newton at small N, LM once the
    inverse-side term is on (Newton and the sketch fit LU = A only)."""
    assert GfmmLU(P=8).resolved(64)["optimizer"] == "newton"
    assert GfmmLU(P=8, inverse_weight=0.5).resolved(64)["optimizer"] == "lm"
    assert GfmmLU(P=8, inverse_weight=0.0).resolved(64)["optimizer"] == "newton"


def _trainer(op: Operator, M: int, P: int, optimizer: str, w: float) -> Trainer:
    cfg = GfmmLU(P=P, M=M)._validated()
    net = GfmmLU(P=P, M=M).build_model(op, cfg, seed=0)
    target = Target(op, M * P, torch.float64, "cpu", dense=True)
    return Trainer(net, target, LossSpec("identity", probes=16, transpose=False,
                                         inverse_weight=w),
                   Schedule(optimizer=optimizer, lr=1e-3, betas=(0.9, 0.999), cg_iters=40,
                            cg_precond="kronecker"), seed=0)


def _inverse_term(tr: Trainer, W: torch.Tensor) -> float:
    with torch.no_grad():
        R = tr.model.solve(tr.target.mm(W)) - W
        return float((R * R).sum()) / W.shape[1]


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs", "lm"])
def test_every_optimizer_trains_with_the_term(optimizer):
    tr = _trainer(_laplacian(30), 4, 8, optimizer, 1.0)
    assert not tr.fused_identity
    tr.start_block(None)
    W = torch.randn(32, 4, dtype=torch.float64)
    before = _inverse_term(tr, W)
    # the loss is the fit plus the term
    inv = (W, tr.target.mm(W))
    fit = float(tr.loss(None)[0].detach())
    total = float(tr.loss(None, inv)[0].detach())
    assert total == pytest.approx(fit + before, rel=1e-12)
    r, _ = tr.residual(None, inv)
    assert float((r * r).sum().detach()) == pytest.approx(total, rel=1e-12)
    for _ in range(3):
        loss, _ = tr.step()
        assert math.isfinite(float(loss))


def test_lm_lowers_the_inverse_term_on_a_banded_operator():
    """From the identity start (L = I, U = diag(A)), LM with w > 0 lowers
    (1/k)‖U⁻¹L⁻¹AW − W‖²_F on fixed probes W."""
    op = _laplacian(64)
    tr = _trainer(op, 8, 8, "lm", 1.0)
    tr.start_block(None)
    W = torch.randn(64, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    before = _inverse_term(tr, W)
    for _ in range(8):
        tr.step()
    after = _inverse_term(tr, W)
    assert after < before
