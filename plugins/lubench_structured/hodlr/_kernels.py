"""Compiled sweeps of a packed HODLR LU (Numba): the four triangular solves and the products.

Layout (see :class:`~.lu.HODLRLU`): K levels, 2^K leaves with bounds ``lb``; leaf j's packed
LU (row-major, m_j × m_j: L strictly below the diagonal with unit diagonal implied, U on and
above) at ``leaf[loff[j]:loff[j+1]]``; internal node k's factors, row-major, in ``buf``:
X_k (|c₂| × rl[k]) at xo[k], Y_k (|c₁| × rl[k]) at yo[k] — L[c₂, c₁] = X Yᵀ — and
P_k (|c₁| × ru[k]) at po[k], Q_k (|c₂| × ru[k]) at qo[k] — U[c₁, c₂] = P Qᵀ.

A block solve needs node k's update exactly when its first child is done, i.e. at the
boundary between leaves j − 1 and j where c₂ starts: k is the node of level K − 1 − tz(j)
(tz = trailing zero bits of j) whose index is j >> (tz(j) + 1). So a forward solve is one
loop over the leaves, each preceded by the one update that starts there, and a backward
solve the same loop reversed: every block is read once, O(n·(b + r·K)) per column, no
recursion and no Python per node. Right-hand sides are rows of Z (n × c, C order), every
product a sequence of axpys over those rows; with many columns (c ≥ ``PARALLEL_COLUMNS``)
the columns are split between Numba's threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["solve_sweep", "multiply", "lu_nopivot", "PARALLEL_COLUMNS", "warm_up"]

PARALLEL_COLUMNS = 64

# sweep kinds
L_INV, U_INV, UT_INV, LT_INV = 0, 1, 2, 3


@njit(cache=True, nogil=True)
def _node_of_boundary(j, K):
    """(level, index) of the node whose second child starts at leaf j ≥ 1."""
    tz = 0
    while (j >> tz) & 1 == 0:
        tz += 1
    return K - 1 - tz, j >> (tz + 1), tz


@njit(cache=True, nogil=True)
def _lowrank(Zs, Zd, dst0, dst1, src0, src1, buf, ao, bo, r, sign):
    """Zd[dst] += sign · A (Bᵀ Zs[src]) with A = buf[ao:] (|dst| × r) and B = buf[bo:]
    (|src| × r), row-major: t = Bᵀ Zs[src] by axpys over the rank, then one dot product
    over the rank per entry of Zd[dst] (contiguous in buf and t for any column count)."""
    if r == 0:
        return
    c = Zs.shape[1]
    t = np.zeros((c, r))
    for i in range(src1 - src0):
        base = bo + i * r
        for q in range(c):
            z = Zs[src0 + i, q]
            if z != 0.0:
                for a in range(r):
                    t[q, a] += buf[base + a] * z
    for i in range(dst1 - dst0):
        base = ao + i * r
        for q in range(c):
            acc = 0.0
            for a in range(r):
                acc += buf[base + a] * t[q, a]
            Zd[dst0 + i, q] += sign * acc


@njit(cache=True, nogil=True)
def _dot_rows(leaf, base, stride, Z, s0, s1, q):
    """Σ_{s0 ≤ s < s1} leaf[base + s·stride] · Z[s, q], four partial sums (the loop
    pipelines without reassociating one sum: the result does not depend on fast-math)."""
    a0 = a1 = a2 = a3 = 0.0
    s = s0
    while s + 4 <= s1:
        a0 += leaf[base + s * stride] * Z[s, q]
        a1 += leaf[base + (s + 1) * stride] * Z[s + 1, q]
        a2 += leaf[base + (s + 2) * stride] * Z[s + 2, q]
        a3 += leaf[base + (s + 3) * stride] * Z[s + 3, q]
        s += 4
    while s < s1:
        a0 += leaf[base + s * stride] * Z[s, q]
        s += 1
    return (a0 + a1) + (a2 + a3)


@njit(cache=True, nogil=True)
def _leaf_solve_rows(Z, lo, hi, leaf, o, kind):
    """:func:`_leaf_solve` for many columns: row axpys over the columns (contiguous)."""
    m = hi - lo
    c = Z.shape[1]
    if kind == L_INV or kind == UT_INV:
        for r in range(m):
            for s in range(r):
                w = leaf[o + r * m + s] if kind == L_INV else leaf[o + s * m + r]
                if w != 0.0:
                    for q in range(c):
                        Z[lo + r, q] -= w * Z[lo + s, q]
            if kind == UT_INV:
                d = 1.0 / leaf[o + r * m + r]
                for q in range(c):
                    Z[lo + r, q] *= d
    else:
        for r in range(m - 1, -1, -1):
            for s in range(r + 1, m):
                w = leaf[o + r * m + s] if kind == U_INV else leaf[o + s * m + r]
                if w != 0.0:
                    for q in range(c):
                        Z[lo + r, q] -= w * Z[lo + s, q]
            if kind == U_INV:
                d = 1.0 / leaf[o + r * m + r]
                for q in range(c):
                    Z[lo + r, q] *= d


@njit(cache=True, nogil=True)
def _leaf_solve(Z, lo, hi, leaf, o, kind):
    """Z[lo:hi] ← T⁻¹ Z[lo:hi] for the leaf's triangle T (kind): for one column each entry
    is one dot product with the entries already solved; for more, row axpys."""
    m = hi - lo
    c = Z.shape[1]
    if c > 1:
        _leaf_solve_rows(Z, lo, hi, leaf, o, kind)
        return
    for q in range(c):
        if kind == L_INV:          # unit lower: z_r −= Σ_{s<r} l_rs z_s
            for r in range(m):
                Z[lo + r, q] -= _dot_rows(leaf, o + r * m - lo, 1, Z, lo, lo + r, q)
        elif kind == U_INV:        # upper: z_r = (z_r − Σ_{s>r} u_rs z_s) / u_rr
            for r in range(m - 1, -1, -1):
                acc = _dot_rows(leaf, o + r * m - lo, 1, Z, lo + r + 1, hi, q)
                Z[lo + r, q] = (Z[lo + r, q] - acc) / leaf[o + r * m + r]
        elif kind == UT_INV:       # Uᵀ, lower: z_r = (z_r − Σ_{s<r} u_sr z_s) / u_rr
            for r in range(m):
                acc = _dot_rows(leaf, o + r - lo * m, m, Z, lo, lo + r, q)
                Z[lo + r, q] = (Z[lo + r, q] - acc) / leaf[o + r * m + r]
        else:                      # Lᵀ, unit upper: z_r −= Σ_{s>r} l_sr z_s
            for r in range(m - 1, -1, -1):
                Z[lo + r, q] -= _dot_rows(leaf, o + r - lo * m, m, Z, lo + r + 1, hi, q)


@njit(cache=True, nogil=True)
def _sweep(Z, kind, K, lb, leaf, loff, buf, xo, yo, po, qo, rl, ru):
    nl = lb.shape[0] - 1
    forward = kind == L_INV or kind == UT_INV
    for step in range(nl):
        j = step if forward else nl - 1 - step
        b = j if forward else j + 1          # the leaf boundary met before leaf j
        if 0 < b < nl:
            lev, i, tz = _node_of_boundary(b, K)
            k = (1 << lev) - 1 + i
            lo = lb[i << (tz + 1)]
            mid = lb[b]
            hi = lb[min((i + 1) << (tz + 1), nl)]
            if kind == L_INV:        # Z[c₂] −= X (Yᵀ Z[c₁])
                _lowrank(Z, Z, mid, hi, lo, mid, buf, xo[k], yo[k], rl[k], -1.0)
            elif kind == UT_INV:     # Z[c₂] −= Q (Pᵀ Z[c₁])
                _lowrank(Z, Z, mid, hi, lo, mid, buf, qo[k], po[k], ru[k], -1.0)
            elif kind == U_INV:      # Z[c₁] −= P (Qᵀ Z[c₂])
                _lowrank(Z, Z, lo, mid, mid, hi, buf, po[k], qo[k], ru[k], -1.0)
            else:                    # Z[c₁] −= Y (Xᵀ Z[c₂])
                _lowrank(Z, Z, lo, mid, mid, hi, buf, yo[k], xo[k], rl[k], -1.0)
        _leaf_solve(Z, lb[j], lb[j + 1], leaf, loff[j], kind)


@njit(cache=True, nogil=True)
def _leaf_multiply(X, Y, lo, hi, leaf, o, lower, trans):
    """Y[lo:hi] = op(T) X[lo:hi], T the leaf's unit lower (``lower``) or upper triangle:
    L: Y_r = X_r + Σ_{s<r} l_rs X_s;  Lᵀ: Y_r = X_r + Σ_{s>r} l_sr X_s;
    U: Y_r = Σ_{s≥r} u_rs X_s;        Uᵀ: Y_r = Σ_{s≤r} u_sr X_s."""
    m = hi - lo
    c = X.shape[1]
    for r in range(m):
        if lower:
            for q in range(c):
                Y[lo + r, q] = X[lo + r, q]
            s0, s1 = (r + 1, m) if trans else (0, r)
        else:
            for q in range(c):
                Y[lo + r, q] = 0.0
            s0, s1 = (0, r + 1) if trans else (r, m)
        for s in range(s0, s1):
            w = leaf[o + s * m + r] if trans else leaf[o + r * m + s]
            for q in range(c):
                Y[lo + r, q] += w * X[lo + s, q]


@njit(cache=True, nogil=True)
def _multiply(X, Y, lower, trans, K, lb, leaf, loff, buf, xo, yo, po, qo, rl, ru):
    nl = lb.shape[0] - 1
    for j in range(nl):
        _leaf_multiply(X, Y, lb[j], lb[j + 1], leaf, loff[j], lower, trans)
    for lev in range(K):
        span = nl >> lev
        for i in range(1 << lev):
            k = (1 << lev) - 1 + i
            lo, mid, hi = lb[i * span], lb[i * span + span // 2], lb[(i + 1) * span]
            if lower and not trans:      # Y[c₂] += X (Yᵀ X[c₁])
                _lowrank(X, Y, mid, hi, lo, mid, buf, xo[k], yo[k], rl[k], 1.0)
            elif lower:                  # Lᵀ: Y[c₁] += Y_k (X_kᵀ X[c₂])
                _lowrank(X, Y, lo, mid, mid, hi, buf, yo[k], xo[k], rl[k], 1.0)
            elif not trans:              # Y[c₁] += P (Qᵀ X[c₂])
                _lowrank(X, Y, lo, mid, mid, hi, buf, po[k], qo[k], ru[k], 1.0)
            else:                        # Uᵀ: Y[c₂] += Q (Pᵀ X[c₁])
                _lowrank(X, Y, mid, hi, lo, mid, buf, qo[k], po[k], ru[k], 1.0)


@njit(cache=True, parallel=True)
def _sweep_columns(Z, kind, K, lb, leaf, loff, buf, xo, yo, po, qo, rl, ru, chunks):
    for p in prange(chunks.shape[0] - 1):
        _sweep(Z[:, chunks[p]:chunks[p + 1]], kind, K, lb, leaf, loff, buf, xo, yo, po, qo,
               rl, ru)


@njit(cache=True, parallel=True)
def _multiply_columns(X, Y, lower, trans, K, lb, leaf, loff, buf, xo, yo, po, qo, rl, ru,
                      chunks):
    for p in prange(chunks.shape[0] - 1):
        _multiply(X[:, chunks[p]:chunks[p + 1]], Y[:, chunks[p]:chunks[p + 1]], lower, trans,
                  K, lb, leaf, loff, buf, xo, yo, po, qo, rl, ru)


@njit(cache=True, nogil=True)
def lu_nopivot(A):
    """A = L U without row exchanges, in place (L strictly below the diagonal, unit diagonal
    implied); returns the growth ‖|L||U|‖_∞ / ‖A‖_∞, or inf when a pivot is zero or not
    finite (A is then garbage)."""
    m = A.shape[0]
    norm = 0.0
    for i in range(m):
        s = 0.0
        for j in range(m):
            s += abs(A[i, j])
        norm = max(norm, s)
    for k in range(m):
        p = A[k, k]
        if p == 0.0 or not np.isfinite(p):
            return np.inf
        inv = 1.0 / p
        for i in range(k + 1, m):
            lik = A[i, k] * inv
            A[i, k] = lik
            if lik != 0.0:
                for j in range(k + 1, m):
                    A[i, j] -= lik * A[k, j]
    absu = np.zeros(m)                       # |U| e
    for i in range(m):
        for j in range(i, m):
            absu[i] += abs(A[i, j])
    g = 0.0
    for i in range(m):                       # (|L| |U| e)_i
        s = absu[i]
        for j in range(i):
            s += abs(A[i, j]) * absu[j]
        if not np.isfinite(s):
            return np.inf
        g = max(g, s)
    return g / max(norm, 1e-300)


def _chunks(c: int) -> np.ndarray | None:
    """Column ranges, one per thread, when there are enough columns to share."""
    import numba

    threads = numba.get_num_threads()
    if c < PARALLEL_COLUMNS or threads < 2:
        return None
    # lubench runs cases in forked workers, and GNU OpenMP (Numba's default layer on Linux)
    # aborts a forked child of a process that used it: a fork-safe layer (TBB or Numba's
    # workqueue) unless the user chose one or a layer already runs (as the kernel operators do)
    try:
        numba.threading_layer()
    except ValueError:
        if numba.config.THREADING_LAYER == "default":
            numba.config.THREADING_LAYER = "forksafe"
    return np.linspace(0, c, threads + 1).astype(np.int64)


def solve_sweep(Z: np.ndarray, kind: int, arrays: tuple) -> None:
    """In place on Z (n × c, C order): kind L_INV, U_INV, UT_INV or LT_INV."""
    chunks = _chunks(Z.shape[1])
    if chunks is None:
        _sweep(Z, kind, *arrays)
    else:
        _sweep_columns(Z, kind, *arrays, chunks)


def multiply(X: np.ndarray, lower: bool, trans: bool, arrays: tuple) -> np.ndarray:
    """op(F) X for F = L (lower) or U, X (n × c, C order); a new array."""
    Y = np.empty_like(X)
    chunks = _chunks(X.shape[1])
    if chunks is None:
        _multiply(X, Y, lower, trans, *arrays)
    else:
        _multiply_columns(X, Y, lower, trans, *arrays, chunks)
    return Y


def warm_up() -> None:
    """Compile (or load from Numba's cache) every sweep on a 2-leaf factor, and the leaf
    LU."""
    lu_nopivot(np.eye(2))
    K = 1
    lb = np.array([0, 1, 2], dtype=np.int64)
    leaf = np.ones(2)
    loff = np.array([0, 1, 2], dtype=np.int64)
    buf = np.ones(2)
    z = np.zeros(1, dtype=np.int64)
    one = np.ones(1, dtype=np.int64)
    arrays = (K, lb, leaf, loff, buf, z, one, z, one, one, one)
    for c in (1, PARALLEL_COLUMNS):
        Z = np.ones((2, c))
        for kind in (L_INV, U_INV, UT_INV, LT_INV):
            solve_sweep(Z, kind, arrays)
        for lower in (True, False):
            for trans in (True, False):
                multiply(Z, lower, trans, arrays)
