"""The fused full-batch training step, recorded once as a list of kernel calls.

:meth:`~lubench_learned.gfmm.model.GFMMProduct.identity_loss_and_grad` computes ‖LU − A‖²_F
and its gradient without autograd: U's forward through :mod:`.identity_sweep`, L's through
:mod:`.sweeps` on column tiles, each product written into buffers kept from call to call and
into the flat gradient's views. :class:`_StepPlan` records those calls once
(:class:`~.sweeps._Ops`) and :func:`_run` replays them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from .identity_sweep import _identity_backward, _identity_forward
from .sweeps import _T, _dense_backward, _dense_forward, _Ops, _Workspace

if TYPE_CHECKING:
    from ..flat import FlatParameters
    from .model import GFMMFactor, GFMMProduct

# L's passes of the full-batch step (GFMMProduct.identity_loss_and_grad) take at most this
# many columns at a time, n halved until it fits (n = 2048, one thread: L's forward and
# backward 86 ms on all columns, 74 ms in tiles of 512, 83 ms of 256)
TILE_COLUMNS = 512


def _run(plan: list[tuple[Callable, tuple, dict]]) -> None:
    for fn, args, kw in plan:
        fn(*args, **kw)


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
