"""The GFMM-block graph: structure, parameter counts, transposes, the structured solve."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lubench_learned.gfmm import (
    FactorArrays,
    GFMMFactor,
    GFMMProduct,
    block_substitution,
    dense_factor,
    factor_params,
    live_params,
)
from torch.overrides import TorchFunctionMode

SHAPES = [(1, 3), (2, 3), (4, 2), (8, 4), (16, 3)]


def _net(M: int, P: int, seed: int = 0, identity_diag: bool = False) -> GFMMProduct:
    return GFMMProduct(M, P, dtype=torch.float64, identity_diag=identity_diag,
                  generator=torch.Generator().manual_seed(seed))


def test_reference_parameter_counts():
    # REFERENCE.md: n = 256, M = 8, P = 32 → 48 128 per factor, 96 256 for L and U;
    # n = 512, M = 16 → 208 896 for both
    assert factor_params(8, 32) == 48_128
    net = GFMMProduct(8, 32)
    assert sum(p.numel() for p in net.L.parameters()) == 48_128
    assert sum(p.numel() for p in net.parameters()) == 96_256
    assert 2 * factor_params(16, 32) == 208_896


@pytest.mark.parametrize("M,P", SHAPES)
def test_trainable_count_is_the_formula(M, P):
    K = M.bit_length() - 1
    f = GFMMFactor(M, P, lower=True)
    assert f.n_trainable() == P * P * (7 * M - 6 - K) == factor_params(M, P)


@pytest.mark.parametrize("M,P", SHAPES)
def test_live_count_is_what_a_gradient_probe_reaches(M, P):
    """Edges with a non-zero gradient of a random functional of the output are exactly the
    live ones, P²(7M − 6 − 5 log₂M), in both directions of the graph."""
    net = _net(M, P)
    for f in (net.L, net.U):
        for transpose in (False, True):
            f.zero_grad()
            Z = torch.randn(f.n, 2, dtype=torch.float64)
            W = torch.randn(f.n, 2, dtype=torch.float64)
            (f(Z, transpose=transpose) * W).sum().backward()
            live = sum(int((view(p.grad) != 0).flatten(-2).any(-1).sum()) * P * P
                       for p, view in f.edge_views() if p.grad is not None)
            assert live == live_params(M, P)


@pytest.mark.parametrize("M,P", SHAPES)
def test_factors_are_block_triangular_to_the_bit(M, P):
    net = _net(M, P)
    L, U = dense_factor(net.L), dense_factor(net.U)
    for a in range(M):
        for b in range(M):
            rows, cols = slice(a * P, (a + 1) * P), slice(b * P, (b + 1) * P)
            if b > a:
                assert np.all(L[rows, cols] == 0.0)
            if b < a:
                assert np.all(U[rows, cols] == 0.0)
    # the diagonal blocks are full P×P blocks: exactly the leaf bridge's diagonal
    for a in range(M):
        s = slice(a * P, (a + 1) * P)
        np.testing.assert_array_equal(L[s, s], net.L.diag[a].detach().numpy())
        np.testing.assert_array_equal(U[s, s], net.U.diag[a].detach().numpy())


@pytest.mark.parametrize("M,P", SHAPES)
def test_transpose_graph_computes_the_transpose(M, P):
    net = _net(M, P, seed=1)
    L, U = dense_factor(net.L), dense_factor(net.U)
    eye = torch.eye(M * P, dtype=torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(net.L(eye, transpose=True).numpy(), L.T, rtol=0, atol=1e-13)
        np.testing.assert_allclose(net.U(eye, transpose=True).numpy(), U.T, rtol=0, atol=1e-13)
        np.testing.assert_allclose(net(eye).numpy(), L @ U, rtol=0, atol=1e-12)
        np.testing.assert_allclose(net(eye, transpose=True).numpy(), (L @ U).T, rtol=0,
                                   atol=1e-12)


@pytest.mark.parametrize("M,P", SHAPES)
def test_structured_solve_equals_dense_solve_of_the_same_factors(M, P):
    net = _net(M, P, seed=2, identity_diag=True)
    L, U = dense_factor(net.L), dense_factor(net.U)
    B = np.random.default_rng(0).standard_normal((M * P, 3))
    for dense, arrays in ((L, FactorArrays.from_factor(net.L)),
                          (U, FactorArrays.from_factor(net.U))):
        x = block_substitution(arrays, B)
        expected = np.linalg.solve(dense, B)
        tol = 1e-13 * np.linalg.cond(dense)
        assert np.linalg.norm(x - expected) <= tol * np.linalg.norm(expected)


class _CountBmm(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.bmm, torch.baddbmm):
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
        arrays = FactorArrays.from_factor(_net(M, 4, identity_diag=True).L)
        b = np.ones((M * 4, 1))
        block_substitution(arrays, b)
        t = time.process_time()
        for _ in range(3):
            block_substitution(arrays, b)
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
