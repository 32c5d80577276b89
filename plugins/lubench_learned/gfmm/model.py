"""Block-triangular factors as GFMM blocks, their transposes, and block substitution.

A GFMM block (after the "Learn LU" post) applies an n×n matrix, n = M·P, through a binary
tree with M leaves of P unknowns each and K = log₂M levels. Level i = 0 … K (i = 0 the
leaves, i = K the root) has M/2^i nodes, each carrying a P-vector. With x_a the a-th leaf
block of the input and every learned piece a dense P×P map:

* up-sweep:   v⁰ = x,  vⁱ⁺¹_p = E^i_{2p} vⁱ_{2p} + E^i_{2p+1} vⁱ_{2p+1}   (encoder edges);
* bridges:    the leaf bridge acts on x (diagonal blocks D_a and one off-diagonal band),
  the interior bridge of level i on vⁱ (one off-diagonal band), the root bridge is zero;
* down-sweep: yⁱ_a = (bridge term)_a + F^i_a yⁱ⁺¹_{⌊a/2⌋}   (decoder edges),  y = y⁰.

For L (``lower``) the bands connect node a−1 → a; for U (upper) node a+1 → a. Output block
a then depends on input block b ≤ a (resp. ≥ a) only.

**The diagonal blocks** (``diag``):

* ``full`` (the post): D_a is a free P×P block, so (L·D, D⁻¹·U) fits equally well for any
  invertible block-diagonal D — M·P² redundant numbers per product and a drifting gauge;
  nothing keeps D_a invertible.
* ``triangular`` (no gauge, invertible by construction): L's D_a = I + strict_lower(Θ_a)
  (unit lower triangular), U's D_a = strict_upper(Θ_a) + diag(s ⊙ (δ + softplus θ_a)) with
  θ_a = diag(Θ_a), a fixed sign s ∈ {±1}^P and a floor δ ≥ 0: |U_ii| ≥ δ whatever the
  weights. Then det L = 1 and det U ≠ 0, and L·U is the unique unit-lower LU of its product.

Numbers of one factor (root bridge frozen at zero; ``factor_params``)::

    full:        P²·[(2M−2) enc + (2M−2) dec + (2M−1) leaf bridge + (M−1−K) interior]
                   = P²(7M − 6 − log₂M)
    triangular:  the same with each diagonal block's P² replaced by P(P−1)/2 (L) or
                   P(P+1)/2 (U): M·P² fewer for the pair L, U.

Of those, 4K edges never reach the output (the root's encoders and decoders, and the two
encoder edges under each level's last node — resp. the decoder edges under its first node —
whose values only meet the zero root bridge), so 4K·P² fewer are live (``live_params``).
The tensors hold P² per diagonal block whatever the parametrization (the masked-out half of
a triangular block's Θ has zero gradient).

Aᵀ runs the same graph with every edge transposed and encoder and decoder swapped; a lower
factor's transpose is an upper graph. Each level's edges are one (nodes, P, P) tensor
applied by one ``torch.bmm``; the two sibling edges of a parent are stored side by side, so
that the sum into the parent (and the split out of it) is the same single product.

Once trained, a factor leaves as :class:`~lubench_structured.gfmm.arrays.GFMMArrays`
(:meth:`GFMMFactor.arrays`: the same layout, diagonal blocks as used, float64), the one
structure both ``gfmm_lu`` and ``gfmm_compressed`` apply and solve with — block substitution
through the graph, O(n·P) per right-hand side, also transposed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from lubench_structured.gfmm import GFMMArrays, is_power_of_two
from torch import nn

from ..flat import FlatParameters
from ..shape import DIAGS, pivot_weights, softplus_inverse

__all__ = [
    "DIAGS",
    "GFMMFactor",
    "GFMMProduct",
    "factor_params",
    "live_params",
    "is_power_of_two",
    "dense_factor",
    "softplus_inverse",
]

def _diag_numbers(P: int, lower: bool, diag: str) -> int:
    """Numbers of one diagonal block under the parametrization ``diag``."""
    if diag == "full":
        return P * P
    return P * (P - 1) // 2 if lower else P * (P + 1) // 2


def factor_params(M: int, P: int, lower: bool = True, diag: str = "full") -> int:
    """Numbers of one GFMM factor's parametrization: P²(7M − 6 − log₂M) with full diagonal
    blocks; triangular ones replace each block's P² by P(P−1)/2 (L) or P(P+1)/2 (U)."""
    K = M.bit_length() - 1
    return P * P * (6 * M - 6 - K) + M * _diag_numbers(P, lower, diag)


def live_params(M: int, P: int, lower: bool = True, diag: str = "full") -> int:
    """Numbers of one GFMM factor that influence its output: ``factor_params`` − 4·log₂M·P²."""
    K = M.bit_length() - 1
    return factor_params(M, P, lower, diag) - 4 * K * P * P


def _uniform(shape: tuple[int, ...], scale: float, generator: torch.Generator,
             dtype: torch.dtype) -> nn.Parameter:
    w = torch.empty(shape, dtype=torch.float64).uniform_(-scale, scale, generator=generator)
    return nn.Parameter(w.to(dtype))


def _sweep(x: torch.Tensor, enc: list[torch.Tensor], dec: list[torch.Tensor],
           diag: torch.Tensor, off: torch.Tensor, bridges: list[torch.Tensor],
           lower: bool) -> torch.Tensor:
    """y = (GFMM graph) x for leaf blocks x of shape (M, P, c); one bmm per level and role."""
    return _sweep_levels(x, enc, dec, diag, off, bridges, lower)[2]


