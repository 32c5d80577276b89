"""Learned LU factorizations (PyTorch): L and U fitted to A by gradient descent.

* ``dense_masked_lu`` — :class:`~lubench_learned.dense_masked.DenseMaskedLU`: masked dense
  weights, n² numbers;
* ``gfmm_lu`` — :class:`~lubench_learned.gfmm_lu.GfmmLU`: GFMM-block factors, O(n·P)
  numbers, solved by block substitution through the graphs.

Both train with the one loop of :mod:`lubench_learned.training`. The plugin, lowest first:

* :mod:`.parametrization`, :mod:`.flat`  diagonal blocks and pivots as weights (no PyTorch);
  all parameters as views of one flat tensor, and Adam on it;
* :mod:`.gfmm`      the GFMM factors in PyTorch: sweeps, the fused step's plan, the modules;
* :mod:`.dense_masked_net`  the masked dense factors in PyTorch;
* :mod:`.optim`     Levenberg–Marquardt and its preconditioner, projected Newton, ALS;
* :mod:`.training`  the target, the trainer, the loop under the budget, the watch;
* :mod:`.base`, :mod:`.gfmm_lu`, :mod:`.dense_masked`  the methods.

The GFMM structure in NumPy (arrays, structured solve, compression, the factorization
class) is :mod:`lubench_structured.gfmm`, shared with ``gfmm_compressed``.

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
