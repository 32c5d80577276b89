"""The GFMM graph applied to leaf blocks, y = F x: plainly, and fused with a hand-written backward.

The graph and its notation are in :mod:`lubench_learned.gfmm` (up-sweep through the encoder
edges, bridges, down-sweep through the decoder edges). Here:

* :func:`_sweep` / :func:`_sweep_levels`: one ``torch.bmm`` per level and role, plain autograd
  (differentiable twice, as Levenberg–Marquardt needs); the level values for
  :mod:`lubench_learned.optim.kronecker`;
* :func:`_dense_forward` / :func:`_dense_backward`: the same products written into level
  buffers, and the backward by hand (an edge W applied as out = W·in has ∂ℓ/∂W =
  (∂ℓ/∂out)·inᵀ); :class:`_FusedSweep` (:func:`_sweep_fused`) makes them an autograd function;
* the buffer sources (:class:`_Fresh`, :class:`_Workspace`) and the operation runner
  (:class:`_Ops`) they write through, which :mod:`.step_plan` records once and replays.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


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
_T = torch.Tensor


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
