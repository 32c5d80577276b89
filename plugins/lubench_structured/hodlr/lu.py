"""The LU factorization of a HODLR matrix, with L and U in HODLR form.

Recursive block LU with low-rank Schur-complement updates. At internal node k (children
c₁ = [lo, mid), c₂ = [mid, hi)) the block to factor is Ã = A_kk − W Zᵀ, where W Zᵀ (rank R)
is what the Schur complements of k's ancestors subtract from A_kk, kept as one low-rank
product (the *pending update*; empty at the root):

1. Ã₁₂ = U¹²V¹²ᵀ − W₁Z₂ᵀ and Ã₂₁ = U²¹V²¹ᵀ − W₂Z₁ᵀ, each recompressed to the rank rule
   (W₁, Z₁: the rows of W, Z in c₁; W₂, Z₂: in c₂).
2. Factor c₁: Ã₁₁ = Π₁L₁U₁ (recursively, pending update W₁Z₁ᵀ).
3. The factors' off-diagonal blocks, low rank with the ranks of Ã's:
   U[c₁, c₂] = L₁⁻¹Π₁ᵀ Ã₁₂ = P Qᵀ with P = L₁⁻¹Π₁ᵀ U¹², Q = V¹²;
   L[c₂, c₁] = Π₂ᵀ Ã₂₁ U₁⁻¹ = Π₂ᵀ X Yᵀ with X = U²¹, Y = U₁⁻ᵀ V²¹.
4. The Schur complement S = Ã₂₂ − X Yᵀ P Qᵀ = A₂₂ − [W₂, X(YᵀP)] [Z₂, Q]ᵀ: c₂'s pending
   update, recompressed to the rank rule.
5. Factor c₂: S = Π₂L₂U₂.

Then Ã = Π L U with Π = diag(Π₁, Π₂), L = [[L₁, 0], [Π₂ᵀXYᵀ, L₂]], U = [[U₁, PQᵀ], [0, U₂]]
(check: the second block row gives Π₂(Π₂ᵀXYᵀU₁) = Ã₂₁ and XYᵀPQᵀ + Π₂L₂U₂ = Ã₂₂). A leaf is
factored densely: without row exchanges when that completes with growth ‖|L||U|‖_∞/‖D‖_∞
≤ 1e4 (SPD and diagonally dominant Schur complements always do, and the factors then keep
the operator's order), with partial pivoting (LAPACK getrf) otherwise. So Π is block
diagonal with one permutation per leaf: the pivots never leave a leaf, and the
factorization breaks down only when a leaf's Schur complement is singular.

The triangular solves of step 3 (L₁⁻¹Π₁ᵀ on the columns of U¹², U₁⁻ᵀ on those of V²¹) are
not separate passes over c₁'s subtree: they ride along as extra right-hand sides of c₁'s
own factorization. Every node receives BL (to be mapped to L⁻¹Πᵀ BL) and BU (to U⁻ᵀ BU); a
leaf solves both with its triangular factors; an internal node appends its U¹² to BL and
its V²¹ to BU before c₁, and between its children updates BL₂ −= X(Yᵀx₁) and
BU₂ −= Q(Pᵀy₁) (the block forward substitutions with L and with Uᵀ). The whole
factorization is one left-to-right pass over the tree.

Cost, with off-diagonal ranks ≤ r, pending ranks ≤ R, leaves of b ≤ ``leaf_size``, depth
K = ⌈log₂(n/b)⌉: a node of size m at depth d carries ≤ r·d right-hand sides and costs
O(m·r²·d + m·(r + R)²); a leaf O(b³ + b²·r·K). Over the 2^d nodes of each depth:
**factorization O(n·(b² + (r + R)²·K + r²·K²)) = O(n log² n)** at bounded ranks, **storage
O(n·(b + r·K)) = O(n log n)** numbers, **solve and product O(n·(b + r·K)) per column**.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.linalg import blas, lapack

from lubench.api import FactorizationError, Unsupported

from . import _kernels as _k
from .lowrank import recompress
from .tree import ClusterTree

__all__ = ["HODLRLU", "factor", "PIVOTING", "GROWTH_LIMIT"]

PIVOTING = ("auto", "partial", "never")
GROWTH_LIMIT = 1e4
"""A leaf is factored without row exchanges when that completes with growth
‖|L||U|‖_∞/‖D‖_∞ at most this (its backward error is then about growth·b·u): SPD and
diagonally dominant Schur complements always do, and their factors keep the operator's
order — what the GFMM pattern filled from them needs (pivoted rows cross its leaves)."""


def _cat(*blocks: np.ndarray) -> np.ndarray:
    """The blocks side by side (``np.hstack`` without its per-call checks)."""
    return np.concatenate(blocks, axis=1)


def _perm_from_piv(piv: np.ndarray) -> np.ndarray:
    """The row order p of getrf's 0-based pivots: A[p] = L U."""
    p = np.arange(piv.size)
    for i, q in enumerate(piv):
        if q != i:
            p[i], p[q] = p[q], p[i]
    return p


