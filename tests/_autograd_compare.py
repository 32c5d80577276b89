"""One comparison for the hand-written backward passes of the GFMM sweeps: the fused path's
value and gradients against plain autograd's, to round-off."""

from __future__ import annotations

import torch


def assert_same_values_and_grads(y_fused: torch.Tensor, grads_fused: list,
                                 y_plain: torch.Tensor, grads_plain: list) -> None:
    """Values within 1e-13, gradients within 1e-12 (float64); a parameter the output does
    not depend on has no gradient in autograd and none or zeros in the fused path."""
    torch.testing.assert_close(y_fused, y_plain, rtol=1e-13, atol=1e-13)
    for a, b in zip(grads_fused, grads_plain):
        if b is None:  # e.g. M = 1: no edges
            assert a is None or not a.any()
            continue
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
