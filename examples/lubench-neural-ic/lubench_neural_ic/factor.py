"""The learned factor as a lubench Factorization: M = L Lᵀ, solved by two sparse triangular
substitutions (Numba; SciPy's ``spsolve_triangular`` is about 20× slower, which would count
in every CG iteration's time)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from lubench.api import Factorization

__all__ = ["LearnedCholesky", "kernels"]

_KERNELS: dict = {}


def kernels() -> dict:
    """The compiled substitutions with a lower triangular CSR factor (sorted rows, the
    diagonal last in each), in place: ``forward`` L x = b and ``backward`` Lᵀ x = b for one
    column x (n,); ``forward_block`` / ``backward_block`` for X (n, k); ``entry_dots``
    out[p] = Σ_c U[i, c]·V[j, c] for each stored entry p = (i, j) (the gradient of a
    substitution with respect to the factor's values)."""
    if not _KERNELS:
        import numba

        @numba.njit(cache=True)
        def forward(indptr, indices, data, x):
            for i in range(x.shape[0]):
                end = indptr[i + 1] - 1
                s = x[i]
                for p in range(indptr[i], end):
                    s -= data[p] * x[indices[p]]
                x[i] = s / data[end]

        @numba.njit(cache=True)
        def backward(indptr, indices, data, x):  # from L's rows: row i of L is column i of Lᵀ
            for i in range(x.shape[0] - 1, -1, -1):
                end = indptr[i + 1] - 1
                xi = x[i] / data[end]
                x[i] = xi
                for p in range(indptr[i], end):
                    x[indices[p]] -= data[p] * xi

        @numba.njit(cache=True)
        def forward_block(indptr, indices, data, X):
            n, k = X.shape
            for i in range(n):
                end = indptr[i + 1] - 1
                for p in range(indptr[i], end):
                    j, v = indices[p], data[p]
                    for c in range(k):
                        X[i, c] -= v * X[j, c]
                d = data[end]
                for c in range(k):
                    X[i, c] /= d

        @numba.njit(cache=True)
        def backward_block(indptr, indices, data, X):
            n, k = X.shape
            for i in range(n - 1, -1, -1):
                end = indptr[i + 1] - 1
                d = data[end]
                for c in range(k):
                    X[i, c] /= d
                for p in range(indptr[i], end):
                    j, v = indices[p], data[p]
                    for c in range(k):
                        X[j, c] -= v * X[i, c]

        @numba.njit(cache=True)
        def entry_dots(indptr, indices, U, V):
            out = np.empty(indices.shape[0])
            for i in range(U.shape[0]):
                for p in range(indptr[i], indptr[i + 1]):
                    j = indices[p]
                    s = 0.0
                    for c in range(U.shape[1]):
                        s += U[i, c] * V[j, c]
                    out[p] = s
            return out

        _KERNELS.update(forward=forward, backward=backward, forward_block=forward_block,
                        backward_block=backward_block, entry_dots=entry_dots)
    return _KERNELS


class LearnedCholesky(Factorization):
    """M = L Lᵀ for a lower triangular L with a positive diagonal (CSR, sorted rows, the
    diagonal stored last in each): ``solve`` is L⁻ᵀ(L⁻¹B), ``apply`` is L(LᵀX). Stores
    nnz(L) numbers."""

    def __init__(self, L: sp.csr_array):
        super().__init__()
        self.L = L
        self.n_params = int(L.nnz)

    def solve(self, B: np.ndarray) -> np.ndarray:
        """L⁻ᵀ(L⁻¹B) for B of shape (n,) or (n, k): one pass over L per substitution, all
        columns at once."""
        k = kernels()
        X = np.array(B, dtype=np.float64, order="C")  # a copy, solved in place
        one = X.ndim == 1
        k["forward" if one else "forward_block"](self.L.indptr, self.L.indices, self.L.data, X)
        k["backward" if one else "backward_block"](self.L.indptr, self.L.indices, self.L.data, X)
        return X

    def apply(self, X: np.ndarray) -> np.ndarray:
        return self.L @ (self.L.T @ X)

    def apply_transpose(self, X: np.ndarray) -> np.ndarray:
        """(L Lᵀ)ᵀ X = L Lᵀ X (so the core estimates ‖A − LLᵀ‖₂ from products)."""
        return self.apply(X)
