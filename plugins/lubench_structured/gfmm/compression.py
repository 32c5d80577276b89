"""``gfmm_compressed``: the LU factors of A placed into the GFMM pattern, far field compressed.

A (n×n) is padded to N = M·P with an identity block, Ā = [[A, 0], [0, I]], as ``gfmm_lu``
pads it, and factored exactly: Ā[perm] = L·U with L unit lower, U upper triangular (the
pivoting rule is in :func:`dense_lu`). Each factor is then written as a GFMM graph
(:mod:`lubench_structured.gfmm.arrays`); U through its transpose, Uᵀ being lower. For the
lower factor L, with leaves a, b of P rows and I_q the rows of node q at level i:

* near field, exact: diagonal blocks D_a = L[a, a] (unit lower triangular) and the leaf band
  ``off[b]`` = whatever of L[b+1, b] the far field below leaves (so every block pair of
  adjacent leaves is exact whatever the far field does there);
* far field, leaf pairs a ≥ b + 2: an H² matrix with nested orthonormal bases. The column
  basis of node q at level i ≥ 1 is Û_q = diag(Û_{2q}, Û_{2q+1}) · F_q (Û = I_P at the
  leaves), F_q (2P×P) the decoder edges ``dec[i−1][q]``; the row basis V̂_q likewise through
  the encoder edges ``enc[i−1][q]`` = (its transfer matrix)ᵀ. The interaction of the adjacent
  nodes q−1 → q at level i is Û_q Bⁱ_{q−1} V̂_{q−1}ᵀ, Bⁱ the bridge ``bridge[i−1][q−1]``.

Construction (algebraic, as for H² matrices). A pair of leaves (b, a), a ≥ b + 2, gets a
term from every level where its ancestors are adjacent; its *home* is the finest such level
(the only one that can carry it alone: coarser levels reach it through the nested bases of
the finer ones). Below the level-i block q−1 → q, the children 2q−1 → 2q are adjacent at
level i − 1: that corner is at home further down, the rest of the block at level i.

1. Bases, leaves up. Let L̃ be L with its diagonal and leaf-band blocks set to zero (what the
   far field must carry). The far block row of q at level i is L̃[I_q, columns left of I_q]
   (every such column reaches I_q through q or an ancestor of q) without the corner
   L̃[I_{2q}, I_{2q−1}]. Its projection onto the children's bases, diag(Û_{2q}, Û_{2q+1})ᵀ ·
   (far block row), has the SVD W Σ Zᵀ; F_q = the first r columns of W,
   r = min(rank, #{σ_k > tol·‖L‖_F}), zero-padded to P columns. Row bases the same way on
   the far block column L̃[rows right of I_q, I_q] without its corner L̃[I_{2q+2}, I_{2q+1}].
2. Couplings, root down, on the residual R ← L̃ + (leaf band of L). For i = K−1 … 1 and
   each pair q−1 → q: Bⁱ_{q−1} = Û_qᵀ R̊ V̂_{q−1} with R̊ = R[I_q, I_{q−1}] without its corner
   (the Frobenius-best coupling for these orthonormal bases on the part at home here), and
   R[I_q, I_{q−1}] −= Û_q Bⁱ_{q−1} V̂_{q−1}ᵀ. What this leaves in the corner lies in the span
   of the children's bases (they are nested), so the finer level takes it up exactly.
3. ``off[b]`` = R[b+1, b]: the near field exact after the far field is fixed.

So L̂ − L is supported on leaf pairs a ≥ b + 2 and is zero when L is banded with bandwidth
≤ P (then every far block is zero and the ranks are 0): the factors of banded operators are
reproduced to round-off. The error otherwise is set by the rank of the far field per node.
"""

from __future__ import annotations

import textwrap
import warnings
from typing import Literal

import numpy as np
from threadpoolctl import threadpool_limits

from lubench.api import (
    Factorization,
    FactorizationError,
    InvalidParameter,
    Method,
    Operator,
    RunContext,
    Unsupported,
)
from lubench.lazy import lazy_module

