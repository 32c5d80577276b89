"""How the learned factors' diagonal blocks and pivots are parametrized; no PyTorch needed
(the parameter checks run at suite load).

* ``DIAGS``: how a factor's P×P diagonal blocks are parametrized — ``full`` (the post's free
  blocks, a block LU with a gauge) or ``triangular`` (L's unit lower, U's upper with pivots
  s·(δ + softplus θ), invertible by construction);
* ``softplus_inverse(y)``: θ with softplus θ = y, to load given pivots into that form;
* ``pivot_weights(d, δ)``: (θ, s) with s·(δ + softplus θ) = d — given pivots as weights.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DIAGS", "softplus_inverse", "pivot_weights"]

DIAGS = ("full", "triangular")


def softplus_inverse(y: np.ndarray | float) -> np.ndarray:
    """θ with softplus(θ) = log(1 + e^θ) = y, for y > 0 (stable for small and large y)."""
    y = np.asarray(y, dtype=np.float64)
    return y + np.log(-np.expm1(-y))


def pivot_weights(d: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """(θ, s) with s·(δ + softplus θ) = d for pivots d and floor δ = ``floor``: s = sign(d)
    (+1 at 0), θ = softplus⁻¹(|d| − δ); a pivot with |d| ≤ δ, which the form cannot hold,
    is raised to 2δ (θ = softplus⁻¹(δ))."""
    d = np.asarray(d, dtype=np.float64)
    theta = softplus_inverse(np.maximum(np.abs(d) - floor, max(floor, 1e-300)))
    return theta, np.where(d < 0, -1.0, 1.0)
