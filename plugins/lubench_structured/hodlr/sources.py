"""Where the blocks of A come from: the *block sources* the HODLR LU reads A through.

A block source on a :class:`~.tree.ClusterTree` answers two questions, each once per block
and in the order the factorization needs them (left to right), so that no block of A is
held longer than its factorization step:

* ``leaf(j)``: the dense diagonal block A[leaf j, leaf j];
* ``offdiag(k, compressed=True)``: (U¹², V¹², U²¹, V²¹) with A[c₁, c₂] ≈ U¹² V¹²ᵀ and
  A[c₂, c₁] ≈ U²¹ V²¹ᵀ for internal node k, to the rank rule of :mod:`.lowrank`; with
  ``compressed=False`` a source may return factors not yet recompressed (ACA's crosses),
  for a caller that recompresses them together with something else anyway.

Sources:

* :class:`EntriesSource` — from ``op.entries`` by adaptive cross approximation and
  recompression: O((m + n)·r) entries per block, O(n·r·log n) in all, A never formed;
* :class:`SparseSource` — a formed sparse A: each block read exactly from its nonzero rows
  and columns and truncated by SVD (sampling could miss an isolated entry, which the
  sparsity pattern shows);
* :class:`~.matrix.HODLRMatrix` — a HODLR matrix already built, e.g. from the action alone
  by :func:`.peeling.peel`.

Every source counts what it did in ``stats`` (entries read, blocks whose rank ``max_rank``
capped, ACA iterations that hit their limit).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .lowrank import aca, recompress, truncation_rank
from .tree import ClusterTree

__all__ = ["EntriesSource", "SparseSource"]


def _new_stats() -> dict[str, Any]:
    return {"entries": 0, "capped": 0, "max_cut": 0.0, "aca_unconverged": 0}


class EntriesSource:
    """Blocks of ``op`` from its entries: leaves read whole, off-diagonal blocks by ACA.

    The upper block A[c₁, c₂] starts its cross approximation at c₁'s last row, the lower
    block A[c₂, c₁] at c₂'s first row: the rows nearest the diagonal. For a symmetric
    operator the lower block is the upper one transposed (one approximation per node). ``tol`` and
    ``max_rank`` follow the rank rule (:mod:`.lowrank`); ACA stops at ‖uₖ‖‖vₖ‖ ≤ tol·‖Sₖ‖_F
    and its result is recompressed.
    """

    def __init__(self, op: Any, tree: ClusterTree, tol: float, max_rank: int,
                 rng: np.random.Generator):
        self.op, self.tree, self.tol, self.max_rank, self.rng = op, tree, tol, max_rank, rng
        self.symmetric = bool(op.symmetric)
        self.stats = _new_stats()

    def _entries(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        self.stats["entries"] += len(rows) * len(cols)
        return np.asarray(self.op.entries(rows, cols), dtype=np.float64)

    def leaf(self, j: int) -> np.ndarray:
        lb = self.tree.leaf_bounds
        idx = np.arange(lb[j], lb[j + 1])
        return self._entries(idx, idx)

    def _block(self, rows: np.ndarray, cols: np.ndarray, first: int, compressed: bool
               ) -> tuple[np.ndarray, np.ndarray]:
        U, V, ok = aca(self._entries, rows, cols, self.tol, self.max_rank, first, self.rng)
        if not ok:
            self.stats["aca_unconverged"] += 1
        if not compressed:
            return U, V
        U, V, cut = recompress(U, V, self.tol, self.max_rank)
        if cut:
            self.stats["capped"] += 1
            self.stats["max_cut"] = max(self.stats["max_cut"], cut)
        return U, V

    def offdiag(self, k: int, compressed: bool = True
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        lo, mid, hi = self.tree.split(k)
        r1, r2 = np.arange(lo, mid), np.arange(mid, hi)
        U12, V12 = self._block(r1, r2, mid - lo - 1, compressed)
        if self.symmetric:                   # A[c₂, c₁] = A[c₁, c₂]ᵀ: one ACA per node
            return U12, V12, V12, U12
        U21, V21 = self._block(r2, r1, 0, compressed)
        return U12, V12, U21, V21


class SparseSource:
    """Blocks of a formed sparse A, exactly: a block's nonzero rows × nonzero columns, dense,
    truncated by SVD to the rank rule. O(nnz) per level to find them; a block's dense core
    is as large as its nonzero rows times columns (a band's corner: small)."""

    def __init__(self, matrix: Any, tree: ClusterTree, tol: float, max_rank: int):
        import scipy.sparse as sp

        self.A = sp.csr_array(matrix)
        self.tree, self.tol, self.max_rank = tree, tol, max_rank
        self.stats = _new_stats()

    def leaf(self, j: int) -> np.ndarray:
        lb = self.tree.leaf_bounds
        lo, hi = int(lb[j]), int(lb[j + 1])
        return self.A[lo:hi, lo:hi].toarray().astype(np.float64)

    def _block(self, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
        B = self.A[r0:r1][:, c0:c1].tocoo()
        m, n = r1 - r0, c1 - c0
        if B.nnz == 0:
            return np.zeros((m, 0)), np.zeros((n, 0))
        rows, ri = np.unique(B.row, return_inverse=True)
        cols, ci = np.unique(B.col, return_inverse=True)
        core = np.zeros((rows.size, cols.size))
        np.add.at(core, (ri, ci), B.data)
        self.stats["entries"] += core.size
        W, s, Zt = np.linalg.svd(core, full_matrices=False)
        r = truncation_rank(s, self.tol, self.max_rank)
        if r < s.size and s[0] > 0 and s[r] > self.tol * s[0]:
            self.stats["capped"] += 1
            self.stats["max_cut"] = max(self.stats["max_cut"], float(s[r] / s[0]))
        U = np.zeros((m, r))
        V = np.zeros((n, r))
        U[rows] = W[:, :r] * s[:r]
        V[cols] = Zt[:r].T
        return U, V

    def offdiag(self, k: int, compressed: bool = True
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        lo, mid, hi = self.tree.split(k)
        return (*self._block(lo, mid, mid, hi), *self._block(mid, hi, lo, mid))

