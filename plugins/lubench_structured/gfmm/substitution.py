"""Block forward substitution through a block-lower GFMM graph, compiled with Numba.

The graph (notation of :mod:`lubench_structured.gfmm.arrays`): M = 2^K leaves of P unknowns;
vⁱ⁺¹_p = E^i_{2p} vⁱ_{2p} + E^i_{2p+1} vⁱ_{2p+1} (v⁰ = x); at level i < K the band carries node
q to q + 1 and the decoder F^i_q carries the parent's input down:
yⁱ_q = Bⁱ_{q−1} vⁱ_{q−1} + F^i_q yⁱ⁺¹_{⌊q/2⌋} (yᴷ⁻¹ has no decoder term, the root has no band),
and (G x)_a = D_a x_a + y⁰_a.

Solving G x = b leaf by leaf, left to right: on entering leaf a, every node that starts at a
(levels i ≤ trailing zeros of a, top down) forms yⁱ_q from the band term its left neighbour
left behind and its parent's yⁱ⁺¹; then x_a = D_a⁻¹ (b_a − y⁰_a); on leaving, every node that
ends at a (bottom up) leaves its band term Bⁱ_q vⁱ_q for its right neighbour and adds
E^i_q vⁱ_q to its parent's v. Every block is read exactly once per solve: one product with
each of D_a⁻¹ (M), the band blocks (about M), the encoder and decoder blocks (about 2M each),
so the solve performs and reads about 7·M·P² = 7·n·P numbers per right-hand side (all
right-hand sides are done block by block together, so the blocks are read once for all).
The state is K + 2 P-vectors per level and column.

All blocks are stored transposed (``W[k, j] = block[j, k]``) so that a product is P axpys
over contiguous rows, which the compiler vectorizes without reordering any sum (the result
does not depend on fast-math flags).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["forward_substitution", "warm_up"]


@njit(cache=True, nogil=True)
def _axpy_block(W, idx, v, out):
    """out[c, :] += block(idx) @ v[c, :] for every column c, with ``W[idx]`` the block's
    transpose: out[c, j] += W[idx, k, j]·v[c, k] for k = 0, 1, … in turn (four k per pass
    over j, each added separately, so the sums are those of plain axpys)."""
    C, P = v.shape
    P4 = P - P % 4
    for c in range(C):
        for k in range(0, P4, 4):
            s0, s1, s2, s3 = v[c, k], v[c, k + 1], v[c, k + 2], v[c, k + 3]
            for j in range(P):
                t = out[c, j] + W[idx, k, j] * s0
                t = t + W[idx, k + 1, j] * s1
                t = t + W[idx, k + 2, j] * s2
                out[c, j] = t + W[idx, k + 3, j] * s3
        for k in range(P4, P):
            s = v[c, k]
            for j in range(P):
                out[c, j] += W[idx, k, j] * s


@njit(cache=True, nogil=True)
def forward_substitution(K, P, dinv, band, boff, enc, eoff, dec, doff, b):
    """x with G x = b, b of shape (C, M·P) (one row per right-hand side).

    Blocks, each (P, P) and transposed: ``dinv[a]`` = D_a⁻ᵀ; ``band[boff[i] + q]`` = Bⁱ_qᵀ
    (q < M/2^i − 1, levels i < K); ``enc[eoff[i] + q]`` = E^i_qᵀ (the half of ``enc[i][⌊q/2⌋]``
    acting on node q, levels i < K − 1); ``dec[doff[i] + q]`` = F^i_qᵀ (levels i < K − 1).
    """
    M = 1 << K
    C = b.shape[0]
    x = np.empty_like(b)
    L = max(K, 1)
    z = np.zeros((L, C, P))      # band term left for the next node of level i
    y = np.zeros((L, C, P))      # y of the current node of level i
    acc = np.zeros((L, C, P))    # v of the current node of level i, left child's part
    v = np.empty((C, P))
    r = np.empty((C, P))
    for a in range(M):
        if K > 0:
            top = K - 1
            if a > 0:                                   # levels whose node starts at leaf a
                t = 0
                while (a >> t) & 1 == 0:
                    t += 1
                top = min(t, K - 1)
            for i in range(top, -1, -1):
                y[i, :, :] = z[i]
                if i < K - 1:
                    _axpy_block(dec, doff[i] + (a >> i), y[i + 1], y[i])
            for c in range(C):
                for j in range(P):
                    r[c, j] = b[c, a * P + j] - y[0, c, j]
        else:
            for c in range(C):
                for j in range(P):
                    r[c, j] = b[c, a * P + j]
        v[:, :] = 0.0
        _axpy_block(dinv, a, r, v)
        for c in range(C):
            for j in range(P):
                x[c, a * P + j] = v[c, j]
        for i in range(K):                              # nodes that end at leaf a, bottom up
            q = a >> i
            if q < (M >> i) - 1:
                z[i, :, :] = 0.0
                _axpy_block(band, boff[i] + q, v, z[i])
            if i == K - 1:
                break
            if q & 1 == 0:                              # a left child: its parent goes on
                acc[i + 1, :, :] = 0.0
                _axpy_block(enc, eoff[i] + q, v, acc[i + 1])
                break
            _axpy_block(enc, eoff[i] + q, v, acc[i + 1])
            v[:, :] = acc[i + 1]                        # the parent ends here too
    return x


def warm_up() -> None:
    """Compile :func:`forward_substitution` (or load it from Numba's on-disk cache, next to
    this file) with a tiny solve, so that the one-off cost (seconds when compiling, ~0.2 s
    from the cache) is not paid by the first timed solve."""
    eye = np.ones((2, 1, 1))
    forward_substitution(1, 1, eye, eye[:1], np.zeros(1, dtype=np.int64), eye[:0],
                         np.zeros(1, dtype=np.int64), eye[:0], np.zeros(1, dtype=np.int64),
                         np.ones((1, 2)))
