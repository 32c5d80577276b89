"""The built-in classical methods (plugins/lubench_classical), with real SciPy factorizations."""

from __future__ import annotations

import pickle
from pathlib import Path

import lubench_classical
import lubench_operators
import numpy as np
import pytest
import scipy.sparse as sp
from lubench_classical import ILU, PLU, Cholesky, SparseLU
from lubench_classical.plu import pivots_to_permutation
from lubench_operators import (
    Biharmonic1D,
    Biharmonic2D,
    ConvDiff1D,
    ConvDiff2D,
    ExponentialKernel,
    Laplacian1D,
    Laplacian2D,
    MatrixMarket,
    RBFKernel,
)

from lubench.api import FactorizationError, InvalidParameter, Operator, RunContext, Unsupported
from lubench.metrics.grading import grade
from lubench.params import param_specs

DATA = Path(__file__).resolve().parent / "data"
N = 64
EPS = np.finfo(np.float64).eps
# Backward stability of LU / Cholesky: ‖A − P̂L̂Û‖ ≲ c·n·u·‖A‖ with modest growth. 10·n·u is
# a bound with room, not a tuned number (the measured values are 1e-18 … 5e-16).
TOL = 10 * N * EPS

GENERATORS = [
    Laplacian1D(), Laplacian2D(), ConvDiff1D(), ConvDiff1D(boundary="dirichlet_rows"),
    ConvDiff2D(), ConvDiff2D(boundary="dirichlet_rows"), Biharmonic1D(),
    Biharmonic1D(boundary="dirichlet_rows"), Biharmonic2D(normalize=True), RBFKernel(),
    ExponentialKernel(),
]
# .form(): what the core hands a method that needs the matrix (the kernels are not formed)
OPERATORS = {f"{g.name}{'[' + g.boundary + ']' if getattr(g, 'boundary', '') else ''}":
             g.build(N, seed=0).form() for g in GENERATORS}
OPERATORS["matrix_market"] = MatrixMarket(path=DATA / "seed_system_4x4.mtx").build(4, seed=0)
CTX = RunContext()


def dense_op(A, symmetric: bool | None = None, spd: bool | None = None, name: str = "test"):
    A = np.asarray(A, dtype=np.float64)
    sym = bool(np.array_equal(A, A.T)) if symmetric is None else symmetric
    return Operator(name, A, symmetric=sym, spd=spd)


# --------------------------------------------------------------------------------------------
# Exact up to round-off on every built-in operator
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", [PLU(), SparseLU(), SparseLU(permc_spec="NATURAL"),
                                    SparseLU(permc_spec="MMD_AT_PLUS_A")], ids=repr)
@pytest.mark.parametrize("key", list(OPERATORS))
def test_lu_methods_are_exact_on_every_operator(key, method):
    op = OPERATORS[key]
    metrics = grade(op, method.factorize(op, CTX), seed=1)
    assert metrics["factor_error_kind"] == "exact"
    assert metrics["factor_error"] < TOL
    assert metrics["solve_residual"] < TOL
    assert metrics["precond_iterations"] <= 2 and metrics["precond_converged"]


@pytest.mark.parametrize("key", [k for k, op in OPERATORS.items() if op.spd])
def test_cholesky_is_exact_on_spd_operators(key):
    op = OPERATORS[key]
    fact = Cholesky().factorize(op, CTX)
    metrics = grade(op, fact, seed=1)
    assert metrics["factor_error"] < TOL
    assert metrics["solve_residual"] < TOL
    assert metrics["n_params"] == op.n * (op.n + 1) // 2


@pytest.mark.parametrize("key", [k for k, op in OPERATORS.items() if not op.spd])
def test_cholesky_refuses_operators_that_are_not_spd(key):
    op = OPERATORS[key]
    with pytest.raises(Unsupported) as exc:
        Cholesky().check(op)
    assert exc.value.reason.startswith("cholesky needs a symmetric positive definite "
                                       f"operator; {op.name} is not")


def test_cholesky_refuses_symmetric_indefinite_known_and_fails_on_unknown():
    A = [[1.0, 2.0], [2.0, 1.0]]
    with pytest.raises(Unsupported, match="is not positive definite"):
        Cholesky().check(dense_op(A, spd=False))
    op = dense_op(A, spd=None)  # unknown: tried, and LAPACK's complaint comes back
    Cholesky().check(op)
    with pytest.raises(FactorizationError, match="cholesky failed: .*not positive definite"):
        Cholesky().factorize(op, CTX)


