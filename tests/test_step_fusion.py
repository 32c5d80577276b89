"""The fused GFMM sweep (a hand-written backward, preallocated level buffers) against the
autograd one it replaces: the same values and gradients to round-off, for both triangles, the
transposed graph and every depth."""

from __future__ import annotations

import pytest
import torch
from _autograd_compare import assert_same_values_and_grads
from lubench_learned.gfmm import GFMMFactor, GFMMProduct
from lubench_learned.gfmm.sweeps import _sweep, _sweep_fused


def _grads(factor: GFMMFactor, X: torch.Tensor, W: torch.Tensor, transpose: bool,
           fused: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    factor.fused = fused
    factor.zero_grad(set_to_none=True)
    x = X.clone().requires_grad_(True)
    y = factor(x, transpose=transpose)
    (y * W).sum().backward()
    return y.detach(), [x.grad, *[p.grad for p in factor.parameters()]]


@pytest.mark.parametrize("M", [1, 2, 4, 16])
@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("diag", ["full", "triangular"])
def test_fused_sweep_equals_autograd(M, lower, transpose, diag):
    P, c = 3, 5
    g = torch.Generator().manual_seed(M)
    factor = GFMMFactor(M, P, lower, diag=diag, init_scale=0.5, dtype=torch.float64,
                        generator=g)
    X = torch.randn(M * P, c, dtype=torch.float64, generator=g)
    W = torch.randn(M * P, c, dtype=torch.float64, generator=g)
    y0, g0 = _grads(factor, X, W, transpose, fused=False)
    y1, g1 = _grads(factor, X, W, transpose, fused=True)
    assert_same_values_and_grads(y1, g1, y0, g0)


def test_fused_sweep_gradcheck():
    """The hand-written backward against finite differences (M = 8, float64)."""
    M, P, c = 8, 2, 3
    g = torch.Generator().manual_seed(1)
    factor = GFMMFactor(M, P, True, init_scale=0.5, dtype=torch.float64, generator=g)
    enc = [e.detach().clone().requires_grad_(True) for e in factor.enc]
    dec = [d.detach().clone().requires_grad_(True) for d in factor.dec]
    br = [b.detach().clone().requires_grad_(True) for b in factor.bridge]
    diag = factor.diag.detach().clone().requires_grad_(True)
    off = factor.off.detach().clone().requires_grad_(True)
    x = torch.randn(M, P, c, dtype=torch.float64, generator=g, requires_grad=True)
    for lower in (True, False):
        def f(x, diag, off, *ws, lower=lower):
            K = len(enc)
            return _sweep_fused(x, list(ws[:K]), list(ws[K:2 * K]), diag, off,
                                list(ws[2 * K:]), lower)
        assert torch.autograd.gradcheck(f, (x, diag, off, *enc, *dec, *br))
        ref = _sweep(x, enc, dec, diag, off, br, lower)
        torch.testing.assert_close(f(x, diag, off, *enc, *dec, *br), ref)


def test_product_is_unchanged_by_fusion():
    """L·U and its transpose, fused and not, on the identity (the full-batch loss's input)."""
    net = GFMMProduct(8, 4, init_scale=0.3, dtype=torch.float64,
                      generator=torch.Generator().manual_seed(3))
    out = []
    for fused in (False, True):
        net.L.fused = net.U.fused = fused
        with torch.no_grad():
            eye = torch.eye(net.n, dtype=torch.float64)
            out.append((net(eye), net(eye, transpose=True)))
    torch.testing.assert_close(out[1][0], out[0][0], rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(out[1][1], out[0][1], rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(out[1][1], out[1][0].T, rtol=1e-13, atol=1e-13)
