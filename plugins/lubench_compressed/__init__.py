"""Classical, untrained factorizations in the GFMM block structure, as a plugin.

* ``gfmm_compressed``  LU of A placed into the GFMM pattern: near field exact, far field
  compressed into the tree's nested bases (see :mod:`lubench_compressed.gfmm_compressed`).

The GFMM structure itself (its arrays, structured apply and solve, the compression, the
factorization class) is :mod:`lubench_structured.gfmm`, which the learned methods use too;
this plugin never imports them. NumPy/SciPy only: importing it never imports torch.
"""

from __future__ import annotations

from lubench import hookimpl
from lubench_compressed.gfmm_compressed import GfmmCompressed
from lubench_compressed.hodlr_lu import HodlrLU

__all__ = ["GfmmCompressed", "METHODS", "lubench_methods"]

METHODS: list[type] = [GfmmCompressed, HodlrLU]


@hookimpl
def lubench_methods() -> list[type]:
    """The built-in compressed methods."""
    return list(METHODS)
