"""Sparse triangular factors and their solves (Numba-compiled), shared by ``ic0``, ``ict``
and ``ilu0``.

A factor is a ``scipy.sparse.csr_array`` with sorted column indices; its diagonal is stored.
Three substitutions cover every solve, each a single pass over the factor's rows, O(nnz)
per right-hand side, all columns of B at once:

* ``lower``:            L x = b,  x_i = (b_i − Σ_{j<i} L_ij x_j) / L_ii, rows 0 … n−1;
* ``lower_transposed``: Lᵀ x = b from L's own rows (row i of L is column i of Lᵀ):
                        x_i = b_i / L_ii, then b_j −= L_ij x_i for j < i, rows n−1 … 0;
* ``upper``:            U x = b,  x_i = (b_i − Σ_{j>i} U_ij x_j) / U_ii, rows n−1 … 0.

``unit = True`` takes the diagonal as 1 (a unit lower factor whose stored 1s are skipped).
SciPy's ``spsolve_triangular`` does the same work about ten times slower (measured: 20 ms
against ~2 ms for L⁻ᵀL⁻¹b with nnz(L) = 5·10⁵), which would count in every CG iteration's
time; the kernels are compiled once per checkout (``cache=True``) and warmed up by the
methods' ``prepare``, outside ``setup_seconds``.
"""

from __future__ import annotations

import numpy as np

from lubench.api import Factorization, FactorizationError
from lubench.lazy import lazy_module

sp = lazy_module("scipy.sparse")

__all__ = ["CholeskyFactor", "LUFactors", "substitute", "warm_up", "as_factor"]


def _kernels():  # compiled on first use: importing this module imports no Numba
    import numba

    # Each kernel solves in place for x of shape (n, k); the rows of a CSR factor hold sorted
    # column indices, so a lower factor's diagonal is the last entry of its row and an upper
    # factor's the first (checked by as_factor).

    @numba.njit(cache=True)
    def lower(indptr, indices, data, X, unit):  # pragma: no cover - compiled
        n, k = X.shape
        for i in range(n):
            end = indptr[i + 1] - 1  # the diagonal
            for p in range(indptr[i], end):
                j = indices[p]
                v = data[p]
                for c in range(k):
                    X[i, c] -= v * X[j, c]
            if not unit:
                d = data[end]
                for c in range(k):
                    X[i, c] /= d

    @numba.njit(cache=True)
    def lower_transposed(indptr, indices, data, X, unit):  # pragma: no cover - compiled
        n, k = X.shape
        for i in range(n - 1, -1, -1):
            end = indptr[i + 1] - 1
            if not unit:
                d = data[end]
                for c in range(k):
                    X[i, c] /= d
            for p in range(indptr[i], end):
                j = indices[p]
                v = data[p]
                for c in range(k):
                    X[j, c] -= v * X[i, c]

    @numba.njit(cache=True)
    def upper(indptr, indices, data, X, unit):  # pragma: no cover - compiled
        n, k = X.shape
        for i in range(n - 1, -1, -1):
            start = indptr[i]  # the diagonal
            for p in range(start + 1, indptr[i + 1]):
                j = indices[p]
                v = data[p]
                for c in range(k):
                    X[i, c] -= v * X[j, c]
            if not unit:
                d = data[start]
                for c in range(k):
                    X[i, c] /= d

    @numba.njit(cache=True)
    def lower1(indptr, indices, data, x, unit):  # pragma: no cover - compiled
        for i in range(x.shape[0]):
            end = indptr[i + 1] - 1
            s = x[i]
            for p in range(indptr[i], end):
                s -= data[p] * x[indices[p]]
            x[i] = s if unit else s / data[end]

    @numba.njit(cache=True)
    def lower_transposed1(indptr, indices, data, x, unit):  # pragma: no cover - compiled
        for i in range(x.shape[0] - 1, -1, -1):
            end = indptr[i + 1] - 1
            xi = x[i] if unit else x[i] / data[end]
            x[i] = xi
            for p in range(indptr[i], end):
                x[indices[p]] -= data[p] * xi

    @numba.njit(cache=True)
    def upper1(indptr, indices, data, x, unit):  # pragma: no cover - compiled
        for i in range(x.shape[0] - 1, -1, -1):
            start = indptr[i]
            s = x[i]
            for p in range(start + 1, indptr[i + 1]):
                s -= data[p] * x[indices[p]]
            x[i] = s if unit else s / data[start]

    return {("lower", 2): lower, ("lower_transposed", 2): lower_transposed,
            ("upper", 2): upper, ("lower", 1): lower1,
            ("lower_transposed", 1): lower_transposed1, ("upper", 1): upper1}