# --------------------------------------------------------------------------------------------
# The seed tutorial's worked examples
# --------------------------------------------------------------------------------------------
def test_plu_reproduces_the_seed_3x3_example():
    op = MatrixMarket(path=DATA / "seed_plu_3x3.mtx").build(3, seed=0)
    fact = PLU().factorize(op, CTX)
    L = np.tril(fact.lu, -1) + np.eye(3)
    U = np.triu(fact.lu)
    np.testing.assert_allclose(L[2], [1 / 3, 0.375, 1.0], rtol=1e-15)
    np.testing.assert_allclose(U, [[9, 3, 6], [0, 8, 8], [0, 0, 1]], rtol=1e-15, atol=1e-15)
    np.testing.assert_array_equal(fact.perm, [0, 2, 1])  # rows 2 and 3 swapped: P as in SciPy
    np.testing.assert_allclose(fact.apply(np.eye(3)), op.dense(), rtol=1e-15)
    assert fact.n_params == 9 and fact.history == []


def test_plu_factors_of_the_1d_laplacian_are_the_closed_form():
    """REFERENCE.md: L[i+1, i] = −(i+1)/(i+2), U[i, i] = (i+2)/(i+1), U[i, i+1] = −1."""
    fact = PLU().factorize(OPERATORS["laplacian_1d"], CTX)
    i = np.arange(N)
    np.testing.assert_array_equal(fact.perm, i)
    np.testing.assert_allclose(np.diag(fact.lu, -1), -(i[:-1] + 1) / (i[:-1] + 2), rtol=1e-14)
    np.testing.assert_allclose(np.diag(fact.lu), (i + 2) / (i + 1), rtol=1e-14)
    np.testing.assert_array_equal(np.diag(fact.lu, 1), -1.0)
    assert not np.any(np.tril(fact.lu, -2)) and not np.any(np.triu(fact.lu, 2))


@pytest.mark.parametrize("method", [PLU(), SparseLU(), Cholesky()], ids=repr)
def test_seed_4x4_system_from_a_matrix_market_file(method):
    op = OPERATORS["matrix_market"]
    b = np.array([-9.0, 5.0, 7.0, 11.0])
    if isinstance(method, Cholesky):
        with pytest.raises(Unsupported, match="matrix_market is not symmetric"):
            method.check(op)
        return
    fact = method.factorize(op, CTX)
    # forward error of a backward-stable solve: ≲ κ(A)·u (κ₂ ≈ 960 here)
    tol = 10 * np.linalg.cond(op.dense()) * EPS
    x = np.array([3.0, 4.0, -6.0, -1.0])
    np.testing.assert_allclose(fact.solve(b), x, rtol=0, atol=tol * np.abs(x).max())
    np.testing.assert_allclose(fact.solve(np.column_stack([b, 2 * b])),
                               np.column_stack([x, 2 * x]), rtol=0, atol=2 * tol * 6)


# --------------------------------------------------------------------------------------------
# The factorizations themselves
# --------------------------------------------------------------------------------------------
def pivoting_matrix(n: int = 12) -> np.ndarray:
    """A random matrix whose rows force pivoting (partial and threshold), fixed seed."""
    rng = np.random.default_rng(7)
    A = rng.standard_normal((n, n))
    A[np.diag_indices(n)] *= 1e-3
    return A


@pytest.mark.parametrize("method", [PLU(), SparseLU(), SparseLU(permc_spec="MMD_ATA"),
                                    SparseLU(diag_pivot_thresh=0.1)], ids=repr)
def test_apply_is_the_product_of_the_factors(method):
    A = pivoting_matrix()
    op = dense_op(A)
    fact = method.factorize(op, CTX)
    np.testing.assert_allclose(fact.apply(np.eye(12)), A, rtol=0, atol=1e-14)
    x = np.random.default_rng(0).standard_normal(12)
    np.testing.assert_allclose(fact.apply(x), A @ x, rtol=0, atol=1e-13)
    assert fact.apply(x).shape == (12,)
    np.testing.assert_allclose(A @ fact.solve(x), x, rtol=0, atol=1e-12)


def test_plu_apply_uses_the_factors_not_a():
    A = pivoting_matrix()
    fact = PLU().factorize(dense_op(A.copy()), CTX)
    assert not any(v is A for v in vars(fact).values())
    fact.lu[0, 0] += 1.0  # change U[0, 0]: the product must change with it
    assert not np.allclose(fact.apply(np.eye(12)), A)


def test_sparse_lu_permutations_with_forced_row_exchanges():
    op = dense_op(pivoting_matrix())
    fact = SparseLU(permc_spec="NATURAL").factorize(op, CTX)
    assert not np.array_equal(fact.perm_r, np.arange(12))  # pivoting happened
    assert fact.n_params == fact.L.nnz + fact.U.nnz
    np.testing.assert_allclose(fact.apply(np.eye(12)), op.matrix, atol=1e-14)


