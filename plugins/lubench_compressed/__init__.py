"""Classical, untrained factorizations in the GFMM block structure, as a plugin.

* ``gfmm_compressed``  LU of A placed into the GFMM pattern: near field exact, far field
  compressed into the tree's nested bases (see :mod:`lubench_compressed.gfmm_compressed`).

:mod:`lubench_structured.gfmm.arrays` holds the GFMM factor as NumPy arrays
(:class:`GFMMArrays`) with its structured apply and solve, shared with the learned methods.
NumPy/SciPy only: importing this package never imports torch.
"""

from __future__ import annotations

from lubench_structured.gfmm.compression import GfmmCompressed

from lubench import hookimpl

__all__ = ["GfmmCompressed", "METHODS", "lubench_methods"]

METHODS: list[type] = [GfmmCompressed]


@hookimpl
def lubench_methods() -> list[type]:
    """The built-in compressed methods."""
    return list(METHODS)
