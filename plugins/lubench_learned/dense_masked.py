"""``dense_masked_lu``: L and U as masked dense weights (n² numbers), the memory baseline."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.linalg as sla
import torch
import torch.nn.functional as F
from torch import nn

from lubench.api import (
    Factorization,
    FactorizationError,
    InvalidParameter,
    Operator,
    RunContext,
)

from .base import TRAINING_PARAMS_DOC, LearnedLU, pivot_signs_and_floor
from .gfmm import softplus_inverse

__all__ = ["MaskedDenseLUNet", "DenseMaskedLU", "DenseMaskedFactorization", "DenseTriangular",
           "POST", "DEFAULT"]

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
# The best configuration measured here (DESIGN.md, "The learned methods").
DEFAULT: dict[str, Any] = {
    **POST, "pivots": "floored", "pivot_floor": 1e-8, "optimizer": "lm",
    "dtype": "float64", "init": "identity", "keep": "best",
    "watch_patience": 10, "eval_every": 10, "check_interval": 20,
}


@dataclass
class DenseTriangular:
    """A dense triangular factor in float64: ``solve(B, transpose)``, ``apply(X, transpose)``."""

    T: np.ndarray
    lower: bool
    unit: bool

    @property
    def n(self) -> int:
        return self.T.shape[0]

    def solve(self, B: np.ndarray, transpose: bool = False) -> np.ndarray:
        return sla.solve_triangular(self.T, np.asarray(B, dtype=np.float64), lower=self.lower,
                                    unit_diagonal=self.unit, trans=1 if transpose else 0,
                                    check_finite=False)

    def apply(self, X: np.ndarray, transpose: bool = False) -> np.ndarray:
        return (self.T.T if transpose else self.T) @ np.asarray(X, dtype=np.float64)



class MaskedDenseLUNet(nn.Module):
    """L = I + tril(W_L, −1) (unit lower), U upper; ``forward(X)`` = L(U X).

    ``pivots="free"`` (the post): U = triu(W_U). ``pivots="floored"``: U = triu(W_U, 1) +
    diag(s ⊙ (δ + softplus(diag W_U))) with fixed signs s and floor δ, so |U_ii| ≥ δ and U
    is invertible by construction. The masks are ``torch.tril``/``torch.triu``: entries
    outside the triangles are exactly zero whatever W holds, and receive no gradient.
    """

    def __init__(self, n: int, *, init_scale: float = 0.1, identity_diag: bool = False,
                 pivots: str = "free", pivot_sign: torch.Tensor | None = None,
                 pivot_floor: float = 0.0, pivot_start: torch.Tensor | None = None,
                 dtype: torch.dtype = torch.float32,
                 generator: torch.Generator | None = None):
        super().__init__()
        if pivots not in ("free", "floored"):
            raise ValueError(f"pivots must be 'free' or 'floored', got {pivots!r}")
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        self.n, self.pivots = n, pivots
        w = torch.empty((2, n, n), dtype=torch.float64).uniform_(-init_scale, init_scale,
                                                                  generator=g)
        mag = np.ones(n) if pivot_start is None else np.asarray(pivot_start, np.float64)
        sgn = np.ones(n) if pivot_sign is None else np.where(np.asarray(pivot_sign) < 0, -1, 1)
        if identity_diag:  # U = S·Ũ, S = diag(start) (|A_ii|: A's scale), L's diagonal 1
            w[1] *= torch.as_tensor(mag, dtype=torch.float64)[:, None]
            if pivots == "free":
                w[1] += torch.diag(torch.as_tensor(sgn * mag, dtype=torch.float64))
            else:
                floor = float(pivot_floor)
                theta = softplus_inverse(np.maximum(mag, 2.0 * floor) - floor)
                w[1].diagonal().copy_(torch.as_tensor(theta))
        self.WL = nn.Parameter(w[0].to(dtype))
        self.WU = nn.Parameter(w[1].to(dtype))
        sign = torch.ones(n, dtype=dtype) if pivot_sign is None else \
            torch.where(pivot_sign.reshape(n) < 0, -1.0, 1.0).to(dtype)
        self.pivot_sign: torch.Tensor
        self.pivot_floor: torch.Tensor
        self.register_buffer("pivot_sign", sign)
        self.register_buffer("pivot_floor", torch.tensor(float(pivot_floor), dtype=dtype))

    def _upper(self) -> torch.Tensor:
        if self.pivots == "free":
            return torch.triu(self.WU)
        eye = torch.eye(self.n, dtype=self.WU.dtype, device=self.WU.device)
        d = self.pivot_sign * (self.pivot_floor + F.softplus((self.WU * eye).sum(-1)))
        return torch.triu(self.WU, 1) + torch.diag(d)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """L and U as dense tensors."""
        L = torch.tril(self.WL, -1)
        L.diagonal().fill_(1.0)
        return L, self._upper()

    def forward(self, X: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        """L(U X), or Uᵀ(Lᵀ X), with L X = tril(W_L, −1) X + X (no identity formed)."""
        S, U = torch.tril(self.WL, -1), self._upper()
        if transpose:
            Y = S.T @ X + X
            return U.T @ Y
        Y = U @ X
        return S @ Y + Y

    def full_product(self) -> torch.Tensor:
        S, U = torch.tril(self.WL, -1), self._upper()
        return S @ U + U

    def float64_factors(self) -> tuple[DenseTriangular, DenseTriangular]:
        """L and U in float64 (what the watch solves with)."""
        with torch.no_grad():
            L, U = self.factors()
            return (DenseTriangular(L.to("cpu", torch.float64).numpy().copy(), True, True),
                    DenseTriangular(U.to("cpu", torch.float64).numpy().copy(), False, False))


class DenseMaskedFactorization(Factorization):
    """Trained dense factors: L unit lower, U upper (float64); triangular solves."""

    expensive_apply = False

    def __init__(self, net: MaskedDenseLUNet):
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

    def __init__(self, preset: Literal["default", "post"] = "default",
                 pivots: Literal["free", "floored"] | None = None,
                 pivot_floor: float | None = None,
                 loss: Literal["identity", "probes"] | None = None, probes: int | None = None,
                 transpose_loss: bool | None = None,
                 optimizer: Literal["adam", "lbfgs", "lm"] | None = None, lr: float | None = None,
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
        state = {"lbfgs": 200, "lm": 12}.get(cfg["optimizer"], 4)
        per_n2 = 4 + state + (8 if cfg["loss"] == "identity" else 5)
        return (float(n) * n * (size * per_n2 + 2 * 8)
                + self._target_bytes(op, n, cfg["loss"] == "identity", cfg))

    def factorize(self, op: Operator, ctx: RunContext) -> DenseMaskedFactorization:
        cfg = self._validated()
        self._check_memory(self.memory_estimate(op), ctx,
                           f"n² = {op.n}² parameters and optimizer state")
        seed = self._seed(ctx)
        torch.manual_seed(seed)
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
