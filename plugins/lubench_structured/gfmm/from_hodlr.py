"""The GFMM pattern filled from HODLR factors: nested-basis compression without a dense LU.

:func:`compress_operator` is :func:`~.compression.compress_lu` for an operator that is not
formed (or whose dense LU does not fit): (perm, L, U, info) with the same contract, built
from the HODLR LU of the padded operator (:mod:`lubench_structured.hodlr`) by
:func:`compress_hodlr`. ``gfmm_compressed`` and the learned ``init: projected`` call it.

``gfmm_compressed`` (and the learned ``init: projected``) write the LU factors of A into the
GFMM graphs of the "Learn LU" post: diagonal blocks and leaf band exact, the far field (leaf
pairs a ≥ b + 2) an H² matrix whose nested orthonormal bases are the tree's decoder and
encoder edges and whose couplings are its bridges (``compress_lower`` there, on a dense L).
This module computes the same arrays from L and U in HODLR form (:class:`~.lu.HODLRLU`),
never forming an n × n array, so that the classical GFMM baseline exists at every size the
HODLR LU does.

Alignment. The GFMM tree has M = 2^K leaves of P unknowns on N = M·P (A padded with an
identity block). The HODLR LU is built on the same N with leaves of b = P·2^t, so HODLR node
(level ℓ, index i) is GFMM node (level K − ℓ, index i) for GFMM levels ≥ t, and GFMM nodes of
levels < t lie inside one HODLR leaf (dense there).

The algorithm is ``compress_lower``'s, with every far block row written through the HODLR
pieces it crosses. For GFMM node q (rows I_q, lo_q its first row) and every HODLR node k with
I_q inside k's second child c₂ₖ, L[I_q, c₁ₖ] = X_k[I_q] Y_kᵀ; the c₁ₖ of those k are disjoint
and tile the columns left of I_q down to q's HODLR leaf, whose own columns left of I_q are
dense. So with Ĝ_{q,k} = Û_qᵀ X_k[I_q] (r_q × r_k, kept per node), the far block row of q
projected onto its children's bases is

    Σ_k [Ĝ_{2q,k}; Ĝ_{2q+1,k}] Y_kᵀ  (+ the dense columns inside the leaf),

minus the corner L[I_{2q}, I_{2q−1}] that the finer level carries (the tail of c₁ₖ for the
k whose c₂ₖ starts at lo_q, or dense columns). Replacing each Y_k by the R of its QR (the
Q's have disjoint supports, so together they are orthonormal) leaves a small matrix with
the same left singular vectors and values: its SVD gives q's transfer matrix W
(Û_q = diag(Û_{2q}, Û_{2q+1}) W), to the rule σ > tol·‖L‖_F, at most ``rank``, and
Ĝ_{q,k} = Wᵀ[Ĝ_{2q,k}; Ĝ_{2q+1,k}]. Row bases are the column bases of J Lᵀ J (the reversal:
J the exchange matrix), computed by the same code on the mirrored factor.

Couplings, root down: the block of the adjacent pair q−1 → q lies in one HODLR piece (their
lowest common ancestor k) or in one leaf, so Û_qᵀ L[I_q, I_{q−1}] V̂_{q−1} = Ĝ_{q,k} Ĝ'_{q−1,k}ᵀ
(Ĝ' the row-basis projections) or a small dense product; what the coarser levels already
carry there is Û_q C_q V̂_{q−1}ᵀ with C_q propagated down the corner chain
(C_{2q} = F (C_q + B_q) Eᵀ, F and E the transfer rows of the corner children); the corner is
removed from both in the bases' coordinates. The leaf band is what remains on it:
L[I_{b+1}, I_b] − C⁽⁰⁾_{b+1}, so the near field is exact.

Cost O(N·r·(r + P)·K) for the bases and couplings plus one QR per HODLR block (and per
distinct corner tail): O(N log² N) at bounded ranks, no array larger than a HODLR factor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.linalg import lapack

from lubench_structured.hodlr.build import (
    factor_operator,
    minimum_bytes,
    padded,
    resolve_compression,
)
from lubench_structured.hodlr.lowrank import upper_mask
from lubench_structured.hodlr.lu import HODLRLU
from lubench_structured.hodlr.tree import ClusterTree

from .arrays import GFMMArrays
from .compression import TOL, stored_numbers
from .shape import is_power_of_two

__all__ = ["compress_operator", "compress_hodlr", "aligned_leaf_size", "lu_route",
           "route_bytes", "HODLR_TOL", "LEAF_SIZE", "ROUTES", "DENSE_COPIES"]

HODLR_TOL = 1e-12
"""The HODLR LU's tolerance under the GFMM pattern: well below what a GFMM far field of rank
≤ P holds of a kernel's factors, so that the pattern, not the LU, sets the error."""
LEAF_SIZE = 64
"""The HODLR LU's least leaf size under the GFMM pattern (leaves of P·2^t ≥ it)."""


