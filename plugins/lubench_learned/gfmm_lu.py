"""``gfmm_lu``: L and U as GFMM blocks, trained by the shared loop, solved structurally."""

from __future__ import annotations

import textwrap
from collections import Counter
from typing import Literal

import numpy as np
import torch

from lubench.api import Factorization, InvalidParameter, Operator, RunContext, Unsupported

from .base import TRAINING_PARAMS_DOC, LearnedLU
from .gfmm import (
    FactorArrays,
    GFMMProduct,
    block_substitution,
    factor_params,
    is_power_of_two,
    live_params,
)

__all__ = ["GfmmLU", "GfmmFactorization", "derive_M"]


def derive_M(n: int, P: int) -> int:
    """The smallest power of two M with M·P ≥ n."""
    M = 1
    while M * P < n:
        M *= 2
    return M


class GfmmFactorization(Factorization):
    """Trained GFMM factors L, U of A padded to N = M·P (identity block below n).

    ``solve`` runs block forward substitution with L, then block back substitution with U,
    through the graphs (:func:`~lubench_learned.gfmm.block_substitution`); ``apply`` runs
    L(U X) through the graphs in float64. Neither forms L or U.

    With padding, L = [[L₁₁, 0], [L₂₁, L₂₂]] and U = [[U₁₁, U₁₂], [0, U₂₂]] split at n
    (see ``GFMMFactor``): ``apply`` is L₁₁U₁₁ X (zeros below X, top n rows kept), and
    ``solve`` inverts exactly that: forward substitution on [B; 0], its padding rows set to
    0, then back substitution, whose padding rows then stay 0.
    """

    expensive_apply = False

    def __init__(self, net: GFMMProduct, n: int):
        super().__init__()
        self.n, self.N = n, net.n
        self.net = GFMMProduct(net.M, net.P, n_valid=n, dtype=torch.float64)
        self.net.load_state_dict({k: v.detach().to("cpu", torch.float64)
                                  for k, v in net.state_dict().items()})
        self.net.requires_grad_(False)
        self.L = FactorArrays.from_factor(self.net.L, "L")
        self.U = FactorArrays.from_factor(self.net.U, "U")
        self.n_params = 2 * factor_params(net.M, net.P)

    def _padded(self, X: np.ndarray) -> tuple[np.ndarray, bool]:
        X = np.asarray(X, dtype=np.float64)
        vec = X.ndim == 1
        X2 = X.reshape(self.n, -1)
        if self.N > self.n:
            X2 = np.vstack([X2, np.zeros((self.N - self.n, X2.shape[1]))])
        return X2, vec

    def solve(self, B: np.ndarray) -> np.ndarray:
        B2, vec = self._padded(B)
        Y = block_substitution(self.L, B2)
        Y[self.n:] = 0.0
        X = block_substitution(self.U, Y)[: self.n]
        return X[:, 0] if vec else X

    def apply(self, X: np.ndarray) -> np.ndarray:
        X2, vec = self._padded(X)
        with torch.no_grad():
            Y = self.net(torch.from_numpy(np.ascontiguousarray(X2))).numpy()[: self.n]
        return Y[:, 0] if vec else Y


