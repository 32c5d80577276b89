"""One model, one target, one loss: the optimizer steps of training, block by block.

:class:`Trainer` holds the losses (``identity``, ``probes``, the transpose and inverse-side
terms; see :mod:`lubench_learned.training`), the block-wise inputs and the freezing of the
edges that influenced finished blocks (:class:`EdgeFreezer`), and the optimizer, made per
block by :func:`_make_optimizer` (Adam, L-BFGS, Levenberg–Marquardt, projected Newton, ALS,
the sketch optimizer).
:func:`~.loop.train` drives it under a budget; the benchmarks time :meth:`Trainer.step` alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
import torch

from ..flat import FlatAdam
from ..optim.lm import LevenbergMarquardt
from .target import Target

__all__ = ["Schedule", "LossSpec", "LUModel", "EdgeFreezer", "Trainer", "SECOND_ORDER"]

# optimizers that differentiate twice (plain autograd graphs) and read their own losses
SECOND_ORDER = ("lm", "als", "newton")
EVAL_PROBES = 16


class LUModel(Protocol):
    n: int

    def forward(self, X: torch.Tensor, transpose: bool = False) -> torch.Tensor: ...
    def full_product(self) -> torch.Tensor: ...
    def parameters(self) -> Any: ...


@dataclass
class Schedule:
    """Optimizer and per-block stopping rule (defaults: the Learn LU post)."""

    optimizer: str = "adam"
    lr: float = 1e-2
    lr_late: float = 1e-3
    lr_drop_step: int = 5000
    betas: tuple[float, float] = (0.999, 0.999)
    max_steps_per_block: int = 50000
    check_interval: int = 1000
    tol: float = 1e-3
    patience: int = 2
    lbfgs_history: int = 50
    cg_iters: int = 40
    cg_precond: str = "none"


@dataclass
class LossSpec:
    """What the loss compares: ``kind`` identity | probes, ``probes`` k, the transpose term,
    block-wise training, and the weight w of the inverse-side term (0: none)."""

    kind: str = "identity"
    probes: int = 64
    transpose: bool = True
    blockwise: bool = False
    inverse_weight: float = 0.0


class EdgeFreezer:
    """Per-edge freezing of a model's parameters, by gradient masking.

    ``groups`` pairs each parameter with a function viewing a same-shaped tensor as
    (…edges, P, P) blocks. A frozen edge's gradient is zeroed after every backward pass;
    with the optimizer rebuilt (fresh Adam moments) its weights then stay exactly fixed.
    """

    def __init__(self, groups: list[tuple[torch.nn.Parameter, Callable]]):
        self.groups = groups
        self.frozen: list[torch.Tensor | None] = [None] * len(groups)
        self.keep: list[torch.Tensor | None] = [None] * len(groups)

    def freeze_influencing(self, functional: Callable[[], torch.Tensor]) -> None:
        """Freeze every edge on which ``functional()`` has a non-zero gradient."""
        params = [p for p, _ in self.groups]
        for p in params:
            p.grad = None
        functional().backward()
        for j, (p, view) in enumerate(self.groups):
            if p.grad is None:
                continue
            nz = (view(p.grad) != 0).flatten(-2).any(-1)
            self.frozen[j] = nz if self.frozen[j] is None else (self.frozen[j] | nz)
            self.keep[j] = (~self.frozen[j]).to(p.dtype)[..., None, None]
        for p in params:
            p.grad = None

    def mask_grads(self) -> None:
        for (p, view), keep in zip(self.groups, self.keep):
            if keep is not None and p.grad is not None:
                view(p.grad).mul_(keep)

    def frozen_numbers(self) -> int:
        total = 0
        for (p, view), fr in zip(self.groups, self.frozen):
            if fr is not None:
                P2 = view(p.detach()).shape[-1] * view(p.detach()).shape[-2]
                total += int(fr.sum()) * P2
        return total


def _make_optimizer(params: list[torch.nn.Parameter], s: Schedule,
                    mask: Callable[[list[torch.Tensor]], None] | None = None,
                    model: Any = None, flat: bool = False
                    ) -> torch.optim.Optimizer | LevenbergMarquardt:
    if s.optimizer == "lm":
        return LevenbergMarquardt(params, cg_iters=s.cg_iters, mask=mask,
                                  preconditioner=_preconditioner(model, params, s))
    if s.optimizer == "lbfgs":
        # one iteration per step; max_eval bounds the line search's evaluations
        return torch.optim.LBFGS(params, lr=1.0, max_iter=1, max_eval=26,
                                 history_size=s.lbfgs_history, line_search_fn="strong_wolfe")
    # fused: one kernel per parameter (CPU) or for all of them (CUDA) instead of a loop of
    # elementwise ops (n = 256: Adam 0.5 → 0.15 ms of a 2.5 ms step); foreach where a device
    # has no fused Adam. ``flat``: the step writes its gradients into one flat buffer whose
    # views the parameters are (``model.flat_parameters()``, GFMM products: flat.py); Adam
    # steps that tensor, one kernel for all. (Autograd steps keep per-parameter Adam: their
    # gradients are separate tensors, and copying them into the flat buffer costs more than
    # it saves.)
    binding = model.flat_parameters() if flat and hasattr(model, "flat_parameters") \
        else None
    if binding is not None and binding.holds(params):
        return FlatAdam(binding, lr=s.lr, betas=tuple(s.betas))
    try:
        return torch.optim.Adam(params, lr=s.lr, betas=tuple(s.betas), fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=s.lr, betas=tuple(s.betas), foreach=True)


def _preconditioner(model: Any, params: list[torch.nn.Parameter], s: Schedule) -> Any:
    """Levenberg–Marquardt's CG preconditioner for ``s.cg_precond`` (``kronecker``: the
    per-edge block-Jacobi of :mod:`lubench_learned.optim.kronecker`, GFMM products on the
    whole-matrix loss only; ``model`` None: none)."""
    if s.cg_precond != "kronecker" or model is None:
        return None
    from ..optim.kronecker import preconditioner_for

    return preconditioner_for(model, params)


class Trainer:
    """One model, one target, one loss: blocks, optimizer steps, freezing, evaluation.

    :func:`train` drives it under a budget; the benchmarks time :meth:`step` alone.
    """

    def __init__(self, model: LUModel, target: Target, spec: LossSpec, schedule: Schedule, *,
                 seed: int = 0, edge_groups: list | None = None,
                 block_size: int | None = None):
        self.model, self.target, self.spec, self.schedule = model, target, spec, schedule
        N, device, dtype = target.N, target.device, target.dtype
        self.N, self.device, self.dtype = N, device, dtype
        self.seed = int(seed)
        self.gen = torch.Generator(device=device).manual_seed(int(seed))
        eval_gen = torch.Generator(device=device).manual_seed(int(seed) + 1)
        self.params = [p for p in model.parameters() if p.requires_grad]
        # graphs with a hand-written backward (GFMM: _FusedSweep) differentiate once;
        # Levenberg–Marquardt differentiates twice and takes plain autograd
        for module in model.modules():
            if hasattr(module, "fused"):
                module.fused = schedule.optimizer not in SECOND_ORDER
        self.full_identity = spec.kind == "identity" and not spec.blockwise
        self.inverse_weight = float(spec.inverse_weight)
        if not (self.inverse_weight >= 0 and math.isfinite(self.inverse_weight)):
            raise ValueError(f"inverse_weight must be a non-negative number, got "
                             f"{spec.inverse_weight!r}")
        if self.inverse_weight > 0 and not hasattr(model, "solve"):
            raise ValueError("the inverse-side loss term needs a model with solve(B) = "
                             "U⁻¹L⁻¹B (a GFMM product)")
        # the full-batch identity loss and its gradient in one autograd-free call, where the
        # model has one (GFMM products: GFMMProduct.identity_loss_and_grad); it knows
        # ‖LU − A‖²_F only, not the inverse-side term
        self.fused_identity = self.full_identity and schedule.optimizer == "adam" and \
            hasattr(model, "identity_loss_and_grad") and self.inverse_weight == 0
        if spec.blockwise:
            if not block_size or edge_groups is None or N % block_size:
                raise ValueError("block-wise training needs a block size dividing N and the "
                                 "model's edges")
            self.blocks: list[int | None] = list(range(N // block_size))
        else:
            self.blocks = [None]
        self.block_size = block_size
        self.freezer = EdgeFreezer(edge_groups) if spec.blockwise else None
        self.omega = torch.randn((N, EVAL_PROBES), generator=eval_gen, dtype=dtype,
                                 device=device)
        self.a_omega = target.mm(self.omega)
        self.a_omega_norm = float(torch.linalg.norm(self.a_omega))
        self.block: int | None = None
        self.opt: torch.optim.Optimizer | None = None
        self._inputs: dict[str, Any] = {}

    @property
    def a_norm(self) -> float:
        """‖A‖_F (of the padded A), for the whole-matrix loss's relative error."""
        return math.sqrt(self.target.fro2)

    # ----------------------------------------------------------------------------------------
    def start_block(self, m: int | None) -> None:
        """Train block m next (None: the whole): its inputs, a fresh optimizer."""
        self.block = m
        if m is not None:
            P = self.block_size
            s = slice(m * P, (m + 1) * P)
            self._inputs = {"rows": s}
            if self.spec.kind == "identity":
                E = torch.zeros((self.N, P), dtype=self.dtype, device=self.device)
                E[s] = torch.eye(P, dtype=self.dtype, device=self.device)
                self._inputs["E"] = E
                self._inputs["AT_cols"] = self.target.columns(s, transpose=True)
                if self.spec.transpose:
                    self._inputs["A_cols"] = self.target.columns(s)
        if self.schedule.optimizer in ("newton", "als") and self.inverse_weight > 0:
            raise ValueError(f"{self.schedule.optimizer} fits LU = A only: it takes no "
                             f"inverse-side term (inverse_weight {self.inverse_weight})")
        if self.schedule.optimizer == "newton":
            from ..optim.newton import ProjectedNewton

            if m is not None or not self.full_identity:
                raise ValueError("projected Newton fits the whole ‖LU − A‖²_F: it needs loss "
                                 "'identity' and no block-wise training")
            self.opt = ProjectedNewton(self.model, self.target.A, LevenbergMarquardt(
                self.params, cg_iters=self.schedule.cg_iters,
                preconditioner=_preconditioner(self.model, self.params, self.schedule)))
            return
        if self.schedule.optimizer == "sketch":
            self.opt = self._sketch_optimizer(m)
            return
        if self.schedule.optimizer == "als":
            from ..optim.als import AlternatingLeastSquares

            if m is not None or not self.full_identity:
                raise ValueError("alternating least squares fits the whole ‖LU − A‖²_F: "
                                 "it needs loss 'identity' and no block-wise training")
            self.opt = AlternatingLeastSquares(
                self.model, np.asarray(self.target.A64.toarray() if sp.issparse(
                    self.target.A64) else self.target.A64), self.params,
                lambda mask: LevenbergMarquardt(
                    self.params, cg_iters=self.schedule.cg_iters, mask=mask,
                    preconditioner=_preconditioner(self.model, self.params, self.schedule)))
            return
        # the Kronecker preconditioner is built for the whole-matrix residual LU − A (its
        # sweeps run on N columns); the probe loss and block-wise training go without
        self.opt = _make_optimizer(self.params, self.schedule, self._mask_list,
                                   self.model if self.full_identity else None,
                                   flat=self.fused_identity)

    def _sketch_optimizer(self, m: int | None) -> Any:
        """The sketch optimizer (:mod:`lubench_learned.optim.sketch`) on this target: its
        probes are the spec's ``probes``, its evaluation probes the trainer's; the near-field
        Newton phase only where A is block-tridiagonal in the model's leaves (checked on the
        evaluation probes) and the start's far field is zero."""
        from ..optim.sketch import SketchOptimizer, near_field_apply

        if m is not None or self.inverse_weight > 0:
            raise ValueError("the sketch optimizer fits LU = A as a whole: no block-wise "
                             "training, no inverse-side term")
        near = None
        P = getattr(self.model, "P", None)
        if P:
            near = self.target.near_field(P)
            if near is not None:
                off = near_field_apply(near, self.omega) - self.a_omega
                if float(torch.linalg.vector_norm(off)) > 1e-13 * self.a_omega_norm:
                    near = None  # A reaches beyond the block-tridiagonal pattern
        return SketchOptimizer(
            self.model, lambda Z: self.target.mm(Z), lambda Y: self.target.mm(Y, True),
            probes=self.spec.probes, omega=self.omega, a_omega=self.a_omega, near=near,
            seed=self.seed)

    def _mask_list(self, tensors: list[torch.Tensor]) -> None:
        """Zero the frozen edges' entries of per-parameter tensors (block-wise training)."""
        if self.freezer is None:
            return
        where = {id(p): (view, keep) for (p, view), keep in zip(self.freezer.groups,
                                                                 self.freezer.keep)}
        for p, t in zip(self.params, tensors):
            view, keep = where.get(id(p), (None, None))
            if keep is not None:
                view(t).mul_(keep)

    def set_lr(self, lr: float) -> None:
        for g in self.opt.param_groups:
            g["lr"] = lr

    def inverse_probes(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(W, A W) for the inverse-side term: W an N×k standard Gaussian block from the
        trainer's generator (k = ``probes``); None when the term is off (w = 0)."""
        if self.inverse_weight == 0:
            return None
        W = torch.randn((self.N, self.spec.probes), generator=self.gen, dtype=self.dtype,
                        device=self.device)
        return W, self.target.mm(W)

    def inverse_residual(self, inv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """√(w/k)·vec(U⁻¹L⁻¹(AW) − W) for ``inv`` = (W, AW): its square sum is the inverse-side
        term (w/k)‖U⁻¹L⁻¹AW − W‖²_F."""
        W, AW = inv
        scale = math.sqrt(self.inverse_weight / W.shape[1])
        return (scale * (self.model.solve(AW) - W)).reshape(-1)

    def residual(self, Z: torch.Tensor | None,
                 inv: tuple[torch.Tensor, torch.Tensor] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """r with ‖r‖² the loss of the current block (a flat vector; with ``inv`` = (W, AW)
        the inverse-side part appended), and the exact relative error of the fit when it is
        free (a 0-dim tensor on the device: reading it waits for the device)."""
        r, rel = self._fit_residual(Z)
        if inv is not None:
            r = torch.cat([r, self.inverse_residual(inv)])
        return r, rel

    def _fit_residual(self, Z: torch.Tensor | None
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        model, target, spec = self.model, self.target, self.spec
        if self.full_identity:
            R = model.full_product() - target.A
            rel = torch.linalg.vector_norm(R.detach()) / self.a_norm
            return (math.sqrt(2.0) * R if spec.transpose else R).reshape(-1), rel
        if spec.kind == "identity":  # block-wise: block-row m (transposed graph), block-column m
            E = self._inputs["E"]
            parts = [model.forward(E, transpose=True) - self._inputs["AT_cols"]]
            if spec.transpose:
                parts.append(model.forward(E) - self._inputs["A_cols"])
            return torch.cat([p.reshape(-1) for p in parts]), None
        R = model.forward(Z) - target.mm(Z)
        if self.block is not None:
            R = R[self._inputs["rows"]]
        parts = [R]
        if spec.transpose:
            RT = model.forward(Z, transpose=True) - target.mm(Z, transpose=True)
            if self.block is not None:
                RT = RT[self._inputs["rows"]]
            parts.append(RT)
        return torch.cat([p.reshape(-1) for p in parts]) / math.sqrt(spec.probes), None

    def loss(self, Z: torch.Tensor | None,
             inv: tuple[torch.Tensor, torch.Tensor] | None = None
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The loss of the current block (with ``inv`` = (W, AW) plus the inverse-side
        term), and the exact relative error of the fit when it is free (a 0-dim tensor). On
        the full identity batch one reduction serves both: the fit is (1 or 2)·‖LU − A‖²_F,
        the error its square root over ‖A‖_F."""
        if self.full_identity:
            # one fused pass each way over the n×n product (subtract, square, sum; and its
            # gradient 2(LU − A)) instead of three forward and two backward passes
            sq = torch.nn.functional.mse_loss(self.model.full_product(), self.target.A,
                                              reduction="sum")
            rel = sq.detach().sqrt() / self.a_norm
            loss = 2.0 * sq if self.spec.transpose else sq
            if inv is not None:
                r = self.inverse_residual(inv)
                loss = loss + (r * r).sum()
            return loss, rel
        r, rel = self.residual(Z, inv)
        return (r * r).sum(), rel

    def step(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One optimizer step; the loss before it (and the free relative error, if any) as
        0-dim tensors on the device, not read: reading a CUDA tensor waits for the device, so
        :func:`train` reads them every ``read_every`` steps. (L-BFGS and Levenberg–Marquardt
        read their losses inside the step.) Adam steps whatever the loss: a loss that is not
        finite ends training when it is read."""
        if self.fused_identity:
            w = 2.0 if self.spec.transpose else 1.0
            sq = self.model.identity_loss_and_grad(self.target.A, w)
            self.opt.step()
            return w * sq, sq.sqrt() / self.a_norm
        if self.schedule.optimizer == "sketch":  # draws and applies its own probes
            f0, rel = self.opt.step()
            return torch.tensor(f0, dtype=torch.float64), rel
        Z = None
        if self.spec.kind == "probes":
            Z = torch.randn((self.N, self.spec.probes), generator=self.gen, dtype=self.dtype,
                            device=self.device)
        inv = self.inverse_probes()
        rel_box: list[torch.Tensor | None] = [None]
        opt, freezer = self.opt, self.freezer

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            loss, rel = self.loss(Z, inv)
            loss.backward()
            if freezer is not None:
                freezer.mask_grads()
            rel_box[0] = rel
            return loss

        if self.schedule.optimizer in SECOND_ORDER:
            f0, rel = opt.step(lambda: self.residual(Z, inv))
            return torch.tensor(f0, dtype=torch.float64), rel
        if self.schedule.optimizer == "lbfgs":
            return opt.step(closure).detach(), rel_box[0]
        lv = closure().detach()
        opt.step()
        return lv, rel_box[0]

    def freeze_through(self, m: int) -> None:
        """Freeze every edge that influences block-rows 0 … m of LU (and, with the transpose
        loss, block-columns 0 … m), by the gradient of a random functional of those outputs."""
        end = (m + 1) * self.block_size
        zp = torch.randn((self.N, 1), generator=self.gen, dtype=self.dtype, device=self.device)
        wp = torch.randn((end, 1), generator=self.gen, dtype=self.dtype, device=self.device)

        def functional() -> torch.Tensor:
            f = (self.model.forward(zp)[:end] * wp).sum()
            if self.spec.transpose:
                f = f + (self.model.forward(zp, transpose=True)[:end] * wp).sum()
            return f

        self.freezer.freeze_influencing(functional)

    def probe_rel_error(self) -> float:
        """‖(LU − A)Ω‖_F / ‖AΩ‖_F on the fixed evaluation probes Ω (N × 16)."""
        with torch.no_grad():
            out = self.model.forward(self.omega)
            return float(torch.linalg.norm(out - self.a_omega)) / self.a_omega_norm

    def final_loss(self) -> tuple[float, float]:
        """The whole (not block-wise) objective (the inverse-side term, if any, on fresh
        probes), and ‖LU − A‖_F/‖A‖_F (exact with identity inputs, else on fresh probes)."""
        loss, rel = self._final_fit()
        inv = self.inverse_probes()
        if inv is not None:
            with torch.no_grad():
                loss += float((self.inverse_residual(inv) ** 2).sum())
        return loss, rel

    def _final_fit(self) -> tuple[float, float]:
        model, target, spec = self.model, self.target, self.spec
        factor = 2.0 if spec.transpose else 1.0
        with torch.no_grad():
            if spec.kind == "identity":
                R = model.full_product() - target.A
                sq = float((R * R).sum())
                return factor * sq, math.sqrt(sq) / self.a_norm
            Z = torch.randn((self.N, spec.probes), generator=self.gen, dtype=self.dtype,
                            device=self.device)
            AZ = target.mm(Z)
            sq = float(((model.forward(Z) - AZ) ** 2).sum())
            loss = sq
            if spec.transpose:
                loss += float(((model.forward(Z, transpose=True)
                                - target.mm(Z, transpose=True)) ** 2).sum())
            return loss / spec.probes, math.sqrt(sq) / float(torch.linalg.norm(AZ))
