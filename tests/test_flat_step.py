"""The flat parameter buffer (``lubench_learned.flat``) and the autograd-free full-batch
identity step (``GFMMProduct.identity_loss_and_grad``): parameters stay the same modules'
parameters (names, state dict, autograd), one Adam kernel steps them as plain Adam would,
and the step's loss and gradients equal autograd's through ``full_product`` and
``mse_loss`` to round-off — also after the weights moved, after a move to another dtype,
and for every diagonal parametrization and depth."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from lubench_learned.flat import FlatAdam, FlatParameters
from lubench_learned.gfmm import GFMMProduct, step_plan
from lubench_learned.training import LossSpec, Schedule, Target, Trainer

from lubench.api import Operator
from lubench.execution.devices import cuda_device_count

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    cuda_device_count() == 0, reason="no CUDA device here"))]


def _net(M: int, P: int = 3, diag: str = "full", n_valid: int | None = None,
         dtype: torch.dtype = torch.float64, seed: int = 0) -> GFMMProduct:
    n = M * P
    sign = torch.where(torch.arange(n) % 3 == 0, -1.0, 1.0)
    return GFMMProduct(M, P, diag=diag, init_scale=0.4, n_valid=n_valid, dtype=dtype,
                       pivot_sign=sign, pivot_floor=0.05 if diag == "triangular" else 0.0,
                       generator=torch.Generator().manual_seed(seed))


def _autograd_loss_and_grads(net: GFMMProduct, A: torch.Tensor, weight: float
                             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """weight·‖LU − A‖²_F and its gradients through autograd (the trainer's loss path)."""
    net.zero_grad(set_to_none=True)
    loss = weight * torch.nn.functional.mse_loss(net.full_product(), A, reduction="sum")
    loss.backward()
    grads = {k: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
             for k, p in net.named_parameters()}
    return loss.detach(), grads


def _assert_matches_autograd(net: GFMMProduct, A: torch.Tensor, weight: float) -> None:
    loss, ref = _autograd_loss_and_grads(net, A, weight)
    net.flat_parameters().grad.fill_(3.0)  # stale values: the step must overwrite them
    dead = {f"{f}.{role}.{net.L.K - 1}" for f in "LU" for role in ("enc", "dec")}
    sq = net.identity_loss_and_grad(A, weight)
    torch.testing.assert_close(weight * sq, loss, rtol=1e-12, atol=0)
    for k, p in net.named_parameters():
        if k in dead:  # never reach LU: not written (autograd has none either)
            assert not ref[k].any()
            continue
        torch.testing.assert_close(p.grad, ref[k], rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("M", [1, 2, 4, 8, 32])
@pytest.mark.parametrize("diag", ["full", "triangular"])
@pytest.mark.parametrize("padded", [False, True])
def test_identity_step_equals_autograd(M, diag, padded):
    P = 3
    net = _net(M, P, diag, n_valid=M * P - 2 if padded and M * P > 2 else None)
    A = torch.randn(M * P, M * P, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(M))
    _assert_matches_autograd(net, A, 2.0)


@pytest.mark.parametrize("diag", ["full", "triangular"])
@pytest.mark.parametrize("M, P, tile, tiles", [(8, 4, 8, 4), (16, 3, 16, 4), (4, 4, 5, 4)])
def test_identity_step_in_column_tiles_equals_autograd(monkeypatch, diag, M, P, tile, tiles):
    """L's passes in column tiles (n halved while wider than ``TILE_COLUMNS``; n = 2048
    takes 4 of 512): the same loss and gradients, the weight gradients summed over tiles."""
    monkeypatch.setattr(step_plan, "TILE_COLUMNS", tile)
    net = _net(M, P, diag)
    n = M * P
    A = torch.randn(n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    _assert_matches_autograd(net, A, 2.0)
    assert len(net._plan.parts) == tiles


def test_identity_step_follows_the_weights_and_a_new_target():
    """The plan is recorded once: it must see in-place updates of the weights (what an
    optimizer does), a new target, a new weight, and a move to another dtype."""
    net = _net(8, 4, "triangular")
    A = torch.randn(32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    _assert_matches_autograd(net, A, 1.0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    _assert_matches_autograd(net, A, 1.0)
    _assert_matches_autograd(net, 2.0 * A, 2.0)
    net.to(torch.float32)
    A32 = A.to(torch.float32)
    loss, ref = _autograd_loss_and_grads(net, A32, 1.0)
    sq = net.identity_loss_and_grad(A32, 1.0)
    torch.testing.assert_close(sq, loss, rtol=1e-5, atol=0)
    binding = net.flat_parameters()
    assert binding.flat.dtype == torch.float32
    for p, v in zip(binding.params, binding.views):
        assert p.data_ptr() == v.data_ptr()


def test_identity_step_rejects_a_target_of_the_wrong_shape():
    net = _net(4, 2)
    with pytest.raises(ValueError, match="dense contiguous 8×8"):
        net.identity_loss_and_grad(torch.zeros(6, 6, dtype=torch.float64))


def test_parameters_are_views_of_one_flat_tensor():
    """Names, shapes, values and the state dict as before; storage and gradients shared."""
    plain = _net(8, 3)
    net = _net(8, 3)
    binding = net.flat_parameters()
    assert [k for k, _ in net.named_parameters()] == [k for k, _ in plain.named_parameters()]
    assert binding.numel == net.n_trainable() == sum(p.numel() for p in net.parameters())
    base = binding.flat.data_ptr()
    end = base + binding.flat.numel() * binding.flat.element_size()
    for (k, p), (_, q) in zip(net.named_parameters(), plain.named_parameters()):
        assert torch.equal(p, q), k
        assert base <= p.data_ptr() < end and p.grad is not None
    sd = net.state_dict()
    assert list(sd) == list(plain.state_dict())
    # load_state_dict copies into the views: the binding survives, values restored
    saved = {k: v.clone() for k, v in sd.items()}
    with torch.no_grad():
        binding.flat.mul_(0.5)
    net.load_state_dict(saved)
    assert net.flat_parameters() is binding and binding.holds(list(net.parameters()))
    for k, p in net.named_parameters():
        assert torch.equal(p, saved[k])


def test_autograd_accumulates_into_the_flat_gradient():
    net = _net(4, 3)
    binding = net.flat_parameters()
    binding.zero_grad()
    X = torch.randn(net.n, 5, dtype=torch.float64)
    net(X).square().sum().backward()
    grads = torch.cat([p.grad.reshape(-1) for p in net.parameters()])
    assert torch.equal(binding.grad, grads) and grads.any()
    # a gradient set to None (the edge freezer does that) is bound again, as zeros
    net.L.diag.grad = None
    binding.ensure()
    assert net.L.diag.grad is not None and not net.L.diag.grad.any()
    assert net.L.diag.grad.data_ptr() == binding.grad_views[
        binding.params.index(net.L.diag)].data_ptr()


def test_a_binding_holds_only_its_whole_parameter_list():
    net = _net(4, 3)
    params = list(net.parameters())
    binding = net.flat_parameters()
    assert binding.holds(params)
    assert binding.holds(list(reversed(params)))
    assert not binding.holds(params[1:])
    assert not binding.holds(list(_net(4, 3).parameters()) + params)
    assert not binding.holds([torch.nn.Parameter(torch.zeros(2))])


def test_flat_parameters_need_one_device_and_dtype():
    with pytest.raises(ValueError, match="device or dtype"):
        FlatParameters([torch.nn.Parameter(torch.zeros(2)),
                        torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))])


@pytest.mark.parametrize("device", DEVICES)
def test_flat_adam_is_adam(device):
    """FlatAdam over the flat tensor against torch's fused Adam over the separate
    parameters, with the same gradients, for several steps and an lr change."""
    a, b = _net(4, 3, dtype=torch.float32).to(device), _net(4, 3, dtype=torch.float32).to(device)
    ref = [torch.nn.Parameter(p.detach().clone()) for p in b.parameters()]
    opt_a = FlatAdam(a.flat_parameters(), lr=1e-2, betas=(0.999, 0.999))
    try:
        opt_b = torch.optim.Adam(ref, lr=1e-2, betas=(0.999, 0.999), fused=True)
    except (RuntimeError, TypeError, ValueError):
        opt_b = torch.optim.Adam(ref, lr=1e-2, betas=(0.999, 0.999), foreach=True)
    g = torch.Generator().manual_seed(3)
    for step in range(6):
        if step == 3:
            for opt in (opt_a, opt_b):
                opt.param_groups[0]["lr"] = 1e-3
        opt_a.zero_grad()
        for p, q in zip(a.parameters(), ref):
            grad = torch.randn(p.shape, generator=g).to(device)
            p.grad.copy_(grad)
            q.grad = grad.clone()
        opt_a.step()
        opt_b.step()
    for p, q in zip(a.parameters(), ref):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-6, atol=1e-7)


def test_flat_adam_refuses_a_binding_made_again():
    net = _net(4, 3, dtype=torch.float32)
    opt = FlatAdam(net.flat_parameters(), lr=1e-2)
    net.to(torch.float64)
    net.flat_parameters()
    with pytest.raises(RuntimeError, match="make the optimizer again"):
        opt.step()


def _laplacian(n: int) -> Operator:
    A = sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1],
                 format="csr")
    return Operator("laplacian_1d", A, symmetric=True, spd=True)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("transpose", [False, True])
