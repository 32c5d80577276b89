"""Hierarchical off-diagonal low-rank (HODLR) matrices and their LU, built without forming A.

* :mod:`.tree`      the cluster tree on the operator's (hierarchical) index order;
* :mod:`.lowrank`   adaptive cross approximation and recompression to a tolerance;
* :mod:`.sources`   where the blocks come from: entries (ACA), a formed sparse A (exact);
* :mod:`.peeling`   a HODLR matrix from the action alone (randomized peeling);
* :mod:`.matrix`    :class:`HODLRMatrix`, A in HODLR form;
* :mod:`.lu`        :class:`HODLRLU`, A ≈ Π L U with L and U in HODLR form: factor
  O(n log² n), solve and product O(n log n) per column, storage O(n log n);
* :mod:`.build`     :func:`factor_operator`, the LU of a lubench operator;
* :mod:`.options`   the options' ranges (light: importing it imports no SciPy).

NumPy, SciPy and Numba only. Importing this package imports none of the submodules: the
names below load their module on first use, so that a plugin can check options with
:mod:`.options` without SciPy.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"ClusterTree": "tree", "HODLRMatrix": "matrix", "HODLRLU": "lu", "factor": "lu",
          "peel": "peeling", "factor_operator": "build", "minimum_bytes": "build",
          "resolve_compression": "build", "COMPRESSIONS": "options", "check_options": "options"}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
