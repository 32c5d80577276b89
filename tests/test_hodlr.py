"""hodlr_lu and lubench_structured.hodlr: the HODLR LU against dense linear algebra at small n
(kernels, the tridiagonal, a nonsymmetric kernel, an operator with only its action), ranks
and tolerance, the method contract, bad parameters and the memory limit."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from lubench_compressed import HodlrLU
from lubench_structured.hodlr import ClusterTree, factor_operator
from lubench_structured.hodlr.lowrank import aca, recompress
from lubench_structured.hodlr.options import check_options

from lubench.api import (
    Budget,
    FactorizationError,
    InvalidParameter,
    MatrixFreeOperator,
    Operator,
    RunContext,
    Unsupported,
)
from lubench.testing import CheckSkipped, method_checks


def _ctx(**kw) -> RunContext:
    return RunContext(device="cpu", seed=0, budget=Budget(), **kw)


class Kernel(MatrixFreeOperator):
    """A kernel matrix on sorted points, never formed: entries k(x_i, x_j) (+ nugget on the
    diagonal), action in blocks of rows. ``scale`` multiplies row i (nonsymmetric)."""

    has_entries = True

    def __init__(self, x: np.ndarray, kind: str, ell: float, nugget: float = 0.0,
                 scale: np.ndarray | None = None):
        super().__init__(kind, len(x), symmetric=scale is None, spd=None, coords=x[:, None])
        self.x, self.kind, self.ell, self.nugget, self.scale = x, kind, ell, nugget, scale

    def entries(self, rows, cols):
        rows, cols = np.asarray(rows), np.asarray(cols)
        d = np.abs(self.x[rows][:, None] - self.x[cols][None, :])
        A = np.exp(-d / self.ell) if self.kind == "exp" else np.exp(-d**2 / (2 * self.ell**2))
        A += self.nugget * (rows[:, None] == cols[None, :])
        return A * self.scale[rows][:, None] if self.scale is not None else A

    def matmat(self, X):
        return self.entries(np.arange(self.n), np.arange(self.n)) @ X

    def rmatmat(self, X):
        return self.entries(np.arange(self.n), np.arange(self.n)).T @ X


class Tridiagonal(MatrixFreeOperator):
    """tridiag(−1, 2 + shift, −1) from its action alone (no entries)."""

    def __init__(self, n: int, shift: float = 0.0):
        super().__init__("tri", n, symmetric=True, spd=True)
        self.shift = shift

    def matmat(self, X):
        X = np.asarray(X, dtype=float)
        Y = (2.0 + self.shift) * X
        Y[1:] -= X[:-1]
        Y[:-1] -= X[1:]
        return Y


class Upwind(MatrixFreeOperator):
    """A nonsymmetric bidiagonal-plus action with no ``rmatmat``: refused by the randomized
    route, which needs Aᵀ."""

    def __init__(self, n: int):
        super().__init__("upwind", n, symmetric=False, spd=False)

    def matmat(self, X):
        Y = 3.0 * np.asarray(X, dtype=float)
        Y[1:] -= X[:-1]
        return Y


def _points(n: int, seed: int = 0) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).uniform(0, 1, n))


def _rel(E: np.ndarray, A: np.ndarray) -> float:
    """‖E‖_F / ‖A‖_F."""
    return float(np.linalg.norm(E) / np.linalg.norm(A))


def _backward(M: np.ndarray, x: np.ndarray, b: np.ndarray) -> float:
    """‖M x − b‖ / (‖M‖_F ‖x‖): the solve's backward error."""
    return float(np.linalg.norm(M @ x - b) / (np.linalg.norm(M) * np.linalg.norm(x)))


# --------------------------------------------------------------------------------------------
# The tree and the low-rank blocks
# --------------------------------------------------------------------------------------------
def test_tree_splits_at_the_median_as_the_operators_order_points():
    t = ClusterTree(1000, 64)
    sizes = np.diff(t.leaf_bounds)
    assert t.depth == 4 and sizes.max() <= 64 and sizes.max() - sizes.min() <= 1
    for k in range(t.n_internal):          # children tile the parent, split at ⌊(lo+hi)/2⌋
        lo, mid, hi = t.split(k)
        assert t.range(2 * k + 1) == (lo, mid) and t.range(2 * k + 2) == (mid, hi)
        assert mid == (lo + hi) // 2
    assert ClusterTree(10, 64).depth == 0


