"""GFMMArrays: the same graph as the torch GFMMFactor; its solves invert it to round-off."""

from __future__ import annotations

import numpy as np
import pytest
from lubench_structured.gfmm.arrays import GFMMArrays, inv_norm1_estimate

SHAPES = [(1, 3), (2, 4), (4, 3), (8, 2), (16, 4), (32, 3)]


def random_arrays(M: int, P: int, lower: bool, seed: int = 0, scale: float = 0.3) -> GFMMArrays:
    """A random factor with well-conditioned diagonal blocks (I + small noise)."""
    rng = np.random.default_rng([seed, M, P, int(lower)])
    K = M.bit_length() - 1

    def r(*shape):
        return rng.uniform(-scale, scale, shape)

    return GFMMArrays.from_tensors(
        M, P, lower,
        enc=[r(M >> (i + 1), P, 2 * P) for i in range(K)],
        dec=[r(M >> (i + 1), 2 * P, P) for i in range(K)],
        diag=np.eye(P) + r(M, P, P) / P, off=r(M - 1, P, P),
        bridge=[r((M >> i) - 1, P, P) for i in range(1, K)])


def block_structure_ok(F: GFMMArrays, D: np.ndarray) -> bool:
    """Dense F is block-lower (upper) triangular with F's diagonal blocks on its diagonal."""
    P, M = F.P, F.M
    for a in range(M):
        for b in range(M):
            blk = D[a * P:(a + 1) * P, b * P:(b + 1) * P]
            if a == b and not np.allclose(blk, F.diag[a]):
                return False
            if (b > a if F.lower else b < a) and np.any(blk != 0):
                return False
    return True


@pytest.mark.parametrize("M,P", SHAPES)
@pytest.mark.parametrize("lower", [True, False])
def test_dense_form_is_block_triangular(M, P, lower):
    F = random_arrays(M, P, lower)
    assert block_structure_ok(F, F.dense())


@pytest.mark.parametrize("M,P", SHAPES)
@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("transpose", [False, True])
def test_solve_inverts_dense_factor(M, P, lower, transpose):
    F = random_arrays(M, P, lower, seed=1)
    D = F.dense()
    Dop = D.T if transpose else D
    rng = np.random.default_rng(2)
    B = rng.standard_normal((F.n, 3))
    X = F.solve(B, transpose=transpose)
    X_ref = np.linalg.solve(Dop, B)
    kappa = np.linalg.cond(Dop)
    err = np.linalg.norm(X - X_ref) / np.linalg.norm(X_ref)
    assert err <= 1e3 * kappa * np.finfo(float).eps, (err, kappa)
    # the apply with the same orientation undoes it
    np.testing.assert_allclose(F.apply(X, transpose=transpose), B, atol=1e-10 * kappa)
    # one vector in, one vector out
    x1 = F.solve(B[:, 0], transpose=transpose)
    assert x1.shape == (F.n,)
    np.testing.assert_allclose(x1, X[:, 0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("M,P", [(64, 8), (128, 8), (256, 4), (512, 2), (32, 32)])
@pytest.mark.parametrize("transpose", [False, True])
def test_solve_exact_at_larger_sizes(M, P, transpose):
    """Up to K = 9 levels: the structured solve against a dense solve of the same factor."""
    F = random_arrays(M, P, transpose, seed=7, scale=0.5 / np.sqrt(P))
    D = F.dense()
    Dop = D.T if transpose else D
    B = np.random.default_rng(8).standard_normal((F.n, 4))
    X = F.solve(B, transpose=transpose)
    X_ref = np.linalg.solve(Dop, B)
    kappa = np.linalg.cond(Dop)
    assert np.linalg.norm(X - X_ref) / np.linalg.norm(X_ref) <= 1e3 * kappa * 2.2e-16


@pytest.mark.parametrize("lower", [True, False])
def test_apply_transpose_is_dense_transpose(lower):
    F = random_arrays(8, 3, lower, seed=3)
    np.testing.assert_allclose(F.apply(np.eye(F.n), transpose=True), F.dense().T,
                               rtol=1e-13, atol=1e-13)


def test_inverse_norm_estimate_matches_dense():
    F = random_arrays(16, 4, True, seed=4)
    exact = np.abs(np.linalg.inv(F.dense())).sum(axis=0).max()
    est = inv_norm1_estimate(F)
    assert exact / 3 <= est <= exact * (1 + 1e-12)


def test_pickle_drops_the_solve_plans_and_solves_the_same():
    import pickle

    F = random_arrays(16, 4, False, seed=9)
    b = np.ones(F.n)
    x = F.solve(b)
    blob = pickle.dumps(F)
    assert len(blob) < 2 * F.n_numbers() * 8 + 10_000      # the arrays, not the plans
    np.testing.assert_array_equal(pickle.loads(blob).solve(b), x)


def test_singular_diagonal_block_is_a_factorization_error():
    from lubench.api import FactorizationError

    F = random_arrays(4, 3, True, seed=5)
    F.diag[2] = 0.0
    with pytest.raises(FactorizationError, match="diagonal block 2"):
        F.solve(np.ones(F.n))


def test_shapes_are_checked():
    F = random_arrays(4, 3, True)
    with pytest.raises(ValueError, match="enc\\[1\\]"):
        GFMMArrays.from_tensors(4, 3, True, [F.enc[0], F.enc[0]], F.dec, F.diag, F.off,
                                F.bridge)


# --------------------------------------------------------------------------------------------
# The torch factor converts tensor for tensor
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("M,P", [(1, 4), (2, 3), (4, 4), (8, 3), (16, 2)])
@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("transpose", [False, True])
def test_matches_torch_gfmm_factor(M, P, lower, transpose):
    torch = pytest.importorskip("torch")
    from lubench_learned.gfmm import GFMMFactor

    f = GFMMFactor(M, P, lower, init_scale=0.2, identity_diag=True, dtype=torch.float64,
                   generator=torch.Generator().manual_seed(M * 10 + P))
    F = GFMMArrays.from_tensors(M, P, lower, list(f.enc), list(f.dec), f.diagonal_blocks(),
                                f.off, list(f.bridge))
    X = np.random.default_rng(6).standard_normal((F.n, 2))
    with torch.no_grad():
        Y_torch = f(torch.from_numpy(X), transpose=transpose).numpy()
    np.testing.assert_allclose(F.apply(X, transpose=transpose), Y_torch, rtol=1e-12,
                               atol=1e-12)
    Z = F.solve(Y_torch, transpose=transpose)
    np.testing.assert_allclose(Z, X, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("M,P", [(1, 3), (2, 4), (32, 3)])
def test_solve_plan_holds_as_many_numbers_as_the_factor(M, P):
    """O(n·P) memory: the substitution keeps D⁻¹ and the live blocks of the factor, no more
    numbers than the factor itself stores (the root's encoder/decoder edges are unused)."""
    F = random_arrays(M, P, True, seed=5)
    F.solve(np.ones(F.n))
    plan = F._plans[False]
    kept = sum(a.size for a in (plan.dinv, plan.band, plan.enc, plan.dec))
    assert kept <= F.n_numbers()
    assert kept >= F.n_numbers() - (4 * P * P if M > 1 else 0)


def test_columns_are_solved_independently():
    """Several right-hand sides at once give, column by column, the one-column solves."""
    F = random_arrays(16, 4, False, seed=6)
    B = np.random.default_rng(9).standard_normal((F.n, 5))
    X = F.solve(B)
    for j in range(5):
        np.testing.assert_array_equal(F.solve(B[:, j]), X[:, j])
