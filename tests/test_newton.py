"""Second-order training of gfmm_lu: preconditioned CG, the Kronecker edge blocks, projected
Newton, the ``auto`` optimizer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from lubench_learned import GfmmLU
from lubench_learned.gfmm import GFMMProduct
from lubench_learned.optim.kronecker import KroneckerPreconditioner, kronecker_factors
from lubench_learned.optim.lm import LevenbergMarquardt, conjugate_gradients
from lubench_learned.optim.newton import ProjectedNewton

from lubench.api import Budget, InvalidParameter, Operator, RunContext


def _pentadiagonal(n: int) -> Operator:
    """Banded and nonsymmetric; its LU (bandwidth 2 ≤ P) fits the GFMM near field."""
    A = sp.diags([-np.ones(n - 2), -1.5 * np.ones(n - 1), 5 * np.ones(n),
                  -0.5 * np.ones(n - 1), -np.ones(n - 2)], [-2, -1, 0, 1, 2], format="csr")
    return Operator("penta", A, symmetric=False, spd=False)


def _plain(net: GFMMProduct) -> GFMMProduct:
    for m in net.modules():
        if hasattr(m, "fused"):
            m.fused = False  # plain autograd: differentiable twice
    return net


def _start(op: Operator, P: int = 4) -> GFMMProduct:
    method = GfmmLU(P=P)
    return _plain(method.build_model(op, method._validated(), seed=0))


def _newton(net, A: torch.Tensor) -> ProjectedNewton:
    """Newton with the fallback the trainer builds for the default (Kronecker-preconditioned
    Levenberg–Marquardt, GFMM products) or plain LM (dense masked factors)."""
    params = list(net.parameters())
    pre = KroneckerPreconditioner(net, params) if isinstance(net, GFMMProduct) else None
    return ProjectedNewton(net, A, LevenbergMarquardt(params, cg_iters=200, preconditioner=pre))


def _loss(net: GFMMProduct, A: torch.Tensor) -> float:
    with torch.no_grad():
        return float(((net.full_product() - A) ** 2).sum())


def test_preconditioned_cg_solves_an_spd_system_to_tolerance():
    """With any SPD preconditioner (here the inverse diagonal) CG reaches the asked relative
    residual on an SPD system, in fewer products than plain CG on a badly scaled one."""
    gen = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(40, 40, generator=gen, dtype=torch.float64))
    S = torch.diag(torch.logspace(0, 4, 40, dtype=torch.float64))
    A = S @ (Q @ torch.diag(torch.linspace(1, 3, 40, dtype=torch.float64)) @ Q.T) @ S
    g = [torch.randn(40, generator=gen, dtype=torch.float64)]
    op = lambda v: [A @ v[0]]  # noqa: E731
    diag = torch.diagonal(A)
    d, k = conjugate_gradients(op, g, lambda v: [v[0] / diag], 200, 1e-10)
    assert float(torch.linalg.norm(A @ d[0] + g[0])) <= 1e-10 * float(torch.linalg.norm(g[0]))
    _, k_plain = conjugate_gradients(op, g, None, 200, 1e-10)
    assert k < k_plain


def test_kronecker_blocks_are_the_exact_diagonal_blocks_of_jtj():
    """For each edge (one node of each parameter tensor) JᵀJ restricted to it is G·X·C."""
    net = _plain(GFMMProduct(8, 3, diag="full", init_scale=0.5, dtype=torch.float64,
                             generator=torch.Generator().manual_seed(3)))
    gen = torch.Generator().manual_seed(1)
    checked = 0
    for p, G, C in kronecker_factors(net):
        if p.shape[0] == 0:
            continue
        X = torch.zeros_like(p)
        X[0] = torch.randn(p.shape[1:], generator=gen, dtype=p.dtype)
        r = net.full_product()
        u = torch.zeros_like(r, requires_grad=True)
        (jtu,) = torch.autograd.grad(r, [p], grad_outputs=u, create_graph=True,
                                     allow_unused=True)
        if jtu is None:  # an edge that never reaches the output: G = C = 0
            assert float(G.abs().max()) == 0 == float(C.abs().max())
            continue
        (jv,) = torch.autograd.grad(jtu, u, grad_outputs=X)
        (jtjv,) = torch.autograd.grad(r, [p], grad_outputs=jv)
        torch.testing.assert_close(jtjv[0], G[0] @ X[0] @ C[0], rtol=1e-10, atol=1e-12)
        checked += 1
    assert checked >= 12


def test_kronecker_preconditioned_lm_step_lowers_the_loss():
    op = _pentadiagonal(32)
    A = torch.as_tensor(op.dense())
    net = _start(op)
    params = list(net.parameters())
    lm = LevenbergMarquardt(params, cg_iters=50,
                            preconditioner=KroneckerPreconditioner(net, params))

    def residual():
        R = net.full_product() - A
        return R.reshape(-1), None

    losses = [_loss(net, A)]
    for _ in range(5):
        lm.step(residual)
        losses.append(_loss(net, A))
    assert all(b <= a for a, b in zip(losses, losses[1:]))
    assert losses[-1] < 1e-2 * losses[0]


def test_projected_newton_converges_on_an_exactly_representable_case():
    """From the identity start, on a banded operator whose LU lies in the pattern: the loss
    never rises, ends at round-off level, L's diagonal stays 1 and U's pivots ≥ δ."""
    op = _pentadiagonal(32)
    A = torch.as_tensor(op.dense())
    net = _start(op)
    opt = _newton(net, A)
    losses = [_loss(net, A)]
    for _ in range(40):
        opt.step(lambda: ((net.full_product() - A).reshape(-1), None))
        losses.append(_loss(net, A))
    # never rises (up to the rounding of LU formed two ways, ~ε²‖A‖²)
    slack = 1e-28 * float((A * A).sum())
    assert all(b <= a + slack for a, b in zip(losses, losses[1:]))
    assert losses[-1] ** 0.5 < 1e-10 * float(torch.linalg.norm(A))
    Ld, Ud = net.L.as_dense().detach(), net.U.as_dense().detach()
    assert torch.all(torch.diagonal(Ld) == 1.0)
    assert torch.all(torch.diagonal(Ud).abs() >= float(net.U.pivot_floor))


def _exponential(n: int, rho: float = 0.9) -> Operator:
    """ρ^|i−j| (a Kac–Murdock–Szegő matrix): dense, and its L and U are full triangles
    whose off-diagonal blocks have rank 1 — beyond the leaf bridge they need the far field."""
    i = np.arange(n)
    return Operator("kms", rho ** np.abs(i[:, None] - i[None, :]).astype(float),
                    symmetric=True, spd=True)


def test_projected_newton_learns_the_far_field_from_scratch():
    """A dense kernel whose factors reach past the leaf bridge: the retracted Newton steps
    take the far field into the nested bases, from the identity start, to round-off."""
    op = _exponential(64)
    A = torch.as_tensor(op.dense())
    net = _start(op, P=8)
    far0 = float(sum(b.detach().abs().sum() for f in (net.L, net.U) for b in f.bridge))
    opt = _newton(net, A)
    for _ in range(30):
        opt.step(lambda: ((net.full_product() - A).reshape(-1), None))
    assert far0 == 0.0
    assert _loss(net, A) ** 0.5 < 1e-10 * float(torch.linalg.norm(A))
    assert float(sum(b.detach().abs().sum() for f in (net.L, net.U) for b in f.bridge)) > 0.0


def test_a_failed_newton_trial_leaves_the_weights_exactly_as_they_were(monkeypatch):
    """Every α rejected (here: a retraction that lands far off): weights and pivot signs
    are restored bit for bit, and the step falls back to Levenberg–Marquardt."""
    op = _pentadiagonal(32)
    A = torch.as_tensor(op.dense())
    net = _start(op)
    opt = _newton(net, A)
    before = [p.detach().clone() for p in net.parameters()]
    signs = net.U.pivot_sign.clone()
    retract = net.retract
    monkeypatch.setattr(net, "retract", lambda L, U: retract(L, -U))
    f0, _, accepted = opt._newton()
    assert not accepted and math.isfinite(f0)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert torch.equal(signs, net.U.pivot_sign)


def test_a_passed_deadline_cuts_the_cg_to_one_product_and_newton_to_one_trial(monkeypatch):
    """The budget's seconds reach inside a step: past ``deadline`` the LM step's CG stops
    after its first product (still a descent step), and a failing Newton trial tries no
    smaller α and takes no fallback step."""
    import time

    op = _pentadiagonal(32)
    A = torch.as_tensor(op.dense())

    def residual():
        return (net.full_product() - A).reshape(-1), None

    counts = {}
    for late in (False, True):
        net = _start(op)
        params = list(net.parameters())
        lm = LevenbergMarquardt(params, cg_iters=50)
        lm.deadline = time.perf_counter() - 1.0 if late else None
        f0 = _loss(net, A)
        lm.step(residual)
        counts[late] = lm.cg_steps
        assert _loss(net, A) < f0
    assert counts[True] == 1 < counts[False]

    net = _start(op)
    opt = _newton(net, A)
    trials = []
    retract = net.retract

    def bad(L, U):  # every α lands far off: a failed trial
        trials.append(1)
        retract(L, -U)

    monkeypatch.setattr(net, "retract", bad)
    before = [p.detach().clone() for p in net.parameters()]
    opt.deadline = time.perf_counter() - 1.0
    opt.step(residual)
    assert len(trials) == 1
    assert opt.lm.deadline == opt.deadline and opt.lm.cg_steps == 0  # no fallback step
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_reusing_the_accepted_trials_residual_changes_no_iterate():
    """A step starts from the factors and residual its accepted predecessor formed: the
    iterates are bit for bit those of forming them again."""
    op = _exponential(64)
    A = torch.as_tensor(op.dense())
    runs = []
    for reuse in (True, False):
        net = _start(op, P=8)
        opt = _newton(net, A)
        losses = []
        for _ in range(8):
            if not reuse:
                opt._here = None
            losses.append(opt.step(lambda net=net: ((net.full_product() - A).reshape(-1),
                                                    None))[0])
        runs.append((losses, [p.detach().clone() for p in net.parameters()]))
    (l1, p1), (l2, p2) = runs
    assert l1 == l2 and l1[-1] < 1e-6 * l1[0]
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))


def test_identity_start_is_exactly_the_identity_and_the_diagonal():
    """``init: identity``: L = I and U = diag(s·|A_ii|) exactly — no noise in the strict
    triangles (it grows a unit triangular factor's inverse exponentially), couplings zero."""
    op = _pentadiagonal(64)
    net = _start(op, P=8)
    with torch.no_grad():
        L, U = net.L.as_dense(), net.U.as_dense()
    assert torch.equal(L, torch.eye(64, dtype=L.dtype))
    assert torch.allclose(U, torch.diag(torch.as_tensor(np.diag(op.dense()).copy())), rtol=1e-14)


def test_projected_newton_refuses_full_diagonal_blocks():
    net = GFMMProduct(4, 4, diag="full", dtype=torch.float64)
    with pytest.raises(ValueError, match="triangular"):
        _newton(net, torch.eye(16, dtype=torch.float64))


def test_auto_is_newton_where_it_applies_else_sketch_else_lm():
    """``auto`` at a size whose dense factors fit: Newton where it applies; the probe loss
    takes the sketch optimizer, block-wise training Levenberg–Marquardt (the size rule
    itself: tests/test_sketch.py)."""
    assert GfmmLU(P=8).resolved(256)["optimizer"] == "newton"
    assert GfmmLU(P=8, loss="probes").resolved(256)["optimizer"] == "sketch"
    assert GfmmLU(P=8, blockwise=True).resolved(256)["optimizer"] == "lm"
    with pytest.raises(InvalidParameter, match="'newton' needs diag 'triangular'"):
        GfmmLU(P=8, optimizer="newton", diag="full")._validated()
    with pytest.raises(InvalidParameter, match="cg_precond"):
        GfmmLU(P=8, cg_precond="jacobi")._validated()


def test_default_method_reaches_round_off_on_a_banded_operator():
    """The default preset (auto → newton) from scratch, through the method's factorize."""
    op = _pentadiagonal(64)
    ctx = RunContext(device="cpu", seed=0, budget=Budget(max_steps=40))
    fact = GfmmLU(P=8).factorize(op, ctx)
    assert fact.info["config"]["optimizer"] == "newton"
    b = np.ones(64)
    x = fact.solve(b)
    assert np.linalg.norm(op.dense() @ x - b) < 1e-9 * np.linalg.norm(b)


@pytest.mark.parametrize("kind, preconditioned", [("identity", True), ("probes", False)])
def test_kronecker_preconditioner_only_on_the_whole_matrix_loss(kind, preconditioned):
    """Its sweeps run on N columns: the probe loss (large n) trains without it."""
    from lubench_learned.training import LossSpec, Schedule, Target, Trainer

    op = _pentadiagonal(32)
    net = _start(op)
    tr = Trainer(net, Target(op, 32, torch.float64, "cpu", dense=kind == "identity"),
                 LossSpec(kind, transpose=False),
                 Schedule(optimizer="lm", cg_precond="kronecker"))
    tr.start_block(None)
    assert (tr.opt.preconditioner is not None) == preconditioned


def test_dense_masked_default_is_newton_and_reaches_round_off_from_scratch():
    """dense_masked_lu's default (auto → newton: the retraction keeps the triangles, so
    this is dense Newton) from the identity start on a nonsymmetric banded operator."""
    from lubench_learned import DenseMaskedLU

    op = _pentadiagonal(64)
    fact = DenseMaskedLU().factorize(
        op, RunContext(device="cpu", seed=0, budget=Budget(max_steps=30)))
    assert fact.info["config"]["optimizer"] == "newton"
    b = np.ones(64)
    assert np.linalg.norm(op.dense() @ fact.solve(b) - b) < 1e-12 * np.linalg.norm(b)
    assert np.all(np.diag(fact.L) == 1.0) and np.all(np.abs(np.diag(fact.U)) > 0)


def test_dense_masked_identity_start_and_retraction():
    """The identity start is exactly L = I, U = diag(s·|A_ii|); retract inverts the
    parametrization (floored pivots: |U_ii| ≥ δ, signs taken from U)."""
    from lubench_learned.dense_masked_net import MaskedDenseLUNet

    n = 16
    d = np.linspace(-2.0, 3.0, n) + 0.1  # no zero: A's signs are those of d
    net = MaskedDenseLUNet(n, identity_diag=True, pivots="floored", pivot_floor=1e-3,
                           pivot_sign=torch.as_tensor(np.sign(d)),
                           pivot_start=torch.as_tensor(np.abs(d)), dtype=torch.float64)
    L, U = net.factors()
    assert torch.equal(L.detach(), torch.eye(n, dtype=torch.float64))
    torch.testing.assert_close(U.detach(), torch.diag(torch.as_tensor(
        np.sign(d) * np.maximum(np.abs(d), 2e-3))), rtol=1e-12, atol=0)
    gen = torch.Generator().manual_seed(0)
    L1 = torch.tril(torch.randn(n, n, generator=gen, dtype=torch.float64), -1) + torch.eye(n)
    U1 = torch.triu(torch.randn(n, n, generator=gen, dtype=torch.float64))
    U1[3, 3] = 1e-5  # at most δ: raised to 2δ (as GFMMFactor.load_arrays), sign kept
    net.retract(L1, U1)
    L2, U2 = net.factors()
    torch.testing.assert_close(L2.detach(), L1, rtol=1e-14, atol=1e-14)
    off = ~torch.eye(n, dtype=torch.bool)
    torch.testing.assert_close(U2.detach()[off], U1[off], rtol=1e-14, atol=1e-14)
    keep = torch.diagonal(U1).abs() > 1e-3
    torch.testing.assert_close(torch.diagonal(U2.detach())[keep], torch.diagonal(U1)[keep],
                               rtol=1e-12, atol=1e-14)
    assert float(U2[3, 3]) == pytest.approx(2e-3, rel=1e-9)


def test_dense_masked_auto_is_lm_on_the_probe_loss_and_newton_needs_identity():
    from lubench_learned import DenseMaskedLU

    assert DenseMaskedLU(loss="probes")._validated()["optimizer"] == "lm"
    with pytest.raises(InvalidParameter, match="newton"):
        DenseMaskedLU(loss="probes", optimizer="newton")._validated()


def test_newton_stops_training_at_round_off():
    """Once a Newton trial fails at round-off the trainer stops (converged) instead of
    spending the budget on fallback steps that only move the rounding."""
    from lubench_learned import DenseMaskedLU

    op = _exponential(48)
    fact = DenseMaskedLU().factorize(
        op, RunContext(device="cpu", seed=0, budget=Budget(max_steps=400)))
    assert fact.info["stopped_because"] == "converged"
    # before the plateau rule could have ended it (check_interval 20 × patience 2)
    cfg = fact.info["config"]
    assert fact.info["iterations"] < cfg["check_interval"] * cfg["patience"]
    assert fact.info["train_rel_error"] <= 512 * np.finfo(np.float64).eps