def test_aca_reaches_the_tolerance_and_recompression_keeps_the_rank_rule():
    x = _points(600)
    op = Kernel(x, "rbf", 0.2)
    rows, cols = np.arange(300), np.arange(300, 600)
    B = op.entries(rows, cols)
    s = np.linalg.svd(B, compute_uv=False)
    for tol in (1e-4, 1e-10):
        U, V, ok = aca(op.entries, rows, cols, tol, 100, 299)
        assert ok and np.linalg.norm(B - U @ V.T) <= 10 * tol * np.linalg.norm(B)
        U2, V2, cut = recompress(U, V, tol, 100)
        assert cut == 0.0 and U2.shape[1] == np.count_nonzero(s > tol * s[0]) \
            or abs(U2.shape[1] - np.count_nonzero(s > tol * s[0])) <= 1
        assert np.linalg.norm(B - U2 @ V2.T, 2) <= 10 * tol * s[0]
    # max_rank cuts, and says by how much
    U3, _, cut = recompress(U, V, 1e-10, 2)
    assert U3.shape[1] == 2 and cut == pytest.approx(s[2] / s[0], rel=1e-6)


def test_aca_finds_a_block_whose_far_rows_underflow():
    """ρ^|i−j| with ρ = 0.5 at n = 4096: the upper block's first rows are exactly 0.0 in
    float64; starting at the row nearest the diagonal finds its rank-1 corner."""
    n = 4096
    idx = np.arange(n)

    def entries(r, c):
        return np.exp2(-np.abs(np.asarray(r)[:, None] - np.asarray(c)[None, :]).astype(float))

    rows, cols = idx[: n // 2], idx[n // 2:]
    U, V, ok = aca(entries, rows, cols, 1e-12, 50, n // 2 - 1)
    B = entries(rows, cols)
    assert ok and U.shape[1] >= 1
    assert np.abs(B - U @ V.T).max() <= 1e-12 * np.abs(B).max()


# --------------------------------------------------------------------------------------------
# The LU against dense linear algebra
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, ell, nugget, tol", [("rbf", 0.2, 1e-4, 1e-10),
                                                     ("rbf", 0.2, 1e-4, 1e-4),
                                                     ("exp", 0.1, 0.0, 1e-10)])
def test_factors_match_dense_lu_accuracy_on_kernels(kind, ell, nugget, tol):
    n = 1024
    op = Kernel(_points(n), kind, ell, nugget)
    A = op.dense()
    lu = factor_operator(op, tol=tol, leaf_size=64, max_rank=200)
    assert lu.info["compression"] == "aca"
    L, U = lu.dense_factors()
    assert np.allclose(np.triu(L, 1), 0) and np.allclose(np.diag(L), 1)   # unit lower
    assert np.allclose(np.tril(U, -1), 0)                                  # upper
    assert _rel(L @ U - A[lu.perm], A) <= 20 * tol
    assert _rel(lu.apply(np.eye(n)) - A, A) <= 20 * tol
    b = np.random.default_rng(1).standard_normal(n)
    Ahat = lu.apply(np.eye(n))
    assert _backward(Ahat, lu.solve(b), b) <= 1e-14                     # solve inverts apply
    assert _backward(Ahat.T, lu.solve_transpose(b), b) <= 1e-14
    assert np.allclose(lu.apply_transpose(b), Ahat.T @ b, atol=1e-12 * np.abs(Ahat).sum())
    # the exponential kernel's off-diagonal blocks have rank 1, and so do L's and U's
    if kind == "exp":
        assert max(lu.info["ranks_L"] + lu.info["ranks_U"]) == 1
    # storage below n² already at n = 1024 (leaves 64², low-rank blocks)
    assert lu.n_numbers() < 0.3 * n * n


def test_tolerance_sets_the_error_and_the_ranks():
    n = 1024
    op = Kernel(_points(n, 3), "rbf", 0.1, 1e-3)
    A = op.dense()
    errs, ranks = [], []
    for tol in (1e-3, 1e-6, 1e-9, 1e-12):
        lu = factor_operator(op, tol=tol, leaf_size=32, max_rank=200)
        errs.append(_rel(lu.apply(np.eye(n)) - A, A))
        ranks.append(max(lu.info["ranks_L"]))
        assert errs[-1] <= 20 * tol
    assert errs == sorted(errs, reverse=True) and ranks == sorted(ranks)
    assert ranks[0] < ranks[-1]


