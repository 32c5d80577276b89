"""The one training loop of the learned LU methods: fit L·U to A by gradient descent.

Both learned methods hand this module a model with ``forward(X, transpose=False)`` (L U X, or
Uᵀ Lᵀ X) and ``full_product()`` (L U as a dense tensor); they differ only in how L and U are
parameterized. With A padded to the model's size N by an identity block, the losses are

* ``identity``: ‖LU − A‖²_F, from the full product (the n identity columns at once);
* ``probes``:   (1/k)‖(LU − A)Z‖²_F with Z an N×k standard Gaussian block redrawn every
  step — an unbiased estimate of ‖LU − A‖²_F at O(k·n·P) cost for a GFMM model;
* ``transpose_loss`` adds the same term for UᵀLᵀ − Aᵀ. On the full identity batch it equals
  the first term (‖(LU − A)ᵀ‖_F = ‖LU − A‖_F), so the loss is just doubled, from one product;
  it only changes the fit together with block-wise training;
* ``inverse_weight`` w > 0 adds the inverse-side term (w/k)‖U⁻¹L⁻¹(AW) − W‖²_F on k
  (= ``probes``) Gaussian columns W redrawn every step, U⁻¹L⁻¹ by differentiable block
  substitution through the graphs (the model's ``solve``; GFMM products,
  :mod:`lubench_learned.substitution`), O(k·n·P): it sees ‖L⁻¹‖ and ‖U⁻¹‖, which the fit
  ‖LU − A‖ does not. Its part of the least-squares residual is √(w/k)·vec(U⁻¹L⁻¹AW − W).

Block-wise training (models with a block size P and M blocks) fits output block m = 0 … M−1
in turn: block-row m of LU − A, and with ``transpose_loss`` also block-column m. With
identity inputs these come from the P columns of I in block m: the forward graph on them
gives block-column m of LU, the transposed graph block-row m — 2P inputs per step instead of
2n. When block m ends, every edge that influenced block-rows or block-columns 0 … m (found
by a gradient probe) is frozen, and the optimizer is rebuilt.

Optimizer and stopping (the post's choices are the defaults; see :class:`Schedule`):
Adam with lr 1e-2, betas (0.999, 0.999), lr 1e-3 from step 5 000 of a block; a block ends
when its loss improved by less than 0.1 % over 1 000 steps at two checks in a row, or after
50 000 steps. L-BFGS (strong-Wolfe line search, one iteration per step), matrix-free
Levenberg–Marquardt (:class:`~lubench_learned.lm.LevenbergMarquardt`) and alternating least
squares (:mod:`lubench_learned.als`, GFMM products with triangular diagonal blocks, whole loss only)
are the alternatives.

The suite's budget (max steps, max seconds, target loss) always ends training cleanly. With
block-wise training the remaining steps and seconds are shared among the remaining blocks,
so that every block is trained; a block also ends when its loss reaches ``target_loss``.
The seconds are checked between steps, and inside a second-order step too: an optimizer
with a ``deadline`` attribute (Levenberg–Marquardt, projected Newton, ALS) is given the
block's, and cuts its conjugate gradients (after one product) or its backtracking short
there — one step of those at n = 4096 could otherwise run minutes past the budget.
``stopped_because`` is ``max_steps`` or ``max_seconds`` when the budget cut a block short,
else ``target_loss`` when the last block reached it, else ``converged`` (the schedule ended
every block: plateau, its step cap, or an optimizer that reports ``converged`` — projected
Newton at round-off, :mod:`lubench_learned.newton`). A loss that is not finite raises
:class:`lubench.api.Diverged` with the step and the curve.

**The watch** (optional, :class:`~lubench_learned.watch.Watch`): every ``eval_every``
steps and at the end, the factors are taken out in float64 and checked where the loss
cannot see: the solve residual
‖A x̂ − b‖_F/‖b‖_F on 4 held-out probes (b = A x for Gaussian x, x̂ = U⁻¹L⁻¹b by the
structured solve), Hager–Higham estimates of ‖L⁻¹‖₁, ‖U⁻¹‖₁ and
``cond_est`` = ‖A‖₁·‖(LU)⁻¹‖₁, and (N ≤ 1024) the growth ‖|L||U|‖_∞/‖A‖_∞. With
``keep="best"`` the weights of the check with the smallest held-out residual are restored at
the end (not those of the smallest loss), a non-finite loss after a finite check restores
them instead of raising, and training stops (``residual_worse``) after ``patience``
consecutive checks whose residual exceeds twice the best.

On the CPU, small steps (n × columns ≤ 2¹⁸, e.g. n = 256 block-wise or n ≤ 4096 with 64
probes) train on one intra-op thread; subnormal floats are flushed to zero while training.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
import torch

from lubench.api import Budget, Diverged, Operator

from ..flat import FlatAdam
from ..lm import LevenbergMarquardt
from .watch import Watch, inv_norm1, solve_lu

__all__ = ["Schedule", "LossSpec", "Target", "EdgeFreezer", "Trainer", "TrainResult", "train",
           "training_environment", "torch_dtype", "STOP_REASONS", "SMALL_STEP", "Watch",
           "solve_lu", "inv_norm1", "LevenbergMarquardt", "warm_up"]

# optimizers that differentiate twice (plain autograd graphs) and read their own losses
SECOND_ORDER = ("lm", "als", "newton")
STOP_REASONS = ("target_loss", "max_steps", "max_seconds", "converged", "residual_worse",
                "nonfinite")
EVAL_PROBES = 16
# Steps that push at most this many numbers (n × columns) through a graph run on one CPU
# thread: their kernels are too small to share, and a second thread that the OS deschedules
# (a busy machine) stalls every one of them.
SMALL_STEP = 2**18


def torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name]


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


@dataclass
class TrainResult:
    history: list[dict]
    iterations: int
    final_loss: float
    rel_error: float
    stopped_because: str
    seconds: float
    block_stops: list[str] = field(default_factory=list)
    frozen_fraction: float = 0.0
    watch: dict = field(default_factory=dict)


class Target:
    """A, padded to N with an identity block, on the training device.

    Dense (a torch tensor, N² numbers) when ``dense`` is asked or A is a dense array; else
    two torch sparse CSR matrices (A and Aᵀ).
    """

    def __init__(self, op: Operator, N: int, dtype: torch.dtype, device: str, dense: bool):
        n = op.n
        self.n, self.N, self.dtype, self.device = n, N, dtype, device
        if op.is_sparse and not dense:
            A = sp.csr_array(op.matrix, dtype=np.float64)
            if N > n:
                A = sp.csr_array(sp.block_diag((A, sp.identity(N - n)), format="csr"))
            self.fro2 = float((A.data ** 2).sum())
            self.A64: np.ndarray | sp.csr_array = A
            self.A = self._csr(A)
            self.AT = self._csr(sp.csr_array(A.T))
            self.is_dense = False
        else:
            A = np.zeros((N, N), dtype=np.float64)
            A[:n, :n] = op.dense()
            if N > n:
                A[n:, n:] = np.eye(N - n)
            self.fro2 = float((A ** 2).sum())
            self.A64 = A
            self.A = torch.as_tensor(A, dtype=dtype, device=device)
            self.AT = self.A.T
            self.is_dense = True

    def _csr(self, A: sp.csr_array) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support")
            return torch.sparse_csr_tensor(
                torch.as_tensor(A.indptr, dtype=torch.int64),
                torch.as_tensor(A.indices, dtype=torch.int64),
                torch.as_tensor(A.data, dtype=self.dtype), size=A.shape,
                check_invariants=False).to(self.device)

    def mm(self, Z: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        """A Z (or Aᵀ Z)."""
        return (self.AT if transpose else self.A) @ Z

    def columns(self, s: slice, transpose: bool = False) -> torch.Tensor:
        """A[:, s] (or Aᵀ[:, s]) as a dense N×|s| tensor."""
        if self.is_dense:
            return (self.AT if transpose else self.A)[:, s].contiguous()
        E = torch.zeros((self.N, s.stop - s.start), dtype=self.dtype, device=self.device)
        E[s] = torch.eye(s.stop - s.start, dtype=self.dtype, device=self.device)
        return self.mm(E, transpose)


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
    per-edge block-Jacobi of :mod:`lubench_learned.kronecker`, GFMM products on the
    whole-matrix loss only; ``model`` None: none)."""
    if s.cg_precond != "kronecker" or model is None:
        return None
    from ..kronecker import preconditioner_for

    return preconditioner_for(model, params)


