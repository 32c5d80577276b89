"""The operator contract's action form (lubench.api.Operator / MatrixFreeOperator) and the
core's check of what a method needs (lubench.execution.worker.operator_for)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import gmres

from lubench.api import MatrixFreeOperator, Method, Operator, Unsupported
from lubench.execution.worker import operator_for


class Tridiagonal(MatrixFreeOperator):
    """tridiag(−1, 2, −1) as an action only."""

    def __init__(self, n: int):
        super().__init__("tri", n, symmetric=True, spd=True)

    def matmat(self, X):
        X = np.asarray(X, dtype=float)
        Y = 2.0 * X
        Y[1:] -= X[:-1]
        Y[:-1] -= X[1:]
        return Y


class Kernel(MatrixFreeOperator):
    """exp(−|i − j|/4), non-symmetric scaled by row: entries and action."""

    has_entries = True

    def __init__(self, n: int):
        super().__init__("kern", n, symmetric=False, spd=False)
        self.i = np.arange(n, dtype=float)

    def entries(self, rows, cols):
        r, c = self.i[np.asarray(rows)], self.i[np.asarray(cols)]
        return (1.0 + r[:, None] / 10) * np.exp(-np.abs(r[:, None] - c[None, :]) / 4)

    def matmat(self, X):
        return self.entries(np.arange(self.n), np.arange(self.n)) @ X

    def rmatmat(self, X):
        return self.entries(np.arange(self.n), np.arange(self.n)).T @ X


def _tri(n: int) -> np.ndarray:
    return 2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)


def test_formed_operator_gives_every_form():
    A = sp.csr_array(_tri(7) + np.triu(np.ones((7, 7)), 2) * 0.1)
    op = Operator("a", A, symmetric=False, spd=False)
    D = A.toarray()
    X = np.random.default_rng(0).standard_normal((7, 3))
    assert op.formed and op.has_entries and op.n == 7
    np.testing.assert_allclose(op.matmat(X), D @ X)
    np.testing.assert_allclose(op.rmatmat(X), D.T @ X)
    np.testing.assert_allclose(op.entries([3, 0], [1, 6, 6]), D[np.ix_([3, 0], [1, 6, 6])])
    np.testing.assert_allclose(op.diagonal(), np.diag(D))
    L = op.as_linear_operator()
    np.testing.assert_allclose(L @ X[:, 0], D @ X[:, 0])
    np.testing.assert_allclose(L.rmatvec(X[:, 0]), D.T @ X[:, 0])
    assert op.form() is op


def test_matrix_free_operator_is_formed_from_its_action_or_entries():
    tri = Tridiagonal(1500)  # more than one FORM_BLOCK of columns
    assert not tri.formed and tri.matrix is None and not tri.has_entries
    np.testing.assert_array_equal(tri.dense(), _tri(1500))
    formed = tri.form()
    assert formed.formed and formed.n == 1500 and formed.spd and formed.name == "tri"
    x = np.ones(1500)
    np.testing.assert_array_equal(tri.rmatmat(x), tri.matmat(x))  # symmetric default
    with pytest.raises(Unsupported, match="only its action"):
        tri.entries([0], [0])
    with pytest.raises(Unsupported, match="not formed"):
        tri.sparse()
    k = Kernel(1100)
    D = k.entries(np.arange(1100), np.arange(1100))
    np.testing.assert_array_equal(k.dense(), D)
    np.testing.assert_array_equal(k.diagonal(), np.diag(D))


def test_scipy_solves_with_the_action_alone():
    tri = Tridiagonal(64)
    b = np.ones(64)
    x, info = gmres(tri.as_linear_operator(), b, rtol=1e-12, restart=64, maxiter=10)
    assert info == 0
    np.testing.assert_allclose(_tri(64) @ x, b, atol=1e-9)


class _Needs(Method):
    name = "needs_probe"

    def __init__(self, kind: str = "matrix"):
        self.kind = kind

    @property
    def needs(self):  # type: ignore[override]
        return self.kind


def test_a_method_gets_the_operator_it_needs_or_unsupported_with_the_reason():
    tri, kern = Tridiagonal(100), Kernel(100)
    assert operator_for(_Needs("action"), tri, form_limit=1) is tri
    assert operator_for(_Needs("entries"), kern, form_limit=1) is kern
    with pytest.raises(Unsupported, match="needs the entries of A; operator 'tri'"):
        operator_for(_Needs("entries"), tri, form_limit=None)
    formed = operator_for(_Needs("matrix"), tri, form_limit=8 * 100 * 100)
    assert formed.formed
    with pytest.raises(Unsupported, match=r"needs the formed matrix; operator 'tri' at "
                                          r"n = 100 is not formed \(dense A: 78\.1 KiB > "
                                          r"form_limit 39\.1 KiB\)"):
        operator_for(_Needs("matrix"), tri, form_limit=8 * 100 * 100 // 2)
    formed_op = Operator("a", _tri(5), symmetric=True, spd=True)
    assert operator_for(_Needs("matrix"), formed_op, form_limit=1) is formed_op