# The two ways to the GFMM pattern's factors: the dense LU of Ā (compress_lu), or the HODLR
# LU of Ā compressed from its blocks (compress_operator)
ROUTES = ("dense", "hodlr")
# compress_lu's dense N × N float64 arrays held at once (Ā, L, U, the residual, work)
DENSE_COPIES = 6.0


def lu_route(op: Any, N: int, memory_limit: float | None, lu: str = "auto") -> str:
    """Which LU fills the GFMM pattern of ``op`` padded to N (``lu``: ``auto``, ``dense``
    or ``hodlr``): ``auto`` takes the dense LU where A is formed and its DENSE_COPIES
    arrays of N² numbers fit ``memory_limit`` (None: no limit), the hierarchical one
    otherwise — A is then never formed. ``gfmm_compressed`` (``lu``) and the learned
    ``init: projected`` both decide by this rule."""
    if lu != "auto":
        return lu
    fits = memory_limit is None or route_bytes(op, N, 1, "dense") <= memory_limit
    return "dense" if op.formed and fits else "hodlr"


def route_bytes(op: Any, N: int, P: int, route: str) -> float:
    """Bytes the route needs at least for ``op`` padded to N = M·P: ``dense``, DENSE_COPIES
    N × N float64 arrays; ``hodlr``, the HODLR LU at rank 1 (it checks its ranks against the
    memory limit as they grow: :func:`~lubench_structured.hodlr.build.minimum_bytes`) and the
    GFMM arrays (about 7·N·P numbers per factor)."""
    if route == "dense":
        return DENSE_COPIES * float(N) ** 2 * 8
    return minimum_bytes(N, aligned_leaf_size(P, LEAF_SIZE), resolve_compression(op, "auto")) \
        + 14.0 * N * P * 8


def aligned_leaf_size(P: int, leaf_size: int) -> int:
    """The HODLR leaf size P·2^t nearest ``leaf_size`` from above (t ≥ 0), so that the HODLR
    tree on N = M·P is the GFMM tree's top."""
    b = int(P)
    while b < leaf_size:
        b *= 2
    return b


# --------------------------------------------------------------------------------------------
# A lower HODLR factor as the phase reads it (L itself, Uᵀ, or either mirrored)
# --------------------------------------------------------------------------------------------
class _Lower:
    """Block access to a lower triangular HODLR factor F on ``tree``: ``leaf(j)`` (dense,
    diagonal included), ``X(k)``, ``Y(k)`` with F[c₂ₖ, c₁ₖ] = X_k Y_kᵀ."""

    def __init__(self, tree: ClusterTree, leaf, X, Y):
        self.tree, self._leaf, self._X, self._Y = tree, leaf, X, Y
        self._xs: dict[int, np.ndarray] = {}
        self._ys: dict[int, np.ndarray] = {}

    def leaf(self, j: int) -> np.ndarray:
        return self._leaf(j)

    def X(self, k: int) -> np.ndarray:
        if k not in self._xs:
            self._xs[k] = self._X(k)
        return self._xs[k]

    def Y(self, k: int) -> np.ndarray:
        if k not in self._ys:
            self._ys[k] = self._Y(k)
        return self._ys[k]

    def mirrored(self) -> _Lower:
        """J Fᵀ J: leaf j' = J (leaf j)ᵀ J, node k' (the mirror of k) has X' = J Y_k, Y' = J X_k."""
        t = self.tree
        nl = t.n_leaves
        return _Lower(t, lambda j: self._leaf(nl - 1 - j)[::-1, ::-1].T,
                      lambda k: self._Y(_mirror(k))[::-1], lambda k: self._X(_mirror(k))[::-1])