def warm_up(device: str) -> None:
    """Start ``device`` (CUDA: the context, cuBLAS's batched and plain GEMM, cuSPARSE's CSR
    product, in both precisions), wait for it, and reset its peak-memory statistics."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support")
        for dtype in (torch.float32, torch.float64):
            a = torch.ones((2, 8, 8), dtype=dtype, device=dev)
            torch.bmm(a, a)
            b = a[0] @ a[0]
            torch.eye(8, dtype=dtype, device=dev).to_sparse_csr() @ b
            torch.linalg.vector_norm(b)
    torch.cuda.synchronize(dev)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(dev)


def _read(values: list[Any]) -> list[float]:
    """Losses (0-dim tensors, or floats) as floats: one wait for the device when they are
    tensors of one device and dtype."""
    if values and all(isinstance(v, torch.Tensor) for v in values) and \
            len({(v.device, v.dtype) for v in values}) == 1:
        return [float(v) for v in torch.stack(values).tolist()]
    return [float(v) for v in values]


class _Plateau:
    """The post's early stop: relative improvement over ``interval`` steps below ``tol`` at
    ``patience`` consecutive checks."""

    def __init__(self, interval: int, tol: float, patience: int):
        self.interval, self.tol, self.patience = interval, tol, patience
        self.losses: list[float] = []
        self.count = 0

    def add(self, loss: float) -> bool:
        self.losses.append(loss)
        t = len(self.losses) - 1
        if self.interval <= 0 or (t + 1) % self.interval != 0 or t < self.interval:
            return False
        prev = self.losses[t - self.interval]
        improvement = (prev - loss) / prev if prev > 0 else 0.0
        self.count = self.count + 1 if improvement < self.tol else 0
        return self.count >= self.patience


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
        self.a_norm = math.sqrt(target.fro2)
        self.block: int | None = None
        self.opt: torch.optim.Optimizer | None = None
        self._inputs: dict[str, Any] = {}

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
            from ..newton import ProjectedNewton

            if m is not None or not self.full_identity:
                raise ValueError("projected Newton fits the whole ‖LU − A‖²_F: it needs loss "
                                 "'identity' and no block-wise training")
            self.opt = ProjectedNewton(self.model, self.target.A, LevenbergMarquardt(
                self.params, cg_iters=self.schedule.cg_iters,
                preconditioner=_preconditioner(self.model, self.params, self.schedule)))
            return
        if self.schedule.optimizer == "als":
            from ..als import AlternatingLeastSquares

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


def train(model: LUModel, target: Target, spec: LossSpec, schedule: Schedule, budget: Budget,
          *, seed: int = 0, progress: Callable[..., None] | None = None, log_every: int = 10,
          eval_every: int = 500, synchronize: Callable[[], None] = lambda: None,
          edge_groups: list | None = None, block_size: int | None = None,
          watch: Watch | None = None, read_every: int | None = None) -> TrainResult:
    """Fit ``model`` (L U) to ``target`` (A) under ``budget``; see the module docstring.

    History rows: ``step``, ``seconds`` (since the start), ``loss`` (of the current block),
    ``block`` (block-wise only), and every ``eval_every`` steps and at the end of each block
    ``rel_error`` and, with a ``watch``, its fields. Raises :class:`~lubench.api.Diverged`
    when the loss is not finite (unless the watch has weights to restore).

    The losses stay on the device and are read every ``read_every`` steps (default: every
    step on the CPU, where reading costs nothing; every ``log_every`` steps elsewhere, where
    a read waits for the device), and at every log row, check and block end. The stopping
    tests (non-finite loss, ``target_loss``, the plateau, the deadline) run when the losses
    are read, on every loss read: the step that reached the target, or the first non-finite
    one, is known exactly, but up to ``read_every`` − 1 further steps may have run. Log rows
    and budget checks wait for the device (``synchronize``) before they read the clock.
    """
    if read_every is None:
        read_every = 1 if target.device == "cpu" else log_every
    with training_environment(spec, target, block_size):
        return _train(model, target, spec, schedule, budget, seed=seed, progress=progress,
                      log_every=log_every, eval_every=eval_every, synchronize=synchronize,
                      edge_groups=edge_groups, block_size=block_size, watch=watch,
                      read_every=max(1, int(read_every)))


@contextlib.contextmanager
def training_environment(spec: LossSpec, target: Target,
                         block_size: int | None = None) -> Iterator[None]:
    """Flush subnormals to zero, and use one CPU thread for small steps, while training.

    Adam's second moments of converged weights underflow to subnormal floats, which the CPU
    computes many times slower. Steps that push at most ``SMALL_STEP`` numbers through a
    graph have kernels too small to share between threads.
    """
    flushing = torch.set_flush_denormal(True)
    threads = torch.get_num_threads()
    if target.device == "cpu" and _step_width(spec, target.N, block_size) * target.N \
            <= SMALL_STEP:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if flushing:
            torch.set_flush_denormal(False)


def _step_width(spec: LossSpec, N: int, block_size: int | None) -> int:
    """Columns a step pushes through the graphs."""
    if spec.kind == "probes":
        return spec.probes
    return block_size if spec.blockwise and block_size else N


def _train(model: LUModel, target: Target, spec: LossSpec, schedule: Schedule, budget: Budget,
           *, seed: int, progress: Callable[..., None] | None, log_every: int, eval_every: int,
           synchronize: Callable[[], None], edge_groups: list | None,
           block_size: int | None, watch: Watch | None, read_every: int) -> TrainResult:
    tr = Trainer(model, target, spec, schedule, seed=seed, edge_groups=edge_groups,
                 block_size=block_size)
    n_blocks = len(tr.blocks)
    history: list[dict] = []
    block_stops: list[str] = []
    budget_reason: str | None = None
    step = 0
    last_loss = float("nan")
    end_reason: str | None = None  # the watch ended all training
    checked_at = -1
    t0 = time.perf_counter()

    def elapsed() -> float:
        return time.perf_counter() - t0

    if watch is not None:  # the start is a candidate too
        loss0, rel0 = tr.final_loss()
        history.append({"step": 0, "seconds": 0.0, "loss": loss0, "rel_error": rel0,
                        **watch.check(model, 0)[0]})
    for bi, m in enumerate(tr.blocks):
        remaining = n_blocks - bi
        cap, cap_reason = schedule.max_steps_per_block, "block_max_steps"
        if budget.max_steps is not None:
            left = budget.max_steps - step
            if left <= 0:
                budget_reason = "max_steps"
                break
            share = max(1, left // remaining)
            if share < cap:
                cap, cap_reason = share, "max_steps"
        deadline = math.inf
        if budget.max_seconds is not None:
            left_s = budget.max_seconds - elapsed()
            if left_s <= 0:
                budget_reason = "max_seconds"
                break
            deadline = elapsed() + left_s / remaining
        tr.start_block(m)
        if hasattr(tr.opt, "deadline"):  # second-order steps cut their inner loops short
            tr.opt.deadline = t0 + deadline if deadline < math.inf else None
        plateau = _Plateau(schedule.check_interval, schedule.tol, schedule.patience)
        reason = cap_reason
        pending: list[tuple[int, Any, Any]] = []  # (step, loss, rel) not read yet
        for bstep in range(cap):
            if schedule.optimizer == "adam" and bstep == schedule.lr_drop_step:
                tr.set_lr(schedule.lr_late)
            loss_t, rel_t = tr.step()
            step += 1
            pending.append((step, loss_t, rel_t))
            plateau_check = schedule.check_interval > 0 and \
                (bstep + 1) % schedule.check_interval == 0
            # an optimizer that knows it is done (Newton at round-off, newton.py)
            done = bool(getattr(tr.opt, "converged", False))
            if not (step % read_every == 0 or step % log_every == 0 or done or
                    step % eval_every == 0 or step == 1 or bstep == cap - 1 or plateau_check):
                continue
            free_rel = pending[-1][2] is not None  # the last step's exact error, read too
            values = _read([v for _, v, _ in pending] + ([pending[-1][2]] if free_rel else []))
            rel = values.pop() if free_rel else None
            steps = [k for k, _, _ in pending]
            pending = []
            stop: str | None = None
            bad = next((j for j, v in enumerate(values) if not math.isfinite(v)), None)
            if bad is not None:
                history.append({"step": steps[bad], "seconds": elapsed(), "loss": values[bad],
                                **({"block": m} if m is not None else {})})
                if watch is not None and watch.keep == "best" and watch.best_state is not None:
                    end_reason = "nonfinite"
                    break
                where = f" (block {m})" if m is not None else ""
                raise Diverged(steps[bad], history,
                               f"loss is {values[bad]} at step {steps[bad]}{where}")
            for lv in values:
                if stop is None and budget.target_loss is not None and \
                        lv <= budget.target_loss:
                    stop = "target_loss"
                if plateau.add(lv) and stop is None:
                    stop = "plateau"
            if done and stop is None:
                stop = "plateau"
            lv = last_loss = values[-1]
            if stop is None and deadline < math.inf:
                synchronize()
            if stop is None and elapsed() >= deadline:
                stop = "max_seconds"
            last = stop is not None or bstep == cap - 1
            evaluate = step % eval_every == 0 or last
            watched: dict[str, float] = {}
            if evaluate and watch is not None:
                watched, worse = watch.check(model, step)
                checked_at = step
                if worse and stop is None:
                    stop = end_reason = "residual_worse"
                    last = True
            if step % log_every == 0 or last or step == 1:
                synchronize()
                row: dict[str, Any] = {"step": step, "seconds": elapsed(), "loss": lv}
                if m is not None:
                    row["block"] = m
                if evaluate:
                    row["rel_error"] = rel if rel is not None else tr.probe_rel_error()
                    row.update(watched)
                    if progress is not None:
                        progress(step, budget.max_steps, loss=lv,
                                 **({"block": m} if m is not None else {}))
                history.append(row)
            if stop is not None:
                reason = stop
                break
        if end_reason is not None:
            block_stops.append(end_reason)
            break
        block_stops.append(reason)
        if reason in ("max_steps", "max_seconds"):
            budget_reason = reason
        if tr.freezer is not None and m is not None and m < n_blocks - 1:
            tr.freeze_through(m)

    synchronize()
    if watch is not None:
        if checked_at != step and end_reason != "nonfinite":
            watch.check(model, step)
        watch.restore(model)
    seconds = elapsed()
    final_loss, rel_error = tr.final_loss()
    if end_reason is not None:
        stopped = end_reason
    elif budget_reason is not None:
        stopped = budget_reason
    elif block_stops and block_stops[-1] == "target_loss":
        stopped = "target_loss"
    else:
        stopped = "converged"
    frozen = tr.freezer.frozen_numbers() if tr.freezer is not None else 0
    n_total = sum(p.numel() for p in tr.params)
    history.append({"step": step, "seconds": seconds, "loss": last_loss,
                    "rel_error": rel_error, "final": True})
    return TrainResult(history=history, iterations=step, final_loss=final_loss,
                       rel_error=rel_error, stopped_because=stopped, seconds=seconds,
                       block_stops=block_stops, frozen_fraction=frozen / max(n_total, 1),
                       watch=watch.summary() if watch is not None else {})