_COMPILED: dict = {}


def substitute(kind: str, F: sp.csr_array, B: np.ndarray, unit: bool = False) -> np.ndarray:
    """Solve with the triangular factor F (``kind``: ``lower``, ``lower_transposed`` or
    ``upper``, see the module docstring) for B of shape (n,) or (n, k); same shape out. F
    must come from :func:`as_factor` (sorted rows, the diagonal stored in each)."""
    if not _COMPILED:
        _COMPILED.update(_kernels())
    X = np.array(B, dtype=np.float64, order="C")  # a copy, solved in place
    _COMPILED[kind, 1 if X.ndim == 1 else 2](F.indptr, F.indices, F.data, X, unit)
    return X


def warm_up() -> None:
    """Compile (or load from the cache) every kernel, on a 2 × 2 factor."""
    L = as_factor(np.array([[2.0, 0.0], [1.0, 3.0]]), lower=True)
    U = as_factor(L.T, lower=False)
    for B in (np.ones(2), np.ones((2, 2))):
        substitute("lower", L, B)
        substitute("lower_transposed", L, B)
        substitute("upper", U, B)


def as_factor(F: object, lower: bool) -> sp.csr_array:
    """F as a triangular factor the kernels take: CSR float64, sorted indices, duplicates
    summed, its diagonal stored in every row (last for ``lower``, first otherwise) and
    nothing on the other side of it. A factor with NaN or inf (a breakdown that left them)
    is a :class:`FactorizationError`."""
    F = sp.csr_array(F, dtype=np.float64)
    F.sum_duplicates()
    F.sort_indices()
    if not np.all(np.isfinite(F.data)):
        raise FactorizationError("the factor holds NaN or inf (a breakdown)")
    n = F.shape[0]
    rows = np.repeat(np.arange(n), np.diff(F.indptr))
    wrong = F.indices > rows if lower else F.indices < rows
    if np.any(wrong):
        raise FactorizationError(f"the factor is not {'lower' if lower else 'upper'} "
                                 f"triangular")
    at = F.indptr[1:] - 1 if lower else F.indptr[:-1]
    if np.any(np.diff(F.indptr) == 0) or np.any(F.indices[np.minimum(at, F.nnz - 1)]
                                                 != np.arange(n)):
        raise FactorizationError("the factor lacks a diagonal entry")
    return F


class CholeskyFactor(Factorization):
    """M = L Lᵀ from a sparse lower triangular L with a positive diagonal: ``solve`` is
    M⁻¹B = L⁻ᵀ(L⁻¹B), ``apply`` is L(LᵀX). Stores nnz(L) numbers."""

    def __init__(self, L: sp.csr_array):
        super().__init__()
        self.L = as_factor(L, lower=True)
        self.n_params = int(self.L.nnz)

    def solve(self, B: np.ndarray) -> np.ndarray:
        return substitute("lower_transposed", self.L, substitute("lower", self.L, B))

    def apply(self, X: np.ndarray) -> np.ndarray:
        return self.L @ (self.L.T @ X)

    def apply_transpose(self, X: np.ndarray) -> np.ndarray:
        """(L Lᵀ)ᵀ X = L Lᵀ X (so ‖A − LLᵀ‖₂ is estimated above the suite's exact_limit)."""
        return self.apply(X)


class LUFactors(Factorization):
    """M = L U from a unit lower triangular L and an upper triangular U: ``solve`` is
    U⁻¹(L⁻¹B), ``apply`` is L(UX). Stores nnz(U) + the strictly lower entries of L (its
    unit diagonal is not a number anyone needs to store)."""

    def __init__(self, L: sp.csr_array, U: sp.csr_array):
        super().__init__()
        L = sp.csr_array(L)
        self.L = as_factor(sp.tril(L, k=-1) + sp.eye_array(L.shape[0]), lower=True)  # unit
        self.U = as_factor(U, lower=False)
        self.n_params = int(sp.tril(self.L, k=-1).nnz + self.U.nnz)

    def solve(self, B: np.ndarray) -> np.ndarray:
        return substitute("upper", self.U, substitute("lower", self.L, B, unit=True))

    def apply(self, X: np.ndarray) -> np.ndarray:
        return self.L @ (self.U @ X)

    def apply_transpose(self, X: np.ndarray) -> np.ndarray:
        """(L U)ᵀ X = Uᵀ(Lᵀ X) (so ‖A − LU‖₂ is estimated above the suite's exact_limit)."""
        return self.U.T @ (self.L.T @ X)
