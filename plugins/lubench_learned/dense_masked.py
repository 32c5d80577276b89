"""``dense_masked_lu``: L and U as masked dense weights (n² numbers), the memory baseline."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from lubench.api import (
    Factorization,
    FactorizationError,
    InvalidParameter,
    Operator,
    RunContext,
)
from lubench.lazy import lazy_module

from .base import TRAINING_PARAMS_DOC, LearnedLU, pivot_signs_and_floor

sla = lazy_module("scipy.linalg")

if TYPE_CHECKING:  # PyTorch is imported when a case runs, never when the plugin registers
    from .dense_masked_net import MaskedDenseLUNet

__all__ = ["DenseMaskedLU", "DenseMaskedFactorization", "POST", "DEFAULT"]

# The post's dense masked-linear baseline: its Adam schedule, uniform start, float32, no
# transpose loss, the last weights kept.
POST: dict[str, Any] = {
    "pivots": "free", "pivot_floor": 0.0, "loss": "identity", "probes": 64,
    "transpose_loss": False, "optimizer": "adam",
    "lr": 1e-2, "lr_late": 1e-3, "lr_drop_step": 5000, "betas": (0.999, 0.999),
    "max_steps_per_block": 50000, "check_interval": 1000, "tol": 1e-3, "patience": 2,
    "dtype": "float32", "init": "uniform", "init_scale": 0.1, "keep": "last",
    "watch_patience": 0, "eval_every": 500,
}
# The best configuration measured here (docs/methods/learned.md).
DEFAULT: dict[str, Any] = {
    **POST, "pivots": "floored", "pivot_floor": 1e-8, "optimizer": "auto",
    "dtype": "float64", "init": "identity", "keep": "best",
    "watch_patience": 10, "eval_every": 10, "check_interval": 20,
}


class DenseMaskedFactorization(Factorization):
    """Trained dense factors: L unit lower, U upper (float64); triangular solves."""

    expensive_apply = False

    def __init__(self, net: MaskedDenseLUNet):
        import torch

        super().__init__()
        with torch.no_grad():
            L, U = net.factors()
            self.L = L.to("cpu", torch.float64).numpy().copy()
            self.U = U.to("cpu", torch.float64).numpy().copy()
        d = np.diag(self.U)
        if not (np.all(np.isfinite(self.L)) and np.all(np.isfinite(self.U))):
            raise FactorizationError("the trained factors hold NaN or Inf")
        if np.any(d == 0):
            raise FactorizationError(f"U has a zero diagonal entry at {int(np.argmin(abs(d)))}")
        self.n_params = net.n * net.n

    def solve(self, B: np.ndarray) -> np.ndarray:
        B = np.asarray(B, dtype=np.float64)
        y = sla.solve_triangular(self.L, B, lower=True, unit_diagonal=True, check_finite=False)
        return sla.solve_triangular(self.U, y, lower=False, check_finite=False)

    def apply(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        return self.L @ (self.U @ X)


class DenseMaskedLU(LearnedLU):
    __doc__ = (textwrap.dedent("""\
        Dense masked-linear LU: unit-lower L and upper U as masked n×n weights, A ≈ L·U.

        n² free numbers (the strict lower triangle of W_L and the upper triangle of W_U),
        trained by the shared loop on ‖LU − A‖²_F; solved by two dense triangular solves.
        The memory baseline the GFMM-block parameterization is measured against. Refused
        (``unsupported``) when its n² weights, their gradients, Adam's two moments and the
        activations exceed the case's memory limit.

        Parameters
        ----------
        pivots : {'free', 'floored'} or None
            U's diagonal: free weights (the post), or s·(δ + softplus θ) with |U_ii| ≥ δ.
        pivot_floor : float or None
            δ / max|A_ij| (``floored`` only); the signs s are those of A's diagonal.
        """) + TRAINING_PARAMS_DOC)

    name = "dense_masked_lu"
    PRESETS = {"default": DEFAULT, "post": POST}
    INITS = ("uniform", "identity")
    OPTIMIZERS = ("adam", "lbfgs", "lm", "newton", "auto")

    def __init__(self, preset: Literal["default", "post"] = "default",
                 pivots: Literal["free", "floored"] | None = None,
                 pivot_floor: float | None = None,
                 loss: Literal["identity", "probes"] | None = None, probes: int | None = None,
                 transpose_loss: bool | None = None,
                 optimizer: Literal["adam", "lbfgs", "lm", "newton", "auto"] | None = None,
                 lr: float | None = None,
                 lr_late: float | None = None, lr_drop_step: int | None = None,
                 betas: tuple[float, float] | None = None,
                 max_steps_per_block: int | None = None, check_interval: int | None = None,
                 tol: float | None = None, patience: int | None = None,
                 dtype: Literal["float32", "float64"] | None = None,
                 init: Literal["uniform", "identity"] | None = None,
                 init_scale: float | None = None, keep: Literal["best", "last"] | None = None,
                 watch_patience: int | None = None, eval_every: int | None = None,
                 seed: int | None = None, log_every: int = 10):
        self.preset = preset
        self.pivots = pivots
        self.pivot_floor = pivot_floor
        self.loss = loss
        self.probes = probes
        self.transpose_loss = transpose_loss
        self.optimizer = optimizer
        self.lr = lr
        self.lr_late = lr_late
        self.lr_drop_step = lr_drop_step
        self.betas = betas
        self.max_steps_per_block = max_steps_per_block
        self.check_interval = check_interval
        self.tol = tol
        self.patience = patience
        self.dtype = dtype
        self.init = init
        self.init_scale = init_scale
        self.keep = keep
        self.watch_patience = watch_patience
        self.eval_every = eval_every
        self.seed = seed
        self.log_every = log_every

    def _validated(self) -> dict[str, Any]:
        cfg = self.config()
        self._validate_training(cfg, self.INITS)
        if cfg["pivots"] not in ("free", "floored"):
            raise InvalidParameter(f"dense_masked_lu: pivots must be 'free' or 'floored', "
                                   f"got {cfg['pivots']!r}")
        if not float(cfg["pivot_floor"]) >= 0:
            raise InvalidParameter(f"dense_masked_lu: pivot_floor must be non-negative, "
                                   f"got {cfg['pivot_floor']!r}")
        if cfg["optimizer"] == "auto":  # Newton needs the whole ‖LU − A‖²_F
            cfg["optimizer"] = "newton" if cfg["loss"] == "identity" else "lm"
        if cfg["optimizer"] == "newton" and cfg["loss"] != "identity":
            raise InvalidParameter("dense_masked_lu: optimizer 'newton' needs loss 'identity'")
        return cfg

    def check(self, op: Operator) -> None:
        self._validated()

    def memory_estimate(self, op: Operator) -> float:
        """Bytes: 2n² weights, their gradients, the optimizer state (Adam: 2 moments each;
        L-BFGS: 2·50 history vectors of 2n²; LM: 6 conjugate-gradient vectors of 2n²), masked
        copies and products (~8 n² more with identity inputs, ~5 n² with probes), A, and the
        float64 factors the watch forms."""
        cfg = self._validated()
        n = op.n
        size = self._itemsize(cfg)
        # Newton: L, U, R, X, ΔL, ΔU, the trial and a saved state, besides its fallback's 12
        state = {"lbfgs": 200, "lm": 12, "newton": 20}.get(cfg["optimizer"], 4)
        per_n2 = 4 + state + (8 if cfg["loss"] == "identity" else 5)
        return (float(n) * n * (size * per_n2 + 2 * 8)
                + self._target_bytes(op, n, cfg["loss"] == "identity", cfg))

    def factorize(self, op: Operator, ctx: RunContext) -> DenseMaskedFactorization:
        cfg = self._validated()
        self._check_memory(self.memory_estimate(op), ctx,
                           f"n² = {op.n}² parameters and optimizer state")
        import torch

        from .dense_masked_net import MaskedDenseLUNet

        seed = self._seed(ctx)
        sign, floor, start = pivot_signs_and_floor(op, op.n, float(cfg["pivot_floor"]))
        net = MaskedDenseLUNet(op.n, init_scale=float(cfg["init_scale"]),
                               identity_diag=cfg["init"] == "identity", pivots=cfg["pivots"],
                               pivot_sign=sign, pivot_floor=floor, pivot_start=start,
                               dtype={"float32": torch.float32,
                                      "float64": torch.float64}[cfg["dtype"]],
                               generator=torch.Generator().manual_seed(seed))
        net.to(self._device(ctx))
        result, info = self._train(net, op, op.n, ctx, cfg)
        fact = DenseMaskedFactorization(net)
        fact.history = result.history
        fact.info = {**info, "trainable_params": fact.n_params, "live_params": fact.n_params,
                     "padding": 0}
        return fact