def _trsm(lu: np.ndarray, B: np.ndarray, *, lower: bool, trans: bool = False,
          unit: bool = False) -> np.ndarray:
    """op(T)⁻¹ B for T the lower (unit) or upper triangle of the packed ``lu``."""
    if B.shape[1] == 0:
        return B
    return blas.dtrsm(1.0, lu, B, lower=int(lower), trans_a=int(trans), diag=int(unit))


@dataclass
class HODLRLU:
    """A ≈ Π L U, L unit lower and U upper triangular, both HODLR on ``tree``, packed.

    Attributes
    ----------
    tree : ClusterTree
    perm : numpy.ndarray
        A[perm] ≈ L U (Π x: the vector y with y[perm] = x).
    leaf, loff : numpy.ndarray
        Leaf j's L (strictly lower, unit diagonal implied) and U (upper) packed in one
        row-major m_j × m_j block at ``leaf[loff[j]:loff[j+1]]`` (:meth:`leaf_lu`).
    buf, xo, yo, po, qo, rl, ru : numpy.ndarray
        Internal node k's low-rank factors, row-major in ``buf``: L[c₂, c₁] = X_k Y_kᵀ
        (X_k at xo[k], Y_k at yo[k], rank rl[k]) and U[c₁, c₂] = P_k Q_kᵀ (at po[k], qo[k],
        rank ru[k]); :meth:`X`, :meth:`Y`, :meth:`P`, :meth:`Q` give them as arrays.
    info : dict
        Ranks, pending ranks, what the block source read.

    Solves and products run in compiled sweeps (:mod:`._kernels`), O(n·(b + r·K)) per
    column.
    """

    tree: ClusterTree
    perm: np.ndarray
    leaf: np.ndarray
    loff: np.ndarray
    buf: np.ndarray
    xo: np.ndarray
    yo: np.ndarray
    po: np.ndarray
    qo: np.ndarray
    rl: np.ndarray
    ru: np.ndarray
    info: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.tree.n

    def n_numbers(self) -> int:
        """Numbers stored: the packed leaves (b² each) and both factors of every block."""
        return int(self.leaf.size + self.buf.size)

    # -- the blocks -----------------------------------------------------------------------------
    def leaf_lu(self, j: int) -> np.ndarray:
        """Leaf j's packed LU (m × m view)."""
        lb = self.tree.leaf_bounds
        m = int(lb[j + 1] - lb[j])
        return self.leaf[self.loff[j]:self.loff[j + 1]].reshape(m, m)

    def _factor(self, k: int, off: np.ndarray, rank: np.ndarray, second: bool) -> np.ndarray:
        lo, mid, hi = self.tree.split(k)
        m = (hi - mid) if second else (mid - lo)
        r = int(rank[k])
        return self.buf[off[k]:off[k] + m * r].reshape(m, r)

    def X(self, k: int) -> np.ndarray:
        """L[c₂, c₁] = X Yᵀ: X (|c₂| × rank)."""
        return self._factor(k, self.xo, self.rl, True)

    def Y(self, k: int) -> np.ndarray:
        return self._factor(k, self.yo, self.rl, False)

    def P(self, k: int) -> np.ndarray:
        """U[c₁, c₂] = P Qᵀ: P (|c₁| × rank)."""
        return self._factor(k, self.po, self.ru, False)

    def Q(self, k: int) -> np.ndarray:
        return self._factor(k, self.qo, self.ru, True)

    # -- the public operations ------------------------------------------------------------------
    def _arrays(self) -> tuple:
        return (self.tree.depth, self.tree.leaf_bounds, self.leaf, self.loff, self.buf,
                self.xo, self.yo, self.po, self.qo, self.rl, self.ru)

    def _cols(self, B: np.ndarray) -> tuple[np.ndarray, bool]:
        B = np.asarray(B, dtype=np.float64)
        if B.shape[0] != self.n or B.ndim not in (1, 2):
            raise ValueError(f"HODLR LU of size n = {self.n}: input has shape {B.shape}")
        return B.reshape(self.n, -1), B.ndim == 1

    def solve(self, B: np.ndarray) -> np.ndarray:
        """x̂ with Π L U x̂ = B: B[perm], then L⁻¹, then U⁻¹. O(n·(b + r·K)) per column."""
        B2, vec = self._cols(B)
        Z = np.ascontiguousarray(B2[self.perm])
        _k.solve_sweep(Z, _k.L_INV, self._arrays())
        _k.solve_sweep(Z, _k.U_INV, self._arrays())
        return Z[:, 0] if vec else Z

    def solve_transpose(self, B: np.ndarray) -> np.ndarray:
        """x̂ with (Π L U)ᵀ x̂ = B: U⁻ᵀ, L⁻ᵀ, then the rows back (x̂[perm] = ·)."""
        B2, vec = self._cols(B)
        Z = np.array(B2, order="C")
        _k.solve_sweep(Z, _k.UT_INV, self._arrays())
        _k.solve_sweep(Z, _k.LT_INV, self._arrays())
        out = np.empty_like(Z)
        out[self.perm] = Z
        return out[:, 0] if vec else out

    def apply(self, X: np.ndarray) -> np.ndarray:
        """Π L U X, the product of the stored factors. O(n·(b + r·K)) per column."""
        X2, vec = self._cols(X)
        arrays = self._arrays()
        Z = _k.multiply(_k.multiply(np.ascontiguousarray(X2), False, False, arrays), True,
                        False, arrays)
        out = np.empty_like(Z)
        out[self.perm] = Z
        return out[:, 0] if vec else out

    def apply_transpose(self, X: np.ndarray) -> np.ndarray:
        """(Π L U)ᵀ X = Uᵀ Lᵀ X[perm]."""
        X2, vec = self._cols(X)
        arrays = self._arrays()
        Z = _k.multiply(_k.multiply(np.ascontiguousarray(X2[self.perm]), True, True, arrays),
                        False, True, arrays)
        return Z[:, 0] if vec else Z

    def dense_factors(self) -> tuple[np.ndarray, np.ndarray]:
        """(L, U) as dense arrays (tests and small n only)."""
        eye = np.eye(self.n)
        arrays = self._arrays()
        return _k.multiply(eye, True, False, arrays), _k.multiply(eye, False, False, arrays)


