"""Differentiable block substitution through a GFMM factor: F⁻¹ B in PyTorch.

The graph (notation of :mod:`lubench_learned.gfmm`; index i = 0 at the leaves, K = log₂M):
for a block-lower factor G, vⁱ⁺¹_p = E^i_{2p} vⁱ_{2p} + E^i_{2p+1} vⁱ_{2p+1} (v⁰ = x), the band
of level i carries node q to q + 1 and the decoder F^i_q carries the parent's value down,

    yⁱ_q = Bⁱ_{q−1} vⁱ_{q−1} + F^i_q yⁱ⁺¹_{⌊q/2⌋}     (y^{K−1} has no decoder term),
    (G x)_a = D_a x_a + y⁰_a .

Solving G x = b leaf by leaf, left to right (the algorithm of
:func:`lubench_structured.gfmm.substitution.forward_substitution`, whose NumPy/Numba form
is the float64 solve every factorization uses): on entering leaf a, every node that starts at
a (levels i ≤ trailing zeros of a, top down) forms yⁱ_q from the band term its left
neighbour left behind and its parent's yⁱ⁺¹ — all of it depends only on x_b, b < a; then

    x_a = D_a⁻¹ (b_a − y⁰_a)          (a triangular or general P×P solve);

on leaving, every node that ends at a (bottom up) leaves its band term Bⁱ_q vⁱ_q for its right
neighbour and adds E^i_q vⁱ_q to its parent's v. A block-upper factor U is solved as its
reversal: with J the exchange matrix, J U J is the block-lower graph whose arrays are all
flipped along every axis (``GFMMArrays._lower_form``), so U⁻¹ b = J (JUJ)⁻¹ J b, and the
flipped diagonal blocks of an upper triangular U are lower triangular.

Cost: every block is used once per solve — D_a (M solves), bands (≈ M), encoder and
decoder halves (≈ 2M each): about 7·n·P multiply-adds per right-hand side, O(n·P·k) for k
columns, never a dense n×n factor. The loop over leaves runs in Python: about 10 small
tensor operations per leaf (≈ 10·M per solve, each on a P×k block), so for small P·k the
time is kernel launches and autograd bookkeeping, not arithmetic (M = 8, P = 32, k = 64:
≈ 100 operations per factor). Every state is a new tensor (no in-place writes), so the
result is differentiable — twice, as Levenberg–Marquardt needs — with respect to the
factor's parameters and to B.
"""

from __future__ import annotations

import torch

__all__ = ["forward_substitution"]


def _trailing_zeros(a: int) -> int:
    return (a & -a).bit_length() - 1


def forward_substitution(diag: torch.Tensor, off: torch.Tensor, enc: list[torch.Tensor],
                         dec: list[torch.Tensor], bridge: list[torch.Tensor],
                         b: torch.Tensor, diag_kind: str = "general") -> torch.Tensor:
    """x with G x = b for a block-lower GFMM graph G and leaf blocks b (M, P, c).

    ``diag`` (M, P, P) are G's diagonal blocks as they act, ``off``, ``enc``, ``dec``,
    ``bridge`` the layout of :class:`~lubench_learned.gfmm.GFMMFactor`. ``diag_kind``:
    ``unit_lower`` (unit lower triangular blocks; their diagonal is not read), ``lower``
    (lower triangular) or ``general`` (any invertible block, by LU). Returns (M, P, c).
    """
    M, P, c = b.shape
    K = len(enc)
    if diag_kind == "general":
        def dsolve(D: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
            return torch.linalg.solve(D, r)
    else:
        unit = diag_kind == "unit_lower"

        def dsolve(D: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
            return torch.linalg.solve_triangular(D, r, upper=False, unitriangular=unit)
    # every block once as its own tensor (one unbind per array: its backward is one stack)
    D = diag.unbind(0)
    bands = [off.unbind(0)] + [br.unbind(0) for br in bridge]
    # node q of level i: the half of enc[i][⌊q/2⌋] acting on it, the rows of dec[i][⌊q/2⌋]
    # leading to it
    E = [enc[i].reshape(M >> (i + 1), P, 2, P).transpose(1, 2).reshape(M >> i, P, P)
         .unbind(0) for i in range(K - 1)]
    Fd = [dec[i].reshape(M >> i, P, P).unbind(0) for i in range(K - 1)]
    rhs = b.unbind(0)
    z: list[torch.Tensor | None] = [None] * K    # band term left for the next node of level i
    y: list[torch.Tensor | None] = [None] * K    # y of the current node of level i
    acc: list[torch.Tensor | None] = [None] * K  # v of the current node of level i, so far
    xs: list[torch.Tensor] = []
    for a in range(M):
        r = rhs[a]
        if K > 0:
            top = K - 1 if a == 0 else min(_trailing_zeros(a), K - 1)
            for i in range(top, -1, -1):              # nodes that start at leaf a, top down
                t = z[i] if a >> i else None            # node 0 of a level has no left band
                if i < K - 1 and y[i + 1] is not None:
                    d = Fd[i][a >> i] @ y[i + 1]
                    t = d if t is None else t + d
                y[i] = t
            if y[0] is not None:
                r = r - y[0]
        v = dsolve(D[a], r)
        xs.append(v)
        for i in range(K):                              # nodes that end at leaf a, bottom up
            q = a >> i
            if q < (M >> i) - 1:
                z[i] = bands[i][q] @ v
            if i == K - 1:
                break
            h = E[i][q] @ v
            if q & 1 == 0:                              # a left child: its parent goes on
                acc[i + 1] = h
                break
            v = acc[i + 1] + h                          # the parent ends here too
    return torch.stack(xs)
