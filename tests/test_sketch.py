"""The sketch optimizer of gfmm_lu (issue 27): near-field Newton, block least squares on
sketches, its configuration (auto, check_params, needs, memory) and A only as an action."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from lubench_learned import GfmmLU
from lubench_learned.gfmm import GFMMProduct
from lubench_learned.gfmm_lu import NEWTON_MAX_N
from lubench_learned.optim.sketch import (
    Factor,
    SketchOptimizer,
    fit_output_side,
    near_newton_direction,
    near_residual,
)
from lubench_learned.training.target import Target

from lubench.api import (
    Budget,
    InvalidParameter,
    MatrixFreeOperator,
    Operator,
    RunContext,
    Unsupported,
)
from lubench.execution.devices import cuda_device_count

F64 = torch.float64
# the optimizer's own tests run on each device this machine has (benchmarks/gpu_check.sh)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    cuda_device_count() == 0, reason="no CUDA device here"))]


def _pentadiagonal(n: int) -> Operator:
    """Banded and nonsymmetric; its LU (bandwidth 2 ≤ P) fits the GFMM near field."""
    A = sp.diags([-np.ones(n - 2), -1.5 * np.ones(n - 1), 5 * np.ones(n),
                  -0.5 * np.ones(n - 1), -np.ones(n - 2)], [-2, -1, 0, 1, 2], format="csr")
    return Operator("penta", A, symmetric=False, spd=False)


class _Tridiagonal(MatrixFreeOperator):
    """2I − (shift up) − (shift down), nonsymmetric weights, only as an action."""

    has_entries = False

    def matmat(self, X):
        X = np.asarray(X, dtype=np.float64)
        Y = 3.0 * X
        Y[1:] -= X[:-1]
        Y[:-1] -= 0.5 * X[1:]
        return Y

    def rmatmat(self, X):
        X = np.asarray(X, dtype=np.float64)
        Y = 3.0 * X
        Y[:-1] -= X[1:]
        Y[1:] -= 0.5 * X[:-1]
        return Y


def _kernel(n: int, ell: float = 0.3, seed: int = 0) -> Operator:
    """A Gaussian kernel on random points of the unit square (sorted along x then split), SPD:
    its LU's far field has rank above small P, so the pattern truncates."""
    pts = np.random.default_rng(seed).uniform(size=(n, 2))
    pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]
    d2 = ((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1)
    return Operator("kernel2d", np.exp(-d2 / (2 * ell * ell)) + 1e-2 * np.eye(n),
                    symmetric=True, spd=True)


def _start(op: Operator, P: int) -> GFMMProduct:
    m = GfmmLU(P=P)
    return m.build_model(op, m.resolved(op.n), seed=0)


def _probe_error(net: GFMMProduct, op: Operator, seed: int = 9) -> float:
    Z = np.random.default_rng(seed).standard_normal((op.n, 16))
    dev = next(net.parameters()).device
    with torch.no_grad():
        LUZ = net(torch.as_tensor(Z, dtype=F64, device=dev)).cpu().numpy()
    AZ = op.matmat(Z)
    return float(np.linalg.norm(LUZ - AZ) / np.linalg.norm(AZ))


def _optimizer(net: GFMMProduct, op: Operator, probes: int, near: bool,
               device: str = "cpu") -> SketchOptimizer:
    net.to(device)
    target = Target(op, net.n, F64, device, dense=False)
    om = torch.randn(net.n, 16, generator=torch.Generator().manual_seed(1),
                     dtype=F64).to(device)
    return SketchOptimizer(net, target.mm, lambda Y: target.mm(Y, True), probes=probes,
                           omega=om, a_omega=target.mm(om),
                           near=target.near_field(net.P) if near else None, seed=0)


# --------------------------------------------------------------------------------------------
def test_factor_round_trips_through_the_parametrization():
    """Factor.of reads the blocks as used; load writes them back through the inverse of the
    parametrization (U's pivots with their signs above the floor) — the same matrices."""
    net = _start(_pentadiagonal(64), P=8)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=F64))
    L, U = Factor.of(net.L), Factor.of(net.U)
    other = _start(_pentadiagonal(64), P=8)
    L.load(other.L)
    U.load(other.U)
    eye = torch.eye(64, dtype=F64)
    with torch.no_grad():
        assert torch.allclose(other.L(eye), net.L(eye), rtol=0, atol=1e-13)
        assert torch.allclose(other.U(eye), net.U(eye), rtol=0, atol=1e-13)
    assert torch.allclose(L.apply(eye), net.L(eye).detach(), rtol=0, atol=1e-13)


