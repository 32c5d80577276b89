"""Built-in classical factorizations of lubench, as a plugin.

Exact up to round-off:

* ``plu``        dense LU with partial pivoting, A = P·L·U (LAPACK getrf);
* ``cholesky``   dense A = L·Lᵀ for symmetric positive definite A (LAPACK potrf);
* ``sparse_lu``  sparse Pr·A·Pc = L·U with a fill-reducing ordering (SuperLU).

And one incomplete factorization (family ``classical``, ``exact = False``), the classical
approximate baseline of the learned ones:

* ``ilu``        incomplete Pr·A·Pc ≈ L·U by threshold dropping (SuperLU ILUTP).
"""

from __future__ import annotations

from lubench import hookimpl
from lubench_classical.cholesky import Cholesky
from lubench_classical.ilu import ILU
from lubench_classical.plu import PLU
from lubench_classical.sparse_lu import SparseLU

__all__ = ["PLU", "Cholesky", "SparseLU", "ILU", "METHODS", "APPROXIMATE", "lubench_methods"]

METHODS = [PLU, Cholesky, SparseLU]  # exact
APPROXIMATE = [ILU]                  # exact = False


@hookimpl
def lubench_methods() -> list[type]:
    """The built-in classical methods, exact and approximate."""
    return [*METHODS, *APPROXIMATE]