def test_trainer_fused_step_follows_the_autograd_step(device, transpose):
    """The trainer's full-batch Adam step through ``identity_loss_and_grad`` and FlatAdam,
    and through autograd (``loss`` + ``backward``) and per-parameter Adam: the same
    losses, errors and weights, step by step."""
    n, P = 32, 4
    runs = []
    for fused in (True, False):
        net = GFMMProduct(n // P, P, dtype=torch.float64,
                          generator=torch.Generator().manual_seed(0)).to(device)
        target = Target(_laplacian(n), n, torch.float64, device, dense=True)
        tr = Trainer(net, target, LossSpec("identity", transpose=transpose), Schedule(),
                     seed=0, edge_groups=net.edge_views(), block_size=P)
        assert tr.fused_identity
        tr.fused_identity = fused
        tr.start_block(None)
        # one Adam kernel over the flat tensor; the autograd step keeps per-parameter Adam
        assert isinstance(tr.opt, FlatAdam) == fused
        curve = [tuple(float(v) for v in tr.step()) for _ in range(20)]
        runs.append((curve, [p.detach().cpu().clone() for p in net.parameters()]))
    (c1, w1), (c0, w0) = runs
    np.testing.assert_allclose(c1, c0, rtol=1e-9)
    assert c1[-1][0] < c1[0][0]
    for a, b in zip(w1, w0):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_gfmm_lu_trains_full_batch_adam_end_to_end():
    """gfmm_lu with the full-batch identity loss and Adam (the autograd-free step and
    FlatAdam; triangular diagonal blocks, the default) through ``factorize``, with the
    watch keeping the best checkpoint: the fit improves on the start and the kept factors
    solve as their dense product does."""
    from lubench_learned import GfmmLU

    from lubench.api import Budget, RunContext

    op = _laplacian(64)
    fact = GfmmLU(P=8, blockwise=False, optimizer="adam", loss="identity", lr=1e-2,
                  dtype="float64", init="identity", keep="best", eval_every=20).factorize(
        op, RunContext(device="cpu", seed=3, budget=Budget(max_steps=200)))
    curve = [r["loss"] for r in fact.history if "loss" in r]
    assert curve[-1] < 0.5 * curve[0]
    assert fact.info["kept"] == "best" and 0 < fact.info["iterations"] <= 200
    b = np.random.default_rng(0).standard_normal(64)
    np.testing.assert_allclose(fact.solve(b), np.linalg.solve(fact.apply(np.eye(64)), b),
                               rtol=1e-8, atol=1e-8)
