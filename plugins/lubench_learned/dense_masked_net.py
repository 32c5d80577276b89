"""The network of ``dense_masked_lu``: masked dense L and U weights in PyTorch, and the
float64 triangular factors it hands the watch (:class:`DenseTriangular`).

Imported when a case runs (``DenseMaskedLU.factorize``), never when the plugin registers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import torch
import torch.nn.functional as F
from torch import nn

from .parametrization import pivot_weights, softplus_inverse

__all__ = ["MaskedDenseLUNet", "DenseTriangular"]


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
        if identity_diag:  # L = I, U = diag(s ⊙ start) exactly (start |A_ii|: A's scale)
            w.zero_()  # noise in a unit triangle's strict part grows its inverse exponentially
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

    def retract(self, L: torch.Tensor, U: torch.Tensor) -> None:
        """Set the weights so that the factors are L's strict lower and U's upper triangle
        (the inverse of the parametrization; floored pivots: θ = softplus⁻¹(|U_ii| − δ), a
        pivot of magnitude ≤ δ raised to 2δ, the signs s becoming U's)."""
        with torch.no_grad():
            self.WL.copy_(torch.tril(L, -1))
            if self.pivots == "free":
                self.WU.copy_(torch.triu(U))
                return
            theta, sign = pivot_weights(torch.diagonal(U).detach().cpu().double().numpy(),
                                        float(self.pivot_floor))
            W = torch.triu(U, 1).clone()
            W.diagonal().copy_(torch.as_tensor(theta, dtype=W.dtype, device=W.device))
            self.WU.copy_(W)
            self.pivot_sign.copy_(torch.as_tensor(sign, dtype=self.pivot_sign.dtype,
                                                  device=self.pivot_sign.device))

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
