"""What the two learned LU methods share: training parameters, their checks, the device."""

from __future__ import annotations

import math
import textwrap
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from lubench.api import InvalidParameter, Method, Operator, RunContext, Unsupported

if TYPE_CHECKING:  # PyTorch is imported when a case runs (prepare), never at registration
    import torch

    from .training import Schedule, TrainResult

__all__ = ["LearnedLU", "TRAINING_PARAMS_DOC", "TRAINING_KEYS", "gib", "pivot_signs_and_floor"]

# The parameters both methods take whose None means "the preset's value".
TRAINING_KEYS = ("loss", "probes", "transpose_loss", "optimizer", "lr", "lr_late",
                 "lr_drop_step", "betas", "max_steps_per_block", "check_interval", "tol",
                 "patience", "dtype", "init", "init_scale", "keep", "watch_patience",
                 "eval_every")

# The numpydoc entries of the parameters both methods take (appended to their docstrings).
TRAINING_PARAMS_DOC = textwrap.dedent("""\
    preset : {'default', 'post'}
        Where every parameter left at None takes its value: ``default`` is the best
        configuration measured here, ``post`` the "Learn LU" post's protocol (see the
        class's ``PRESETS`` and docs/methods/learned.md). What ran is in ``info["config"]``.
    loss : {'identity', 'probes', 'auto'} or None
        ``identity``: ‖LU − A‖²_F on the n identity columns (O(n²) per step, A formed);
        ``probes``: (1/k)‖(LU − A)Z‖²_F with Z an n×k Gaussian block redrawn each step
        (A only as its action); ``auto`` (``gfmm_lu``'s default): ``probes`` where the
        optimizer is ``sketch``, else ``identity``.
    probes : int or None
        k, the number of Gaussian probe columns of the ``probes`` loss (and of each of the
        ``sketch`` optimizer's two sketches, at least 4P); None (``gfmm_lu``'s default):
        64, or max(64, 4P) for ``sketch``.
    transpose_loss : bool or None
        Add the same term for UᵀLᵀ − Aᵀ.
    optimizer : {'adam', 'lbfgs', 'lm', 'als', 'newton', 'sketch', 'auto'} or None
        Adam with the schedule below; full-batch L-BFGS with a strong-Wolfe line search (one
        iteration per step); ``lm``, matrix-free Levenberg–Marquardt (Gauss–Newton with
        an adaptive damping, each step up to ``cg_iters`` conjugate-gradient products JᵀJv
        — a ``gfmm_lu`` parameter, preconditioned per ``cg_precond``);
        ``newton`` (``gfmm_lu`` under the conditions of ``als``; ``dense_masked_lu`` with
        loss ``identity``): Newton's method on the dense factors — the explicit Newton step
        of LU = A (two triangular solves) — retracted onto the weights (``gfmm_lu``:
        ``gfmm_compressed``'s compression, near field exact, far field by truncated SVDs
        into the nested bases; ``dense_masked_lu``: the triangles as they are), the step
        halved until the loss falls, else an ``lm`` step (:mod:`lubench_learned.optim.newton`);
        ``sketch`` (``gfmm_lu`` with ``diag: triangular``, not block-wise, float64): O(n·k·P)
        per step, A only as its action — Newton's method on the near field while the far
        field is zero and A is block-tridiagonal, then block least squares on fresh
        sketches AZ, AᵀY (:mod:`lubench_learned.optim.sketch`); ``auto`` (the default of
        both): ``dense_masked_lu`` — ``newton`` with loss ``identity``, else ``lm``;
        ``gfmm_lu`` — ``newton`` where it applies and the padded size N is at most
        ``NEWTON_MAX_N`` (its dense factors fit), else ``sketch`` where that applies, else
        ``lm``; or ``als`` (``gfmm_lu`` with ``diag: triangular``, loss ``identity``, not
        block-wise): alternating least squares — each step solves L's rows (near field and
        leaf decoders) and then U's columns (near field and leaf encoders) exactly, one
        small dense least-squares problem each, and moves the inner far field by one LM
        step.
        ``lr`` and its schedule apply to Adam only.
    lr : float or None
        Adam learning rate at the start of each block.
    lr_late : float or None
        Adam learning rate from step ``lr_drop_step`` of a block on.
    lr_drop_step : int or None
        Step within a block at which the learning rate drops to ``lr_late``.
    betas : tuple[float, float] or None
        Adam's (β₁, β₂).
    max_steps_per_block : int or None
        A block ends after this many steps (the whole training is one block unless block-wise).
    check_interval : int or None
        The early stop compares the loss with the loss this many steps earlier (0: never).
    tol : float or None
        ... and counts a check as stalled when the relative improvement is below ``tol``.
    patience : int or None
        A block ends after this many stalled checks in a row.
    dtype : {'float32', 'float64'} or None
        Training precision (the factors are always used in float64 afterwards).
    init : str or None
        ``uniform`` (the post): every weight uniform on [−init_scale, init_scale];
        ``identity``: L = I and U = diag(s·|A_ii|) exactly (s the signs of A's diagonal):
        the other entries zero — ``gfmm_lu``'s near field and couplings; its bases are
        drawn as for ``uniform``, so that the couplings get gradients.
    init_scale : float or None
        Half-width of the uniform initial weights.
    keep : {'best', 'last'} or None
        ``best``: the weights of the check with the smallest held-out solve residual
        ‖A x̂ − b‖/‖b‖ (4 probes b = A x, x̂ by the float64 solve), not of the smallest loss;
        ``last``: the weights training ended with.
    watch_patience : int or None
        Stop when the held-out residual exceeded twice its best at this many checks in a row
        (0: never).
    eval_every : int or None
        Every this many steps: the relative error ‖LU − A‖_F/‖A‖_F (exact, or on 16 fixed
        probes), the held-out residual, ‖L⁻¹‖₁, ‖U⁻¹‖₁, ``cond_est`` = ‖A‖₁‖(LU)⁻¹‖₁
        (Hager–Higham) and the growth ‖|L||U|‖_∞/‖A‖_∞ (n ≤ 1024), in the history.
    seed : int or None
        Seed of the initial weights and probes; None takes the case's seed.
    log_every : int
        A training-curve row every this many steps.
""")