def test_nonsymmetric_kernel_and_pivoting_inside_the_leaves_where_needed():
    n = 1024
    x = _points(n, 5)
    op = Kernel(x, "rbf", 0.2, 1e-2, scale=1 + np.cos(7 * x))
    A = op.dense()
    lu = factor_operator(op, tol=1e-10, leaf_size=32, max_rank=200)
    assert _rel(lu.apply(np.eye(n)) - A, A) <= 1e-8
    # a matrix that needs row exchanges: each leaf's first pivot exactly zero
    B = A + 2 * np.eye(n)
    B[np.arange(0, n, 32), np.arange(0, n, 32)] = 0.0
    op = Operator("zero-pivots", B, symmetric=False, spd=False)
    lu = factor_operator(op, tol=1e-10, leaf_size=32, max_rank=200)
    assert lu.info["pivoted_leaves"] >= 1 and not np.array_equal(lu.perm, np.arange(n))
    assert _rel(lu.apply(np.eye(n)) - B, B) <= 1e-8
    with pytest.raises(FactorizationError, match="without row exchanges breaks down"):
        factor_operator(op, tol=1e-10, leaf_size=32, max_rank=200, pivoting="never")
    # SPD leaves need none: the factors keep the operator's order
    spd = factor_operator(Kernel(x, "rbf", 0.2, 1e-2), tol=1e-10, leaf_size=32, max_rank=200)
    assert spd.info["pivoted_leaves"] == 0 and np.array_equal(spd.perm, np.arange(n))


def test_a_singular_leaf_schur_complement_is_a_factorization_error():
    A = np.eye(64)
    A[5, 5] = 0.0
    with pytest.raises(FactorizationError, match="leaf rows 0…15 is singular"):
        factor_operator(Operator("s", A, symmetric=True, spd=False), tol=1e-10,
                        leaf_size=16, max_rank=10)


def test_tridiagonal_sparse_exactly_and_from_its_action_alone():
    n = 1000
    T = (2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1))
    sparse_op = Operator("tri", sp.csr_array(T), symmetric=True, spd=True)
    lu = factor_operator(sparse_op, tol=1e-10, leaf_size=32, max_rank=50)
    assert lu.info["compression"] == "sparse"
    assert _rel(lu.apply(np.eye(n)) - T, T) <= 1e-14
    assert lu.info["ranks_L"] == [1] * 5 and lu.info["ranks_U"] == [1] * 5
    b = np.ones(n)
    assert np.linalg.norm(T @ lu.solve(b) - b) <= 1e-9 * np.linalg.norm(b)
    action = Tridiagonal(n)
    lu2 = factor_operator(action, tol=1e-10, leaf_size=32, max_rank=50)
    assert lu2.info["compression"] == "randomized" and lu2.info["products"] > 0
    assert _rel(lu2.apply(np.eye(n)) - T, T) <= 1e-12


def test_randomized_on_a_nonsymmetric_kernel_uses_the_transpose_action():
    n = 512
    x = _points(n, 7)
    op = Kernel(x, "rbf", 0.2, 1e-2, scale=1 + x)
    A = op.dense()
    lu = factor_operator(op, tol=1e-8, leaf_size=32, max_rank=100,
                         compression="randomized", rng=np.random.default_rng(0))
    assert lu.info["compression"] == "randomized"
    assert _rel(lu.apply(np.eye(n)) - A, A) <= 1e-6


# --------------------------------------------------------------------------------------------
# The method
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("params", [{}, {"leaf_size": 4},
                                    {"leaf_size": 4, "compression": "randomized"}],
                         ids=["defaults", "leaf4", "leaf4-randomized"])
def test_contract(params):
    for check in method_checks(HodlrLU, **params):
        try:
            check()
        except CheckSkipped as exc:
            assert "not exact" in str(exc), exc


def test_registered_as_compressed_with_needs_following_compression(registry):
    assert registry.method("hodlr_lu") is HodlrLU and HodlrLU.family == "compressed"
    assert HodlrLU().needs == "action" and HodlrLU(compression="aca").needs == "entries"


@pytest.mark.parametrize("params, field", [
    ({"tol": 0}, "tol"), ({"tol": 1.5}, "tol"), ({"tol": "x"}, "tol"),
    ({"leaf_size": 0}, "leaf_size"), ({"leaf_size": 2.5}, "leaf_size"),
    ({"max_rank": 0}, "max_rank"), ({"compression": "svd"}, "compression")])
def test_bad_parameters_name_the_field(params, field):
    with pytest.raises(InvalidParameter, match=f"hodlr_lu: {field} must"):
        HodlrLU.check_params(params)
    check_options(1e-10, 64, 256, "auto")            # the defaults pass


def test_an_operator_without_what_the_route_needs_is_unsupported_at_once():
    with pytest.raises(Unsupported, match="aca needs the entries of A; operator 'tri'"):
        HodlrLU(compression="aca").check(Tridiagonal(64))
    with pytest.raises(Unsupported, match="needs the action of Aᵀ"):
        HodlrLU().check(Upwind(64))
    HodlrLU().check(Tridiagonal(64))                 # auto takes the action


