"""Structured matrices shared by the built-in plugins; registers no hooks.

* :mod:`lubench_structured.gfmm`  the GFMM block structure: its arrays, structured apply and
  solve, compression of dense factors into the pattern, the factorization class;
* :mod:`lubench_structured.hodlr` hierarchical off-diagonal low-rank (HODLR) matrices and
  their LU, built without forming A.

``lubench_compressed`` and ``lubench_learned`` both import this package and never each
other, so each can be installed or disabled alone. NumPy, SciPy and Numba only: importing it
never imports PyTorch or another plugin.
"""
