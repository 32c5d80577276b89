"""The tiny operators the method checks run on (n = 16, NumPy and SciPy only); see
:mod:`lubench.testing`."""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp

from lubench.api import (
    InvalidParameter,
    Operator,
    OperatorGenerator,
)

TINY_N = 16
TINY_KINDS = ("diag_dominant", "spd", "needs_pivoting")
MUST_FACTORIZE = ("diag_dominant", "spd")  # LU without pivoting exists on these
SEED = 12345  # the seed every check runs with


def tiny_operator(kind: str, n: int = TINY_N, seed: int = 0) -> Operator:
    """One of :data:`TINY_KINDS` (see the module docstring), n × n, reproducible from ``seed``."""
    rng = np.random.default_rng([seed, TINY_KINDS.index(kind)])
    coords = np.arange(n, dtype=np.float64)[:, None]
    if kind == "diag_dominant":
        # tridiagonal plus two far bands, random entries in [-1, 1], diagonal 5 + |row sum|
        offsets = [-1, 1, -(n // 2), n // 2]
        A = sp.diags([rng.uniform(-1, 1, n - abs(k)) for k in offsets], offsets,
                     shape=(n, n), format="lil")
        row = np.abs(A.toarray()).sum(axis=1)
        A.setdiag(5.0 + row)
        return Operator(TinyOperator.name, sp.csr_array(A.tocsr()), symmetric=False, spd=False,
                        coords=coords, params={"kind": kind})
    if kind == "spd":
        Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
        A = (Q * np.linspace(1.0, 10.0, n)) @ Q.T
        A = (A + A.T) / 2
        return Operator(TinyOperator.name, A, symmetric=True, spd=True, coords=coords,
                        params={"kind": kind})
    if kind == "needs_pivoting":
        # M diagonally dominant by columns (partial pivoting keeps its rows in place) with
        # M[1, 0] = 0; A = M with rows 0, 1, 2 rotated, so A[0, 0] = M[1, 0] = 0 and the
        # pivoting permutation is a 3-cycle: P ≠ Pᵀ, a factorization that confuses them fails
        M = rng.uniform(-1, 1, (n, n))
        M[1, 0] = 0.0
        np.fill_diagonal(M, 0.0)
        M[np.diag_indices(n)] = 2.0 + np.abs(M).sum(axis=0)
        A = M[[1, 2, 0, *range(3, n)]]
        return Operator(TinyOperator.name, A, symmetric=False, spd=False, coords=coords,
                        params={"kind": kind})
    raise InvalidParameter(f"tiny operator kind must be one of {', '.join(TINY_KINDS)}, "
                           f"got {kind!r}")


class TinyOperator(OperatorGenerator):
    """The tiny operators of lubench.testing (diagonally dominant, SPD, needing pivoting).

    Parameters
    ----------
    kind : str
        ``diag_dominant`` (sparse, nonsymmetric, strictly diagonally dominant by rows),
        ``spd`` (dense, eigenvalues evenly spaced in [1, 10]) or ``needs_pivoting`` (dense,
        a₁₁ = 0: elimination without row exchanges breaks down at step 0).
    """

    name = "lubench_testing_tiny"

    def __init__(self, kind: Literal["diag_dominant", "spd", "needs_pivoting"] = "spd"):
        self.kind = kind

    def check_size(self, n: int) -> None:
        if n < 4:
            raise InvalidParameter(f"{self.name} needs n >= 4, got {n}")

    def build(self, n: int, seed: int) -> Operator:
        op = tiny_operator(self.kind, n, seed)
        op.name = self.name
        return op
