"""The GFMM-block graph: structure, parameter counts, transposes, the structured solve."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lubench_learned.gfmm import (
    GFMMFactor,
    GFMMProduct,
    dense_factor,
    factor_params,
    live_params,
)
from lubench_learned.training import inv_norm1
from torch.overrides import TorchFunctionMode

SHAPES = [(1, 3), (2, 3), (4, 2), (8, 4), (16, 3)]


DIAGS = ["full", "triangular"]


def _net(M: int, P: int, seed: int = 0, identity_diag: bool = False,
         diag: str = "full") -> GFMMProduct:
    return GFMMProduct(M, P, dtype=torch.float64, identity_diag=identity_diag, diag=diag,
                       pivot_floor=1e-3, generator=torch.Generator().manual_seed(seed))


def test_reference_parameter_counts():
    # REFERENCE.md: n = 256, M = 8, P = 32 → 48 128 per factor, 96 256 for L and U;
    # n = 512, M = 16 → 208 896 for both
    assert factor_params(8, 32) == 48_128
    net = GFMMProduct(8, 32)
    assert sum(p.numel() for p in net.L.parameters()) == 48_128
    assert sum(p.numel() for p in net.parameters()) == 96_256 == net.n_trainable()
    assert 2 * factor_params(16, 32) == 208_896
    # triangular diagonal blocks: P(P−1)/2 numbers in L's, P(P+1)/2 in U's, M·P² fewer
    tri = GFMMProduct(8, 32, diag="triangular")
    assert tri.n_trainable() == 96_256 - 8 * 32 * 32 == 88_064
    # 4·log₂M edges per factor never reach the output
    assert tri.n_live() == 88_064 - 2 * 4 * 3 * 32 * 32 == 63_488


@pytest.mark.parametrize("M,P", SHAPES)
def test_trainable_count_is_the_formula(M, P):
    K = M.bit_length() - 1
    f = GFMMFactor(M, P, lower=True)
    assert f.n_trainable() == P * P * (7 * M - 6 - K) == factor_params(M, P)
    assert sum(p.numel() for p in f.parameters()) == f.n_trainable()
    for lower, block in ((True, P * (P - 1) // 2), (False, P * (P + 1) // 2)):
        f = GFMMFactor(M, P, lower=lower, diag="triangular")
        assert f.n_trainable() == P * P * (6 * M - 6 - K) + M * block


@pytest.mark.parametrize("diag", DIAGS)
@pytest.mark.parametrize("M,P", SHAPES)
def test_live_count_is_what_a_gradient_probe_reaches(M, P, diag):
    """Numbers with a non-zero gradient of a random functional of the output are exactly the
    live ones, in both directions of the graph, for either parametrization."""
    net = _net(M, P, diag=diag)
    for f in (net.L, net.U):
        for transpose in (False, True):
            f.zero_grad()
            Z = torch.randn(f.n, 2, dtype=torch.float64)
            W = torch.randn(f.n, 2, dtype=torch.float64)
            (f(Z, transpose=transpose) * W).sum().backward()
            live = sum(int((p.grad != 0).sum()) for p in f.parameters() if p.grad is not None)
            assert live == live_params(M, P, f.lower, diag) == f.n_live()


@pytest.mark.parametrize("diag", DIAGS)
@pytest.mark.parametrize("M,P", SHAPES)
def test_factors_are_block_triangular_to_the_bit(M, P, diag):
    net = _net(M, P, diag=diag)
    L, U = dense_factor(net.L), dense_factor(net.U)
    for a in range(M):
        for b in range(M):
            rows, cols = slice(a * P, (a + 1) * P), slice(b * P, (b + 1) * P)
            if b > a:
                assert np.all(L[rows, cols] == 0.0)
            if b < a:
                assert np.all(U[rows, cols] == 0.0)
    # the diagonal blocks are exactly the parametrization's blocks
    for a in range(M):
        s = slice(a * P, (a + 1) * P)
        np.testing.assert_array_equal(L[s, s], net.L.diagonal_blocks()[a].detach().numpy())
        np.testing.assert_array_equal(U[s, s], net.U.diagonal_blocks()[a].detach().numpy())
    if diag == "triangular":  # L unit lower, U upper with |U_ii| ≥ δ: invertible
        assert np.all(np.diag(L) == 1.0) and np.all(np.triu(L, 1) == 0.0)
        assert np.all(np.tril(U, -1) == 0.0) and np.all(np.abs(np.diag(U)) >= 1e-3)


@pytest.mark.parametrize("diag", DIAGS)
@pytest.mark.parametrize("M,P", SHAPES)
def test_transpose_graph_computes_the_transpose(M, P, diag):
    net = _net(M, P, seed=1, diag=diag)
    L, U = dense_factor(net.L), dense_factor(net.U)
    eye = torch.eye(M * P, dtype=torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(net.L(eye, transpose=True).numpy(), L.T, rtol=0, atol=1e-13)
        np.testing.assert_allclose(net.U(eye, transpose=True).numpy(), U.T, rtol=0, atol=1e-13)
        np.testing.assert_allclose(net(eye).numpy(), L @ U, rtol=0, atol=1e-12)
        np.testing.assert_allclose(net(eye, transpose=True).numpy(), (L @ U).T, rtol=0,
                                   atol=1e-12)


@pytest.mark.parametrize("diag", DIAGS)
@pytest.mark.parametrize("M,P", SHAPES)
def test_structured_solve_equals_dense_solve_of_the_same_factors(M, P, diag):
    net = _net(M, P, seed=2, identity_diag=True, diag=diag)
    B = np.random.default_rng(0).standard_normal((M * P, 3))
    for f in (net.L, net.U):
        dense, arrays = dense_factor(f), f.arrays()
        np.testing.assert_allclose(arrays.dense(), dense, rtol=0, atol=1e-13)
        np.testing.assert_allclose(arrays.apply(B, transpose=True), dense.T @ B, rtol=0,
                                   atol=1e-12)
        for transpose, mat in ((False, dense), (True, dense.T)):
            x = arrays.solve(B, transpose=transpose)
            expected = np.linalg.solve(mat, B)
            tol = 1e-13 * np.linalg.cond(mat)
            assert np.linalg.norm(x - expected) <= tol * np.linalg.norm(expected)


@pytest.mark.parametrize("M,P", [(4, 3), (8, 4)])
def test_hager_higham_estimate_is_a_close_lower_bound(M, P):
    """‖F⁻¹‖₁ estimated from structured solves with F and Fᵀ: never above the exact norm,
    and within a factor 3 of it (Higham's observed accuracy; exact on these small cases)."""
    for seed in range(3):
        f = _net(M, P, seed=seed, identity_diag=True, diag="triangular").U
        arrays = f.arrays()
        exact = np.abs(np.linalg.inv(dense_factor(f))).sum(axis=0).max()
        est = inv_norm1(arrays.solve, M * P)
        assert exact / 3 <= est <= exact * (1 + 1e-12)


@pytest.mark.parametrize("diag", DIAGS)
def test_loading_arrays_inverts_the_parametrization(diag):
    """A factor's float64 tensors loaded into a fresh factor give the same factor (θ =
    softplus⁻¹(|d| − δ) for triangular U's pivots, whose signs are carried over)."""
    src = _net(4, 3, seed=5, identity_diag=True, diag=diag)
    with torch.no_grad():  # a negative pivot, to see the sign carried
        src.U.pivot_sign[1, 2] = -1.0
    dst = _net(4, 3, seed=6, diag=diag)
    for a, b in ((src.L, dst.L), (src.U, dst.U)):
        F = a.arrays()
        b.load_arrays(F.enc, F.dec, F.diag, F.off, F.bridge)
        np.testing.assert_allclose(dense_factor(b), dense_factor(a), rtol=0, atol=1e-12)
    if diag == "triangular":
        F = src.U.arrays()
        with pytest.raises(ValueError, match="unit lower"):
            dst.L.load_arrays(F.enc, F.dec, F.diag, F.off, F.bridge)


class _CountBmm(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.bmm, torch.baddbmm, torch.Tensor.baddbmm_):
            self.calls += 1
        return func(*args, **(kwargs or {}))


def test_one_batched_product_per_level_whatever_the_number_of_leaves():
    """No Python loop over edges: the number of batched products grows with log₂M only."""
    counts = {}
    for M in (8, 64):
        net = GFMMProduct(M, 2)
        X = torch.randn(net.n, 3)
        with torch.no_grad(), _CountBmm() as mode:
            net(X)
            net(X, transpose=True)
        counts[M] = mode.calls
    K8, K64 = 3, 6
    # per factor and direction: K−1 encoder levels, K bridge levels, K−1 decoder levels, diag
    assert counts[8] == 4 * (3 * K8 - 1)
    assert counts[64] == 4 * (3 * K64 - 1)


def test_solve_is_linear_in_the_number_of_leaves():
    """Each edge is used once per solve: doubling M doubles the work, no densification."""
    import time

    def seconds(M: int) -> float:
        arrays = _net(M, 4, identity_diag=True).L.arrays()
        b = np.ones((M * 4, 1))
        arrays.solve(b)
        t = time.process_time()
        for _ in range(3):
            arrays.solve(b)
        return time.process_time() - t

    assert seconds(512) < 16 * seconds(64)  # 8× the leaves: linear work 8×, quadratic 64×


@pytest.mark.parametrize("n_valid", [13, 16, 19])
def test_padding_split_keeps_the_leading_block_a_product_of_its_factors(n_valid):
    """With padding from n_valid on, L[:n, n:] = 0 and U[n:, :n] = 0 exactly (the leaf that
    the split cuts is masked), so (LU)[:n, :n] = L[:n, :n] U[:n, :n]."""
    net = GFMMProduct(8, 3, dtype=torch.float64, n_valid=n_valid, identity_diag=True,
                      generator=torch.Generator().manual_seed(4))
    L, U = dense_factor(net.L), dense_factor(net.U)
    n = n_valid
    assert np.all(L[:n, n:] == 0.0) and np.all(U[n:, :n] == 0.0)
    np.testing.assert_allclose((L @ U)[:n, :n], L[:n, :n] @ U[:n, :n], rtol=0, atol=1e-13)
