"""Preconditioner baselines and the operator families that need PyAMG or scikit-fem.

What the learned-preconditioner papers compare against (family ``classical``, not exact):

* ``jacobi``  M = diag(A);
* ``ic0``     incomplete Cholesky, zero fill (ILU++), breakdowns shifted away;
* ``ict``     incomplete Cholesky with threshold and limited fill (ILU++);
* ``ilu0``    incomplete LU, zero fill (ILU++);
* ``amg``     algebraic multigrid (PyAMG, smoothed aggregation or Ruge–Stüben), one V-cycle
  as the preconditioner: it gives M⁻¹ only, no factors.

Operators:

* ``fem_poisson``    P1 Poisson on a random unstructured mesh of the unit square per seed
  (scikit-fem);
* ``pyamg_example``  the real matrices PyAMG ships.

The core grades them with preconditioned CG at a list of tolerances
(:mod:`lubench.metrics.cg`) beside GMRES. Registering this plugin imports none of PyAMG, ILU++,
scikit-fem or Numba: the classes import them when a case runs. Without them the plugin is
*unavailable* and its cases say how to install them.
"""

from __future__ import annotations

from lubench import hookimpl

from .amg import AMG
from .fem import FEMPoisson
from .gallery import PyAMGExample
from .incomplete import IC0, ICT, ILU0
from .jacobi import Jacobi

__all__ = ["Jacobi", "IC0", "ICT", "ILU0", "AMG", "FEMPoisson", "PyAMGExample", "METHODS",
           "OPERATORS", "lubench_methods", "lubench_operators", "requires", "install_hint"]

# What the classes import when they run, and how to get it (see lubench.availability).
requires = ["pyamg", "ilupp", "skfem"]
install_hint = 'pip install "lubench[preconditioners]"'  # the extra of pyproject.toml

METHODS = [Jacobi, IC0, ICT, ILU0, AMG]
OPERATORS = [FEMPoisson, PyAMGExample]


@hookimpl
def lubench_methods() -> list[type]:
    """The preconditioner baselines."""
    return list(METHODS)


@hookimpl
def lubench_operators() -> list[type]:
    """The operator families that need PyAMG or scikit-fem."""
    return list(OPERATORS)
