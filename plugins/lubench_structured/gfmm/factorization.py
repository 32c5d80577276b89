"""The factorization both GFMM methods return: Ā[perm] = L·U, L and U GFMM factors.

A (n×n) is padded to N = M·P with an identity block, Ā = [[A, 0], [0, I]]
(:func:`~.shape.pad_identity`); ``gfmm_compressed`` compresses Ā's exact LU into the GFMM
pattern (:mod:`.compression`), ``gfmm_lu`` trains L and U; either way the factors arrive as
:class:`~.arrays.GFMMArrays` and are applied and solved through their graphs.
"""

from __future__ import annotations

import numpy as np

from lubench.api import Factorization

from .arrays import GFMMArrays

__all__ = ["GFMMFactorization"]


class GFMMFactorization(Factorization):
    """A ≈ P·L₁₁U₁₁ with L, U GFMMArrays of the padded Ā and P the row permutation.

    ``apply``: (L(U [X; 0]))[:n] with rows permuted back (out[perm] = ·); ``solve``: b[perm],
    the structured forward solve with L on [b; 0], its padding rows set to 0, the back
    solve with U (L, U being triangular entry by entry, this inverts exactly what ``apply``
    applies). Both O(n·P) per column, no dense matrix.
    """

    expensive_apply = False

    def __init__(self, perm: np.ndarray, L: GFMMArrays, U: GFMMArrays, n: int, n_params: int):
        super().__init__()
        self.perm = np.asarray(perm[:n])
        self.L, self.U = L, U
        self.n, self.N = n, L.n
        self.n_params = int(n_params)

    def _padded(self, X: np.ndarray) -> tuple[np.ndarray, bool]:
        X = np.asarray(X, dtype=np.float64)
        vec = X.ndim == 1
        X2 = X.reshape(self.n, -1)
        if self.N > self.n:
            X2 = np.vstack([X2, np.zeros((self.N - self.n, X2.shape[1]))])
        return X2, vec

    def solve(self, B: np.ndarray) -> np.ndarray:
        B2, vec = self._padded(B)
        B2 = B2.copy()                      # a view of the caller's B when N = n
        B2[: self.n] = B2[self.perm]
        Y = self.L.solve(B2)
        Y[self.n:] = 0.0
        X = self.U.solve(Y)[: self.n]
        return X[:, 0] if vec else X

    def apply(self, X: np.ndarray) -> np.ndarray:
        X2, vec = self._padded(X)
        Y = self.L.apply(self.U.apply(X2))[: self.n]
        out = np.empty_like(Y)
        out[self.perm] = Y
        return out[:, 0] if vec else out

