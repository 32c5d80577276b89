"""Dense LU with partial pivoting (LAPACK getrf through scipy.linalg.lu_factor)."""

from __future__ import annotations

import warnings

import numpy as np

from lubench.api import Factorization, FactorizationError, Method, Operator, RunContext
from lubench.lazy import lazy_module
from lubench_classical._dense import as_columns, triangular_product

sla = lazy_module("scipy.linalg")

__all__ = ["PLU", "PLUFactors", "pivots_to_permutation"]


def pivots_to_permutation(piv: np.ndarray) -> np.ndarray:
    """perm with A[perm] = L·U, from LAPACK's interchanges (row i swapped with piv[i], i = 0…).

    getrf computes P_{n−1}⋯P_0·A = L·U with P_i the swap of rows i and piv[i]; applying the
    same swaps to the index vector gives perm, so A = P·L·U where P sends row i of L·U to
    row perm[i]: (P·Y)[perm] = Y.
    """
    perm = np.arange(len(piv))
    for i, p in enumerate(piv):
        perm[i], perm[p] = perm[p], perm[i]
    return perm


class PLUFactors(Factorization):
    """A = P·L·U stored as LAPACK does: one n×n array (L strictly below, U on and above the
    diagonal) and the pivot vector; n_params = n²."""

    def __init__(self, lu: np.ndarray, piv: np.ndarray):
        super().__init__()
        self.lu = lu
        self.piv = piv
        self.perm = pivots_to_permutation(piv)
        self.n_params = int(lu.shape[0] ** 2)
        diag = np.abs(np.diag(lu))
        self.info = {"min_abs_pivot": float(diag.min()), "max_abs_pivot": float(diag.max()),
                     "row_swaps": int(np.count_nonzero(piv != np.arange(len(piv))))}

    def solve(self, B: np.ndarray) -> np.ndarray:
        return sla.lu_solve((self.lu, self.piv), np.asarray(B, dtype=np.float64),
                            check_finite=False)

    def apply(self, X: np.ndarray) -> np.ndarray:
        Xc, vector = as_columns(X)
        Y = triangular_product(self.lu, Xc, lower=False)        # U·X
        Y = triangular_product(self.lu, Y, lower=True, unit=True)  # L·(U·X)
        out = np.empty_like(Y)
        out[self.perm] = Y                                         # P·(L·U·X)
        return out[:, 0] if vector else out

    def apply_transpose(self, X: np.ndarray) -> np.ndarray:
        Xc, vector = as_columns(X)
        Y = np.ascontiguousarray(Xc[self.perm])                    # Pᵀ·X
        Y = triangular_product(self.lu, Y, lower=True, unit=True, trans=True)  # Lᵀ·(Pᵀ·X)
        Y = triangular_product(self.lu, Y, lower=False, trans=True)  # Uᵀ·(Lᵀ·Pᵀ·X)
        return Y[:, 0] if vector else Y


class PLU(Method):
    """Dense LU with partial pivoting, A = P·L·U (LAPACK getrf via scipy.linalg.lu_factor).

    L is unit lower triangular, U upper triangular, P a permutation chosen so that every
    |L_ij| ≤ 1. Stores n² numbers (L and U in one array) plus n pivot indices. A zero pivot
    (exactly singular A) is a failure: "singular matrix: zero pivot U[i,i]".

    Parameters
    ----------
    check_finite : bool
        Let SciPy refuse a matrix that holds NaN or Inf.
    """

    name = "plu"
    family = "classical"

    def __init__(self, check_finite: bool = True):
        self.check_finite = check_finite

    def factorize(self, op: Operator, ctx: RunContext) -> PLUFactors:
        A = op.dense()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", sla.LinAlgWarning)
                lu, piv = sla.lu_factor(A, overwrite_a=not isinstance(op.matrix, np.ndarray),
                                        check_finite=self.check_finite)
        except ValueError as exc:  # NaN or Inf in A
            raise FactorizationError(f"plu: {exc}") from None
        zero = np.flatnonzero(np.diag(lu) == 0)
        if zero.size:
            i = int(zero[0])
            raise FactorizationError(f"singular matrix: zero pivot U[{i},{i}]")
        return PLUFactors(lu, piv)