def test_near_newton_step_is_exact_on_the_linearization():
    """The leaf sweep solves δL·U + L·δU = −R on the block-tridiagonal pattern exactly, so a
    full step leaves the near-field residual second order: δL·δU."""
    op = _pentadiagonal(64)
    net = _start(op, P=8)
    L, U = Factor.of(net.L), Factor.of(net.U)
    near = Target(op, 64, F64, "cpu", dense=False).near_field(8)
    R = near_residual(L, U, *near)
    dLd, dLo, dUd, dUo = near_newton_direction(L, U, *R)
    # the linearization at the direction equals −R block by block
    lin_d = dLd @ U.diag + L.diag @ dUd
    lin_d[1:] += dLo @ U.off + L.off @ dUo
    assert torch.allclose(lin_d, -R[0], atol=1e-12)
    assert torch.allclose(dLo @ U.diag[:-1] + L.off @ dUd[:-1], -R[1], atol=1e-12)
    assert torch.allclose(dLd[:-1] @ U.off + L.diag[:-1] @ dUo, -R[2], atol=1e-12)
    assert torch.equal(torch.triu(dLd), torch.zeros_like(dLd))  # L stays unit lower


@pytest.mark.parametrize("device", DEVICES)
def test_sketch_reaches_round_off_on_a_banded_operator_by_near_field_newton(device):
    op = _pentadiagonal(256)
    net = _start(op, P=8)
    opt = _optimizer(net, op, probes=32, near=True, device=device)
    assert opt.near_active
    for _ in range(30):
        opt.step()
        if opt.converged:
            break
    assert opt.converged and opt.near_active
    assert _probe_error(net, op) < 1e-14


def test_output_side_fit_recovers_leaf_rows_exactly():
    """With everything else exact, the leaf rows (band, leaf decoder, diagonal block) of an
    exactly representable L are one least-squares solve away: perturbed, one fit on
    k > 3P probes restores them (to round-off) — also with the far field in play."""
    op = _kernel(128)
    from lubench_structured.gfmm import compress_lu

    perm, Lc, Uc, _ = compress_lu(op.dense(), 16, 8)
    net = _start(op, P=8)
    net.L.load_arrays(Lc.enc, Lc.dec, Lc.diag, Lc.off, Lc.bridge)
    net.U.load_arrays(Uc.enc, Uc.dec, Uc.diag, Uc.off, Uc.bridge)
    L, U = Factor.of(net.L), Factor.of(net.U)
    g = torch.Generator().manual_seed(0)
    Z = torch.randn(128, 64, generator=g, dtype=F64)
    W = U.apply(Z)
    T = L.apply(W)  # the target: this L exactly
    bad = L.clone()
    bad.off = L.off + 0.1 * torch.randn(L.off.shape, generator=g, dtype=F64)
    bad.diag = L.diag + torch.tril(0.1 * torch.randn(L.diag.shape, generator=g, dtype=F64), -1)
    bad.dec = [L.dec[0] + 0.1 * torch.randn(L.dec[0].shape, generator=g, dtype=F64),
               *L.dec[1:]]
    fixed = fit_output_side(bad, W, T, unit=True)
    assert torch.allclose(fixed.apply(W), T, rtol=0, atol=1e-9 * float(T.abs().max()))


def test_pivots_keep_their_signs_and_floor():
    """U's column fit may want pivots of the wrong sign: they are held at s·δ instead."""
    op = _pentadiagonal(64)
    net = _start(op, P=8)
    L, U = Factor.of(net.L), Factor.of(net.U)
    g = torch.Generator().manual_seed(0)
    Y = torch.randn(64, 48, generator=g, dtype=F64)
    V = L.transposed().apply(Y)
    sign = net.U.pivot_sign.reshape(-1)
    floor = 0.5
    Ut = fit_output_side(U.transposed(), V, -V, unit=False, sign=sign, floor=floor)
    piv = torch.diagonal(Ut.diag, dim1=1, dim2=2).reshape(-1)
    assert bool((piv * sign >= floor).all())