from .arrays import GFMMArrays

sla = lazy_module("scipy.linalg")

__all__ = ["GfmmCompressed", "CompressedFactorization", "compress_lu", "compress_factors",
           "compress_lower", "dense_lu", "derive_M", "pad_identity"]

GROWTH_LIMIT = 1e4
# Singular values below the factor's round-off (1e-16·‖L‖_F) carry no information: dropping
# them left every error measured unchanged at round-off level (RBF kernels ℓ = 0.2, 0.05 and
# the exponential kernel, n = 256, P = 16, 32; suites/compressed.yaml), and keeps the rank
# of an exactly low-rank far field from filling up with round-off (e.g. exponential kernel,
# P = 32: 24 088 numbers instead of 63 488). tol = 0 keeps every nonzero direction.
TOL = 1e-16


def derive_M(n: int, P: int) -> int:
    """The smallest power of two M with M·P ≥ n (as ``gfmm_lu`` chooses it)."""
    M = 1
    while M * P < n:
        M *= 2
    return M


def pad_identity(A: np.ndarray, N: int) -> np.ndarray:
    """Ā = [[A, 0], [0, I]] of size N ≥ n (``gfmm_lu``'s padding)."""
    n = A.shape[0]
    if N == n:
        return np.array(A, dtype=np.float64, copy=True)
    out = np.zeros((N, N))
    out[:n, :n] = A
    out[np.arange(n, N), np.arange(n, N)] = 1.0
    return out


def _lu_nopivot(A: np.ndarray, nb: int = 64) -> np.ndarray | None:
    """Blocked right-looking LU without row exchanges, L and U packed in one array (L's unit
    diagonal implied); None when a pivot is zero or not finite."""
    A = np.array(A, dtype=np.float64, order="F", copy=True)
    n = A.shape[0]
    for k0 in range(0, n, nb):
        k1 = min(k0 + nb, n)
        with threadpool_limits(1):          # small rank-1 updates: threads only cost here
            for k in range(k0, k1):
                p = A[k, k]
                if p == 0 or not np.isfinite(p):
                    return None
                A[k + 1:, k] /= p
                A[k + 1:, k + 1:k1] -= np.outer(A[k + 1:, k], A[k, k + 1:k1])
        if k1 < n:
            A[k0:k1, k1:] = sla.solve_triangular(A[k0:k1, k0:k1], A[k0:k1, k1:], lower=True,
                                                 unit_diagonal=True, check_finite=False)
            A[k1:, k1:] -= A[k1:, k0:k1] @ A[k0:k1, k1:]
    if not np.all(np.isfinite(A)):
        return None
    return A


def _growth(L: np.ndarray, U: np.ndarray, A: np.ndarray) -> float:
    """‖|L||U|‖_∞ / ‖A‖_∞ (one product with a vector: |L|(|U| e))."""
    g = np.abs(L) @ (np.abs(U) @ np.ones(A.shape[0]))
    return float(g.max() / max(np.abs(A).sum(axis=1).max(), np.finfo(float).tiny))


