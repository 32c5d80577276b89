"""Dense Cholesky factorization (LAPACK potrf through scipy.linalg.cho_factor)."""

from __future__ import annotations

import numpy as np

from lubench.api import (
    Factorization,
    FactorizationError,
    Method,
    Operator,
    RunContext,
    Unsupported,
)
from lubench.lazy import lazy_module
from lubench_classical._dense import as_columns, triangular_product

sla = lazy_module("scipy.linalg")

__all__ = ["Cholesky", "CholeskyFactors"]


class CholeskyFactors(Factorization):
    """A = L·Lᵀ with L lower triangular, kept in the lower triangle of one n×n array;
    n_params = n(n+1)/2."""

    def __init__(self, c: np.ndarray):
        super().__init__()
        self.c = c
        n = c.shape[0]
        self.n_params = int(n * (n + 1) // 2)
        diag = np.diag(c)
        self.info = {"min_diag_L": float(diag.min()), "max_diag_L": float(diag.max())}

    def solve(self, B: np.ndarray) -> np.ndarray:
        return sla.cho_solve((self.c, True), np.asarray(B, dtype=np.float64),
                             check_finite=False)

    def apply(self, X: np.ndarray) -> np.ndarray:
        Xc, vector = as_columns(X)
        Y = triangular_product(self.c, Xc, lower=True, trans=True)  # Lᵀ·X
        Y = triangular_product(self.c, Y, lower=True)               # L·(Lᵀ·X)
        return Y[:, 0] if vector else Y

    def apply_transpose(self, X: np.ndarray) -> np.ndarray:
        return self.apply(X)  # L·Lᵀ is symmetric


class Cholesky(Method):
    """Dense Cholesky factorization A = L·Lᵀ of a symmetric positive definite A (LAPACK potrf).

    Here P = I and U = Lᵀ. Only the lower triangle is stored: n(n+1)/2 numbers. An operator
    known not to be SPD is ``unsupported``; one of unknown definiteness is tried, and a
    non-positive pivot is a failure carrying LAPACK's message.

    Parameters
    ----------
    check_finite : bool
        Let SciPy refuse a matrix that holds NaN or Inf.
    """

    name = "cholesky"
    family = "classical"

    def __init__(self, check_finite: bool = True):
        self.check_finite = check_finite

    def check(self, op: Operator) -> None:
        if not op.symmetric:
            raise Unsupported(f"cholesky needs a symmetric positive definite operator; "
                              f"{op.name} is not symmetric")
        if op.spd is False:
            raise Unsupported(f"cholesky needs a symmetric positive definite operator; "
                              f"{op.name} is not positive definite")

    def factorize(self, op: Operator, ctx: RunContext) -> CholeskyFactors:
        self.check(op)
        A = op.dense()
        try:
            c, _lower = sla.cho_factor(A, lower=True,
                                       overwrite_a=not isinstance(op.matrix, np.ndarray),
                                       check_finite=self.check_finite)
        except np.linalg.LinAlgError as exc:
            raise FactorizationError(f"cholesky failed: {exc}") from None
        except ValueError as exc:  # NaN or Inf in A
            raise FactorizationError(f"cholesky: {exc}") from None
        return CholeskyFactors(c)
