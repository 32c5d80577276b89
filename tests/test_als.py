"""Alternating least squares for gfmm_lu: exact sub-solves, invariants, the method option."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from lubench_learned import GfmmLU
from lubench_learned.gfmm import dense_factor
from lubench_learned.optim.als import AlternatingLeastSquares
from lubench_learned.optim.lm import LevenbergMarquardt

from lubench.api import Budget, InvalidParameter, Operator, RunContext


def _pentadiagonal(n: int) -> Operator:
    """A banded nonsymmetric operator whose LU fits the GFMM near field (bandwidth 2 ≤ P)."""
    A = sp.diags([-np.ones(n - 2), -1.5 * np.ones(n - 1), 5 * np.ones(n),
                  -0.5 * np.ones(n - 1), -np.ones(n - 2)], [-2, -1, 0, 1, 2], format="csr")
    return Operator("penta", A, symmetric=False, spd=False)


def _exponential(n: int, rho: float = 0.5) -> Operator:
    i = np.arange(n)
    return Operator("exponential_kernel", rho ** np.abs(i[:, None] - i[None, :]),
                    symmetric=True, spd=True)


def _model(op: Operator, P: int = 4, projected: bool = False, **kw):
    method = GfmmLU(P=P, optimizer="als", **kw)
    net = method.build_model(op, method._validated(), seed=0)
    if projected:
        method.project(net, op)
    for m in net.modules():
        if hasattr(m, "fused"):
            m.fused = False
    params = list(net.parameters())
    als = AlternatingLeastSquares(net, op.dense(), params,
                                  lambda mask: LevenbergMarquardt(params, mask=mask))
    return net, als


def _error(net, A: np.ndarray) -> float:
    with torch.no_grad():
        return float(np.linalg.norm(net.full_product().numpy() - A) / np.linalg.norm(A))


@pytest.mark.parametrize("side", ["L", "U"])
def test_one_side_is_solved_exactly_when_the_other_is_exact(side):
    """With U (resp. L) at the exact factor, one least-squares pass over L's rows (U's
    columns) recovers A = LU to round-off, from a perturbed start of the solved side."""
    op = _pentadiagonal(32)
    A = op.dense()
    net, als = _model(op, P=4, projected=True)
    assert _error(net, A) < 1e-12
    F = net.L if side == "L" else net.U
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in (F.diag, F.off, F.dec[0], F.enc[0]):
            p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        assert _error(net, A) > 1e-3
        (als._solve_L if side == "L" else als._solve_U)()
    assert _error(net, A) < 1e-10


def test_steps_never_raise_the_loss_and_keep_the_diagonals():
    """From the identity start: each ALS step's sub-solves are exact minimisations (and LM and
    the extrapolation reject what raises it), so the loss is non-increasing; L's diagonal
    stays exactly 1 and |U_ii| ≥ δ."""
    op = _exponential(64)
    A = op.dense()
    net, als = _model(op, P=8, pivot_floor=0.2)

    def residual():
        return (net.full_product() - torch.as_tensor(A)).reshape(-1), None

    errors = [_error(net, A)]
    for _ in range(4):
        als.step(residual)
        errors.append(_error(net, A))
    assert all(b <= a * (1 + 1e-12) for a, b in zip(errors, errors[1:]))
    assert errors[-1] < errors[0]
    Ld, Ud = dense_factor(net.L), dense_factor(net.U)
    assert np.all(np.diag(Ld) == 1.0)
    assert np.all(np.abs(np.diag(Ud)) >= 0.2 * np.abs(A).max())


def test_method_trains_with_als_and_reports_it():
    op = _exponential(64)
    ctx = RunContext(device="cpu", seed=3, budget=Budget(max_steps=3))
    fact = GfmmLU(P=8, optimizer="als").factorize(op, ctx)
    assert fact.info["config"]["optimizer"] == "als"
    assert fact.info["iterations"] == 3
    b = op.dense() @ np.ones(64)
    x = fact.solve(b)
    assert np.all(np.isfinite(x))


@pytest.mark.parametrize("bad", [{"diag": "full"}, {"blockwise": True}, {"loss": "probes"}])
def test_als_refuses_what_it_cannot_solve(bad):
    with pytest.raises(InvalidParameter, match="als"):
        GfmmLU.check_params({"P": 4, "optimizer": "als", **bad})
