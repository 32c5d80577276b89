"""The factor applied to the n×n identity, F·I = F, with I's zero blocks never multiplied.

:class:`_IdentitySweep` is :class:`~.sweeps._FusedSweep` for x = I (its docstring has the
compact up-sweep blocks and the costs); :meth:`GFMMFactor.as_dense
<lubench_learned.gfmm.model.GFMMFactor.as_dense>` and the fused training step
(:mod:`.step_plan`) use it.
"""

from __future__ import annotations

import torch

from .sweeps import _NOW, _T, _bt, _Fresh, _fresh, _Ops, _Workspace


def _halves(e: torch.Tensor, out: torch.Tensor, op: _Ops) -> torch.Tensor:
    """Encoder pairs e (h, P, 2P) as (2h, P, P) into ``out``: the half E_{p,s} at 2p + s."""
    h, P, _ = e.shape
    op(_T.copy_, out.view(h, 2, P, P), e.view(h, P, 2, P).transpose(1, 2))
    return out


def _col_halves(c: torch.Tensor, out: torch.Tensor, op: _Ops) -> torch.Tensor:
    """Compact blocks c (h, P, 2W) as (2h, P, W) into ``out``: column half s of block p at
    2p + s."""
    h, P, W2 = c.shape
    op(_T.copy_, out.view(h, 2, P, W2 // 2), c.view(h, P, 2, W2 // 2).transpose(1, 2))
    return out


def _join_halves(t: torch.Tensor, out: torch.Tensor, op: _Ops) -> torch.Tensor:
    """The inverse of :func:`_col_halves`: t (2h, P, W) as (h, P, 2W) into ``out``."""
    h2, P, W = t.shape
    op(_T.copy_, out.view(h2 // 2, P, 2, W), t.view(h2 // 2, 2, P, W).transpose(1, 2))
    return out


def _identity_forward(lower: bool, K: int, diag: torch.Tensor, off: torch.Tensor,
                      enc: list[torch.Tensor], dec: list[torch.Tensor],
                      bridges: list[torch.Tensor], buf: _Fresh | _Workspace, op: _Ops = _NOW
                      ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """F I = F as leaf blocks (M, P, n), I's zero blocks never multiplied (see
    :class:`_IdentitySweep`). Returns y, the compact up-sweep blocks cs (cs[i] level i ≥ 1;
    cs[0] = D unused) and the down-sweep's values ys (ys[i] level i; ys[0] = y)."""
    M, P, _ = diag.shape
    n = M * P
    s = -1 if lower else 1  # the band's source: node a + s feeds node a
    cs: list[torch.Tensor] = [diag, enc[0]] if K else [diag]
    for i in range(1, K - 1):  # c^{i+1}_p = [E^i_{p,0} c^i_{2p} | E^i_{p,1} c^i_{2p+1}]
        h, W = M >> (i + 1), P << i
        t = op(torch.bmm, _halves(enc[i], buf(("half", i), (2 * h, P, P)), op), cs[i],
               out=buf.out(("ct", i + 1), (2 * h, P, W)))
        cs.append(_join_halves(t, buf(("c", i + 1), (h, P, 2 * W)), op))
    if K == 0:  # M = 1: F = D
        y = op(_T.copy_, buf(("y", 0), (M, P, n)), diag)
        return y, cs, [y]
    ys: list[torch.Tensor] = [diag] * K
    y = None
    for i in range(K - 1, -1, -1):
        nodes, W = M >> i, P << i
        out = buf(("y", i), (nodes, P, n))
        if y is None:
            op(_T.zero_, out)
        else:
            op(torch.bmm, dec[i], y, out=out.view(nodes >> 1, 2 * P, n))
        blocks = out.view(nodes, P, nodes, W)
        band = blocks.diagonal(s, 0, 2).permute(2, 0, 1)  # rows a − s, columns a
        if i == 0:
            op(_T.add_, band, off)
            op(_T.add_, blocks.diagonal(0, 0, 2).permute(2, 0, 1), diag)
        else:
            src = cs[i][1:] if s > 0 else cs[i][:-1]
            op(_T.add_, band, op(torch.bmm, bridges[i - 1], src,
                                 out=buf.out(("bt", i), (nodes - 1, P, W))))
        ys[i] = y = out
    return y, cs, ys


def _identity_backward(lower: bool, K: int, M: int, P: int, enc: list[torch.Tensor],
                       dec: list[torch.Tensor], bridges: list[torch.Tensor],
                       cs: list[torch.Tensor], ys: list[torch.Tensor], g: torch.Tensor,
                       buf: _Fresh | _Workspace, op: _Ops = _NOW
                       ) -> tuple[torch.Tensor | None, ...]:
    """The weight gradients of F I given g = ∂ℓ/∂(F I) as leaf blocks (M, P, n): (∂ℓ/∂D,
    ∂ℓ/∂off, *∂ℓ/∂enc, *∂ℓ/∂dec, *∂ℓ/∂bridge), None for enc[K − 1] and dec[K − 1]; written
    into ``buf``'s gradient keys (as :func:`_dense_backward`)."""
    n = M * P
    s = -1 if lower else 1
    if K == 0:
        return op(_T.copy_, buf(("diag",), (M, P, P)), g), None
    # down-sweep backward, dense (leaves → root's children): ∂ℓ/∂yⁱ, decoder grads
    gy = [g]
    g_dec: list[torch.Tensor | None] = [None] * K  # dec[K − 1] never reaches y
    for i in range(K - 1):
        h = M >> (i + 1)
        pairs = gy[i].view(h, 2 * P, n)
        g_dec[i] = op(torch.bmm, pairs, _bt(ys[i + 1]), out=buf.out(("dec", i), (h, 2 * P, P)))
        gy.append(op(torch.bmm, _bt(dec[i]), pairs, out=buf.out(("gy", i + 1), (h, P, n))))
    # bands and up-sweep backward (root's children → leaves), on compact blocks
    g_band: list[torch.Tensor] = [g] * K
    g_enc: list[torch.Tensor | None] = [None] * K  # nor does enc[K − 1]
    gc_up: torch.Tensor | None = None  # ∂ℓ/∂cⁱ⁺¹
    g_diag = g
    for i in range(K - 1, -1, -1):
        nodes, W = M >> i, P << i
        blocks = gy[i].view(nodes, P, nodes, W)
        gband = blocks.diagonal(s, 0, 2).permute(2, 0, 1)
        if i == 0:
            g_band[0] = op(_T.copy_, buf(("off",), (M - 1, P, P)), gband)
            g_diag = op(_T.copy_, buf(("diag",), (M, P, P)),
                        blocks.diagonal(0, 0, 2).permute(2, 0, 1))
            break
        src = cs[i][1:] if s > 0 else cs[i][:-1]
        g_band[i] = op(torch.bmm, gband, _bt(src),
                       out=buf.out(("bridge", i - 1), (nodes - 1, P, P)))
        # c¹ = E⁰: its gradient is E⁰'s, written where E⁰'s goes
        gc = buf(("enc", 0) if i == 1 else ("gc", i), (nodes, P, W))
        gsrc, edge = (gc[1:], gc[0]) if s > 0 else (gc[:-1], gc[-1])
        if gc_up is None:
            op(torch.bmm, _bt(bridges[i - 1]), gband, out=gsrc)
            op(_T.zero_, edge)
        else:
            op(torch.bmm, _bt(_halves(enc[i], buf(("half", i), (nodes, P, P)), op)),
               _col_halves(gc_up, buf(("gch", i + 1), (nodes, P, W)), op), out=gc)
            op(_T.baddbmm_, gsrc, _bt(bridges[i - 1]), gband)
        # cⁱ = [E^{i−1}_{p,0} c^{i−1}_{2p} | E^{i−1}_{p,1} c^{i−1}_{2p+1}]
        if i == 1:
            g_enc[0] = gc
        else:
            t = op(torch.bmm, _col_halves(gc, buf(("gch", i), (2 * nodes, P, W // 2)), op),
                   _bt(cs[i - 1]), out=buf.out(("gt", i), (2 * nodes, P, P)))
            g_enc[i - 1] = _join_halves(t, buf(("enc", i - 1), (nodes, P, 2 * P)), op)
        gc_up = gc
    return (g_diag, g_band[0], *g_enc, *g_dec, *g_band[1:])


class _IdentitySweep(torch.autograd.Function):
    """The factor applied to the n×n identity (y = F I = F, n = M·P): :class:`_FusedSweep`
    for x = I, with the zeros of I's blocks never multiplied (:func:`_identity_forward`,
    :func:`_identity_backward`).

    The up-sweep's value at node p of level i is nonzero only in the P·2^i columns of p's
    leaves: vⁱ_p = [0 … cⁱ_p … 0] with cⁱ_p (P × P·2^i) its compact block, c⁰_a = I,
    c¹_p = E⁰_p, cⁱ⁺¹_p = [E^i_{p,0} cⁱ_{2p} | E^i_{p,1} cⁱ_{2p+1}] (E^i_{p,s} the P×P half
    of the edge pair). So the up-sweep costs log₂M·2MP³ instead of ~4MP²n, a bridge adds
    Bⁱ_a c_{a±1} into one block of its output row (a diagonal of the level buffer seen as
    (nodes, P, nodes, P·2^i)), the leaf diagonal blocks are copied, not multiplied. In the
    backward each edge under the up-sweep only needs ∂ℓ/∂vⁱ on those same columns (compact,
    ∂ℓ/∂cⁱ), and the gradients of the edges that multiply I (D, the leaf band, E⁰) are
    blocks of ∂ℓ/∂y⁰ and ∂ℓ/∂c¹ — no products. The down-sweep is dense, as in
    :class:`_FusedSweep`. I needs no gradient."""

    @staticmethod
    def forward(ctx, lower: bool, K: int, diag: torch.Tensor, off: torch.Tensor,
                *ws: torch.Tensor) -> torch.Tensor:
        enc, dec, bridges = ws[:K], ws[K:2 * K], ws[2 * K:]
        M, P, _ = diag.shape
        y, cs, ys = _identity_forward(lower, K, diag, off, list(enc), list(dec),
                                      list(bridges), _fresh(diag))
        ctx.save_for_backward(*ws, *cs[2:], *ys[1:])
        ctx.lower, ctx.K, ctx.shape = lower, K, (M, P)
        return y.reshape(M * P, M * P)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        lower, K, (M, P) = ctx.lower, ctx.K, ctx.shape
        g = g.contiguous().view(M, P, M * P)
        saved = ctx.saved_tensors
        ws = saved[:3 * K - 1] if K else ()
        enc, dec, bridges = ws[:K], ws[K:2 * K], ws[2 * K:]
        nc = max(K - 2, 0)
        cs = [None, enc[0], *saved[3 * K - 1:3 * K - 1 + nc]] if K else [None]
        ys = [g, *saved[3 * K - 1 + nc:]] if K else [g]
        grads = _identity_backward(lower, K, M, P, list(enc), list(dec), list(bridges),
                                   cs, ys, g, _fresh(g))
        return (None, None, *grads)
