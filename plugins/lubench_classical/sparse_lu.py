"""Sparse LU with a fill-reducing column ordering (SuperLU through scipy.sparse.linalg.splu)."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from lubench.api import (
    Factorization,
    FactorizationError,
    InvalidParameter,
    Method,
    Operator,
    RunContext,
)
from lubench.lazy import lazy_module
from lubench_classical._dense import as_columns

sp = lazy_module("scipy.sparse")
spla = lazy_module("scipy.sparse.linalg")

__all__ = ["SparseLU", "SparseLUFactors"]

ColumnOrdering = Literal["COLAMD", "NATURAL", "MMD_ATA", "MMD_AT_PLUS_A"]
ORDERINGS = ("COLAMD", "NATURAL", "MMD_ATA", "MMD_AT_PLUS_A")


class SparseLUFactors(Factorization):
    """Pr·A·Pc = L·U from SuperLU; n_params = nnz(L) + nnz(U) (L's unit diagonal included,
    as SuperLU stores it).

    In SciPy's convention Pr[perm_r[i], i] = 1 and Pc[i, perm_c[i]] = 1, so
    A = Prᵀ·L·U·Pcᵀ; ``apply`` applies the two permutations by indexing.
    """

    def __init__(self, lu: spla.SuperLU, nnz_A: int):
        super().__init__()
        self.lu: spla.SuperLU | None = lu
        self.L = sp.csr_array(lu.L)
        self.U = sp.csr_array(lu.U)
        self.perm_r = np.asarray(lu.perm_r)
        self.perm_c = np.asarray(lu.perm_c)
        self.n_params = int(self.L.nnz + self.U.nnz)
        self.info = {"nnz_L": int(self.L.nnz), "nnz_U": int(self.U.nnz), "nnz_A": int(nnz_A),
                     "fill_ratio": self.n_params / max(nnz_A, 1)}

    def solve(self, B: np.ndarray) -> np.ndarray:
        B = np.asarray(B, dtype=np.float64)
        if self.lu is not None:
            return self.lu.solve(B)
        # After unpickling (SuperLU objects do not pickle): A x = b ⇔ L U (Pcᵀ x) = Pr b.
        C = np.empty_like(B)
        C[self.perm_r] = B                                        # Pr·B
        Y = spla.spsolve_triangular(self.L, C, lower=True, unit_diagonal=True)
        Z = spla.spsolve_triangular(self.U, Y, lower=False)
        return Z[self.perm_c]                                     # Pc·Z

    def __getstate__(self) -> dict:
        return {**self.__dict__, "lu": None}

    def apply(self, X: np.ndarray) -> np.ndarray:
        Xc, vector = as_columns(X)
        Y = np.empty_like(Xc)
        Y[self.perm_c] = Xc                    # Pcᵀ·X: (Pcᵀ X)[perm_c[i]] = X[i]
        Z = self.L @ (self.U @ Y)              # L·U·(Pcᵀ·X)
        out = Z[self.perm_r]                   # Prᵀ·Z: (Prᵀ Z)[i] = Z[perm_r[i]]
        return out[:, 0] if vector else out

    def apply_transpose(self, X: np.ndarray) -> np.ndarray:
        Xc, vector = as_columns(X)
        W = np.empty_like(Xc)
        W[self.perm_r] = Xc                    # Pr·X: (Pr X)[perm_r[i]] = X[i]
        V = self.U.T @ (self.L.T @ W)          # Uᵀ·Lᵀ·(Pr·X)
        out = V[self.perm_c]                   # Pc·V: (Pc V)[i] = V[perm_c[i]]
        return out[:, 0] if vector else out


class SparseLU(Method):
    """Sparse LU, Pr·A·Pc = L·U, with SuperLU's threshold partial pivoting (scipy splu).

    Pc is a fill-reducing column ordering (``permc_spec``); Pr comes from threshold partial
    pivoting: a row is swapped in only when |a_ii| < ``diag_pivot_thresh``·max_k |a_ki| of its
    column. Stores nnz(L) + nnz(U) numbers. An exactly singular A is a failure.

    Parameters
    ----------
    permc_spec : str
        Column ordering: ``COLAMD`` (approximate minimum degree on the columns),
        ``NATURAL`` (none), ``MMD_ATA`` (minimum degree on AᵀA), ``MMD_AT_PLUS_A``
        (minimum degree on Aᵀ + A).
    diag_pivot_thresh : float or None
        Threshold in [0, 1] for partial pivoting (0: never pivot, 1: classic partial
        pivoting); None leaves SuperLU's default (1.0).
    """

    name = "sparse_lu"
    family = "classical"

    def __init__(self, permc_spec: ColumnOrdering = "COLAMD",
                 diag_pivot_thresh: float | None = None):
        self.permc_spec = permc_spec
        self.diag_pivot_thresh = diag_pivot_thresh

    @classmethod
    def check_params(cls, params: dict) -> None:
        """A known ordering and diag_pivot_thresh in [0, 1] (or None), checked when the suite
        loads: a bad value is an error of the suite file, not a failed case per operator."""
        cls(**params)._check_params()

    def _check_params(self) -> None:
        if self.permc_spec not in ORDERINGS:
            raise InvalidParameter(f"sparse_lu: permc_spec must be one of "
                                   f"{', '.join(ORDERINGS)}, got {self.permc_spec!r}",
                                   param="permc_spec")
        t = self.diag_pivot_thresh
        if t is not None and not (isinstance(t, (int, float)) and math.isfinite(t)
                                  and 0 <= t <= 1):
            raise InvalidParameter(f"sparse_lu: diag_pivot_thresh must lie in [0, 1], "
                                   f"got {t!r}", param="diag_pivot_thresh")

    def factorize(self, op: Operator, ctx: RunContext) -> SparseLUFactors:
        self._check_params()
        A = sp.csc_matrix(op.sparse(), dtype=np.float64)
        A.sum_duplicates()
        try:
            lu = spla.splu(A, permc_spec=self.permc_spec,
                           diag_pivot_thresh=self.diag_pivot_thresh)
        except RuntimeError as exc:  # SuperLU: "Factor is exactly singular"
            raise FactorizationError(f"singular matrix: SuperLU says {exc}") from None
        return SparseLUFactors(lu, A.nnz)
