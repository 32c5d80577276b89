"""Products with triangular factors stored in LAPACK's packed-in-one-array layouts."""

from __future__ import annotations

import numpy as np

from lubench.lazy import lazy_module

blas = lazy_module("scipy.linalg.blas")

__all__ = ["as_columns", "triangular_product"]


def as_columns(X: np.ndarray) -> tuple[np.ndarray, bool]:
    """X as a float64 (n, k) array, and whether it came in as a vector (n,)."""
    X = np.asarray(X, dtype=np.float64)
    return (X[:, None], True) if X.ndim == 1 else (X, False)


def triangular_product(T: np.ndarray, X: np.ndarray, *, lower: bool, unit: bool = False,
                       trans: bool = False) -> np.ndarray:
    """op(tri(T))·X with BLAS trmm, reading only one triangle of T (X of shape (n, k)).

    tri(T) is the lower (``lower``) or upper triangle of T, with ones on the diagonal when
    ``unit``; op is the transpose when ``trans``. The other triangle of T is never read, so T
    may be LAPACK's combined LU array or cho_factor's output.
    """
    return blas.dtrmm(1.0, T, np.asfortranarray(X), lower=int(lower), trans_a=int(trans),
                      diag=int(unit))
