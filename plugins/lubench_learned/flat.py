"""A model's parameters as views of one flat tensor, so that an optimizer steps them all at once.

:class:`FlatParameters` stores parameters θ₁ … θ_k (any shapes, one device and dtype) as
consecutive slices of one 1-D tensor ``flat`` and their gradients as the same slices of one
1-D tensor ``grad``: each ``p`` stays the same :class:`torch.nn.Parameter` (its name, shape,
``state_dict`` entry and autograd behaviour are unchanged), only its storage is shared, and
``p.grad`` is a view into ``grad``, into which autograd accumulates in place. A step of
Adam over ``flat`` is then one fused kernel for all k parameters, and zeroing every gradient
one fill, instead of one of each per parameter. Element by element the arithmetic is the
same, so results do not change.

Anything that replaces a parameter's storage (``Module.to`` to another device or dtype) or
its gradient (``p.grad = None``) breaks the sharing; :meth:`FlatParameters.ensure` notices
(the addresses differ from the bound ones) and binds again, copying the current values.
:class:`FlatAdam` calls it whenever it zeroes the gradients.

The trainer uses :class:`FlatAdam` where the step writes its gradients into ``grad`` itself
(``GFMMProduct.identity_loss_and_grad``); autograd steps keep per-parameter Adam, whose
gradients autograd hands over as new tensors (accumulating them into ``grad`` would cost a
fill and an add per step).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["FlatParameters", "FlatAdam"]

class FlatParameters:
    """Parameters bound to one flat value tensor (``flat``) and one flat gradient (``grad``).

    ``views[j]`` and ``grad_views[j]`` are parameter j's slices, shaped like it. A gradient
    that was ``None`` becomes zeros when bound (an optimizer steps a zero gradient exactly
    as it skips a missing one while its moments are zero, which they are for an entry that
    never had a gradient).
    """

    def __init__(self, params: Sequence[nn.Parameter]):
        self.params = list(params)
        if not self.params:
            raise ValueError("FlatParameters needs at least one parameter")
        self.flat = torch.empty(0)
        self.grad = torch.empty(0)
        self.views: list[torch.Tensor] = []
        self.grad_views: list[torch.Tensor] = []
        self._ptrs: list[int] = []
        self._grad_ptrs: list[int] = []
        self.bind()

    @property
    def numel(self) -> int:
        return self.flat.numel()

    def bind(self) -> None:
        """(Re)allocate ``flat`` and ``grad`` on the parameters' device and dtype, copy the
        parameters' current values and gradients in, and make each a view of them."""
        ps = self.params
        dev, dt = ps[0].device, ps[0].dtype
        if any(p.device != dev or p.dtype != dt for p in ps):
            raise ValueError("FlatParameters: the parameters differ in device or dtype: "
                             f"{sorted({(str(p.device), str(p.dtype)) for p in ps})}")
        total = sum(p.numel() for p in ps)
        flat = torch.empty(total, dtype=dt, device=dev)
        grad = torch.zeros(total, dtype=dt, device=dev)
        views, grad_views = [], []
        off = 0
        with torch.no_grad():
            for p in ps:
                k = p.numel()
                v, gv = flat[off:off + k].view_as(p), grad[off:off + k].view_as(p)
                v.copy_(p)
                if p.grad is not None:
                    gv.copy_(p.grad)
                p.data = v
                p.grad = gv
                views.append(v)
                grad_views.append(gv)
                off += k
        flat.grad = grad
        self.flat, self.grad, self.views, self.grad_views = flat, grad, views, grad_views
        self._ptrs = [p.data_ptr() for p in ps]
        self._grad_ptrs = [g.data_ptr() for g in grad_views]

    def ensure(self) -> None:
        """Bind again if a parameter's storage or gradient is no longer the bound view (a
        gradient set to ``None`` or replaced is copied back into ``grad``, None as zero)."""
        ps = self.params
        if [p.data_ptr() for p in ps] != self._ptrs:
            self.bind()
            return
        for p, gv, ptr in zip(ps, self.grad_views, self._grad_ptrs):
            g = p.grad
            if g is None or g.data_ptr() != ptr:
                with torch.no_grad():
                    gv.copy_(g) if g is not None else gv.zero_()
                p.grad = gv
        if self.flat.grad is not self.grad:
            self.flat.grad = self.grad

    def zero_grad(self) -> None:
        """Every gradient to zero: one fill (after rebinding whatever was unbound)."""
        self.ensure()
        self.grad.zero_()

    def holds(self, params: Sequence[torch.Tensor]) -> bool:
        """Whether ``params`` are exactly this binding's parameters (in any order)."""
        return len(params) == len(self.params) and \
            {id(p) for p in params} == {id(p) for p in self.params}


class FlatAdam(torch.optim.Adam):
    """Adam over one :class:`FlatParameters`' ``flat`` tensor: one fused kernel per step for
    all parameters (``foreach`` where the device has no fused Adam), the same update as
    Adam over the separate parameters. ``zero_grad`` zeroes the flat gradient in place (one
    fill; the parameters' gradients stay its views whatever ``set_to_none`` says)."""

    def __init__(self, binding: FlatParameters, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999)):
        self.binding = binding
        binding.ensure()
        try:
            super().__init__([binding.flat], lr=lr, betas=betas, fused=True)
        except (RuntimeError, TypeError, ValueError):
            super().__init__([binding.flat], lr=lr, betas=betas, foreach=True)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.binding.zero_grad()
        self._check()

    def step(self, closure=None):  # type: ignore[override]
        """Adam's step. Fused, once Adam has made its state (the first step): the one
        kernel ``Adam.step`` would call (``torch._fused_adam_``, with the same state and
        hyperparameters), without the Python around it (grouping by device, hooks: ~0.1 ms
        of a ~1.5 ms step at n = 256)."""
        self._check()
        group = self.param_groups[0]
        flat = self.binding.flat
        state = self.state.get(flat)
        if closure is not None or not group["fused"] or not state or flat.grad is None or \
                group["amsgrad"] or group["maximize"] or isinstance(group["lr"], torch.Tensor):
            return super().step(closure)
        step = state["step"]
        step.add_(1)
        torch._fused_adam_([flat], [flat.grad], [state["exp_avg"]], [state["exp_avg_sq"]], [],
                           [step], amsgrad=False, lr=group["lr"], beta1=group["betas"][0],
                           beta2=group["betas"][1], weight_decay=group["weight_decay"],
                           eps=group["eps"], maximize=False, grad_scale=None, found_inf=None)
        return None

    def _check(self) -> None:
        if self.param_groups[0]["params"][0] is not self.binding.flat:
            raise RuntimeError("FlatAdam: the parameters were moved or re-bound after the "
                               "optimizer was made; make the optimizer again")
