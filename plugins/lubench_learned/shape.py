"""Facts about the learned factors that need no PyTorch (parameter checks at suite load).

* ``DIAGS``: how a factor's P×P diagonal blocks are parametrized — ``full`` (the post's free
  blocks, a block LU with a gauge) or ``triangular`` (L's unit lower, U's upper with pivots
  s·(δ + softplus θ), invertible by construction);
* ``is_power_of_two(M)``: the GFMM tree needs M = 2^K leaves;
* ``softplus_inverse(y)``: θ with softplus θ = y, to load given pivots into that form.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DIAGS", "is_power_of_two", "softplus_inverse"]

DIAGS = ("full", "triangular")


def is_power_of_two(m: int) -> bool:
    """Whether m = 2^K for some K ≥ 0."""
    return m >= 1 and (m & (m - 1)) == 0


def softplus_inverse(y: np.ndarray | float) -> np.ndarray:
    """θ with softplus(θ) = log(1 + e^θ) = y, for y > 0 (stable for small and large y)."""
    y = np.asarray(y, dtype=np.float64)
    return y + np.log(-np.expm1(-y))
