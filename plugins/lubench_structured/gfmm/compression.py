"""Exact LU factors placed into the GFMM pattern: near field exact, far field compressed.

A (n×n) is padded to N = M·P with an identity block, Ā = [[A, 0], [0, I]], as ``gfmm_lu``
pads it, and factored exactly: Ā[perm] = L·U with L unit lower, U upper triangular (the
pivoting rule is in :func:`~.exact_lu.dense_lu`). Each factor is then written as a GFMM
graph (:mod:`.arrays`); U through its transpose, Uᵀ being lower. For the
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

from typing import Literal

import numpy as np
from threadpoolctl import threadpool_limits

from lubench.api import InvalidParameter
from lubench.lazy import lazy_module

from .arrays import GFMMArrays
from .exact_lu import GROWTH_LIMIT, dense_lu
from .shape import pad_identity

sla = lazy_module("scipy.linalg")

__all__ = ["compress_lu", "compress_factors", "compress_lower", "stored_numbers", "TOL"]

# Singular values below the factor's round-off (1e-16·‖L‖_F) carry no information: dropping
# them left every error measured unchanged at round-off level (RBF kernels ℓ = 0.2, 0.05 and
# the exponential kernel, n = 256, P = 16, 32; suites/compressed.yaml), and keeps the rank
# of an exactly low-rank far field from filling up with round-off (e.g. exponential kernel,
# P = 32: 24 088 numbers instead of 63 488). tol = 0 keeps every nonzero direction.
TOL = 1e-16


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
    pivoting rule of :func:`~.exact_lu.dense_lu` chose row exchanges. ``info``: pivoting,
    growth, the basis ranks, the far-field errors and ``n_params`` (stored numbers of L and
    U).
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

