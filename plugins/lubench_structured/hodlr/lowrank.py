"""Low-rank blocks: adaptive cross approximation from entries, recompression to a tolerance.

A block B (m × n) is stored as B ≈ U Vᵀ, U (m × r), V (n × r). The *rank rule* used
everywhere: given the singular values σ₀ ≥ σ₁ ≥ … of the block (of its current
approximation), keep r = #{j : σ_j > tol·σ₀}, at most ``max_rank``; the error is then
‖B − U Vᵀ‖₂ ≤ tol·‖B‖₂ (plus what ``max_rank`` cuts, reported as ``capped``).

* :func:`recompress` — U Vᵀ to the rank rule in O((m + n) k²) for k input columns: QR of U
  and V, SVD of the k × k core Rᵤ Rᵥᵀ (the singular values of U Vᵀ are exactly those of the
  core).
* :func:`aca` — adaptive cross approximation with partial pivoting (Bebendorf 2000): with
  Rₖ = B − Σ_{l<k} u_l v_lᵀ the residual, take a row i, its residual row r = Rₖ[i, :], the
  column j = argmax |r_j|, v = r / r_j, u = Rₖ[:, j]; the next row is argmax |u| over rows not
  yet used. The Frobenius norm of the approximation Sₖ = Σ u_l v_lᵀ is updated exactly,
  ‖Sₖ‖² = ‖Sₖ₋₁‖² + 2 Σ_{l<k} (u_lᵀuₖ)(v_lᵀvₖ) + ‖uₖ‖²‖vₖ‖², and the iteration stops when
  ‖uₖ‖‖vₖ‖ ≤ tol·‖Sₖ‖_F. It reads (m + n)·k entries — O((m + n) r) for a block of rank r,
  never the whole block — and is followed by :func:`recompress`.
  The first row is the one nearest the diagonal of the whole matrix (the block's largest
  entries sit there for the hierarchically ordered, decaying kernels lubench builds; a
  block whose far rows underflow to zero, e.g. ρ^|i−j| at large n, is then still found).
  A residual row that is exactly zero carries no pivot: up to ``ZERO_ROW_TRIES`` other rows
  (spread over the block) are tried before the block is declared exhausted.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from numba import njit
from scipy.linalg import lapack

__all__ = ["aca", "recompress", "truncation_rank", "upper_mask", "ZERO_ROW_TRIES"]

ZERO_ROW_TRIES = 4


def truncation_rank(s: np.ndarray, tol: float, max_rank: int) -> int:
    """r = #{j : s_j > tol·s₀}, at most ``max_rank`` (s sorted descending)."""
    if s.size == 0 or not s[0] > 0:
        return 0
    return int(min(max_rank, np.count_nonzero(s > tol * s[0])))


def recompress(U: np.ndarray, V: np.ndarray, tol: float, max_rank: int
               ) -> tuple[np.ndarray, np.ndarray, float]:
    """(U', V', cut) with U' V'ᵀ the rank-rule truncation of U Vᵀ (module docstring).

    U' = Q_U W_r Σ_r and V' = Q_V Z_r, from U = Q_U R_U, V = Q_V R_V and the SVD
    R_U R_Vᵀ = W Σ Zᵀ: V' has orthonormal columns. ``cut`` is σ_r/σ₀, the relative 2-norm
    of what ``max_rank`` dropped beyond the tolerance (0 when the tolerance decided).
    Cost O((m + n) k² + k³) for k = U.shape[1].
    """
    m, k = U.shape
    n = V.shape[0]
    if k == 0 or m == 0 or n == 0:
        return np.zeros((m, 0)), np.zeros((n, 0)), 0.0
    Qu, Ru = _qr(U)
    Qv, Rv = _qr(V)
    W, s, Zt, info = lapack.dgesdd(Ru @ Rv.T)
    if info != 0:       # gesdd did not converge (rare): the slower, sturdier driver
        W, s, Zt = np.linalg.svd(Ru @ Rv.T)
    r = truncation_rank(s, tol, max_rank)
    cut = float(s[r] / s[0]) if r < s.size and s[0] > 0 and s[r] > tol * s[0] else 0.0
    return Qu @ (W[:, :r] * s[:r]), Qv @ Zt[:r].T, cut


@functools.lru_cache(maxsize=4096)
def upper_mask(p: int, k: int) -> np.ndarray:
    """The 0/1 mask of the upper triangle of a p × k array (``np.triu`` costs more than the
    small QR it would finish)."""
    return np.triu(np.ones((p, k)))


