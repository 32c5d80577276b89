"""What the two learned LU methods share: training parameters, their checks, the device."""

from __future__ import annotations

import math
import textwrap
from typing import TYPE_CHECKING, Any, ClassVar

from lubench.api import InvalidParameter, Method, Operator, RunContext, Unsupported

if TYPE_CHECKING:  # PyTorch is imported when a case runs (prepare), never at registration
    import torch

    from .training import Schedule, TrainResult

__all__ = ["LearnedLU", "TRAINING_PARAMS_DOC", "gib"]

# The numpydoc entries of the parameters both methods take (appended to their docstrings).
TRAINING_PARAMS_DOC = textwrap.dedent("""\
    loss : {'identity', 'probes'}
        ``identity``: ‖LU − A‖²_F on the n identity columns (O(n²) per step);
        ``probes``: (1/k)‖(LU − A)Z‖²_F with Z an n×k Gaussian block redrawn each step.
    probes : int
        k, the number of Gaussian probe columns of the ``probes`` loss.
    transpose_loss : bool
        Add the same term for UᵀLᵀ − Aᵀ.
    optimizer : {'adam', 'lbfgs'}
        Adam with the schedule below (the post's), or full-batch L-BFGS with a strong-Wolfe
        line search (one iteration per step; ``lr`` and its schedule are then unused).
    lr : float
        Adam learning rate at the start of each block.
    lr_late : float
        Adam learning rate from step ``lr_drop_step`` of a block on.
    lr_drop_step : int
        Step within a block at which the learning rate drops to ``lr_late``.
    betas : tuple[float, float]
        Adam's (β₁, β₂).
    max_steps_per_block : int
        A block ends after this many steps (the whole training is one block unless block-wise).
    check_interval : int
        The early stop compares the loss with the loss this many steps earlier (0: never).
    tol : float
        ... and counts a check as stalled when the relative improvement is below ``tol``.
    patience : int
        A block ends after this many stalled checks in a row.
    dtype : {'float32', 'float64'}
        Training precision (the factors are used in float64 afterwards).
    init : {'uniform', 'identity'}
        ``uniform`` (the post): every weight uniform on [−init_scale, init_scale];
        ``identity``: the same plus the identity on the diagonal (blocks) of U and L, which
        starts L·U near I instead of near 0 and avoids the ill-conditioned stalls seen from
        ``uniform`` (e.g. on the exponential kernel).
    init_scale : float
        Half-width of the uniform initial weights.
    seed : int or None
        Seed of the initial weights and probes; None takes the case's seed.
    log_every : int
        A training-curve row every this many steps.
    eval_every : int
        The relative error ‖LU − A‖_F/‖A‖_F (exact, or on 16 fixed probes) every this many
        steps, and a progress report.
""")


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f} GiB"


class LearnedLU(Method):
    """Base of the learned LU methods (not registered)."""

    family: ClassVar[str] = "learned"
    resources: ClassVar[dict] = {"gpus_per_task": 1}

    # set by the subclasses' constructors
    loss: str
    probes: int
    transpose_loss: bool
    optimizer: str
    lr: float
    lr_late: float
    lr_drop_step: int
    betas: tuple[float, float]
    max_steps_per_block: int
    check_interval: int
    tol: float
    patience: int
    dtype: str
    init: str
    init_scale: float
    seed: int | None
    log_every: int
    eval_every: int

    # ----------------------------------------------------------------------------------------
    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        """The parameter checks of ``check``, when the suite loads (see ``_validate``)."""
        cls(**params)._validate()

    def _validate(self) -> None:
        self._validate_training()

    def prepare(self, ctx: RunContext) -> None:
        """Import PyTorch and the training loop here, untimed, not in ``factorize``."""
        from . import training  # noqa: F401

    def _validate_training(self) -> None:
        def bad(name: str, rule: str) -> InvalidParameter:
            return InvalidParameter(f"{self.name}: {name} {rule}, got {getattr(self, name)!r}")

        if self.loss not in ("identity", "probes"):
            raise bad("loss", "must be 'identity' or 'probes'")
        if self.optimizer not in ("adam", "lbfgs"):
            raise bad("optimizer", "must be 'adam' or 'lbfgs'")
        if self.dtype not in ("float32", "float64"):
            raise bad("dtype", "must be 'float32' or 'float64'")
        if self.init not in ("uniform", "identity"):
            raise bad("init", "must be 'uniform' or 'identity'")
        for name in ("probes", "max_steps_per_block", "patience", "log_every", "eval_every"):
            if int(getattr(self, name)) < 1:
                raise bad(name, "must be at least 1")
        for name in ("check_interval", "lr_drop_step"):
            if int(getattr(self, name)) < 0:
                raise bad(name, "must be non-negative")
        for name in ("lr", "lr_late"):
            v = float(getattr(self, name))
            if not (v > 0 and math.isfinite(v)):
                raise bad(name, "must be a positive number")
        if not (float(self.init_scale) >= 0 and math.isfinite(float(self.init_scale))):
            raise bad("init_scale", "must be a non-negative number")
        if len(self.betas) != 2 or not all(0 <= float(b) < 1 for b in self.betas):
            raise bad("betas", "must be two numbers in [0, 1)")

    def _schedule(self) -> Schedule:
        from .training import Schedule

        return Schedule(optimizer=self.optimizer, lr=float(self.lr), lr_late=float(self.lr_late),
                        lr_drop_step=int(self.lr_drop_step),
                        betas=(float(self.betas[0]), float(self.betas[1])),
                        max_steps_per_block=int(self.max_steps_per_block),
                        check_interval=int(self.check_interval), tol=float(self.tol),
                        patience=int(self.patience))

    def _seed(self, ctx: RunContext) -> int:
        return int(ctx.seed if self.seed is None else self.seed)

    def _torch_dtype(self) -> torch.dtype:
        from .training import torch_dtype

        return torch_dtype(self.dtype)

    def _itemsize(self) -> int:
        return 4 if self.dtype == "float32" else 8

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

    def _target_bytes(self, op: Operator, N: int, dense: bool) -> float:
        if dense or not op.is_sparse:
            return float(N) * N * self._itemsize()
        nnz = op.sparse().nnz + (N - op.n)
        return 2.0 * nnz * (self._itemsize() + 8)

    def _train(self, model: torch.nn.Module, op: Operator, N: int, ctx: RunContext, *,
               blockwise: bool = False, edge_groups: list | None = None,
               block_size: int | None = None) -> tuple[TrainResult, dict[str, Any]]:
        """Run the shared training loop on ``model`` and return the result and info fields."""
        from .training import LossSpec, Target, train

        device = self._device(ctx)
        target = Target(op, N, self._torch_dtype(), device, dense=self.loss == "identity")
        spec = LossSpec(kind=self.loss, probes=int(self.probes),
                        transpose=bool(self.transpose_loss), blockwise=blockwise)
        result = train(model, target, spec, self._schedule(), ctx.budget,
                       seed=self._seed(ctx), progress=ctx.progress,
                       log_every=int(self.log_every), eval_every=int(self.eval_every),
                       synchronize=ctx.synchronize, edge_groups=edge_groups,
                       block_size=block_size)
        info = {
            "iterations": result.iterations,
            "final_loss": result.final_loss,
            "train_rel_error": result.rel_error,
            "stopped_because": result.stopped_because,
            "train_seconds": result.seconds,
            "device": device,
            "dtype": self.dtype,
        }
        return result, info
