"""``dense_masked_lu``: L and U as masked dense weights (n² numbers), the memory baseline."""

from __future__ import annotations

import textwrap
from typing import Literal

import numpy as np
import scipy.linalg as sla
import torch
from torch import nn

from lubench.api import Factorization, FactorizationError, Operator, RunContext

from .base import TRAINING_PARAMS_DOC, LearnedLU

__all__ = ["MaskedDenseLUNet", "DenseMaskedLU", "DenseMaskedFactorization"]


class MaskedDenseLUNet(nn.Module):
    """L = I + tril(W_L, −1) (unit lower), U = triu(W_U) (upper); ``forward(X)`` = L(U X).

    The masks are ``torch.tril``/``torch.triu``: entries outside the triangles are exactly
    zero whatever W holds, and receive no gradient.
    """

    def __init__(self, n: int, *, init_scale: float = 0.1, identity_diag: bool = False,
                 dtype: torch.dtype = torch.float32, generator: torch.Generator | None = None):
        super().__init__()
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        self.n = n
        w = torch.empty((2, n, n), dtype=torch.float64).uniform_(-init_scale, init_scale,
                                                                  generator=g)
        if identity_diag:
            w[1] += torch.eye(n, dtype=torch.float64)
        self.WL = nn.Parameter(w[0].to(dtype))
        self.WU = nn.Parameter(w[1].to(dtype))

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """L and U as dense tensors."""
        L = torch.tril(self.WL, -1)
        L.diagonal().fill_(1.0)
        return L, torch.triu(self.WU)

    def forward(self, X: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        """L(U X), or Uᵀ(Lᵀ X), with L X = tril(W_L, −1) X + X (no identity formed)."""
        S, U = torch.tril(self.WL, -1), torch.triu(self.WU)
        if transpose:
            Y = S.T @ X + X
            return U.T @ Y
        Y = U @ X
        return S @ Y + Y

    def full_product(self) -> torch.Tensor:
        S, U = torch.tril(self.WL, -1), torch.triu(self.WU)
        return S @ U + U


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
        """) + TRAINING_PARAMS_DOC)

    name = "dense_masked_lu"

    def __init__(self, loss: Literal["identity", "probes"] = "identity", probes: int = 64,
                 transpose_loss: bool = False, optimizer: Literal["adam", "lbfgs"] = "adam",
                 lr: float = 1e-2, lr_late: float = 1e-3, lr_drop_step: int = 5000,
                 betas: tuple[float, float] = (0.999, 0.999), max_steps_per_block: int = 50000,
                 check_interval: int = 1000, tol: float = 1e-3, patience: int = 2,
                 dtype: Literal["float32", "float64"] = "float32",
                 init: Literal["uniform", "identity"] = "uniform", init_scale: float = 0.1,
                 seed: int | None = None, log_every: int = 10, eval_every: int = 500):
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
        self.seed = seed
        self.log_every = log_every
        self.eval_every = eval_every

    def check(self, op: Operator) -> None:
        self._validate_training()

    def memory_estimate(self, op: Operator) -> float:
        """Bytes: 2n² weights, their gradients, Adam's 2 moments each, masked copies and
        products (~8 n² more with identity inputs, ~5 n² with probes), and A."""
        n = op.n
        size = self._itemsize()
        per_n2 = 8 + (8 if self.loss == "identity" else 5)
        return float(n) * n * size * per_n2 + self._target_bytes(op, n, self.loss == "identity")

    def factorize(self, op: Operator, ctx: RunContext) -> DenseMaskedFactorization:
        self.check(op)
        self._check_memory(self.memory_estimate(op), ctx,
                           f"n² = {op.n}² parameters and Adam state")
        seed = self._seed(ctx)
        net = MaskedDenseLUNet(op.n, init_scale=float(self.init_scale),
                               identity_diag=self.init == "identity", dtype=self._torch_dtype(),
                               generator=torch.Generator().manual_seed(seed))
        net.to(self._device(ctx))
        result, info = self._train(net, op, op.n, ctx)
        fact = DenseMaskedFactorization(net)
        fact.history = result.history
        fact.info = {**info, "live_params": fact.n_params, "padding": 0}
        return fact
