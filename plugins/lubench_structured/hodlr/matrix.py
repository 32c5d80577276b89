"""A HODLR matrix: dense diagonal leaves, every off-diagonal block of the tree low rank.

For the cluster tree of :mod:`.tree` (node k = [lo, hi) with children c₁ = [lo, mid),
c₂ = [mid, hi)), a HODLR matrix is

    A = [[A_c₁c₁, U¹² V¹²ᵀ], [U²¹ V²¹ᵀ, A_c₂c₂]]

at every internal node, recursively, with the leaves' diagonal blocks dense. At ranks r it
stores n·leaf_size + 2·Σ_levels 2·(n/2)·r = O(n·leaf_size + n·r·log n) numbers, and one
product costs as many multiply-adds per column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tree import ClusterTree

__all__ = ["HODLRMatrix"]


@dataclass
class HODLRMatrix:
    """A (n × n) in HODLR form on ``tree``.

    Attributes
    ----------
    tree : ClusterTree
    leaves : list of numpy.ndarray
        ``leaves[j]`` = A[leaf j, leaf j] (dense).
    U12, V12, U21, V21 : list of numpy.ndarray
        For internal node k (lo, mid, hi): A[lo:mid, mid:hi] ≈ U12[k] V12[k]ᵀ and
        A[mid:hi, lo:mid] ≈ U21[k] V21[k]ᵀ.
    """

    tree: ClusterTree
    leaves: list
    U12: list
    V12: list
    U21: list
    V21: list

    @property
    def n(self) -> int:
        return self.tree.n

    # -- the block-source interface of :func:`.lu.factor` ---------------------------------------
    def leaf(self, j: int) -> np.ndarray:
        return self.leaves[j]

    def offdiag(self, k: int, compressed: bool = True
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.U12[k], self.V12[k], self.U21[k], self.V21[k]

    # -- products ------------------------------------------------------------------------------
    def matmat(self, X: np.ndarray, transpose: bool = False, levels: int | None = None,
               leaves: bool = True) -> np.ndarray:
        """A·X (Aᵀ·X with ``transpose``) for X (n,) or (n, c); O(n·(leaf + r·K)) per column.

        ``levels``: only the off-diagonal blocks of levels < ``levels`` (all when None);
        ``leaves``: include the diagonal leaves. Used by the randomized build to subtract
        what is already known from a sample.
        """
        X = np.asarray(X, dtype=np.float64)
        vec = X.ndim == 1
        X2 = X.reshape(self.n, -1)
        Y = np.zeros_like(X2)
        t = self.tree
        if leaves:
            lb = t.leaf_bounds
            for j, D in enumerate(self.leaves):
                lo, hi = lb[j], lb[j + 1]
                Y[lo:hi] += (D.T if transpose else D) @ X2[lo:hi]
        last = t.n_internal if levels is None else min(t.n_internal, (1 << levels) - 1)
        for k in range(last):
            lo, mid, hi = t.split(k)
            U12, V12, U21, V21 = self.U12[k], self.V12[k], self.U21[k], self.V21[k]
            if transpose:
                U12, V12, U21, V21 = V21, U21, V12, U12
            if U12.shape[1]:
                Y[lo:mid] += U12 @ (V12.T @ X2[mid:hi])
            if U21.shape[1]:
                Y[mid:hi] += U21 @ (V21.T @ X2[lo:mid])
        return Y[:, 0] if vec else Y

    def dense(self) -> np.ndarray:
        """A as a dense array (tests and small n only)."""
        return self.matmat(np.eye(self.n))

    def n_numbers(self) -> int:
        """Numbers stored: leaves and both factors of every low-rank block."""
        return int(sum(D.size for D in self.leaves)
                   + sum(a.size for a in (*self.U12, *self.V12, *self.U21, *self.V21)))

    def ranks(self) -> list[int]:
        """The largest rank of each level's off-diagonal blocks, root first."""
        out = []
        for lev in range(self.tree.depth):
            ks = range((1 << lev) - 1, (2 << lev) - 1)
            out.append(max(max(self.U12[k].shape[1], self.U21[k].shape[1]) for k in ks))
        return out