def _sweep_levels(x: torch.Tensor, enc: list[torch.Tensor], dec: list[torch.Tensor],
                  diag: torch.Tensor, off: torch.Tensor, bridges: list[torch.Tensor],
                  lower: bool) -> tuple[list[torch.Tensor], list[torch.Tensor | None],
                                        torch.Tensor]:
    """:func:`_sweep` with its level values: (v, ys, y) — vⁱ the up-sweep value of level i
    (i = 0 … K−1, v⁰ = x), ysⁱ the down-sweep value of level i (i = 0 … K−1; ys⁰ = y;
    ys[K] None) and the output y."""
    M, P, c = x.shape
    K = len(enc)
    # up-sweep; the root's value only meets the zero root bridge, so it is not formed
    v = [x]
    for i in range(K - 1):
        v.append(torch.bmm(enc[i], v[-1].reshape(M >> (i + 1), 2 * P, c)))
    # down-sweep from the root's children to the leaves
    pad = (0, 0, 0, 0, 1, 0) if lower else (0, 0, 0, 0, 0, 1)
    ys: list[torch.Tensor | None] = [None] * (K + 1)
    y: torch.Tensor | None = None
    for i in range(K - 1, -1, -1):
        nodes = M >> i
        src = v[i][:-1] if lower else v[i][1:]
        t = F.pad(torch.bmm(off if i == 0 else bridges[i - 1], src), pad)
        if i == 0:
            t = torch.baddbmm(t, diag, x)
        if y is not None:
            t = t + torch.bmm(dec[i], y).reshape(nodes, P, c)
        ys[i] = y = t
    if y is None:  # M = 1: the factor is its one diagonal block
        y = torch.bmm(diag, x)
    return v, ys, y



# A source of buffers: buf(key, shape) gives a tensor of that shape to write into (every key
# names one role, e.g. ("y", i) the down-sweep's value at level i, ("dec", i) the gradient of
# dec[i]). The autograd functions take fresh ones (:func:`_fresh`); the fused training step
# (:meth:`GFMMProduct.identity_loss_and_grad`) keeps them from step to step and maps the
# gradients' keys to views of the flat gradient (:class:`_Workspace`). ``buf.out(key,
# shape)`` is the same for a tensor that only receives one operation's result (``out=``):
# None from :func:`_fresh`, so that the operation allocates it itself (a few µs less per
# product than an empty tensor passed as ``out``).


