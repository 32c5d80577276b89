"""A HODLR matrix from the action of A alone: randomized peeling (Lin, Lu & Ying 2011).

For an operator that gives only X ↦ A·X and X ↦ Aᵀ·X, the off-diagonal blocks are sampled
level by level, root first, each level's blocks all at once:

1. Ranges. Let Ω be Gaussian on the rows of every level-ℓ node's second child c₂ and zero
   elsewhere, and let A⁽ℓ⁾ be the off-diagonal blocks of levels < ℓ found so far. Then on
   the rows of c₁, (A·Ω − A⁽ℓ⁾·Ω)[c₁] = A[c₁, c₂]·Ω[c₂]: the block's range, sampled. (A's
   diagonal blocks below level ℓ only touch rows of c₂, which are not read; the blocks of
   other level-ℓ nodes belong to coarser levels and are subtracted.) The same with Ω on the
   first children samples A[c₂, c₁]. Orthonormal bases Q¹², Q²¹ follow by SVD.
2. Co-ranges. With Ψ = Q¹² on c₁ (zero elsewhere), (Aᵀ·Ψ − A⁽ℓ⁾ᵀ·Ψ)[c₂] = A[c₁, c₂]ᵀ Q¹²,
   so A[c₁, c₂] ≈ Q¹² (A[c₁, c₂]ᵀ Q¹²)ᵀ; likewise for A[c₂, c₁]. An SVD of the small factor
   truncates it. For symmetric A the lower blocks are the upper ones transposed, and one
   product with A serves step 2.
3. Leaves. With Ω = the identity on every leaf at once (b columns, b the largest leaf),
   (A·Ω − A⁽ᴷ⁾·Ω)[leaf j] = A[leaf j, leaf j].

The rank rule here is absolute: singular values ≤ tol·‖A‖₂ are dropped (‖A‖₂ estimated by
power iteration), because every sample carries the truncation errors of the coarser levels,
of size tol·‖A‖₂, and a rule relative to a small block would keep that noise. A level is
sampled with s = 16, 32, … columns (``oversample`` beyond the rank found) until every block's
rank is at most s − ``oversample`` (or the block is exhausted, or s exceeds max_rank +
oversample: then the rank is capped and counted).

Cost: O(K·(r + p)) products with A and Aᵀ (2(r + p) columns per level) plus b for the
leaves, and O(n·r·K) work per sample column for the subtraction: O(n·r²·log² n) besides the
products. For an operator with an O(n) action that is O(n log² n); for a dense action it is
O(n² r log n) — the route for operators that have nothing else.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .matrix import HODLRMatrix
from .tree import ClusterTree

__all__ = ["peel", "norm2_estimate"]

FIRST_SAMPLES = 16
POWER_STEPS = 8


def norm2_estimate(op: Any, n: int, rng: np.random.Generator, symmetric: bool,
                   steps: int = POWER_STEPS) -> float:
    """‖A‖₂ by power iteration on AᵀA (on A when symmetric), two start vectors."""
    x = rng.standard_normal((n, 2))
    est = 0.0
    for _ in range(steps):
        x /= np.maximum(np.linalg.norm(x, axis=0), np.finfo(float).tiny)
        y = np.asarray(op.matmat(x), dtype=np.float64).reshape(n, -1)
        est = float(np.linalg.norm(y, axis=0).max())
        x = y if symmetric else np.asarray(op.rmatmat(y), dtype=np.float64).reshape(n, -1)
    return est


def _basis(Y: np.ndarray, floor: float) -> np.ndarray:
    """Orthonormal basis of Y's columns whose singular values exceed ``floor``."""
    if Y.size == 0:
        return np.zeros((Y.shape[0], 0))
    W, s, _ = np.linalg.svd(Y, full_matrices=False)
    return W[:, : int(np.count_nonzero(s > floor))]


