"""Hierarchical off-diagonal low-rank (HODLR) matrices and their LU (issue 26)."""
