"""LU without pivoting, as the sum of outer products of the textbook ("column into rows").

Gaussian elimination peels one rank-one term off A per step. With A⁽⁰⁾ = A, step k
(k = 0, …, n−1) takes the pivot u_kk = A⁽ᵏ⁾[k, k], the row uₖ = A⁽ᵏ⁾[k, :] and the column
ℓₖ = A⁽ᵏ⁾[:, k] / u_kk, and subtracts their outer product::

    A⁽ᵏ⁺¹⁾ = A⁽ᵏ⁾ − ℓₖ uₖ          (row k and column k of A⁽ᵏ⁺¹⁾ are zero)

so that A = ℓ₀u₀ + ℓ₁u₁ + … + ℓₙ₋₁uₙ₋₁ = L U, with L the unit lower triangular matrix of
columns ℓₖ and U the upper triangular matrix of rows uₖ. No rows are exchanged: the
elimination exists exactly when every leading principal minor of A is nonzero (true for
strictly diagonally dominant and for symmetric positive definite A) and breaks down at the
first zero pivot. For example, A = [[0, 1], [1, 0]] has u₀₀ = 0 at step 0.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from lubench.api import (
    Factorization,
    FactorizationError,
    InvalidParameter,
    Method,
    Operator,
    RunContext,
    Unsupported,
)

__all__ = ["OuterProductLU", "TextbookLU", "outer_product_lu"]


def outer_product_lu(A: np.ndarray, pivot_tol: float = 1e-10) -> np.ndarray:
    """L and U of A = L U packed in one n × n array (U on and above the diagonal, L's
    multipliers below it; L's unit diagonal is not stored).

    Raises FactorizationError "zero pivot at step k (|u_kk| = …)" at the first step with
    |u_kk| ≤ pivot_tol · max_{i≥k} |A⁽ᵏ⁾[i, k]| (or a pivot that is not finite).

    >>> outer_product_lu(np.array([[4.0, 3.0], [6.0, 3.0]]))
    array([[ 4. ,  3. ],
           [ 1.5, -1.5]])
    """
    LU = np.array(A, dtype=np.float64, copy=True)
    n = LU.shape[0]
    for k in range(n):
        pivot = LU[k, k]
        column_max = np.max(np.abs(LU[k:, k]))
        if not abs(pivot) > pivot_tol * column_max:  # also catches NaN
            raise FactorizationError(
                f"zero pivot at step {k} (|u_kk| = {abs(pivot):.3g}, column max "
                f"{column_max:.3g}): LU without pivoting breaks down")
        LU[k + 1:, k] /= pivot  # ℓₖ below the diagonal (its diagonal entry is 1)
        LU[k + 1:, k + 1:] -= np.outer(LU[k + 1:, k], LU[k, k + 1:])  # A⁽ᵏ⁺¹⁾ = A⁽ᵏ⁾ − ℓₖuₖ
    return LU


class OuterProductLU(Factorization):
    """A = L U from :func:`outer_product_lu`: n² stored numbers (L's unit diagonal implicit)."""

    def __init__(self, LU: np.ndarray):
        super().__init__()
        self.LU = LU
        self.n_params = int(LU.size)

    def solve(self, B: np.ndarray) -> np.ndarray:
        """x̂ = U⁻¹ L⁻¹ B by forward then back substitution."""
        Y = sla.solve_triangular(self.LU, B, lower=True, unit_diagonal=True)
        return sla.solve_triangular(self.LU, Y, lower=False)

    def apply(self, X: np.ndarray) -> np.ndarray:
        """L (U X)."""
        L = np.tril(self.LU, -1) + np.eye(self.LU.shape[0])
        return L @ (np.triu(self.LU) @ X)


class TextbookLU(Method):
    """LU without pivoting by outer products (the textbook "column into rows"): A = L U.

    Step k subtracts ℓₖuₖ, the k-th column of L times the k-th row of U, from what is left
    of A (see the module docstring). Without row exchanges it stops at the first pivot
    |u_kk| ≤ pivot_tol · max_{i≥k} |a⁽ᵏ⁾_ik| (status ``failed``, "zero pivot at step k"); the
    multipliers |ℓ_ik| are then at most 1 / pivot_tol.

    Parameters
    ----------
    pivot_tol : float
        Relative pivot threshold: a pivot no larger than pivot_tol times the largest entry of
        its column (on and below the diagonal) counts as zero. 0 stops only at exact zeros.
    max_n : int
        Largest n attempted: the elimination is dense, n³/3 multiply-adds and n² numbers;
        larger operators are refused (status ``unsupported``).
    """

    name = "textbook_lu"
    family = "classical"

    def __init__(self, pivot_tol: float = 1e-10, max_n: int = 2048):
        self.pivot_tol = pivot_tol
        self.max_n = max_n

    def check(self, op: Operator) -> None:
        if not self.pivot_tol >= 0:
            raise InvalidParameter(f"textbook_lu: pivot_tol must be >= 0, got {self.pivot_tol}")
        if op.n > self.max_n:
            raise Unsupported(f"textbook_lu is dense (n³/3 operations): n = {op.n} is above "
                              f"max_n = {self.max_n}")

    def factorize(self, op: Operator, ctx: RunContext) -> Factorization:
        return OuterProductLU(outer_product_lu(op.dense(), self.pivot_tol))