class _Fresh:
    """A new uninitialised tensor of ``like``'s dtype and device for every request."""

    def __init__(self, like: torch.Tensor):
        self.dtype, self.device = like.dtype, like.device

    def __call__(self, key: tuple, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.empty(shape, dtype=self.dtype, device=self.device)

    def out(self, key: tuple, shape: tuple[int, ...]) -> None:
        return None


def _fresh(like: torch.Tensor) -> _Fresh:
    return _Fresh(like)


class _Workspace:
    """Buffers kept from one call to the next (one per key), and ``grads``: keys whose
    tensor is given (views of the flat gradient, written in place)."""

    def __init__(self, dtype: torch.dtype, device: torch.device,
                 grads: dict[tuple, torch.Tensor]):
        self.dtype, self.device, self.grads = dtype, device, grads
        self.bufs: dict[tuple, torch.Tensor] = {}

    def __call__(self, key: tuple, shape: tuple[int, ...]) -> torch.Tensor:
        t = self.grads.get(key)
        if t is None:
            t = self.bufs.get(key)
            if t is None or tuple(t.shape) != tuple(shape):
                t = self.bufs[key] = torch.empty(shape, dtype=self.dtype, device=self.device)
        return t

    out = __call__


class _Ops:
    """Runs each tensor operation at once (``record`` False) or appends it to ``plan``, a
    list of (function, args, kwargs) to run later, for operands that are views of buffers
    and parameters which keep their storage from call to call. Every operation writes into
    a given tensor (``out=`` or in place); the call returns it (when recording, the
    ``out`` argument or else the first, the tensor written in place)."""

    def __init__(self, record: bool = False):
        self.record = record
        self.plan: list[tuple[Callable, tuple, dict]] = []

    def __call__(self, fn: Callable, *args, **kw):
        if self.record:
            self.plan.append((fn, args, kw))
            return kw.get("out", args[0] if args else None)
        return fn(*args, **kw)


def _now(fn: Callable, *args, **kw):
    """:class:`_Ops` that runs at once, as a plain function (the autograd functions' op)."""
    return fn(*args, **kw)


_now.record = False  # type: ignore[attr-defined]
_NOW: _Ops = _now  # type: ignore[assignment]
# L's passes of the full-batch step (GFMMProduct.identity_loss_and_grad) take at most this
# many columns at a time, n halved until it fits (n = 2048, one thread: L's forward and
# backward 86 ms on all columns, 74 ms in tiles of 512, 83 ms of 256)
TILE_COLUMNS = 512
_T = torch.Tensor


def _run(plan: list[tuple[Callable, tuple, dict]]) -> None:
    for fn, args, kw in plan:
        fn(*args, **kw)


def _as(t: torch.Tensor, shape: tuple[int, ...], op: _Ops) -> torch.Tensor:
    """t reshaped; a view when recording (a copy would hold the values at recording)."""
    return t.view(shape) if op.record else t.reshape(shape)


def _dense_forward(lower: bool, K: int, x: torch.Tensor, diag: torch.Tensor,
                   off: torch.Tensor, enc: list[torch.Tensor], dec: list[torch.Tensor],
                   bridges: list[torch.Tensor], buf: _Fresh | _Workspace, op: _Ops = _NOW
                   ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """y = F x for leaf blocks x (M, P, c), every product written into a buffer (``out=``,
    in-place accumulation into the shifted band views; no padded copies). Returns y, the
    up-sweep's values v (v[0] = x, v[i] level i < K) and the down-sweep's ys (ys[i] level
    i; ys[0] = y) — what :func:`_dense_backward` needs."""
    M, P, c = x.shape
    if K == 0:
        y = op(torch.bmm, diag, x, out=buf.out(("y", 0), (M, P, c)))
        return y, [x], [y]
    v = [x]
    for i in range(K - 1):
        h = M >> (i + 1)
        v.append(op(torch.bmm, enc[i], _as(v[-1], (h, 2 * P, c), op),
                    out=buf.out(("v", i + 1), (h, P, c))))
    ys: list[torch.Tensor] = [x] * K
    y: torch.Tensor | None = None
    for i in range(K - 1, -1, -1):
        nodes = M >> i
        band = off if i == 0 else bridges[i - 1]
        out = buf(("y", i), (nodes, P, c))
        dst, src, edge = (out[1:], v[i][:-1], out[0]) if lower else \
            (out[:-1], v[i][1:], out[-1])
        if y is None:
            op(torch.bmm, band, src, out=dst)
            op(_T.zero_, edge)
        else:
            op(torch.bmm, dec[i], y, out=out.view(nodes >> 1, 2 * P, c))
            op(_T.baddbmm_, dst, band, src)
        if i == 0:
            op(_T.baddbmm_, out, diag, x)
        ys[i] = y = out
    return y, v, ys


def _dense_backward(lower: bool, K: int, x: torch.Tensor, diag: torch.Tensor,
                    off: torch.Tensor, enc: list[torch.Tensor], dec: list[torch.Tensor],
                    bridges: list[torch.Tensor], v: list[torch.Tensor],
                    ys: list[torch.Tensor], g: torch.Tensor, need_x: bool, buf: _Fresh | _Workspace,
                    op: _Ops = _NOW, accumulate: bool = False
                    ) -> tuple[torch.Tensor | None, ...]:
    """The backward of y = F x given g = ∂ℓ/∂y: the transposed graph run on g (∂ℓ/∂x = Fᵀg)
    and each edge's gradient the product of the two values meeting at it (an edge W
    applied as out = W·in has ∂ℓ/∂W = (∂ℓ/∂out)·inᵀ). Returns (∂ℓ/∂x or None, ∂ℓ/∂D,
    ∂ℓ/∂off, *∂ℓ/∂enc, *∂ℓ/∂dec, *∂ℓ/∂bridge), None for the 2 edge tensors that never reach y
    (enc[K − 1], dec[K − 1]); gradients are written into ``buf``'s ("diag",), ("off",),
    ("enc", i), ("dec", i), ("bridge", i) — added to what they hold with ``accumulate``
    (x's columns taken in tiles: the weight gradients are sums over columns)."""
    M, P, c = x.shape

    def wgrad(a: torch.Tensor, b: torch.Tensor, key: tuple, shape: tuple) -> torch.Tensor:
        if accumulate:
            return op(_T.baddbmm_, buf(key, shape), a, b)
        return op(torch.bmm, a, b, out=buf.out(key, shape))

    if K == 0:
        gx = op(torch.bmm, _bt(diag), g, out=buf.out(("gv", 0), (M, P, c))) if need_x else None
        return (gx, wgrad(g, _bt(x), ("diag",), (M, P, P)), off)
    # down-sweep backward (leaves → root's children): ∂ℓ/∂yⁱ, decoder grads
    gy = [g]
    g_dec: list[torch.Tensor | None] = [None] * K  # dec[K − 1] never reaches y
    for i in range(K - 1):
        h = M >> (i + 1)
        pairs = gy[i].view(h, 2 * P, c)
        g_dec[i] = wgrad(pairs, _bt(ys[i + 1]), ("dec", i), (h, 2 * P, P))
        gy.append(op(torch.bmm, _bt(dec[i]), pairs, out=buf.out(("gy", i + 1), (h, P, c))))
    g_diag = wgrad(g, _bt(x), ("diag",), (M, P, P))
    # bands and up-sweep backward (root's children → leaves): ∂ℓ/∂vⁱ, bridge and encoder
    # grads
    g_band: list[torch.Tensor] = [g] * K
    g_enc: list[torch.Tensor | None] = [None] * K  # nor does enc[K − 1]
    gv_up: torch.Tensor | None = None  # ∂ℓ/∂vⁱ through the up-sweep (level i + 1)
    gx = None
    for i in range(K - 1, -1, -1):
        nodes = M >> i
        band = off if i == 0 else bridges[i - 1]
        gdst, src = (gy[i][1:], v[i][:-1]) if lower else (gy[i][:-1], v[i][1:])
        g_band[i] = wgrad(gdst, _bt(src), ("off",) if i == 0 else ("bridge", i - 1),
                          (nodes - 1, P, P))
        if i == 0 and not need_x:
            break
        gv = buf(("gv", i), (nodes, P, c))
        gsrc, edge = (gv[:-1], gv[-1]) if lower else (gv[1:], gv[0])
        if gv_up is None:
            op(torch.bmm, _bt(band), gdst, out=gsrc)
            op(_T.zero_, edge)
        else:
            op(torch.bmm, _bt(enc[i]), gv_up, out=gv.view(nodes >> 1, 2 * P, c))
            op(_T.baddbmm_, gsrc, _bt(band), gdst)
        if i == 0:
            op(_T.baddbmm_, gv, _bt(diag), g)
            gx = gv
            break
        # vⁱ = E^{i−1} (v^{i−1} in pairs): the encoder grads of level i − 1
        g_enc[i - 1] = wgrad(gv, _bt(_as(v[i - 1], (nodes, 2 * P, c), op)), ("enc", i - 1),
                             (nodes, P, 2 * P))
        gv_up = gv
    return (gx, g_diag, g_band[0], *g_enc, *g_dec, *g_band[1:])


class _FusedSweep(torch.autograd.Function):
    """:func:`_sweep` with a hand-written backward (:func:`_dense_forward`,
    :func:`_dense_backward`: the same products into level buffers, no zero-filled scatter
    of sliced gradients). Once differentiable (Levenberg–Marquardt's double backward takes
    :func:`_sweep`)."""

    @staticmethod
    def forward(ctx, lower: bool, K: int, x: torch.Tensor, diag: torch.Tensor,
                off: torch.Tensor, *ws: torch.Tensor) -> torch.Tensor:
        enc, dec, bridges = ws[:K], ws[K:2 * K], ws[2 * K:]
        y, v, ys = _dense_forward(lower, K, x, diag, off, list(enc), list(dec),
                                  list(bridges), _fresh(x))
        ctx.save_for_backward(x, diag, off, *ws, *v[1:], *ys[1:])
        ctx.lower, ctx.K = lower, K
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        lower, K = ctx.lower, ctx.K
        saved = ctx.saved_tensors
        x, diag, off = saved[0], saved[1], saved[2]
        need_x = ctx.needs_input_grad[2]
        g = g.contiguous()
        if K == 0:
            gx, g_diag, _ = _dense_backward(lower, 0, x, diag, off, [], [], [], [x], [], g,
                                            need_x, _fresh(g))
            return None, None, gx, g_diag, None
        ws = saved[3:3 + 3 * K - 1]
        enc, dec, bridges = ws[:K], ws[K:2 * K], ws[2 * K:]
        rest = saved[3 + 3 * K - 1:]
        v = [x, *rest[:K - 1]]
        ys = [g, *rest[K - 1:]]  # ys[0] (y itself) is not needed
        grads = _dense_backward(lower, K, x, diag, off, list(enc), list(dec), list(bridges),
                                v, ys, g, need_x, _fresh(g))
        return (None, None, *grads)


def _bt(t: torch.Tensor) -> torch.Tensor:
    """The blocks of a (…, a, b) tensor transposed (a view)."""
    return t.transpose(-2, -1)


def _sweep_fused(x: torch.Tensor, enc: list[torch.Tensor], dec: list[torch.Tensor],
                 diag: torch.Tensor, off: torch.Tensor, bridges: list[torch.Tensor],
                 lower: bool) -> torch.Tensor:
    """:func:`_sweep` (the same y, to round-off) through :class:`_FusedSweep`."""
    return _FusedSweep.apply(lower, len(enc), x, diag, off, *enc, *dec, *bridges)


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


class GFMMFactor(nn.Module):
    """One block-lower (``lower=True``) or block-upper GFMM factor of size n = M·P.

    Parameters (one tensor per level and role; index i = 0 at the leaves):

    * ``enc[i]`` (M/2^{i+1}, P, 2P): the encoder edges of level i, siblings side by side;
    * ``dec[i]`` (M/2^{i+1}, 2P, P): the decoder edges into level i, siblings stacked;
    * ``diag`` (M, P, P) and ``off`` (M−1, P, P): the leaf bridge (``diag`` holds Θ, the raw
      weights of the diagonal blocks; :meth:`diagonal_blocks` gives the blocks as used);
    * ``bridge[i−1]`` (M/2^i − 1, P, P): the interior bridge of level i = 1 … K−1.

    ``diag_kind``: ``full`` or ``triangular`` (see the module docstring); for a triangular
    U, ``pivot_sign`` (M, P) holds s and ``pivot_floor`` δ. ``identity_diag`` starts the
    factor at exactly I (L) or diag(s ⊙ ``pivot_start``) (U; the magnitudes, e.g. |A_ii|,
    so that the start has A's scale, pivots at least 2δ): diagonal blocks' other entries,
    leaf bridge and interior bridges zero, the encoders and decoders drawn as usual (they
    give the bridges their first gradients).
    """

    def __init__(self, M: int, P: int, lower: bool, *, diag: str = "full",
                 init_scale: float = 0.1, identity_diag: bool = False,
                 n_valid: int | None = None, pivot_sign: torch.Tensor | None = None,
                 pivot_floor: float = 0.0, pivot_start: torch.Tensor | None = None,
                 dtype: torch.dtype = torch.float32, generator: torch.Generator | None = None):
        super().__init__()
        if not is_power_of_two(M):
            raise ValueError(f"M must be a power of two, got {M}")
        if diag not in DIAGS:
            raise ValueError(f"diag must be one of {DIAGS}, got {diag!r}")
        self.M, self.P, self.lower, self.diag_kind = M, P, lower, diag
        self.K = M.bit_length() - 1
        # the sweep with the hand-written backward (_FusedSweep); False: plain autograd,
        # which differentiates twice (Levenberg–Marquardt)
        self.fused = True
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        K = self.K
        self.enc = nn.ParameterList(
            [_uniform((M >> (i + 1), P, 2 * P), init_scale, g, dtype) for i in range(K)])
        self.dec = nn.ParameterList(
            [_uniform((M >> (i + 1), 2 * P, P), init_scale, g, dtype) for i in range(K)])
        self.diag = _uniform((M, P, P), init_scale, g, dtype)
        self.off = _uniform((M - 1, P, P), init_scale, g, dtype)
        self.bridge = nn.ParameterList(
            [_uniform(((M >> i) - 1, P, P), init_scale, g, dtype) for i in range(1, K)])
        sign = torch.ones((M, P), dtype=dtype) if pivot_sign is None else \
            torch.where(pivot_sign.reshape(M, P) < 0, -1.0, 1.0).to(dtype)
        self.pivot_sign: torch.Tensor
        self.pivot_floor: torch.Tensor
        self.register_buffer("pivot_sign", sign)
        self.register_buffer("pivot_floor", torch.tensor(float(pivot_floor), dtype=dtype))
        if identity_diag:
            start = np.ones((M, P)) if lower or pivot_start is None else \
                np.asarray(pivot_start, dtype=np.float64).reshape(M, P)
            with torch.no_grad():
                # exactly I (L) or diag(s ⊙ start) (U): near field and couplings zero, the
                # random bases only give the couplings their first gradients (noise in a
                # unit triangular factor's strict part grows its inverse exponentially).
                self.diag.zero_()
                self.off.zero_()
                for b in self.bridge:
                    b.zero_()
                # U = S·Ũ with S = diag(start): the leaf decoders that bring U's far field
                # into a row scaled by its pivot, so that small pivots do not meet
                # O(init_scale) entries once the couplings grow
                if K and not lower:
                    rows = torch.as_tensor(start, dtype=dtype)[..., None]
                    self.dec[0].mul_(rows.reshape(M >> 1, 2 * P, 1))
                if diag == "full":
                    d = torch.as_tensor(start, dtype=dtype) * (1.0 if lower else sign)
                    self.diag += torch.diag_embed(d)
                elif not lower:
                    floor = float(pivot_floor)
                    theta = softplus_inverse(np.maximum(start, 2.0 * floor) - floor)
                    idx = torch.arange(P)
                    self.diag[:, idx, idx] = torch.as_tensor(theta, dtype=dtype)
        # Padding that splits leaf a at local index r: zero L's diagonal block above-right of
        # (r, r) (U's below-left), so that L = [[L₁₁, 0], [L₂₁, L₂₂]], U = [[U₁₁, U₁₂],
        # [0, U₂₂]] at n_valid exactly and (LU)[:n, :n] = L₁₁U₁₁ is what solve inverts.
        # (Triangular blocks have those zeros already.)
        mask = None
        if diag == "full" and n_valid is not None and n_valid < M * P and n_valid % P:
            a, r = divmod(n_valid, P)
            mask = torch.ones((M, P, P), dtype=dtype)
            if lower:
                mask[a, :r, r:] = 0
            else:
                mask[a, r:, :r] = 0
        self.diag_mask: torch.Tensor | None
        self.register_buffer("diag_mask", mask)

    @property
    def n(self) -> int:
        return self.M * self.P

    def diagonal_blocks(self) -> torch.Tensor:
        """The diagonal blocks D_a as used (full: Θ, masked where padding splits a leaf;
        triangular: I + strict_lower Θ for L, strict_upper Θ + diag(s(δ + softplus θ)) for U)."""
        if self.diag_kind == "full":
            return self.diag if self.diag_mask is None else self.diag * self.diag_mask
        if self.lower:
            eye = torch.eye(self.P, dtype=self.diag.dtype, device=self.diag.device)
            return torch.tril(self.diag, -1) + eye
        # (masks instead of diagonal views: their double backward, which Levenberg–Marquardt
        # takes, has no in-place copies)
        eye = torch.eye(self.P, dtype=self.diag.dtype, device=self.diag.device)
        theta = (self.diag * eye).sum(-1)
        pivots = self.pivot_sign * (self.pivot_floor + F.softplus(theta))
        return torch.triu(self.diag, 1) + pivots[..., None] * eye

    def forward(self, X: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        """F X (or Fᵀ X) for X of shape (n, c)."""
        n, c = X.shape
        x = X.reshape(self.M, self.P, c)
        diag = self.diagonal_blocks()
        sweep = _sweep_fused if self.fused else _sweep
        if transpose:
            y = sweep(x, [d.transpose(1, 2) for d in self.dec],
                       [e.transpose(1, 2) for e in self.enc], diag.transpose(1, 2),
                       self.off.transpose(1, 2), [b.transpose(1, 2) for b in self.bridge],
                       not self.lower)
        else:
            y = sweep(x, list(self.enc), list(self.dec), diag, self.off,
                       list(self.bridge), self.lower)
        return y.reshape(n, c)

    def as_dense(self) -> torch.Tensor:
        """F as a dense n×n tensor, differentiable: F applied to I. Fused, through
        :class:`_IdentitySweep` (I's zero blocks never multiplied, no I formed); otherwise
        the plain graph on I (differentiable twice)."""
        diag = self.diagonal_blocks()
        if not self.fused:
            return self.forward(torch.eye(self.n, dtype=diag.dtype, device=diag.device))
        return _IdentitySweep.apply(self.lower, self.K, diag, self.off, *self.enc,
                                    *self.dec, *self.bridge)

    def edge_views(self) -> list[tuple[nn.Parameter, Callable[[torch.Tensor], torch.Tensor]]]:
        """Each parameter with a view of a same-shaped tensor as (…edges, P, P) blocks."""
        P = self.P
        out: list[tuple[nn.Parameter, Callable[[torch.Tensor], torch.Tensor]]] = []
        for e in self.enc:
            h = e.shape[0]
            out.append((e, lambda t, h=h: t.view(h, P, 2, P).transpose(1, 2)))
        for d in self.dec:
            h = d.shape[0]
            out.append((d, lambda t, h=h: t.view(h, 2, P, P)))
        for p in [self.diag, self.off, *self.bridge]:
            out.append((p, lambda t: t))
        return out

    def n_trainable(self) -> int:
        """Numbers of the parametrization (:func:`factor_params`)."""
        return factor_params(self.M, self.P, self.lower, self.diag_kind)

    def n_live(self) -> int:
        """Numbers that reach the output (:func:`live_params`)."""
        return live_params(self.M, self.P, self.lower, self.diag_kind)

    def arrays(self) -> GFMMArrays:
        """The factor as used (diagonal blocks after the parametrization), in float64: the
        structure ``gfmm_compressed`` solves with (one structure, one solve)."""
        with torch.no_grad():
            return GFMMArrays.from_tensors(self.M, self.P, self.lower, list(self.enc),
                                           list(self.dec), self.diagonal_blocks(), self.off,
                                           list(self.bridge))

    def load_arrays(self, enc: list[np.ndarray], dec: list[np.ndarray], diag: np.ndarray,
                    off: np.ndarray, bridge: list[np.ndarray]) -> None:
        """Set the weights so that the factor equals the given tensors (the layout of
        :class:`~lubench_structured.gfmm.arrays.GFMMArrays`): the inverse of the
        parametrization.

        Triangular L needs unit lower triangular diagonal blocks; triangular U upper ones
        whose pivots keep their sign in ``pivot_sign`` and get θ = softplus⁻¹(|d| − δ)
        (pivots with |d| ≤ δ are raised to the floor's nearest representable value, 2δ).
        Raises ValueError for a shape or pattern that does not fit.
        """
        M, P, K = self.M, self.P, self.K
        diag = np.asarray(diag, dtype=np.float64)
        if diag.shape != (M, P, P) or len(enc) != K or len(dec) != K or \
                len(bridge) != max(K - 1, 0):
            raise ValueError(f"tensors do not fit a GFMM factor with M={M}, P={P}")
        dev, dt = self.diag.device, self.diag.dtype

        def put(p: torch.Tensor, a: np.ndarray) -> None:
            a = np.asarray(a, dtype=np.float64)
            if tuple(a.shape) != tuple(p.shape):
                raise ValueError(f"shape {a.shape} does not fit {tuple(p.shape)}")
            p.copy_(torch.as_tensor(a, dtype=dt, device=dev))

        with torch.no_grad():
            for p, a in zip(self.enc, enc):
                put(p, a)
            for p, a in zip(self.dec, dec):
                put(p, a)
            for p, a in zip(self.bridge, bridge):
                put(p, a)
            put(self.off, off)
            if self.diag_kind == "full":
                put(self.diag, diag)
                return
            eye = np.eye(P)
            if self.lower:
                if np.abs(np.triu(diag, 0) - eye).max() > 0:
                    raise ValueError("L's diagonal blocks are not unit lower triangular")
                put(self.diag, np.tril(diag, -1))
                return
            if np.abs(np.tril(diag, -1)).max() > 0:
                raise ValueError("U's diagonal blocks are not upper triangular")
            piv, sign = pivot_weights(np.diagonal(diag, axis1=1, axis2=2),
                                      float(self.pivot_floor))
            theta = np.triu(diag, 1)
            idx = np.arange(P)
            theta[:, idx, idx] = piv
            put(self.diag, theta)
            self.pivot_sign.copy_(torch.as_tensor(sign, dtype=dt, device=dev))

    def diagonal_grad(self, g_blocks: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """∂ℓ/∂Θ (``diag``'s gradient) from G = ∂ℓ/∂D (D = :meth:`diagonal_blocks`), into
        ``out``, by hand: full G (⊙ the padding mask); triangular L strict_lower(G); U
        strict_upper(G) + diag(G_ii · s_i · σ(θ_i)) (D_ii = s_i(δ + softplus θ_i), softplus′ =
        σ the logistic function). The same as autograd through :meth:`diagonal_blocks`."""
        with torch.no_grad():
            if self.diag_kind == "full":
                if self.diag_mask is None:
                    return out.copy_(g_blocks)
                return torch.mul(g_blocks, self.diag_mask, out=out)
            if self.lower:
                return torch.tril(g_blocks, -1, out=out)
            torch.triu(g_blocks, 1, out=out)
            theta = self.diag.diagonal(0, -2, -1)
            out.diagonal(0, -2, -1).copy_(g_blocks.diagonal(0, -2, -1) * self.pivot_sign
                                          * torch.sigmoid(theta))
            return out


class GFMMProduct(nn.Module):
    """The product L·U of a block-lower and a block-upper GFMM factor (n = M·P).

    ``forward(X)`` = L(U X); ``forward(X, transpose=True)`` = Uᵀ(Lᵀ X). ``diag``, the
    pivot signs s, the floor δ and the start apply as in :class:`GFMMFactor` (to U only).
    """

    def __init__(self, M: int, P: int, *, diag: str = "full", init_scale: float = 0.1,
                 identity_diag: bool = False, n_valid: int | None = None,
                 pivot_sign: torch.Tensor | None = None, pivot_floor: float = 0.0,
                 pivot_start: torch.Tensor | None = None, dtype: torch.dtype = torch.float32,
                 generator: torch.Generator | None = None):
        super().__init__()
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        self.M, self.P, self.diag_kind = M, P, diag
        self.n_valid = M * P if n_valid is None else n_valid
        kw = {"diag": diag, "init_scale": init_scale, "identity_diag": identity_diag,
              "n_valid": n_valid, "dtype": dtype, "generator": g}
        self.L = GFMMFactor(M, P, True, **kw)
        self.U = GFMMFactor(M, P, False, pivot_sign=pivot_sign, pivot_floor=pivot_floor,
                            pivot_start=pivot_start, **kw)
        # every parameter a view of one flat tensor, every gradient of one flat gradient
        # (one fused Adam kernel, one fill to zero them: flat.py)
        self._flat = FlatParameters(list(self.parameters()))
        self._plan: _StepPlan | None = None

    @property
    def n(self) -> int:
        return self.M * self.P

    @property
    def block_size(self) -> int:
        return self.P

    def forward(self, X: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        if transpose:
            return self.U(self.L(X, transpose=True), transpose=True)
        return self.L(self.U(X))

    def full_product(self) -> torch.Tensor:
        """L·U as a dense n×n tensor (the graph applied to the identity): L applied to
        U's dense form (:meth:`GFMMFactor.as_dense`)."""
        return self.L(self.U.as_dense())

    def solve(self, B: torch.Tensor) -> torch.Tensor:
        """U⁻¹ L⁻¹ B for B of shape (n, c), by block substitution through both graphs
        (:mod:`lubench_learned.substitution`): O(n·P·c), differentiable in the weights
        (twice) — the inverse-side loss term of training (``LossSpec.inverse_weight``)."""
        from .substitution import solve_factor

        return solve_factor(self.U, solve_factor(self.L, B))

    def edge_views(self) -> list[tuple[nn.Parameter, Callable[[torch.Tensor], torch.Tensor]]]:
        return self.L.edge_views() + self.U.edge_views()

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """L and U as dense n×n tensors (differentiable)."""
        return self.L.as_dense(), self.U.as_dense()

    def retract(self, L: torch.Tensor, U: torch.Tensor) -> None:
        """Set the weights to dense unit lower triangular L and upper triangular U placed
        into the pattern (triangular diagonal blocks only): near field exact, far field
        compressed into the nested bases by truncated SVDs — the map ``gfmm_compressed``
        applies to A's factors (:func:`lubench_structured.gfmm.compression.compress_factors`,
        rank ≤ P, singular values ≤ 1e-16‖·‖_F dropped). U's pivots of magnitude ≤ δ are
        raised to 2δ; their signs become U's (:meth:`GFMMFactor.load_arrays`)."""
        from lubench_structured.gfmm import compress_factors

        Lc, Uc, _, _ = compress_factors(L.detach().cpu().double().numpy(),
                                        U.detach().cpu().double().numpy(), self.M, self.P)
        self.L.load_arrays(Lc.enc, Lc.dec, Lc.diag, Lc.off, Lc.bridge)
        self.U.load_arrays(Uc.enc, Uc.dec, Uc.diag, Uc.off, Uc.bridge)

    def float64_factors(self) -> tuple[GFMMArrays, GFMMArrays]:
        """L and U as used, in float64 (what the watch and the factorization solve with)."""
        return self.L.arrays(), self.U.arrays()

    def n_trainable(self) -> int:
        return self.L.n_trainable() + self.U.n_trainable()

    def n_live(self) -> int:
        return self.L.n_live() + self.U.n_live()

    def flat_parameters(self) -> FlatParameters:
        """The binding of every parameter to one flat tensor (bound again first if
        something moved a parameter or replaced a gradient)."""
        self._flat.ensure()
        return self._flat

    def _step_plan(self, A: torch.Tensor, weight: float) -> _StepPlan:
        """The plan of :meth:`identity_loss_and_grad` for this A and weight, made again
        when the binding changed (a parameter moved)."""
        flat = self.flat_parameters()
        plan = self._plan
        if plan is None or not plan.made_for(A, float(weight), flat):
            self._plan = None  # let the old buffers go first
            plan = self._plan = _StepPlan(self, A, float(weight), flat)
        return plan

    def identity_loss_and_grad(self, A: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
        """sq = ‖LU − A‖²_F (a 0-dim tensor) and, written into the parameters' gradients
        (overwritten, not accumulated), the gradient of weight·sq — without autograd.

        One pass each way: Y = U I (:func:`_identity_forward`), Z = L Y
        (:func:`_dense_forward`), R = Z − A, sq = ⟨R, R⟩, G = 2·weight·R; then ∂/∂Y = Lᵀ G
        and L's weight gradients (:func:`_dense_backward`), U's from ∂/∂Y
        (:func:`_identity_backward`), each product written straight into the flat gradient
        (:class:`~lubench_learned.flat.FlatParameters`) or into buffers kept from call to
        call, as a plan of kernel calls made once (:class:`_StepPlan`). The same products
        as :meth:`full_product` with autograd and ``mse_loss``, so the same loss and
        gradients to round-off; the 4·log₂M edges that never reach LU keep a zero
        gradient."""
        plan = self._step_plan(A, weight)
        with torch.no_grad():
            _run(plan.plan)
            return plan.parts.sum()


class _StepPlan:
    """:meth:`GFMMProduct.identity_loss_and_grad` as one list of kernel calls, recorded
    once (:class:`_Ops`) on buffers kept for the next call, the parameters' own storage (a
    step of the optimizer updates it in place) and their flat gradient's views: each call
    then runs only the kernels, none of the views, shapes and Python of the sweeps.
    ``parts`` holds ‖R‖²_F of each column tile (R = LU − A)."""

    def __init__(self, net: GFMMProduct, A: torch.Tensor, weight: float,
                 flat: FlatParameters):
        self.key = (A, weight, flat.flat, flat.grad)  # the objects it was made for
        L, U, M, P = net.L, net.U, net.M, net.P
        n, K = M * P, L.K
        dt, dev = flat.flat.dtype, flat.flat.device
        if tuple(A.shape) != (n, n) or A.dtype != dt or A.device != dev or \
                not A.is_contiguous():
            raise ValueError(f"A must be a dense contiguous {n}×{n} {dt} tensor on {dev}, "
                             f"got {tuple(A.shape)} {A.dtype} on {A.device}")
        views = {id(p): g for p, g in zip(flat.params, flat.grad_views)}
        op = _Ops(record=True)
        work, diags = [], []
        with torch.no_grad():
            for f in (L, U):
                roles = [(("enc", i), p) for i, p in enumerate(f.enc)] + \
                    [(("dec", i), p) for i, p in enumerate(f.dec)] + \
                    [(("bridge", i), p) for i, p in enumerate(f.bridge)] + [(("off",), f.off)]
                plain = f.diag_kind == "full" and f.diag_mask is None  # D = Θ
                if plain:
                    roles.append((("diag",), f.diag))
                w = _Workspace(dt, dev, {key: views[id(p)] for key, p in roles})
                D = f.diag if plain else op(_put_diagonal_blocks, w(("D",), (M, P, P)), f)
                work.append(w)
                diags.append(D)
            (wL, wU), (DL, DU) = work, diags
            encL, decL, brL = list(L.enc), list(L.dec), list(L.bridge)
            encU, decU, brU = list(U.enc), list(U.dec), list(U.bridge)
            Y, cs, ysU = _identity_forward(False, K, DU, U.off, encU, decU, brU, wU, op)
            # L on column tiles of Y (the loss and L's passes separate by columns; its
            # weight gradients add up): each tile's level buffers stay closer to the cache
            T = n  # equal tiles: n = M·P halved while wider than TILE_COLUMNS
            while T > TILE_COLUMNS and T % 2 == 0:
                T //= 2
            tiles = range(0, n, T)
            gY = wU(("gY",), (M, P, n))
            A3 = A.view(M, P, n)
            self.parts = torch.zeros(len(tiles), dtype=dt, device=dev)
            for t, c0 in enumerate(tiles):
                x = Y[:, :, c0:c0 + T]
                Z, v, ysL = _dense_forward(True, K, x, DL, L.off, encL, decL, brL, wL, op)
                R = op(torch.sub, Z, A3[:, :, c0:c0 + T], out=wL(("r",), (M, P, T)))
                op(torch.dot, R.view(-1), R.view(-1), out=self.parts[t])
                op(_T.mul_, R, 2.0 * weight)
                gx = _dense_backward(True, K, x, DL, L.off, encL, decL, brL, v, ysL, R, True,
                                     wL, op, accumulate=t > 0)[0]
                if T < n:
                    op(_T.copy_, gY[:, :, c0:c0 + T], gx)
                else:
                    gY = gx
            _identity_backward(False, K, M, P, encU, decU, brU, cs, ysU, gY, wU, op)
            for f, w in ((L, wL), (U, wU)):
                if ("diag",) not in w.grads:
                    op(f.diagonal_grad, w.bufs[("diag",)], views[id(f.diag)])
            self.plan = op.plan

    def made_for(self, A: torch.Tensor, weight: float, flat: FlatParameters) -> bool:
        a, w, f, g = self.key
        return a is A and w == weight and f is flat.flat and g is flat.grad


def _put_diagonal_blocks(out: torch.Tensor, f: GFMMFactor) -> torch.Tensor:
    """The diagonal blocks as used (:meth:`GFMMFactor.diagonal_blocks`) into ``out``."""
    return out.copy_(f.diagonal_blocks())


def dense_factor(factor: GFMMFactor) -> np.ndarray:
    """The factor as a dense float64 matrix (for tests and small checks only)."""
    with torch.no_grad():
        p = next(factor.parameters())
        eye = torch.eye(factor.n, dtype=p.dtype, device=p.device)
        return factor(eye).to("cpu", torch.float64).numpy()
