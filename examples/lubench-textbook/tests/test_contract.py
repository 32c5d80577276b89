"""This package's own CI: the lubench contract checks, plus what the method promises."""

import numpy as np
import pytest
import scipy.sparse as sp
from lubench_textbook import TextbookLU

from lubench.api import FactorizationError, Operator, RunContext
from lubench.testing import check_method, method_checks


@pytest.mark.parametrize("check", method_checks(TextbookLU), ids=lambda c: c.__name__)
def test_contract(check):
    check()


def test_contract_without_tolerance():
    check_method(TextbookLU, pivot_tol=0.0)


def test_zero_pivot_is_a_factorization_error():
    A = sp.diags([-1.0, 1.0, -1.0], [-1, 0, 1], shape=(8, 8))  # u_11 = 1 - 1 = 0
    op = Operator("t", A, symmetric=True, spd=False)
    with pytest.raises(FactorizationError, match=r"zero pivot at step 1 \(\|u_kk\| = 0"):
        TextbookLU().factorize(op, RunContext())


def test_laplacian_closed_form():
    n = 10
    A = 2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)
    LU = TextbookLU().factorize(Operator("t", A, True, True), RunContext()).LU
    i = np.arange(n)
    np.testing.assert_allclose(np.diag(LU), (i + 2) / (i + 1), rtol=1e-14)
    np.testing.assert_allclose(np.diag(LU, -1), -(i[:-1] + 1) / (i[:-1] + 2), rtol=1e-14)