def test_through_the_worker_a_method_needing_entries_is_refused_with_the_reason():
    from lubench.execution.worker import operator_for

    with pytest.raises(Unsupported, match="hodlr_lu needs the entries of A"):
        operator_for(HodlrLU(compression="aca"), Tridiagonal(64), form_limit=None)
    op = Tridiagonal(64)
    assert operator_for(HodlrLU(), op, form_limit=1) is op   # never formed


def test_memory_limit_refuses_at_once_or_as_the_ranks_grow():
    op = Kernel(_points(4096), "rbf", 0.05, 1e-4)
    with pytest.raises(Unsupported, match="needs at least"):
        HodlrLU().factorize(op, _ctx(memory_limit=1 << 20))
    # enough for the leaves and rank-1 blocks, not for the ranks this tolerance needs
    need = HodlrLU().memory_estimate(op)
    with pytest.raises(Unsupported, match="outgrew the memory limit"):
        HodlrLU(tol=1e-12).factorize(op, _ctx(memory_limit=int(need * 1.05)))


def test_factorize_reports_ranks_and_counts_what_it_stores():
    op = Kernel(_points(1024), "exp", 0.2)
    fact = HodlrLU(leaf_size=32).factorize(op, _ctx())
    assert fact.info["compression"] == "aca" and fact.info["depth"] == 5
    assert fact.info["ranks_L"] == [1] * 5
    # leaves 32² each, and per level 2 blocks × 2 factors of n/2 rows at rank 1
    assert fact.n_params == 1024 * 32 + 5 * 2 * 1024


# --------------------------------------------------------------------------------------------
# The GFMM pattern filled from the HODLR factors
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n, P, leaf, ell, rank", [(256, 16, 16, 0.2, 16), (256, 16, 64, 0.1, 16),
                                                   (300, 16, 32, 0.1, 8), (500, 32, 64, 0.05, 32)],
                         ids=["t0", "t2", "padded-rank8", "padded-t1"])
def test_gfmm_from_hodlr_matches_the_dense_compression_of_the_same_factors(n, P, leaf, ell,
                                                                          rank):
    """compress_hodlr from L, U in HODLR form gives the arrays compress_factors gives from
    the same L, U formed densely: the same error at every rank (the bases agree up to
    signs), the same stored numbers."""
    from lubench_structured.gfmm import compress_factors, derive_M, stored_numbers
    from lubench_structured.gfmm.from_hodlr import aligned_leaf_size, compress_hodlr
    from lubench_structured.hodlr.build import padded

    op = Kernel(_points(n, 11), "rbf", ell, 1e-3)
    M = derive_M(n, P)
    lu = factor_operator(padded(op, M * P), tol=1e-12, leaf_size=aligned_leaf_size(P, leaf),
                         max_rank=100)
    perm, Lg, Ug, info = compress_hodlr(lu, M, P, rank=rank)
    L, U = lu.dense_factors()
    Lc, Uc, li, ui = compress_factors(L, U, M, P, rank)
    for fill, dense, F in ((Lg, Lc, L), (Ug, Uc, U)):
        e_fill, e_dense = _rel(fill.dense() - F, F), _rel(dense.dense() - F, F)
        assert abs(e_fill - e_dense) <= 1e-12 + 0.05 * e_dense
    assert np.array_equal(perm, lu.perm)
    assert all(r <= rank for level in info["ranks_L"] + info["ranks_U"] for r in level)
    dense_numbers = stored_numbers(M, P, li["ranks_u"], li["ranks_v"], True) \
        + stored_numbers(M, P, ui["ranks_u"], ui["ranks_v"], False)
    assert abs(info["n_params"] - dense_numbers) <= 0.02 * dense_numbers


def test_compress_operator_is_exact_where_the_factors_fit_the_pattern():
    """The exponential kernel's L and U have rank-1 off-diagonal blocks: every far field fits
    and the pattern filled from the operator, never formed, reproduces Ā to round-off."""
    from lubench_structured.gfmm.from_hodlr import compress_operator

    n, M, P = 200, 16, 16
    op = Kernel(np.arange(n, dtype=float), "exp", 3.0)
    perm, L, U, info = compress_operator(op, M, P, leaf_size=32)
    Y = L.apply(U.apply(np.eye(M * P)))
    Ahat = np.empty_like(Y)
    Ahat[perm] = Y
    Abar = np.eye(M * P)
    Abar[:n, :n] = op.dense()
    assert _rel(Ahat - Abar, Abar) <= 1e-12
    assert info["lu"] == "hodlr" and max(max(level) for level in info["ranks_L"]) <= 2
    assert np.array_equal(perm[n:], np.arange(n, M * P))     # the padding stays in place
