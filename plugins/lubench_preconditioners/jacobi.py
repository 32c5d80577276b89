"""Jacobi (diagonal) preconditioning: M = diag(A)."""

from __future__ import annotations

import numpy as np

from lubench.api import Factorization, Method, Operator, RunContext, Unsupported

__all__ = ["Jacobi", "DiagonalFactor"]


class DiagonalFactor(Factorization):
    """M = D = diag(d): ``solve`` is D⁻¹B (row i divided by d_i), ``apply`` is D X. Stores
    n numbers."""

    def __init__(self, d: np.ndarray):
        super().__init__()
        self.d = np.asarray(d, dtype=np.float64).copy()
        self.n_params = int(self.d.size)

    def _column(self, X: np.ndarray) -> np.ndarray:
        return self.d if np.ndim(X) == 1 else self.d[:, None]

    def solve(self, B: np.ndarray) -> np.ndarray:
        return np.asarray(B, dtype=np.float64) / self._column(B)

    def apply(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) * self._column(X)

    def apply_transpose(self, X: np.ndarray) -> np.ndarray:
        """Dᵀ X = D X (so ‖A − D‖₂ is estimated above the suite's exact_limit)."""
        return self.apply(X)


class Jacobi(Method):
    """Jacobi preconditioner M = diag(A): the cheapest baseline, one division per unknown.

    M⁻¹ = diag(1/a_11, …, 1/a_nn); SPD whenever A's diagonal is positive (any SPD A), so it
    preconditions CG as well as GMRES. Stores n numbers; setup O(n), solve O(n). In
    NeuralIF's setting it needs about twice IC(0)'s CG iterations but, each being cheaper,
    can win on total time (Yang et al., NeurIPS 2025, Table 4: 970 iterations in 799 ms
    against IC(0)'s 438 in 1 387 ms).
    """

    name = "jacobi"
    family = "classical"
    exact = False  # diag(A) = A only for diagonal A

    def __init__(self) -> None:
        pass

    def check(self, op: Operator) -> None:
        if np.any(_diagonal(op) == 0):
            raise Unsupported("jacobi needs a nonzero diagonal")

    def factorize(self, op: Operator, ctx: RunContext) -> DiagonalFactor:
        return DiagonalFactor(_diagonal(op))


def _diagonal(op: Operator) -> np.ndarray:
    A = op.matrix
    return np.asarray(A.diagonal() if hasattr(A, "diagonal") else np.diag(A), dtype=np.float64)