def pivot_signs_and_floor(op: Operator, N: int,
                          floor_rel: float) -> tuple[torch.Tensor, float, torch.Tensor]:
    """U's fixed pivot signs s (those of A's diagonal, + where it is 0 and on the padding),
    the floor δ = floor_rel · max|A_ij|, and the pivots' start magnitudes for ``init:
    identity``: |A_ii| (max|A_ij| where A_ii = 0, 1 on the padding), so that the start has
    A's scale (a start at I, 41 or 910 times too small on some suite operators, trained
    into factors with cond 1e38)."""
    import torch

    d = _diagonal(op)
    scale = max(_max_abs(op, d), 1e-300)
    sign, start = np.ones(N), np.ones(N)
    sign[: op.n] = np.where(d < 0, -1.0, 1.0)
    start[: op.n] = np.where(d != 0, np.abs(d), scale)
    return torch.as_tensor(sign), floor_rel * scale, torch.as_tensor(start)


# Rows (or columns) of an operator that is not formed whose entries estimate max|A_ij|
SCALE_SAMPLES = 8
# Rademacher probes of the diagonal's estimate for an operator that gives only its action
DIAGONAL_PROBES = 64


def _diagonal(op: Operator) -> np.ndarray:
    """A's diagonal; for an operator that gives only its action, the estimate
    mean(z ⊙ Az) over ``DIAGONAL_PROBES`` Rademacher vectors z (exact where A is diagonal;
    its error at i is about ‖A_i,:≠i‖₂/√64)."""
    try:
        return np.asarray(op.diagonal(), dtype=np.float64)
    except Unsupported:
        Z = np.random.default_rng(0).choice([-1.0, 1.0], size=(op.n, DIAGONAL_PROBES))
        return np.mean(Z * np.asarray(op.matmat(Z)), axis=1)


