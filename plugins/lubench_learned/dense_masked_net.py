"""The network of ``dense_masked_lu``: masked dense L and U weights in PyTorch.

Imported when a case runs (``DenseMaskedLU.factorize``), never when the plugin registers.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MaskedDenseLUNet"]


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