def peel(op: Any, tree: ClusterTree, tol: float, max_rank: int, rng: np.random.Generator,
         oversample: int = 10) -> tuple[HODLRMatrix, dict]:
    """(H, stats): A in HODLR form on ``tree`` from ``op.matmat`` / ``op.rmatmat`` only
    (module docstring). ``stats``: products taken (columns), ‖A‖₂ estimate, capped blocks."""
    n, K = tree.n, tree.depth
    sym = bool(op.symmetric)
    ni = tree.n_internal
    H = HODLRMatrix(tree, [None] * tree.n_leaves, [None] * ni, [None] * ni, [None] * ni,
                    [None] * ni)
    stats: dict[str, Any] = {"products": 0, "capped": 0}

    def A(X: np.ndarray, transpose: bool = False) -> np.ndarray:
        stats["products"] += X.shape[1]
        f = op.rmatmat if transpose and not sym else op.matmat
        return np.asarray(f(X), dtype=np.float64).reshape(n, -1)

    normA = norm2_estimate(op, n, rng, sym)
    stats["products"] += 2 * POWER_STEPS * (1 if sym else 2)
    stats["norm2_estimate"] = normA
    thresh = tol * normA
    floor = 1e-15 * max(normA, np.finfo(float).tiny)
    for lev in range(K):
        ks = range((1 << lev) - 1, (2 << lev) - 1)
        splits = [tree.split(k) for k in ks]
        biggest = max(max(mid - lo, hi - mid) for lo, mid, hi in splits)
        s = min(FIRST_SAMPLES, biggest)
        while True:
            blocks = _sample_level(A, H, lev, splits, s, rng, sym, thresh, floor, n)
            worst = max(max(u.shape[1] for u, _, _, _ in blocks),
                        max(u.shape[1] for _, _, u, _ in blocks))
            if worst <= s - oversample or s >= biggest or s >= max_rank + oversample:
                break
            s = min(2 * s, biggest, max_rank + oversample)
        for k, (U12, V12, U21, V21) in zip(ks, blocks):
            if U12.shape[1] > max_rank or U21.shape[1] > max_rank:
                stats["capped"] += 1
            H.U12[k], H.V12[k] = U12[:, :max_rank], V12[:, :max_rank]
            H.U21[k], H.V21[k] = U21[:, :max_rank], V21[:, :max_rank]
    # the leaves: identity columns on every leaf at once, coarser blocks subtracted
    lb = tree.leaf_bounds
    b = int(np.diff(lb).max())
    Om = np.zeros((n, b))
    for j in range(tree.n_leaves):
        lo, hi = lb[j], lb[j + 1]
        Om[np.arange(lo, hi), np.arange(hi - lo)] = 1.0
    Y = A(Om) - H.matmat(Om, levels=K, leaves=False)
    for j in range(tree.n_leaves):
        lo, hi = lb[j], lb[j + 1]
        H.leaves[j] = np.ascontiguousarray(Y[lo:hi, : hi - lo])
    return H, stats


def _sample_level(A, H: HODLRMatrix, lev: int, splits: list, s: int, rng: np.random.Generator,
                  sym: bool, thresh: float, floor: float, n: int) -> list:
    """The level's blocks (U¹², V¹², U²¹, V²¹) from s samples per block (steps 1 and 2)."""
    # step 1: ranges, Ω on the second children (upper blocks) and on the first (lower)
    Om = np.zeros((n, s if sym else 2 * s))
    for lo, mid, hi in splits:
        Om[mid:hi, :s] = rng.standard_normal((hi - mid, s))
        if not sym:
            Om[lo:mid, s:] = rng.standard_normal((mid - lo, s))
    Y = A(Om) - H.matmat(Om, levels=lev, leaves=False)
    Q12 = [_basis(Y[lo:mid, :s], floor) for lo, mid, hi in splits]
    Q21 = [] if sym else [_basis(Y[mid:hi, s:], floor) for lo, mid, hi in splits]
    # step 2: co-ranges through Aᵀ (A itself when symmetric)
    q = max([Q.shape[1] for Q in Q12 + Q21] + [1])
    Psi = np.zeros((n, q if sym else 2 * q))
    for (lo, mid, _hi), Q in zip(splits, Q12):
        Psi[lo:mid, : Q.shape[1]] = Q
    if not sym:
        for (_lo, mid, hi), Q in zip(splits, Q21):
            Psi[mid:hi, q: q + Q.shape[1]] = Q
    Z = A(Psi, transpose=True) - H.matmat(Psi, transpose=True, levels=lev, leaves=False)
    out = []
    for i, (lo, mid, hi) in enumerate(splits):
        U12, V12 = _truncate(Q12[i], Z[mid:hi, : Q12[i].shape[1]], thresh)
        if sym:
            U21, V21 = V12, U12
        else:
            U21, V21 = _truncate(Q21[i], Z[lo:mid, q: q + Q21[i].shape[1]], thresh)
        out.append((U12, V12, U21, V21))
    return out


def _truncate(Q: np.ndarray, Zb: np.ndarray, thresh: float) -> tuple[np.ndarray, np.ndarray]:
    """B ≈ Q Zbᵀ truncated: Zb = W S Tᵀ, keep σ > thresh: (Q T S, W)."""
    if Q.shape[1] == 0:
        return np.zeros((Q.shape[0], 0)), np.zeros((Zb.shape[0], 0))
    W, s, Tt = np.linalg.svd(Zb, full_matrices=False)
    r = int(np.count_nonzero(s > thresh))
    return Q @ (Tt[:r].T * s[:r]), W[:, :r]
