"""The GFMM block structure, shared by ``gfmm_lu`` and ``gfmm_compressed`` (registers no hooks).

A GFMM factor of size N = M·P applies a matrix through a binary tree of M = 2^K leaves of P
unknowns (the notation is in :mod:`.arrays`). Modules, lowest first:

* :mod:`.shape`          M = 2^K leaves of P, the smallest M for n, A padded to N = M·P;
* :mod:`.substitution`   block forward substitution through a block-lower graph, compiled
  (Numba; imported on the first solve only);
* :mod:`.arrays`         :class:`GFMMArrays`: one factor as float64 arrays, its apply,
  structured solve and ‖F⁻¹‖₁ estimate;
* :mod:`.exact_lu`       the exact LU of the padded matrix, without row exchanges where safe;
* :mod:`.compression`    exact factors placed into the GFMM pattern, far field compressed
  into the tree's nested bases (:func:`compress_lu`, :func:`compress_factors`);
* :mod:`.factorization`  :class:`GFMMFactorization`, Ā[perm] = L·U as both methods return it.

NumPy, SciPy (lazily), threadpoolctl and Numba only: importing this package imports neither
PyTorch nor SciPy nor Numba, nor another plugin.
"""

from __future__ import annotations

from .arrays import GFMMArrays, inv_norm1_estimate
from .compression import TOL, compress_factors, compress_lower, compress_lu, stored_numbers
from .exact_lu import GROWTH_LIMIT, dense_lu
from .factorization import GFMMFactorization
from .shape import derive_M, is_power_of_two, pad_identity

__all__ = ["GFMMArrays", "inv_norm1_estimate", "GFMMFactorization", "compress_lu",
           "compress_factors", "compress_lower", "stored_numbers", "dense_lu", "derive_M",
           "pad_identity", "is_power_of_two", "TOL", "GROWTH_LIMIT"]
