"""The factor applied to the identity without multiplying I's zero blocks
(``GFMMFactor.as_dense``, ``_IdentitySweep``) against the graph on I through autograd: the
same matrix and the same gradients to round-off, for both triangles, both diagonal
parametrizations and every depth; and the full-batch loss of a product."""

from __future__ import annotations

import pytest
import torch
from _autograd_compare import assert_same_values_and_grads
from lubench_learned.gfmm import GFMMFactor, GFMMProduct
from lubench_learned.gfmm.identity_sweep import _IdentitySweep


def _dense_and_grads(factor: GFMMFactor, W: torch.Tensor, fused: bool
                     ) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    factor.fused = fused
    factor.zero_grad(set_to_none=True)
    Y = factor.as_dense()
    (Y * W).sum().backward()
    return Y.detach(), [p.grad for p in factor.parameters()]


@pytest.mark.parametrize("M", [1, 2, 4, 8, 32])
@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("diag", ["full", "triangular"])
def test_identity_sweep_equals_autograd_on_eye(M, lower, diag):
    P = 3
    g = torch.Generator().manual_seed(M)
    factor = GFMMFactor(M, P, lower, diag=diag, init_scale=0.5, dtype=torch.float64,
                        generator=g)
    W = torch.randn(M * P, M * P, dtype=torch.float64, generator=g)
    y0, g0 = _dense_and_grads(factor, W, fused=False)
    y1, g1 = _dense_and_grads(factor, W, fused=True)
    assert_same_values_and_grads(y1, g1, y0, g0)


@pytest.mark.parametrize("lower", [True, False])
def test_identity_sweep_gradcheck(lower):
    """The hand-written backward against finite differences (M = 8, float64)."""
    M, P = 8, 2
    g = torch.Generator().manual_seed(2)
    factor = GFMMFactor(M, P, lower, init_scale=0.5, dtype=torch.float64, generator=g)
    ws = [t.detach().clone().requires_grad_(True)
          for t in [factor.diag, factor.off, *factor.enc, *factor.dec, *factor.bridge]]

    def f(diag, off, *rest):
        return _IdentitySweep.apply(lower, factor.K, diag, off, *rest)

    assert torch.autograd.gradcheck(f, tuple(ws))


def test_full_product_loss_gradients_unchanged():
    """The full-batch loss ‖LU − A‖²_F: its value and every gradient, through
    ``full_product`` fused (U on I without I's zeros) and through autograd on I."""
    net = GFMMProduct(16, 4, init_scale=0.3, dtype=torch.float64,
                      generator=torch.Generator().manual_seed(5))
    A = torch.randn(net.n, net.n, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(6))
    out = []
    for fused in (False, True):
        net.L.fused = net.U.fused = fused
        net.zero_grad(set_to_none=True)
        loss = ((net.full_product() - A) ** 2).sum()
        loss.backward()
        out.append((loss.detach(), [p.grad for p in net.parameters()]))
    torch.testing.assert_close(out[1][0], out[0][0], rtol=1e-13, atol=0)
    for a, b in zip(out[1][1], out[0][1]):
        if b is None:  # the 4·log₂M edges that never reach the output
            assert a is None or not a.any()
            continue
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
