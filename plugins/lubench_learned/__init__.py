"""Learned LU factorizations (PyTorch): L and U fitted to A by gradient descent.

* ``dense_masked_lu`` — :class:`~lubench_learned.dense_masked.DenseMaskedLU`: masked dense
  weights, n² numbers;
* ``gfmm_lu`` — :class:`~lubench_learned.gfmm_lu.GfmmLU`: GFMM-block factors, O(n·P)
  numbers, solved by block substitution through the graphs.

Both train with the one loop of :mod:`lubench_learned.training`.
"""

from __future__ import annotations

from lubench import hookimpl

from .dense_masked import DenseMaskedLU
from .gfmm_lu import GfmmLU

__all__ = ["DenseMaskedLU", "GfmmLU", "lubench_methods"]


@hookimpl
def lubench_methods() -> list[type]:
    return [DenseMaskedLU, GfmmLU]
