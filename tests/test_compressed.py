"""gfmm_compressed: exact where the factors fit the pattern, a structured solve that inverts
its own apply, the Method contract, and compress_lu's factors as the learned methods use them."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from lubench_compressed import GfmmCompressed
from lubench_structured.gfmm import compress_lu, dense_lu

from lubench.api import (
    Budget,
    InvalidParameter,
    MatrixFreeOperator,
    Operator,
    RunContext,
    Unsupported,
)
from lubench.testing import CheckSkipped, method_checks, tiny_operator


def _ctx(**kw) -> RunContext:
    return RunContext(device="cpu", seed=0, budget=Budget(), **kw)


def _banded(n: int, bw: int, seed: int = 0) -> Operator:
    """Nonsymmetric, diagonally dominant, bandwidth bw (LU without pivoting stays in band)."""
    rng = np.random.default_rng(seed)
    offsets = [k for k in range(-bw, bw + 1) if k]
    A = sp.diags([rng.uniform(-1, 1, n - abs(k)) for k in offsets], offsets, shape=(n, n))
    A = A.toarray()
    A[np.diag_indices(n)] = 1.0 + np.abs(A).sum(axis=1)
    return Operator("banded", A, symmetric=False, spd=False)


def _exponential(n: int, rho: float = 0.9) -> Operator:
    i = np.arange(n)
    return Operator("exponential_kernel", rho ** np.abs(i[:, None] - i[None, :]),
                    symmetric=True, spd=True)


def _rbf(n: int, ell: float = 0.2) -> Operator:
    x = np.sort(np.random.default_rng(0).uniform(0, 1, n))
    A = np.exp(-((x[:, None] - x[None, :]) ** 2) / (2 * ell**2)) + 1e-4 * np.eye(n)
    return Operator("rbf", A, symmetric=True, spd=True)


def _factor_error(fact, A: np.ndarray) -> float:
    return float(np.linalg.norm(fact.apply(np.eye(A.shape[0])) - A) / np.linalg.norm(A))


@pytest.mark.parametrize("check", method_checks(GfmmCompressed, P=4),
                         ids=lambda c: getattr(c, "__name__", ""))
def test_contract(check):
    try:
        check()
    except CheckSkipped as exc:
        pytest.skip(str(exc))


def test_registered_as_compressed_plugin(registry):
    assert registry.method("gfmm_compressed") is GfmmCompressed
    assert GfmmCompressed.family == "compressed"


def test_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None; import lubench_compressed, "
            "lubench_structured.gfmm.arrays, lubench_structured.gfmm.compression; "
            "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]")
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------------------------
# Exactness where the factors fit the pattern
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bw", [1, 5, 16])
def test_exact_on_a_banded_operator_n128(bw):
    op = _banded(128, bw)
    fact = GfmmCompressed(P=16).factorize(op, _ctx())
    assert fact.info["pivoting"] == "none"
    assert _factor_error(fact, op.dense()) <= 1e-14
    # nothing outside the band: every far-field basis has rank 0, only the near field is kept
    assert all(r == 0 for level in fact.info["ranks_L"] + fact.info["ranks_U"] for r in level)
    M, P = 8, 16
    near = M * P * (P - 1) // 2 + M * P * (P + 1) // 2 + 2 * (M - 1) * P * P
    assert fact.n_params == near


def test_exponential_kernel_is_exact_for_small_P():
    """Off-diagonal blocks of its L and U have rank 1 (REFERENCE.md), so P = 4 holds them."""
    op = _exponential(128)
    fact = GfmmCompressed(P=4).factorize(op, _ctx())
    assert _factor_error(fact, op.dense()) <= 1e-12


def test_rank_limits_the_far_field_and_error_shrinks_with_rank():
    op = _rbf(256)
    A = op.dense()
    errs, counts = [], []
    for rank in (1, 4, 16):
        fact = GfmmCompressed(P=16, rank=rank).factorize(op, _ctx())
        assert max(r for lv in fact.info["ranks_L"] for r in lv) <= rank
        errs.append(_factor_error(fact, A))
        counts.append(fact.n_params)
    assert errs[0] > errs[1] > errs[2]
    assert counts[0] < counts[1] < counts[2]


# --------------------------------------------------------------------------------------------
# Solve and apply
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n, P", [(64, 8), (100, 8), (200, 16), (250, 4), (37, 32)])
def test_solve_inverts_apply_to_round_off_with_padding(n, P):
    op = _rbf(n, ell=0.1)
    fact = GfmmCompressed(P=P, rank=max(P // 2, 1)).factorize(op, _ctx())
    Ahat = fact.apply(np.eye(n))                  # the operator the factors represent
    B = np.random.default_rng(1).standard_normal((n, 3))
    X = fact.solve(B)
    X_ref = np.linalg.solve(Ahat, B)
    kappa = np.linalg.cond(Ahat)
    assert np.linalg.norm(X - X_ref) / np.linalg.norm(X_ref) <= 1e3 * kappa * 2.2e-16
    x1 = fact.solve(B[:, 1])                      # one column: same to round-off
    assert np.linalg.norm(x1 - X[:, 1]) / np.linalg.norm(X[:, 1]) <= 1e3 * kappa * 2.2e-16


def test_partial_pivoting_is_part_of_the_factorization():
    op = tiny_operator("needs_pivoting", n=16)
    A = op.dense()
    fact = GfmmCompressed(P=8).factorize(op, _ctx())   # M = 2: no far field, exact
    assert fact.info["pivoting"] == "partial"
    assert not np.array_equal(fact.perm, np.arange(16))
    assert _factor_error(fact, A) <= 1e-14
    b = A @ np.arange(16.0)
    np.testing.assert_allclose(fact.solve(b), np.arange(16.0), rtol=1e-10, atol=1e-10)


def test_pivoting_rule():
    A = np.array([[1e-12, 1.0], [1.0, 1.0]])
    perm, L, U, info = dense_lu(A)                # growth ~1e12 without exchanges
    assert info["pivoting"] == "partial" and info["growth_unpivoted"] > 1e4
    np.testing.assert_allclose(L @ U, A[perm], atol=1e-15)
    perm, L, U, info = dense_lu(A, "never")
    assert info["pivoting"] == "none"
    np.testing.assert_allclose(L @ U, A, atol=1e-15)


# --------------------------------------------------------------------------------------------
# compress_lu, the learned methods' projected start
# --------------------------------------------------------------------------------------------
def test_compress_lu_factors_have_triangular_diagonal_blocks():
    A = _exponential(96).dense()                  # its factors fit exactly (rank-1 blocks)
    perm, L, U, info = compress_lu(A, 8, 16)
    assert L.lower and not U.lower and L.n == U.n == 128
    assert np.all(np.triu(L.diag, 1) == 0) and np.all(np.diagonal(L.diag, 0, 1, 2) == 1.0)
    assert np.all(np.tril(U.diag, -1) == 0)
    np.testing.assert_array_equal(perm, np.arange(128))
    Abar = np.eye(128)
    Abar[:96, :96] = A
    err = np.linalg.norm(L.dense() @ U.dense() - Abar[perm]) / np.linalg.norm(Abar)
    assert err <= 1e-12
    assert info["n_params"] > 0


# --------------------------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("params, name", [
    ({"P": 0}, "P"), ({"M": 6}, "M"), ({"rank": -1}, "rank"), ({"tol": -1.0}, "tol"),
    ({"pivoting": "full"}, "pivoting"),
])
def test_bad_parameters_are_named(params, name):
    with pytest.raises(InvalidParameter, match=name):
        GfmmCompressed(**params).check(_exponential(16))


def test_too_few_leaves_and_memory_are_unsupported():
    with pytest.raises(Unsupported, match="smaller than n"):
        GfmmCompressed(P=4, M=2).check(_exponential(16))
    with pytest.raises(Unsupported, match="memory limit"):
        GfmmCompressed(P=4).factorize(_exponential(64), _ctx(memory_limit=1000))


# --------------------------------------------------------------------------------------------
# Operators that are not formed: the pattern filled from the hierarchical LU (lu: hodlr)
# --------------------------------------------------------------------------------------------
class _MatrixFreeRBF(MatrixFreeOperator):
    """The RBF kernel of ``_rbf`` never formed: entries and action only."""

    has_entries = True

    def __init__(self, n: int, ell: float = 0.2):
        super().__init__("rbf_free", n, symmetric=True, spd=True)
        self.x = np.sort(np.random.default_rng(0).uniform(0, 1, n))
        self.ell = ell

    def entries(self, rows, cols):
        rows, cols = np.asarray(rows), np.asarray(cols)
        d = self.x[rows][:, None] - self.x[cols][None, :]
        return np.exp(-d**2 / (2 * self.ell**2)) + 1e-4 * (rows[:, None] == cols[None, :])

    def matmat(self, X):
        return self.entries(np.arange(self.n), np.arange(self.n)) @ X


def test_an_operator_not_formed_is_compressed_from_its_hierarchical_lu():
    """auto takes the hierarchical route for an operator that is not formed (nothing n × n is
    formed) and reaches the error of the dense route on the same operator formed."""
    free = _MatrixFreeRBF(500)
    method = GfmmCompressed(P=16, rank=8)
    assert method.needs == "action" and GfmmCompressed(lu="dense").needs == "matrix"
    fact = method.factorize(free, _ctx())
    assert fact.info["lu"] == "hodlr" and fact.info["hodlr_compression"] == "aca"
    dense = method.factorize(free.form(), _ctx())
    assert dense.info["lu"] == "dense"
    A = free.dense()
    e_free, e_dense = _factor_error(fact, A), _factor_error(dense, A)
    assert e_free <= 1.5 * e_dense and e_dense <= 1.5 * e_free
    b = A @ np.ones(500)
    x = fact.solve(b)
    assert np.linalg.norm(fact.apply(x) - b) <= 1e-10 * np.linalg.norm(b)


def test_a_dense_lu_over_the_memory_limit_takes_the_hierarchical_route():
    """laplacian_1d-like sparse A whose dense LU would need 6·N²·8 bytes: under a smaller
    limit auto compresses the HODLR factors (exact here: the factors are banded)."""
    n = 2048
    T = sp.diags([-np.ones(n - 1), 2.0 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1], format="csr")
    op = Operator("tri", T, symmetric=True, spd=True)
    fact = GfmmCompressed(P=16).factorize(op, _ctx(memory_limit=64 * 2**20))
    assert fact.info["lu"] == "hodlr" and fact.info["hodlr_compression"] == "sparse"
    assert _factor_error(fact, T.toarray()) <= 1e-13


@pytest.mark.parametrize("params, field", [({"lu": "svd"}, "lu"), ({"hodlr_tol": 0}, "hodlr_tol"),
                                           ({"P": 0}, "P")])
def test_bad_parameters_are_load_errors_naming_the_field(params, field):
    with pytest.raises(InvalidParameter, match=f"gfmm_compressed: {field} must"):
        GfmmCompressed.check_params(params)