class GfmmLU(LearnedLU):
    __doc__ = (textwrap.dedent("""\
        GFMM-block LU: block-lower L and block-upper U as learned FMM graphs, A ≈ L·U.

        n = M·P (A padded with an identity block otherwise); each factor is a binary tree of
        M leaves with one dense P×P map per edge, bridge block and diagonal block:
        P²(7M − 6 − log₂M) trainable numbers per factor, O(n·P). L's leaf bridge is
        lower-bidiagonal and its interior bridges strictly lower; U mirrors it. Trained by
        gradient descent on ‖LU − A‖²_F (see ``loss``); solved by block substitution through
        the graphs, with the P×P diagonal blocks LU-factored.

        Parameters
        ----------
        P : int
            Leaf size: the size of every block and edge.
        M : int or None
            Number of leaves, a power of two; None or 0: the smallest with M·P ≥ n.
        blockwise : bool
            Fit output block m = 0 … M−1 in turn, freezing what influenced finished blocks.
        """) + TRAINING_PARAMS_DOC)

    name = "gfmm_lu"

    def __init__(self, P: int = 32, M: int | None = None, blockwise: bool = True,
                 loss: Literal["identity", "probes"] = "identity", probes: int = 64,
                 transpose_loss: bool = True, optimizer: Literal["adam", "lbfgs"] = "adam",
                 lr: float = 1e-2, lr_late: float = 1e-3, lr_drop_step: int = 5000,
                 betas: tuple[float, float] = (0.999, 0.999), max_steps_per_block: int = 50000,
                 check_interval: int = 1000, tol: float = 1e-3, patience: int = 2,
                 dtype: Literal["float32", "float64"] = "float32",
                 init: Literal["uniform", "identity"] = "uniform", init_scale: float = 0.1,
                 seed: int | None = None, log_every: int = 10, eval_every: int = 500):
        self.P = P
        self.M = M
        self.blockwise = blockwise
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

    # ----------------------------------------------------------------------------------------
    def _validate(self) -> None:
        self._validate_training()
        if int(self.P) < 1:
            raise InvalidParameter(f"gfmm_lu: P must be at least 1, got {self.P!r}")
        if self.M not in (None, 0) and not is_power_of_two(int(self.M)):
            raise InvalidParameter(f"gfmm_lu: M must be a power of two (or 0/None to derive "
                                   f"it from n), got {self.M!r}")

    def shape_for(self, n: int) -> tuple[int, int]:
        """(M, P) used for size n."""
        P = int(self.P)
        M = int(self.M) if self.M else derive_M(n, P)
        return M, P

    def check(self, op: Operator) -> None:
        self._validate()
        M, P = self.shape_for(op.n)
        if M * P < op.n:
            raise Unsupported(f"M·P = {M}·{P} = {M * P} is smaller than n = {op.n}; "
                              f"raise M or leave it unset")

    def memory_estimate(self, op: Operator) -> float:
        """Bytes: parameters, gradients and Adam moments, activations, A, the float64 copy."""
        M, P = self.shape_for(op.n)
        N = M * P
        params = 2 * factor_params(M, P)
        width = N if (self.loss == "identity" and not self.blockwise) else \
            (2 * P if self.loss == "identity" else int(self.probes))
        activations = 40.0 * N * width + (2.0 * N * N if width == N else 0.0)
        size = self._itemsize()
        return (4.0 * params * size + activations * size + 2.0 * params * 8
                + self._target_bytes(op, N, self.loss == "identity"))

    def factorize(self, op: Operator, ctx: RunContext) -> GfmmFactorization:
        self.check(op)
        M, P = self.shape_for(op.n)
        self._check_memory(self.memory_estimate(op), ctx,
                           f"GFMM factors with M={M}, P={P}, their Adam state and activations")
        seed = self._seed(ctx)
        net = GFMMProduct(M, P, init_scale=float(self.init_scale),
                     identity_diag=self.init == "identity", n_valid=op.n,
                     dtype=self._torch_dtype(),
                     generator=torch.Generator().manual_seed(seed))
        net.to(self._device(ctx))
        result, info = self._train(net, op, M * P, ctx, blockwise=bool(self.blockwise),
                                   edge_groups=net.edge_views(), block_size=P)
        fact = GfmmFactorization(net, op.n)
        fact.history = result.history
        fact.info = {**info, "M": M, "P": P, "N": M * P, "padding": M * P - op.n,
                     "live_params": 2 * live_params(M, P),
                     "trainable_params": fact.n_params,
                     "block_stops": dict(Counter(result.block_stops)),
                     "frozen_fraction": result.frozen_fraction}
        return fact