@pytest.mark.parametrize("method", [PLU(), Cholesky(), SparseLU()], ids=repr)
def test_factorizations_pickle(method):
    """A worker may send its factorization back; SuperLU itself does not pickle."""
    op = OPERATORS["laplacian_1d"] if isinstance(method, Cholesky) else \
        dense_op(pivoting_matrix())
    fact = method.factorize(op, CTX)
    copy = pickle.loads(pickle.dumps(fact))
    B = np.random.default_rng(2).standard_normal((op.n, 3))
    np.testing.assert_allclose(copy.solve(B), fact.solve(B), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(copy.solve(B[:, 0]), fact.solve(B[:, 0]), rtol=1e-12,
                               atol=1e-13)
    np.testing.assert_array_equal(copy.apply(B), fact.apply(B))
    assert copy.n_params == fact.n_params


def test_pivots_to_permutation_matches_row_swaps():
    piv = np.array([2, 2, 3, 3])  # swap rows 0↔2, then 1↔2, then 2↔3
    rows = np.arange(4)
    for i, p in enumerate(piv):
        rows[[i, p]] = rows[[p, i]]
    np.testing.assert_array_equal(pivots_to_permutation(piv), rows)


def test_n_params():
    op = OPERATORS["laplacian_1d"]
    assert PLU().factorize(op, CTX).n_params == N * N
    assert Cholesky().factorize(op, CTX).n_params == N * (N + 1) // 2
    fact = SparseLU(permc_spec="NATURAL").factorize(op, CTX)
    # tridiagonal, no pivoting: L and U are bidiagonal, 2n − 1 entries each
    assert fact.n_params == 2 * (2 * N - 1)
    assert fact.info["nnz_L"] + fact.info["nnz_U"] == fact.n_params


# --------------------------------------------------------------------------------------------
# Failures
# --------------------------------------------------------------------------------------------
def test_singular_matrix_is_a_factorization_error():
    A = [[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [1.0, 0.0, 1.0]]  # row 2 = 2·row 1
    with pytest.raises(FactorizationError, match=r"singular matrix: zero pivot U\[2,2\]"):
        PLU().factorize(dense_op(A), CTX)
    with pytest.raises(FactorizationError, match="singular matrix"):
        SparseLU().factorize(dense_op(A), CTX)
    zero_column = sp.csr_array(np.array([[1.0, 0.0], [2.0, 0.0]]))
    with pytest.raises(FactorizationError, match="singular matrix"):
        SparseLU().factorize(Operator("z", zero_column, symmetric=False, spd=False), CTX)


def test_nan_is_a_factorization_error():
    A = np.eye(3)
    A[1, 1] = np.nan
    with pytest.raises(FactorizationError, match="infs or NaNs"):
        PLU().factorize(dense_op(A, symmetric=True), CTX)


def test_sparse_lu_parameters_are_checked():
    with pytest.raises(InvalidParameter, match="diag_pivot_thresh must lie in \\[0, 1\\], got 2"):
        SparseLU(diag_pivot_thresh=2.0).factorize(OPERATORS["laplacian_1d"], CTX)
    with pytest.raises(InvalidParameter, match="permc_spec must be one of"):
        SparseLU(permc_spec="AMD").factorize(OPERATORS["laplacian_1d"], CTX)
    with pytest.raises(InvalidParameter) as info:  # at load: the suite's error, once
        SparseLU.check_params({"diag_pivot_thresh": -1.0})
    assert info.value.param == "diag_pivot_thresh"
    SparseLU.check_params({"diag_pivot_thresh": None})


# --------------------------------------------------------------------------------------------
# Registration and description
# --------------------------------------------------------------------------------------------
def test_registered_through_the_entry_point(registry):
    for cls in lubench_classical.METHODS:
        assert registry.method(cls.name) is cls
        assert cls.family == "classical"
        assert registry.provider[("method", cls.name)] == "classical"
        assert cls.describe()
        assert all(spec.doc for spec in param_specs(cls).values())
    assert {c.name for c in lubench_operators.OPERATORS} <= set(registry.operators)


@pytest.mark.parametrize("method", [PLU(), Cholesky(), SparseLU(), SparseLU(permc_spec="NATURAL"),
                                    ILU(drop_tol=1e-2)], ids=repr)
def test_apply_transpose_is_the_transpose_of_apply(method):
    """(P L U)ᵀ X from the factors (what the spectral estimate above exact_limit uses), on a
    nonsymmetric operator that pivots (an SPD one for Cholesky)."""
    key = "rbf_kernel" if isinstance(method, Cholesky) else "convdiff_2d[dirichlet_rows]"
    op = OPERATORS[key]
    fact = method.factorize(op, CTX)
    A_hat = fact.apply(np.eye(op.n))
    X = np.random.default_rng(0).standard_normal((op.n, 3))
    np.testing.assert_allclose(fact.apply_transpose(X), A_hat.T @ X, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fact.apply_transpose(X[:, 0]), A_hat.T @ X[:, 0], rtol=1e-12,
                               atol=1e-12)