def _mirror(k: int) -> int:
    """The heap index of node k's mirror image (same level, index counted from the right)."""
    lev = ClusterTree.level(k)
    first = (1 << lev) - 1
    return first + (1 << lev) - 1 - (k - first)


def _lower_of(lu: HODLRLU, which: str) -> _Lower:
    """L (unit lower) or Uᵀ (lower) of a HODLR LU."""
    if which == "L":
        def leaf(j: int) -> np.ndarray:
            F = np.tril(lu.leaf_lu(j), -1)
            F[np.diag_indices_from(F)] = 1.0
            return F
        return _Lower(lu.tree, leaf, lu.X, lu.Y)
    return _Lower(lu.tree, lambda j: np.triu(lu.leaf_lu(j)).T, lu.Q, lu.P)


# --------------------------------------------------------------------------------------------
# The column bases of a lower factor, leaves up
# --------------------------------------------------------------------------------------------
@dataclass
class _Node:
    """What the phase keeps of GFMM node q: its rank, transfer W ((r₀ + r₁) × r; None at the
    leaves), Ĝ_{q,k} for every HODLR node k with I_q in c₂ₖ, and inside a HODLR leaf its
    explicit basis Û_q and D_q = Û_qᵀ L̃[I_q, leaf start : lo_q] (band excluded)."""

    r: int
    W: np.ndarray | None = None
    G: dict = field(default_factory=dict)
    U: np.ndarray | None = None
    D: np.ndarray | None = None


