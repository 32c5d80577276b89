"""Learned LU factorizations (PyTorch): L and U fitted to A by gradient descent.

* ``dense_masked_lu`` — :class:`~lubench_learned.dense_masked.DenseMaskedLU`: masked dense
  weights, n² numbers;
* ``gfmm_lu`` — :class:`~lubench_learned.gfmm_lu.GfmmLU`: GFMM-block factors, O(n·P)
  numbers, solved by block substitution through the graphs.

Both train with the one loop of :mod:`lubench_learned.training`.

Registering this plugin imports no PyTorch (``lubench list`` stays fast, and lubench works
without it): the method classes import it when a case runs. Without PyTorch the plugin is
*unavailable* and its cases are recorded as such, with the command that installs it.
"""

from __future__ import annotations

from lubench import hookimpl

from .dense_masked import DenseMaskedLU
from .gfmm_lu import GfmmLU

__all__ = ["DenseMaskedLU", "GfmmLU", "lubench_methods", "requires", "install_hint"]

# What the methods import when they run, and how to get it (see lubench.availability).
requires = ["torch"]
install_hint = 'pip install "lubench[learned]"'  # the `learned` extra of pyproject.toml


@hookimpl
def lubench_methods() -> list[type]:
    return [DenseMaskedLU, GfmmLU]
