"""Dense LU of the padded matrix, without row exchanges where that is safe.

The compression (:mod:`.compression`) starts from exact factors Ā[perm] = L·U, L unit lower
and U upper triangular. Without row exchanges L and U keep A's band, so the far field of
banded operators' factors is zero and compresses exactly; partial pivoting is taken only
when LU without it breaks down or grows: growth ‖|L||U|‖_∞/‖A‖_∞ above ``GROWTH_LIMIT``
(the backward error of LU is at most about growth·n·u).
"""

from __future__ import annotations

import warnings

import numpy as np
from threadpoolctl import threadpool_limits

from lubench.api import FactorizationError
from lubench.lazy import lazy_module

sla = lazy_module("scipy.linalg")

__all__ = ["dense_lu", "GROWTH_LIMIT"]

GROWTH_LIMIT = 1e4


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