class _Factorizer:
    """One left-to-right pass of the recursive block LU (module docstring) over ``source``."""

    def __init__(self, source: Any, tree: ClusterTree, tol: float, max_rank: int,
                 memory_limit: float | None, pivoting: str = "auto"):
        self.src, self.tree, self.tol, self.max_rank = source, tree, tol, max_rank
        self.pivoting = pivoting
        self.pivoted_leaves = 0
        self.memory_limit = memory_limit
        ni = tree.n_internal
        sizes = np.diff(tree.leaf_bounds)
        self.loff = np.concatenate([[0], np.cumsum(sizes * sizes)]).astype(np.int64)
        self.leaf = np.empty(int(self.loff[-1]))     # the packed leaves, written in place
        self.X: list = [None] * ni
        self.Y: list = [None] * ni
        self.P: list = [None] * ni
        self.Q: list = [None] * ni
        self.stats: dict = getattr(source, "stats", {})
        self.stored = 0
        self.pending_max = 0
        self.rhs_max = 0

    def _count(self, *arrays: np.ndarray) -> None:
        self.stored += sum(a.size for a in arrays)
        if self.memory_limit is not None and 8.0 * self.stored > self.memory_limit:
            raise Unsupported(f"hodlr_lu: the factors outgrew the memory limit "
                              f"({self.memory_limit / 2**30:.2f} GiB) at {self.stored} numbers "
                              f"stored: ranks too high at tol = {self.tol:g}; raise tol or "
                              f"lower max_rank")

    def _compress(self, U: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        U, V, cut = recompress(U, V, self.tol, self.max_rank)
        if cut:
            self.stats["capped"] = self.stats.get("capped", 0) + 1
            self.stats["max_cut"] = max(self.stats.get("max_cut", 0.0), cut)
        return U, V

    def _leaf_lu(self, D: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(packed LU, local row order) of a leaf's Schur complement D (the module
        docstring's pivoting rule)."""
        m = D.shape[0]
        if self.pivoting != "partial":
            lu = np.ascontiguousarray(D)
            growth = _k.lu_nopivot(lu) if m else 0.0
            if growth <= GROWTH_LIMIT or self.pivoting == "never":
                if not np.isfinite(growth):
                    lo, hi = self.tree.range(k)
                    raise FactorizationError(
                        f"hodlr_lu: LU without row exchanges breaks down on leaf rows "
                        f"{lo}…{hi - 1} (a zero or non-finite pivot); use pivoting auto")
                return lu, np.arange(m)
            self.pivoted_leaves += 1
        lu, piv, info = lapack.dgetrf(np.asfortranarray(D), overwrite_a=1)
        if info > 0 or not np.all(np.isfinite(np.diagonal(lu))):
            lo, hi = self.tree.range(k)
            raise FactorizationError(
                f"hodlr_lu: the Schur complement on leaf rows {lo}…{hi - 1} is singular "
                f"(zero pivot {info - 1 if info > 0 else '?'}): pivots stay within a leaf")
        return lu, _perm_from_piv(piv)

    def node(self, k: int, W: np.ndarray, Z: np.ndarray, BL: np.ndarray, BU: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(L⁻¹Πᵀ BL, U⁻ᵀ BU, local row order) for node k with pending update W Zᵀ."""
        t = self.tree
        self.rhs_max = max(self.rhs_max, BL.shape[1], BU.shape[1])
        if t.is_leaf(k):
            j = k - t.n_internal
            D = np.array(self.src.leaf(j), dtype=np.float64)  # a copy: LU overwrites it
            if W.shape[1]:
                D -= W @ Z.T
            lu, p = self._leaf_lu(D, k)
            m = lu.shape[0]
            self.leaf[self.loff[j]:self.loff[j + 1]].reshape(m, m)[:] = lu
            self._count(lu)
            xl = _trsm(lu, np.asfortranarray(BL[p]), lower=True, unit=True)
            xu = _trsm(lu, np.asfortranarray(BU), lower=False, trans=True)
            return xl, xu, p
        lo, mid, hi = t.split(k)
        h = mid - lo
        # step 1: with a pending update, A's blocks are recompressed together with its share
        # (one QR+SVD each, not two: the source's raw ACA crosses go in directly)
        U12, V12, U21, V21 = self.src.offdiag(k, compressed=not W.shape[1])
        if W.shape[1]:
            U12, V12 = self._compress(_cat(U12, -W[:h]), _cat(V12, Z[h:]))
            U21, V21 = self._compress(_cat(U21, -W[h:]), _cat(V21, Z[:h]))
        s, u = BL.shape[1], BU.shape[1]
        # step 2, with the triangular solves of step 3 as extra right-hand sides
        xl1, xu1, p1 = self.node(2 * k + 1, W[:h], Z[:h], _cat(BL[:h], U12),
                                 _cat(BU[:h], V21))
        P, Q = np.ascontiguousarray(xl1[:, s:]), V12
        X, Y = U21, np.ascontiguousarray(xu1[:, u:])
        x1, y1 = xl1[:, :s], xu1[:, :u]
        # the forward substitutions of the right-hand sides carried through k
        BL2 = BL[h:] - X @ (Y.T @ x1) if s else BL[h:]
        BU2 = BU[h:] - Q @ (P.T @ y1) if u else BU[h:]
        # step 4: the Schur complement update joins the pending one
        Wn, Zn = _cat(W[h:], X @ (Y.T @ P)), _cat(Z[h:], Q)
        if Wn.shape[1]:
            Wn, Zn = self._compress(Wn, Zn)
        self.pending_max = max(self.pending_max, Wn.shape[1])
        xl2, xu2, p2 = self.node(2 * k + 2, Wn, Zn, BL2, BU2)   # step 5
        self.X[k], self.Y[k], self.P[k], self.Q[k] = X[p2], Y, P, Q
        self._count(X, Y, P, Q)
        return (np.concatenate((x1, xl2)), np.concatenate((y1, xu2)),
                np.concatenate((p1, p2 + h)))


def factor(source: Any, tree: ClusterTree, tol: float, max_rank: int,
           memory_limit: float | None = None, pivoting: str = "auto") -> HODLRLU:
    """The HODLR LU of the matrix ``source`` gives (module docstring), to the rank rule.

    ``source``: a block source (:mod:`.sources`). ``memory_limit``: bytes the stored factors
    may take; past it :class:`~lubench.api.Unsupported` is raised as soon as it is reached.
    ``pivoting``: ``auto`` (each leaf without row exchanges when that completes with growth
    ‖|L||U|‖_∞/‖D‖_∞ ≤ 1e4, with partial pivoting otherwise), ``partial`` or ``never``.
    Raises :class:`~lubench.api.FactorizationError` when a leaf's Schur complement is
    singular.
    """
    if pivoting not in PIVOTING:
        raise ValueError(f"pivoting must be one of {', '.join(PIVOTING)}, got {pivoting!r}")
    f = _Factorizer(source, tree, float(tol), int(max_rank), memory_limit, pivoting)
    empty = np.zeros((tree.n, 0))
    _, _, perm = f.node(0, empty, empty, empty, empty)
    ranks_L, ranks_U = _level_ranks(tree, f.X), _level_ranks(tree, f.P)
    lu = HODLRLU(tree, perm, f.leaf, f.loff, *_pack(f.X, f.Y, f.P, f.Q))
    lu.info = {"depth": tree.depth, "leaf_size": tree.leaf_size, "ranks_L": ranks_L,
               "ranks_U": ranks_U, "pending_rank_max": f.pending_max, "rhs_max": f.rhs_max,
               "pivoted_leaves": f.pivoted_leaves,
               **getattr(source, "stats", {})}
    return lu


def _pack(X: list, Y: list, P: list, Q: list) -> tuple:
    """(buf, xo, yo, po, qo, rl, ru): every node's four factors row-major in one buffer,
    node by node; the lists are emptied as they are copied."""
    ni = len(X)
    rl = np.array([X[k].shape[1] for k in range(ni)], dtype=np.int64)
    ru = np.array([P[k].shape[1] for k in range(ni)], dtype=np.int64)
    offs = np.zeros((4, ni), dtype=np.int64)
    total = 0
    for k in range(ni):
        for a, F in enumerate((X[k], Y[k], P[k], Q[k])):
            offs[a, k] = total
            total += F.size
    buf = np.empty(total)
    for k in range(ni):
        for a, F in enumerate((X[k], Y[k], P[k], Q[k])):
            buf[offs[a, k]:offs[a, k] + F.size] = F.ravel()
        X[k] = Y[k] = P[k] = Q[k] = None
    return buf, offs[0], offs[1], offs[2], offs[3], rl, ru


def _level_ranks(tree: ClusterTree, blocks: list) -> list[int]:
    """The largest rank per level, root first."""
    return [max((blocks[k].shape[1] for k in range((1 << lev) - 1, (2 << lev) - 1)),
                default=0) for lev in range(tree.depth)]