def _qr(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reduced QR, A = Q R, Q (m × p) orthonormal, R (p × k) upper, p = min(m, k): LAPACK
    geqrf + orgqr called directly (NumPy's ``qr`` costs ten times more on the thin blocks
    met here)."""
    m, k = A.shape
    p = min(m, k)
    qr, tau, _, _ = lapack.dgeqrf(A)
    R = qr[:p] * upper_mask(p, k)
    Q = lapack.dorgqr(qr[:, :p], tau)[0]
    return Q, R


@njit(cache=True, nogil=True)
def _residual_row(row, Ut, Vt, k, i):
    """row −= Σ_{l<k} Ut[l, i]·Vt[l] in place; (j, row[j]) with j = argmax |row_j|."""
    if k:
        row -= np.dot(np.ascontiguousarray(Ut[:k, i]), Vt[:k])
    j = int(np.argmax(np.abs(row)))
    return j, row[j]


@njit(cache=True, nogil=True)
def _add_cross(u, row, pivot, Ut, Vt, k, j, used, norm2):
    """Cross k of ACA: u −= Σ_{l<k} Vt[l, j]·Ut[l] (the residual column), v = row/pivot,
    stored as Ut[k], Vt[k]; ‖S‖² updated. Returns (‖S‖², ‖u‖²‖v‖², next row: argmax |u|
    over the rows not used, −1 if none)."""
    if k:
        u -= np.dot(np.ascontiguousarray(Vt[:k, j]), Ut[:k])
    v = row / pivot
    uu = np.dot(u, u)
    vv = np.dot(v, v)
    if k:
        norm2 += 2.0 * np.dot(np.dot(Ut[:k], u), np.dot(Vt[:k], v))
    norm2 += uu * vv
    Ut[k] = u
    Vt[k] = v
    best, nxt = -1.0, -1
    for r in range(u.shape[0]):
        if not used[r] and abs(u[r]) > best:
            best, nxt = abs(u[r]), r
    return norm2, uu * vv, nxt


def aca(entries: Callable[[np.ndarray, np.ndarray], np.ndarray], rows: np.ndarray,
        cols: np.ndarray, tol: float, max_rank: int, first_row: int,
        rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """(U, V, converged): B = entries(rows, cols) ≈ U Vᵀ by ACA with partial pivoting.

    ``entries(r, c)`` returns the block B[r, c] (global index arrays in, dense out);
    ``first_row`` is the local index of the row to start from. At most
    min(m, n, max_rank + 1) crosses are taken; ``converged`` is False when that limit,
    not the stopping rule, ended the iteration. Not recompressed (see :func:`recompress`).
    """
    m, n = len(rows), len(cols)
    kmax = min(m, n, max_rank + 1)
    cap = min(kmax, 8)                     # grown by doubling: most blocks need few crosses
    Ut = np.empty((cap, m))
    Vt = np.empty((cap, n))
    used = np.zeros(m, dtype=bool)
    norm2 = 0.0
    k = 0
    i = int(first_row)
    zero_tries = 0
    converged = False
    while k < kmax:
        used[i] = True
        row = np.array(entries(rows[i:i + 1], cols)[0], dtype=np.float64)
        j, pivot = _residual_row(row, Ut, Vt, k, i)
        if pivot == 0 or not np.isfinite(pivot):
            if not np.isfinite(pivot):
                raise FloatingPointError(f"entry not finite in rows {rows[0]}…{rows[-1]}")
            zero_tries += 1
            free = np.flatnonzero(~used)
            if zero_tries > ZERO_ROW_TRIES or free.size == 0:
                converged = True
                break
            # spread the tries over the block: a random free row, or the middle one
            i = int(free[rng.integers(free.size)] if rng is not None else free[free.size // 2])
            continue
        if k == cap:
            cap = min(2 * cap, kmax)
            Ut = np.concatenate([Ut, np.empty((cap - k, m))])
            Vt = np.concatenate([Vt, np.empty((cap - k, n))])
        u = np.array(entries(rows, cols[j:j + 1])[:, 0], dtype=np.float64)
        norm2, size2, i = _add_cross(u, row, pivot, Ut, Vt, k, j, used, norm2)
        k += 1
        if size2 <= tol * tol * norm2:
            converged = True
            break
        if i < 0:                          # every row used: the block is exact
            converged = True
            break
    if k == min(m, n):                     # as many crosses as the block has rows/columns
        converged = True
    return Ut[:k].T.copy(), Vt[:k].T.copy(), converged