@pytest.mark.parametrize("device", DEVICES)
def test_sketch_improves_on_compressed_factors_where_the_pattern_truncates(device):
    """From gfmm_compressed's factors at a P below the far field's rank, block least squares
    on sketches lowers the factor error at the same numbers (measured at n = 1024, P = 8 on
    rbf_kernel dim 2: 0.107 → 0.017 in 20 steps; docs/experiments/learned-at-scale.md)."""
    op = _kernel(256)
    m = GfmmLU(P=4, init="projected", optimizer="sketch", probes=48)
    net = m.build_model(op, m.resolved(256), seed=0)
    m.project(net, op)
    start = _probe_error(net, op)
    opt = _optimizer(net, op, probes=48, near=False, device=device)
    for _ in range(4):
        opt.step()
    assert _probe_error(net, op) < 0.5 * start


def test_gfmm_lu_trains_on_an_operator_given_only_as_its_action():
    op = _Tridiagonal("tri", 512, symmetric=False, spd=False)
    m = GfmmLU(P=16, optimizer="sketch")
    assert m.needs == "action"
    fact = m.factorize(op, RunContext(device="cpu", seed=0, budget=Budget(max_steps=40)))
    cfg = fact.info["config"]
    assert (cfg["optimizer"], cfg["loss"], cfg["probes"]) == ("sketch", "probes", 64)
    Z = np.random.default_rng(0).standard_normal((512, 8))
    assert np.linalg.norm(fact.apply(Z) - op.matmat(Z)) < 1e-13 * np.linalg.norm(op.matmat(Z))


# --------------------------------------------------------------------------------------------
def test_auto_is_dense_newton_up_to_the_limit_and_sketch_beyond():
    m = GfmmLU(P=32)
    small, large = m.resolved(NEWTON_MAX_N), m.resolved(2 * NEWTON_MAX_N)
    assert (small["optimizer"], small["loss"], small["probes"]) == ("newton", "identity", 64)
    assert (large["optimizer"], large["loss"], large["probes"]) == ("sketch", "probes", 128)
    assert GfmmLU(P=32, blockwise=True).resolved(2 * NEWTON_MAX_N)["optimizer"] == "lm"
    assert GfmmLU(P=32, inverse_weight=1.0).resolved(2 * NEWTON_MAX_N)["optimizer"] == "lm"
    assert GfmmLU(P=32, preset="post").resolved(2 * NEWTON_MAX_N)["optimizer"] == "adam"


@pytest.mark.parametrize("params, field", [
    ({"loss": "identity"}, "loss"),
    ({"diag": "full"}, "diag"),
    ({"blockwise": True}, "blockwise"),
    ({"dtype": "float32"}, "dtype"),
    ({"probes": 16}, "probes"),
    ({"inverse_weight": 0.5}, "inverse_weight"),
])
def test_sketch_refuses_what_cannot_work_with_it_naming_the_field(params, field):
    with pytest.raises(InvalidParameter, match=field):
        GfmmLU.check_params({"P": 8, "optimizer": "sketch", **params})


def test_needs_and_memory_follow_the_configuration():
    assert GfmmLU().needs == "action"
    assert GfmmLU(optimizer="newton").needs == "matrix"
    assert GfmmLU(init="projected").needs == "matrix"
    assert GfmmLU(loss="identity").needs == "matrix"
    op = _Tridiagonal("tri", 2 ** 16, symmetric=False, spd=False)
    big = _Tridiagonal("tri", 2 ** 17, symmetric=False, spd=False)
    m = GfmmLU(P=32)
    est, est2 = m.memory_estimate(op), m.memory_estimate(big)
    assert 1.9 < est2 / est < 2.1  # O(n·(k + P)), no n²
    with pytest.raises(Unsupported, match=r"needs ~\d"):
        m.factorize(op, RunContext(device="cpu", memory_limit=int(est / 4)))


def test_row_permuted_operator_is_a_permuted_never_formed():
    """init: projected with row exchanges trains on A[perm]; for an operator that is not
    formed that is a wrapper of its action, entries and transpose."""
    from lubench_learned.gfmm_lu import RowPermuted, row_permuted

    op = _Tridiagonal("tri", 12, symmetric=False, spd=False)
    p = np.random.default_rng(0).permutation(12)
    A = op.matmat(np.eye(12))
    Ap = row_permuted(op, p)
    assert isinstance(Ap, RowPermuted) and not Ap.formed
    X = np.random.default_rng(1).standard_normal((12, 3))
    assert np.allclose(Ap.matmat(X), A[p] @ X) and np.allclose(Ap.rmatmat(X), A[p].T @ X)
    formed = row_permuted(Operator("k", A, symmetric=False, spd=False), p)
    assert np.allclose(formed.dense(), A[p])
    assert row_permuted(op, np.arange(12)) is op