class _Geometry:
    """The two aligned trees: GFMM (M leaves of P) over HODLR (leaves of P·2^t)."""

    def __init__(self, tree: ClusterTree, M: int, P: int):
        self.tree, self.M, self.P = tree, M, P
        self.K = M.bit_length() - 1
        b = int(tree.leaf_bounds[1] - tree.leaf_bounds[0])
        self.t = (b // P).bit_length() - 1
        if tree.n != M * P or b != P << self.t or tree.depth != self.K - self.t:
            raise ValueError(f"HODLR tree (n = {tree.n}, leaves of {b}) is not aligned with "
                             f"the GFMM tree (M = {M}, P = {P})")
        self._anc: dict[int, list[tuple[int, int, int]]] = {}

    def hodlr_node(self, i: int, q: int) -> int | None:
        """The HODLR node that is GFMM node (i, q), None below the HODLR leaves."""
        if i < self.t:
            return None
        lev = self.K - i
        return (1 << lev) - 1 + q

    def containing(self, i: int, q: int) -> int:
        """The HODLR node holding GFMM node (i, q): itself, or its HODLR leaf."""
        if i >= self.t:
            return self.hodlr_node(i, q)
        return self.tree.n_internal + (q >> (self.t - i))

    def ancestors_c2(self, i: int, q: int) -> list[tuple[int, int, int]]:
        """(k, lo_k, mid_k) for every HODLR node k with GFMM node (i, q) inside c₂ₖ."""
        h = self.containing(i, q)
        if h not in self._anc:
            out, node = [], h
            while node > 0:
                parent = (node - 1) // 2
                if node == 2 * parent + 2:
                    lo, mid, _ = self.tree.split(parent)
                    out.append((parent, lo, mid))
                node = parent
            self._anc[h] = out
        return self._anc[h]

    def lca_piece(self, i: int, q: int) -> tuple[int, int, int] | None:
        """(k, lo_k, mid_k) of the HODLR node whose block holds L[I_q, I_{q−1}], or None when
        the pair lies inside one HODLR leaf."""
        lo_q = q * (self.P << i)
        for k, lo, mid in self.ancestors_c2(i, q):
            if mid == lo_q:
                return k, lo, mid
        return None


def _r_factor(Y: np.ndarray) -> np.ndarray:
    """R of Y = Q R (p × r, p = min(rows, r)): Y's columns in an orthonormal basis."""
    if Y.shape[0] == 0 or Y.shape[1] == 0:
        return np.zeros((0, Y.shape[1]))
    p = min(Y.shape)
    qr = lapack.dgeqrf(Y)[0]
    return qr[:p] * upper_mask(p, Y.shape[1])


def _left_singular(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(left singular vectors, singular values) of S (LAPACK gesdd, thin; the sturdier
    driver where it does not converge). An S without rows (a rank-0 block's basis) has
    none: LAPACK refuses a leading dimension of 0 and would print so for every such node."""
    if S.shape[0] == 0:
        return np.zeros((0, 0)), np.zeros(0)
    W, s, _, info = lapack.dgesdd(S, full_matrices=0)
    if info != 0:
        W, s, _ = np.linalg.svd(S, full_matrices=False)
    return W, s


def _column_phase(F: _Lower, geo: _Geometry, rank: int, thresh: float) -> list[list[_Node]]:
    """Every GFMM node's column basis of the far field of F (module docstring)."""
    M, P, K, t = geo.M, geo.P, geo.K, geo.t
    b = P << t
    rcache: dict[tuple[int, int], np.ndarray] = {}

    def R(k: int, drop_tail: int, tail_only: bool = False) -> np.ndarray:
        """R of Y_k without its last ``drop_tail`` rows (or of those rows only)."""
        key = (k, -drop_tail if tail_only else drop_tail)
        if key not in rcache:
            Y = F.Y(k)
            part = Y[Y.shape[0] - drop_tail:] if tail_only else Y[: Y.shape[0] - drop_tail]
            rcache[key] = _r_factor(part)
        return rcache[key]

    leaves = {}

    def leaf(j: int) -> np.ndarray:
        if j not in leaves:
            leaves.clear()                       # one HODLR leaf at a time, left to right
            leaves[j] = np.asarray(F.leaf(j))
        return leaves[j]

    levels: list[list[_Node]] = []
    # level 0: the GFMM leaves, Û = I
    nodes = []
    for a in range(M):
        lo = a * P
        node = _Node(P, G={k: np.ascontiguousarray(F.X(k)[lo - mid: lo - mid + P])
                           for k, _, mid in geo.ancestors_c2(0, a)})
        if t > 0:
            j = a >> t
            off = lo - j * b
            D = np.array(leaf(j)[off:off + P, :off])
            if off >= P:
                D[:, off - P:] = 0.0             # the band: near field
            node.U, node.D = np.eye(P), D
        nodes.append(node)
    levels.append(nodes)
    for i in range(1, K):
        prev, nodes = levels[-1], []
        half = P << (i - 1)
        for q in range(M >> i):
            c0, c1 = prev[2 * q], prev[2 * q + 1]
            lo_q = q * (P << i)
            r0, r1 = c0.r, c1.r
            pieces, stacked = [], {}
            for k, _, mid in geo.ancestors_c2(i, q):
                A = stacked[k] = np.concatenate((c0.G[k], c1.G[k]))
                if mid == lo_q:                  # the corner is the tail of c₁ₖ
                    pieces.append(A @ R(k, half).T)
                    A1 = np.zeros_like(A)
                    A1[r0:] = c1.G[k]
                    pieces.append(A1 @ R(k, half, tail_only=True).T)
                else:
                    pieces.append(A @ R(k, 0).T)
            inside = i <= t and lo_q % b != 0    # dense columns of the leaf left of I_q
            if inside:
                w = lo_q % b
                D0 = np.array(c0.D[:, :w])
                D0[:, w - half:] = 0.0           # the corner, inside the leaf
                pieces.append(np.concatenate((D0, c1.D[:, :w])))
            S = np.concatenate(pieces, axis=1) if pieces else np.zeros((r0 + r1, 0))
            if S.shape[1]:
                Wf, s = _left_singular(S)
                r = int(min(rank, np.count_nonzero(s > thresh)))
                W = np.ascontiguousarray(Wf[:, :r])
            else:
                W = np.zeros((r0 + r1, 0))
            node = _Node(W.shape[1], W)
            node.G = {k: W.T @ A for k, A in stacked.items()}
            if i < t:
                w = lo_q % b
                node.U = np.concatenate((c0.U @ W[:r0], c1.U @ W[r0:]))
                node.D = W.T @ np.concatenate((c0.D[:, :w], c1.D[:, :w]))
            nodes.append(node)
        levels.append(nodes)
    return levels


# --------------------------------------------------------------------------------------------
# Couplings and the near field
# --------------------------------------------------------------------------------------------
def _mirror_levels(levels: list[list[_Node]], geo: _Geometry) -> list[list[_Node]]:
    """Column-phase nodes of J Fᵀ J read as F's row bases: node q ↔ mirrored node, HODLR k ↔
    mirrored k, the two row blocks of each transfer swapped, explicit bases reversed."""
    out = []
    for i, nodes in enumerate(levels):
        m = len(nodes)
        row = []
        for q in range(m):
            src = nodes[m - 1 - q]
            G = {_mirror(k): g for k, g in src.G.items()}
            W, U = src.W, None if src.U is None else src.U[::-1]
            if i == 0:       # the mirrored leaf's coordinates are reversed: back to I
                G = {k: np.ascontiguousarray(g[::-1]) for k, g in G.items()}
                U = None if U is None else np.eye(src.r)
            else:
                a = levels[i - 1][2 * (m - 1 - q)].r    # rows of the mirrored first child
                W = np.concatenate((W[a:], W[:a]))
                if i == 1:   # children are leaves: their coordinates reversed too
                    P = levels[0][0].r
                    W = np.concatenate((W[:P][::-1], W[P:][::-1]))
            row.append(_Node(src.r, W, G, U, None))
        out.append(row)
    return out


def _pair_block(F: _Lower, geo: _Geometry, cols: list[list[_Node]], rows: list[list[_Node]],
                i: int, q: int) -> np.ndarray:
    """Û_qᵀ F[I_q, I_{q−1}] V̂_{q−1} (r_q × r'_{q−1}) at GFMM level i."""
    piece = geo.lca_piece(i, q)
    if piece is not None:
        k = piece[0]
        return cols[i][q].G[k] @ rows[i][q - 1].G[k].T
    P, b = geo.P, geo.P << geo.t
    size = P << i
    lo_q = q * size
    j = lo_q // b
    o = lo_q - j * b
    blk = F.leaf(j)[o:o + size, o - size:o]
    return cols[i][q].U.T @ blk @ rows[i][q - 1].U


def _couplings(F: _Lower, geo: _Geometry, cols, rows) -> tuple[list[np.ndarray], np.ndarray]:
    """(bridges per level 1 … K−1, the leaf band), root down (module docstring)."""
    M, P, K = geo.M, geo.P, geo.K
    incoming: dict[int, np.ndarray] = {}         # q → C_q at the current level
    bridges: list[np.ndarray] = [np.zeros(((M >> i) - 1, P, P)) for i in range(1, K)]
    for i in range(K - 1, 0, -1):
        below: dict[int, np.ndarray] = {}
        for q in range(1, M >> i):
            cq, rp = cols[i][q], rows[i][q - 1]
            C = incoming.get(q, np.zeros((cq.r, rp.r)))
            Ftop = cq.W[: cols[i - 1][2 * q].r]                 # child 2q's rows of Û_q
            Ebot = rp.W[rows[i - 1][2 * q - 2].r:]              # child 2q−1's rows of V̂_{q−1}
            inner = _pair_block(F, geo, cols, rows, i - 1, 2 * q)
            full = _pair_block(F, geo, cols, rows, i, q)
            B = (full - Ftop.T @ inner @ Ebot) - (C - (Ftop.T @ Ftop) @ C @ (Ebot.T @ Ebot))
            bridges[i - 1][q - 1, : cq.r, : rp.r] = B
            below[2 * q] = Ftop @ (C + B) @ Ebot.T
        incoming = below
    off = np.empty((M - 1, P, P))
    b = P << geo.t
    for a in range(1, M):
        piece = geo.lca_piece(0, a)
        lo = a * P
        if piece is not None:
            k, klo, mid = piece
            blk = F.X(k)[lo - mid: lo - mid + P] @ F.Y(k)[lo - P - klo: lo - klo].T
        else:
            j = lo // b
            o = lo - j * b
            blk = F.leaf(j)[o:o + P, o - P:o]
        off[a - 1] = blk - incoming.get(a, 0.0)
    return bridges, off


def _diagonal_blocks(F: _Lower, geo: _Geometry) -> np.ndarray:
    P, t = geo.P, geo.t
    out = np.empty((geo.M, P, P))
    for j in range(geo.tree.n_leaves):
        Lj = F.leaf(j)
        for s in range(1 << t):
            out[(j << t) + s] = Lj[s * P:(s + 1) * P, s * P:(s + 1) * P]
    return out


def _frobenius2(F: _Lower, tree: ClusterTree) -> float:
    """‖F‖_F² from the leaves and the pieces (trace of the Gram products)."""
    total = sum(float(np.sum(np.asarray(F.leaf(j)) ** 2)) for j in range(tree.n_leaves))
    for k in range(tree.n_internal):
        X, Y = F.X(k), F.Y(k)
        if X.shape[1]:
            total += float(np.sum((X.T @ X) * (Y.T @ Y)))
    return total


def _pad(W: np.ndarray | None, rows: tuple[int, int], r: int, P: int) -> np.ndarray:
    """A transfer (r₀ + r₁) × r into the GFMM edge layout (2P × P): child rows at 0 and P."""
    out = np.zeros((2 * P, P))
    if W is not None and r:
        r0, r1 = rows
        out[:r0, :r] = W[:r0]
        out[P:P + r1, :r] = W[r0:r0 + r1]
    return out


def _lower_tensors(F: _Lower, geo: _Geometry, rank: int, tol: float) -> tuple[dict, dict]:
    """GFMM arrays of the lower factor F, and its ranks."""
    M, P, K = geo.M, geo.P, geo.K
    thresh = float(tol) * float(np.sqrt(_frobenius2(F, geo.tree)))
    cols = _column_phase(F, geo, rank, thresh)
    rows = _mirror_levels(_column_phase(F.mirrored(), geo, rank, thresh), geo)
    bridges, off = _couplings(F, geo, cols, rows)
    dec = [np.zeros((M >> (i + 1), 2 * P, P)) for i in range(K)]
    enc = [np.zeros((M >> (i + 1), P, 2 * P)) for i in range(K)]
    for i in range(1, K):
        for q in range(M >> i):
            c0, c1 = cols[i - 1][2 * q].r, cols[i - 1][2 * q + 1].r
            dec[i - 1][q] = _pad(cols[i][q].W, (c0, c1), cols[i][q].r, P)
            w0, w1 = rows[i - 1][2 * q].r, rows[i - 1][2 * q + 1].r
            enc[i - 1][q] = _pad(rows[i][q].W, (w0, w1), rows[i][q].r, P).T
    arrays = {"M": M, "P": P, "lower": True, "enc": enc, "dec": dec,
              "diag": _diagonal_blocks(F, geo), "off": off, "bridge": bridges}
    ranks = {"ranks_u": [[n.r for n in cols[i]] for i in range(1, K)],
             "ranks_v": [[n.r for n in rows[i]] for i in range(1, K)]}
    return arrays, ranks


def _transposed(arr: dict) -> dict:
    """Fᵀ's arrays: every block transposed, encoder and decoder swapped, lower flipped."""
    def tr(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a.transpose(0, 2, 1))

    return {**arr, "lower": not arr["lower"], "enc": [tr(d) for d in arr["dec"]],
            "dec": [tr(e) for e in arr["enc"]], "diag": tr(arr["diag"]), "off": tr(arr["off"]),
            "bridge": [tr(b) for b in arr["bridge"]]}


def compress_hodlr(lu: HODLRLU, M: int, P: int, rank: int | None = None, tol: float = TOL
                   ) -> tuple[np.ndarray, GFMMArrays, GFMMArrays, dict]:
    """(perm, L, U, info): the GFMM pattern of a HODLR LU A[perm] = L U (module docstring).

    ``lu`` must be built on N = M·P (A padded with an identity block) with leaves of P·2^t
    (:func:`aligned_leaf_size`). L block-lower with unit lower triangular diagonal blocks, U
    block-upper; near field exact, far field at most ``rank`` (≤ P) basis vectors per node,
    singular values ≤ tol·‖factor‖_F dropped. ``info`` as :func:`~.compression.compress_lu`'s:
    the basis ranks per level (``ranks_L``, ``ranks_U``) and ``n_params``.
    """
    M, P = int(M), int(P)
    if not is_power_of_two(M):
        raise ValueError(f"M must be a power of two, got {M}")
    geo = _Geometry(lu.tree, M, P)
    rank = P if rank is None else int(min(rank, P))
    Lt, li = _lower_tensors(_lower_of(lu, "L"), geo, rank, tol)
    Ut, ui = _lower_tensors(_lower_of(lu, "Ut"), geo, rank, tol)
    L = GFMMArrays.from_tensors(M, P, True, Lt["enc"], Lt["dec"], Lt["diag"], Lt["off"],
                                Lt["bridge"])
    U = _transposed(Ut)
    U = GFMMArrays.from_tensors(M, P, False, U["enc"], U["dec"], U["diag"], U["off"],
                                U["bridge"])
    info: dict[str, Any] = {
        "ranks_L": li["ranks_u"], "ranks_U": ui["ranks_v"],
        "n_params": stored_numbers(M, P, li["ranks_u"], li["ranks_v"], True)
        + stored_numbers(M, P, ui["ranks_u"], ui["ranks_v"], False)}
    return np.asarray(lu.perm), L, U, info


def compress_operator(op: Any, M: int, P: int, rank: int | None = None, tol: float = TOL, *,
                      hodlr_tol: float = HODLR_TOL, leaf_size: int = LEAF_SIZE,
                      max_rank: int = 256,
                      compression: str = "auto", rng: np.random.Generator | None = None,
                      memory_limit: float | None = None, pivoting: str = "auto"
                      ) -> tuple[np.ndarray, GFMMArrays, GFMMArrays, dict]:
    """(perm, L, U, info) as :func:`~.compression.compress_lu` gives them, A never formed:
    Ā = [[A, 0], [0, I]] on N = M·P factored by the HODLR LU (tolerance ``hodlr_tol``, leaves
    of P·2^t ≥ ``leaf_size``, ``max_rank``, ``compression``, ``memory_limit``, ``pivoting``:
    see :func:`lubench_structured.hodlr.factor_operator`), then :func:`compress_hodlr`.

    perm has length N and moves rows only within a HODLR leaf (pivoting stays there); the
    padding rows stay in place. ``info`` adds ``lu: "hodlr"`` and the HODLR LU's ranks,
    route and the numbers it stored (``hodlr_*``).
    """
    M, P = int(M), int(P)
    if not is_power_of_two(M):
        raise ValueError(f"M must be a power of two, got {M}")
    if M * P < op.n:
        raise ValueError(f"M·P = {M * P} is smaller than n = {op.n}")
    lu = factor_operator(padded(op, M * P), tol=hodlr_tol,
                         leaf_size=aligned_leaf_size(P, leaf_size), max_rank=max_rank,
                         compression=compression, rng=rng, memory_limit=memory_limit,
                         pivoting=pivoting)
    perm, L, U, info = compress_hodlr(lu, M, P, rank, tol)
    info.update({"lu": "hodlr", "hodlr_tol": hodlr_tol, "hodlr_ranks_L": lu.info["ranks_L"],
                 "pivoting": "partial" if lu.info["pivoted_leaves"] else "none",
                 "hodlr_compression": lu.info["compression"],
                 "hodlr_numbers": lu.n_numbers()})
    return perm, L, U, info