def _max_abs(op: Operator, d: np.ndarray) -> float:
    """max|A_ij|: exact for a formed A; for one that is not formed, the largest of |A_ii| and
    of ``SCALE_SAMPLES`` evenly spaced rows (``entries``) or columns (the action) — exact for
    positive definite kernels (|A_ij| ≤ max A_ii), else a lower estimate of the scale."""
    if op.is_sparse:
        return float(abs(op.sparse()).max())
    if op.formed:
        return float(np.abs(np.asarray(op.matrix)).max())
    big = float(np.abs(d).max()) if d.size else 0.0
    if op.spd:
        return big
    n = op.n
    idx = np.unique(np.linspace(0, n - 1, min(SCALE_SAMPLES, n)).astype(np.intp))
    if op.has_entries:
        block = op.entries(idx, np.arange(n))
    else:
        E = np.zeros((n, idx.size))
        E[idx, np.arange(idx.size)] = 1.0
        block = np.asarray(op.matmat(E))
    return max(big, float(np.abs(block).max()))


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f} GiB"


class LearnedLU(Method):
    """Base of the learned LU methods (not registered).

    Subclasses set ``PRESETS`` (preset name → a value for every key of ``TRAINING_KEYS`` and
    of their own preset-able parameters) and store their constructor arguments unchanged;
    :meth:`config` resolves the None ones.
    """

    family: ClassVar[str] = "learned"
    resources: ClassVar[dict] = {"gpus_per_task": 1}
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    OPTIMIZERS: ClassVar[tuple[str, ...]] = ("adam", "lbfgs", "lm")
    LOSSES: ClassVar[tuple[str, ...]] = ("identity", "probes")

    preset: str
    seed: int | None
    log_every: int

    # ----------------------------------------------------------------------------------------
    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        """The parameter checks of ``check``, when the suite loads (no PyTorch needed)."""
        cls(**params)._validated()

    def _validated(self) -> dict[str, Any]:
        """The resolved configuration, checked (subclasses add their own parameters)."""
        raise NotImplementedError

    def prepare(self, ctx: RunContext) -> None:
        """Untimed, before ``factorize``: import PyTorch and the training loop, and on CUDA
        start the device (context, cuBLAS, cuSPARSE — lazily started, seconds, that would
        otherwise land in ``setup_seconds``) and reset its peak-memory statistics, so that
        the case's peak is its own (the inline executor runs many cases in one process)."""
        from . import training

        device = self._device(ctx)
        if device.startswith("cuda"):
            training.warm_up(device)

    def config(self) -> dict[str, Any]:
        """Every preset-able parameter: its own value, or the preset's where it is None."""
        if self.preset not in self.PRESETS:
            raise InvalidParameter(f"{self.name}: preset must be one of "
                                   f"{', '.join(map(repr, self.PRESETS))}, got {self.preset!r}")
        base = self.PRESETS[self.preset]
        return {k: (getattr(self, k) if getattr(self, k) is not None else v)
                for k, v in base.items()}

    def _validate_training(self, cfg: dict[str, Any], inits: tuple[str, ...]) -> None:
        def bad(name: str, rule: str) -> InvalidParameter:
            return InvalidParameter(f"{self.name}: {name} {rule}, got {cfg[name]!r}")

        if cfg["loss"] not in self.LOSSES:
            raise bad("loss", "must be one of " + ", ".join(map(repr, self.LOSSES)))
        if cfg["optimizer"] not in self.OPTIMIZERS:
            raise bad("optimizer", "must be one of " + ", ".join(map(repr, self.OPTIMIZERS)))
        if cfg["dtype"] not in ("float32", "float64"):
            raise bad("dtype", "must be 'float32' or 'float64'")
        if cfg["init"] not in inits:
            raise bad("init", "must be one of " + ", ".join(map(repr, inits)))
        if cfg["keep"] not in ("best", "last"):
            raise bad("keep", "must be 'best' or 'last'")
        for name in ("probes", "max_steps_per_block", "patience", "eval_every"):
            if name == "probes" and cfg[name] is None:  # the method's own default
                continue
            if int(cfg[name]) < 1:
                raise bad(name, "must be at least 1")
        if int(self.log_every) < 1:
            raise InvalidParameter(f"{self.name}: log_every must be at least 1, "
                                   f"got {self.log_every!r}")
        for name in ("check_interval", "lr_drop_step", "watch_patience"):
            if int(cfg[name]) < 0:
                raise bad(name, "must be non-negative")
        for name in ("lr", "lr_late"):
            v = float(cfg[name])
            if not (v > 0 and math.isfinite(v)):
                raise bad(name, "must be a positive number")
        if not (float(cfg["init_scale"]) >= 0 and math.isfinite(float(cfg["init_scale"]))):
            raise bad("init_scale", "must be a non-negative number")
        betas = cfg["betas"]
        if len(betas) != 2 or not all(0 <= float(b) < 1 for b in betas):
            raise bad("betas", "must be two numbers in [0, 1)")

    @staticmethod
    def _schedule(cfg: dict[str, Any]) -> Schedule:
        from .training import Schedule

        return Schedule(optimizer=cfg["optimizer"], lr=float(cfg["lr"]),
                        lr_late=float(cfg["lr_late"]), lr_drop_step=int(cfg["lr_drop_step"]),
                        betas=(float(cfg["betas"][0]), float(cfg["betas"][1])),
                        max_steps_per_block=int(cfg["max_steps_per_block"]),
                        check_interval=int(cfg["check_interval"]), tol=float(cfg["tol"]),
                        patience=int(cfg["patience"]),
                        cg_iters=int(cfg.get("cg_iters", Schedule.cg_iters)),
                        cg_precond=str(cfg.get("cg_precond", Schedule.cg_precond)))

    def _seed(self, ctx: RunContext) -> int:
        return int(ctx.seed if self.seed is None else self.seed)

    @staticmethod
    def _itemsize(cfg: dict[str, Any]) -> int:
        return 4 if cfg["dtype"] == "float32" else 8

    def _device(self, ctx: RunContext) -> str:
        import torch

        device = ctx.device or "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise Unsupported(f"device '{device}' asked for, but PyTorch sees no CUDA device")
        return device

    def _check_memory(self, need: float, ctx: RunContext, what: str) -> None:
        limit = ctx.memory_limit
        if limit is not None and need > limit:
            raise Unsupported(f"needs ~{gib(need)} for {what}, over the memory limit "
                              f"{gib(limit)}")

    def _target_bytes(self, op: Operator, N: int, dense: bool, cfg: dict[str, Any]) -> float:
        size = self._itemsize(cfg)
        if not dense and not op.formed:
            return 0.0  # the action (:class:`~lubench_learned.training.target.Action`)
        if dense or not op.is_sparse:
            return float(N) * N * (size + 8)  # the training copy and the float64 one
        nnz = op.sparse().nnz + (N - op.n)
        return 3.0 * nnz * (size + 8)

    def _train(self, model: torch.nn.Module, op: Operator, N: int, ctx: RunContext,
               cfg: dict[str, Any], *, blockwise: bool = False,
               edge_groups: list | None = None,
               block_size: int | None = None) -> tuple[TrainResult, dict[str, Any]]:
        """Run the shared training loop (with its watch) on ``model``; the result and the
        info fields."""
        from .training import LossSpec, Target, Watch, torch_dtype, train

        device = self._device(ctx)
        target = Target(op, N, torch_dtype(cfg["dtype"]), device,
                        dense=cfg["loss"] == "identity")
        spec = LossSpec(kind=cfg["loss"], probes=int(cfg["probes"]),
                        transpose=bool(cfg["transpose_loss"]), blockwise=blockwise,
                        inverse_weight=float(cfg.get("inverse_weight", 0.0)))
        seed = self._seed(ctx)
        watch = Watch(target, seed=seed, keep=cfg["keep"],
                      patience=int(cfg["watch_patience"]))
        result = train(model, target, spec, self._schedule(cfg), ctx.budget,
                       seed=seed, progress=ctx.progress,
                       log_every=int(self.log_every), eval_every=int(cfg["eval_every"]),
                       synchronize=ctx.synchronize, edge_groups=edge_groups,
                       block_size=block_size, watch=watch)
        info = {
            "iterations": result.iterations,
            "final_loss": result.final_loss,
            "train_rel_error": result.rel_error,
            "stopped_because": result.stopped_because,
            "train_seconds": result.seconds,
            "device": device,
            "dtype": cfg["dtype"],
            "preset": self.preset,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
            **result.watch,
        }
        return result, info