def dense_lu(A: np.ndarray, pivoting: str = "auto",
             growth_limit: float = GROWTH_LIMIT) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                          dict]:
    """(perm, L, U, info) with A[perm] = L·U, L unit lower and U upper triangular.

    ``pivoting``: ``never`` (no row exchanges; a zero pivot is a FactorizationError),
    ``partial`` (LAPACK getrf), or ``auto``: without row exchanges when that completes with
    finite, nonzero pivots and growth ‖|L||U|‖_∞/‖A‖_∞ ≤ ``growth_limit`` (its backward error
    is then at most about growth·n·u, and L, U keep A's band), partial pivoting otherwise.
    """
    n = A.shape[0]
    info: dict = {}
    if pivoting in ("auto", "never"):
        lu = _lu_nopivot(A)
        if lu is not None:
            L = np.tril(lu, -1) + np.eye(n)
            U = np.triu(lu)
            g = _growth(L, U, A)
            if pivoting == "never" or g <= growth_limit:
                return np.arange(n), L, U, {"pivoting": "none", "growth": g}
            info["growth_unpivoted"] = g
        elif pivoting == "never":
            raise FactorizationError("LU without row exchanges breaks down (a zero or "
                                     "non-finite pivot); use pivoting: auto or partial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sla.LinAlgWarning)
        perm_mat, L, U = sla.lu(A)          # A = Pm L U
    if np.any(np.diag(U) == 0):
        i = int(np.flatnonzero(np.diag(U) == 0)[0])
        raise FactorizationError(f"singular matrix: zero pivot U[{i},{i}]")
    perm = np.argmax(perm_mat, axis=0)      # A[perm] = L U
    info.update({"pivoting": "partial", "growth": _growth(L, U, A)})
    return perm, L, U, info


# --------------------------------------------------------------------------------------------
# Compression of one block-lower factor
# --------------------------------------------------------------------------------------------
def _truncated_basis(X: np.ndarray, P: int, rank: int, thresh: float) -> tuple[np.ndarray, int]:
    """The leading left singular vectors of X (rows ≤ 2P): r = min(rank, #σ > thresh), as a
    (rows × P) array with zero columns after the r-th."""
    W = np.zeros((X.shape[0], P))
    if X.size == 0:
        return W, 0
    if X.shape[1] > X.shape[0]:             # wide: X = Rᵀ Qᵀ, the SVD of the small Rᵀ
        X = sla.qr(X.T, mode="r", check_finite=False)[0][: X.shape[0]].T
    Q, s, _ = np.linalg.svd(X, full_matrices=False)
    r = int(min(rank, np.count_nonzero(s > thresh), Q.shape[1]))
    W[:, :r] = Q[:, :r]
    return W, r


def compress_lower(L: np.ndarray, M: int, P: int, rank: int | None = None,
                   tol: float = TOL) -> tuple[GFMMArrays, dict]:
    """L (N×N, N = M·P, lower triangular) as a block-lower GFMMArrays: diagonal blocks and leaf
    band exact, far field in nested orthonormal bases of at most ``rank`` (≤ P) vectors per
    node, singular values ≤ tol·‖L‖_F dropped (see the module docstring for the algorithm).

    Returns the factor and {"ranks": per level i = 1 … K−1, the column and row basis ranks
    of its nodes; "far_error": ‖(L̂ − L)‖_F}.
    """
    N = M * P
    K = M.bit_length() - 1
    rank = P if rank is None else int(min(rank, P))
    thresh = float(tol) * float(np.linalg.norm(L))
    Lb = L.reshape(M, P, M, P)
    diag = np.ascontiguousarray(Lb[np.arange(M), :, np.arange(M), :])
    far = L.copy()                        # L̃: L without diagonal blocks and leaf band
    farb = far.reshape(M, P, M, P)
    farb[np.arange(M), :, np.arange(M), :] = 0.0
    farb[np.arange(1, M), :, np.arange(M - 1), :] = 0.0

    enc = [np.zeros((M >> (i + 1), P, 2 * P)) for i in range(K)]
    dec = [np.zeros((M >> (i + 1), 2 * P, P)) for i in range(K)]
    # explicit bases and projections, level by level: Zu[q] = Û_qᵀ L̃[I_q, :] (P×N),
    # Zv[q] = L̃[:, I_q] V̂_q (N×P); at the leaves Û = V̂ = I
    Zu = far.reshape(M, P, N)
    Zv = far.reshape(N, M, P).transpose(1, 0, 2)      # Zv[q]: (N, P)
    Ub = [np.broadcast_to(np.eye(P), (M, P, P))]       # Ub[i][q]: (|I_q|, P)
    Vb = [np.broadcast_to(np.eye(P), (M, P, P))]
    ranks_u: list[list[int]] = []
    ranks_v: list[list[int]] = []
    for i in range(1, K):
        nodes, size = M >> i, P << i
        half = size // 2
        Zu_next = np.empty((nodes, P, N))
        Zv_next = np.empty((nodes, N, P))
        U_next = np.empty((nodes, size, P))
        V_next = np.empty((nodes, size, P))
        ru, rv = [], []
        for q in range(nodes):
            lo, hi = q * size, (q + 1) * size
            stacked_u = np.concatenate([Zu[2 * q], Zu[2 * q + 1]])          # (2P, N)
            X = stacked_u[:, :lo].copy()
            X[:P, lo - half:] = 0.0         # the corner: level i − 1 carries it
            W, r = _truncated_basis(X, P, rank, thresh)
            dec[i - 1][q] = W
            ru.append(r)
            Zu_next[q] = W.T @ stacked_u
            U_next[q] = np.concatenate([Ub[-1][2 * q] @ W[:P], Ub[-1][2 * q + 1] @ W[P:]])
            stacked_v = np.concatenate([Zv[2 * q], Zv[2 * q + 1]], axis=1)  # (N, 2P)
            X = stacked_v[hi:].T.copy()
            X[P:, :half] = 0.0              # the corner: level i − 1 carries it
            W, r = _truncated_basis(X, P, rank, thresh)
            enc[i - 1][q] = W.T
            rv.append(r)
            Zv_next[q] = stacked_v @ W
            V_next[q] = np.concatenate([Vb[-1][2 * q] @ W[:P], Vb[-1][2 * q + 1] @ W[P:]])
        Zu, Zv = Zu_next, Zv_next
        Ub.append(U_next)
        Vb.append(V_next)
        ranks_u.append(ru)
        ranks_v.append(rv)

    # couplings, root down, on the residual R (far field plus the leaf band)
    R = far        # the leaf band of L comes back into R, so that off = R there at the end
    Rb = R.reshape(M, P, M, P)
    Rb[np.arange(1, M), :, np.arange(M - 1), :] = Lb[np.arange(1, M), :, np.arange(M - 1), :]
    bridge = [np.zeros(((M >> i) - 1, P, P)) for i in range(1, K)]
    for i in range(K - 1, 0, -1):
        size = P << i
        for q in range(1, M >> i):
            rows = slice(q * size, (q + 1) * size)
            cols = slice((q - 1) * size, q * size)
            Uq, Vp = Ub[i][q], Vb[i][q - 1]
            X = R[rows, cols].copy()
            X[:size // 2, size // 2:] = 0.0     # the corner: finer levels carry it
            B = Uq.T @ X @ Vp
            bridge[i - 1][q - 1] = B
            R[rows, cols] -= Uq @ B @ Vp.T
    off = np.ascontiguousarray(Rb[np.arange(1, M), :, np.arange(M - 1), :])
    Rb[np.arange(1, M), :, np.arange(M - 1), :] = 0.0
    F = GFMMArrays.from_tensors(M, P, True, enc, dec, diag, off, bridge)
    return F, {"ranks_u": ranks_u, "ranks_v": ranks_v, "far_error": float(np.linalg.norm(R))}


def _transposed(F: GFMMArrays) -> GFMMArrays:
    """Fᵀ as GFMM arrays: every block transposed, encoder and decoder swapped."""
    def tr(a: np.ndarray) -> np.ndarray:
        return a.transpose(0, 2, 1)

    return GFMMArrays.from_tensors(F.M, F.P, not F.lower, [tr(d) for d in F.dec],
                                   [tr(e) for e in F.enc], tr(F.diag), tr(F.off),
                                   [tr(b) for b in F.bridge])


def stored_numbers(M: int, P: int, ranks_u: list[list[int]], ranks_v: list[list[int]],
                   unit_diag: bool) -> int:
    """Numbers one compressed factor stores: its triangular diagonal blocks (P(P∓1)/2 each),
    the leaf band ((M−1)P²), and per level i ≥ 1 the transfer matrices (child rank × node
    rank, a leaf's rank being P) and couplings (rank × rank) of its nested bases."""
    K = M.bit_length() - 1
    tri = P * (P - 1) // 2 if unit_diag else P * (P + 1) // 2
    total = M * tri + (M - 1) * P * P
    for ranks in (ranks_u, ranks_v):
        child = [P] * M
        for i in range(1, K):
            r = ranks[i - 1]
            total += sum((child[2 * q] + child[2 * q + 1]) * r[q] for q in range(len(r)))
            child = r
    for i in range(1, K):
        ru, rv = ranks_u[i - 1], ranks_v[i - 1]
        total += sum(ru[q] * rv[q - 1] for q in range(1, len(ru)))
    return int(total)


def compress_factors(L: np.ndarray, U: np.ndarray, M: int, P: int, rank: int | None = None,
                     tol: float = TOL) -> tuple[GFMMArrays, GFMMArrays, dict, dict]:
    """Dense lower L and upper U (N×N, N = M·P) placed into the GFMM pattern: near field
    exact, far field compressed (:func:`compress_lower`; U as the transpose of its
    transpose's compression). Returns (L, U, L's and Uᵀ's compression info)."""
    with threadpool_limits(1):  # many small SVDs and products: one thread is fastest,
        Lc, li = compress_lower(np.asarray(L, dtype=np.float64), M, P, rank, tol)  # and
        Ut, ui = compress_lower(np.ascontiguousarray(np.asarray(U, dtype=np.float64).T),
                                M, P, rank, tol)                   # robust on a busy host
    return Lc, _transposed(Ut), li, ui


def compress_lu(A: np.ndarray, M: int, P: int, rank: int | None = None, tol: float = TOL,
                pivoting: Literal["auto", "never", "partial"] = "auto",
                growth_limit: float = GROWTH_LIMIT
                ) -> tuple[np.ndarray, GFMMArrays, GFMMArrays, dict]:
    """(perm, L, U, info): Ā[perm] ≈ L·U for Ā = A padded to N = M·P with an identity block.

    L has unit lower triangular diagonal blocks, U upper triangular ones; both are exact
    on their near field and compressed (``rank``, ``tol``) on their far field (module
    docstring). perm has length N (perm[n:] = n … N−1) and is the identity unless the
    pivoting rule of :func:`dense_lu` chose row exchanges. ``info``: pivoting, growth, the
    basis ranks, the far-field errors and ``n_params`` (stored numbers of L and U).
    """
    A = np.asarray(A, dtype=np.float64)
    n = A.shape[0]
    if M < 1 or M & (M - 1):
        raise InvalidParameter(f"M must be a power of two, got {M}")
    if M * P < n:
        raise InvalidParameter(f"M·P = {M * P} is smaller than n = {n}")
    Abar = pad_identity(A, M * P)
    perm, Lx, Ux, info = dense_lu(Abar, pivoting, growth_limit)
    L, U, li, ui = compress_factors(Lx, Ux, M, P, rank, tol)
    info = {**info, "ranks_L": li["ranks_u"], "ranks_U": ui["ranks_v"],
            "far_error_L": li["far_error"], "far_error_U": ui["far_error"],
            "n_params": stored_numbers(M, P, li["ranks_u"], li["ranks_v"], True)
            + stored_numbers(M, P, ui["ranks_u"], ui["ranks_v"], False)}
    return perm, L, U, info


# --------------------------------------------------------------------------------------------
# The method
# --------------------------------------------------------------------------------------------
class CompressedFactorization(Factorization):
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


class GfmmCompressed(Method):
    __doc__ = textwrap.dedent("""\
        GFMM-compressed LU: exact LU of A placed into the GFMM pattern, far field truncated.

        Classical and untrained: A (padded to N = M·P with an identity block) is factored,
        Ā[perm] = L·U (without row exchanges when that is safe, see ``pivoting``), and L
        and U are written as the GFMM graphs of ``gfmm_lu``: diagonal blocks and leaf band
        exact, the far field as an H² matrix whose nested bases are the tree's encoder and
        decoder edges and whose couplings are its bridges (truncated SVDs, leaves up; then
        the couplings root down). Exact to round-off when the factors' bandwidth is ≤ P.
        Solved (block substitution, compiled) and applied through the graphs, O(n·P) per column.
        n_params counts what the factors store at the ranks reached.

        Parameters
        ----------
        P : int
            Leaf size: the size of every block and edge (as ``gfmm_lu``'s).
        M : int or None
            Number of leaves, a power of two; None or 0: the smallest with M·P ≥ n.
        rank : int or None
            Most basis vectors per tree node (≤ P); None: P, what the GFMM edges hold.
        tol : float
            Singular values ≤ tol·‖L‖_F (resp. ‖U‖_F) of a node's far block row/column are
            dropped. The default 1e-16, the factor's round-off, changes no measured error
            and keeps exactly low-rank far fields at their rank; 0 keeps every nonzero one.
        pivoting : str
            ``auto``: no row exchanges when LU without them completes with growth
            ‖|L||U|‖_∞/‖A‖_∞ ≤ 1e4, partial pivoting otherwise; ``never``; ``partial``.
        """)

    name = "gfmm_compressed"
    family = "compressed"

    def __init__(self, P: int = 32, M: int | None = None, rank: int | None = None,
                 tol: float = TOL,
                 pivoting: Literal["auto", "never", "partial"] = "auto"):
        self.P = P
        self.M = M
        self.rank = rank
        self.tol = tol
        self.pivoting = pivoting

    def _validate(self) -> None:
        if int(self.P) < 1:
            raise InvalidParameter(f"gfmm_compressed: P must be at least 1, got {self.P!r}")
        if self.M not in (None, 0) and (int(self.M) < 1 or int(self.M) & (int(self.M) - 1)):
            raise InvalidParameter(f"gfmm_compressed: M must be a power of two (or 0/None to "
                                   f"derive it from n), got {self.M!r}")
        if self.rank is not None and int(self.rank) < 0:
            raise InvalidParameter(f"gfmm_compressed: rank must be ≥ 0 or None, "
                                   f"got {self.rank!r}")
        if not float(self.tol) >= 0:
            raise InvalidParameter(f"gfmm_compressed: tol must be ≥ 0, got {self.tol!r}")
        if self.pivoting not in ("auto", "never", "partial"):
            raise InvalidParameter(f"gfmm_compressed: pivoting must be auto, never or "
                                   f"partial, got {self.pivoting!r}")

    def shape_for(self, n: int) -> tuple[int, int]:
        """(M, P) used for size n."""
        P = int(self.P)
        return (int(self.M) if self.M else derive_M(n, P)), P

    def memory_estimate(self, op: Operator) -> float:
        """Bytes: a handful of dense N×N float64 arrays (Ā, L, U, the residual)."""
        M, P = self.shape_for(op.n)
        return 6.0 * (M * P) ** 2 * 8

    def check(self, op: Operator) -> None:
        self._validate()
        M, P = self.shape_for(op.n)
        if M * P < op.n:
            raise Unsupported(f"M·P = {M}·{P} = {M * P} is smaller than n = {op.n}; "
                              f"raise M or leave it unset")

    def prepare(self, ctx: RunContext) -> None:
        """Compile (or load from cache) the structured solve, outside ``setup_seconds``."""
        # Numba: imported only when a case runs
        from .substitution import warm_up

        warm_up()

    def factorize(self, op: Operator, ctx: RunContext) -> CompressedFactorization:
        self.check(op)
        M, P = self.shape_for(op.n)
        need = self.memory_estimate(op)
        if ctx.memory_limit is not None and need > ctx.memory_limit:
            raise Unsupported(f"needs ~{need / 2**30:.2f} GiB for dense LU at N = {M * P}, "
                              f"over the memory limit {ctx.memory_limit / 2**30:.2f} GiB")
        perm, L, U, info = compress_lu(op.dense(), M, P, self.rank, float(self.tol),
                                       self.pivoting)
        fact = CompressedFactorization(perm, L, U, op.n, info["n_params"])
        fact.info = {**info, "M": M, "P": P, "N": M * P, "padding": M * P - op.n,
                     "gfmm_numbers": L.n_numbers() + U.n_numbers()}
        return fact
