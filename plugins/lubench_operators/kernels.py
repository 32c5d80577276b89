"""Dense kernel (covariance) matrices: Gaussian RBF on random points, exponential (KMS)."""

from __future__ import annotations

import math

import numpy as np

from lubench.api import InvalidParameter, Operator, OperatorGenerator

__all__ = ["RBFKernel", "ExponentialKernel", "hierarchical_order"]


def hierarchical_order(points: np.ndarray) -> np.ndarray:
    """A permutation that orders points by recursive bisection (a k-d tree's leaf order).

    Each set is split at its median along the coordinate of largest extent, the lower half
    first, down to single points, so that every contiguous block of the ordering is a
    spatial cluster. In 1D this is plain sorting.
    """
    n, d = points.shape
    if d == 1:
        return np.argsort(points[:, 0], kind="stable")
    order = np.arange(n)
    stack = [(0, n)]
    while stack:
        lo, hi = stack.pop()
        if hi - lo <= 1:
            continue
        block = points[order[lo:hi]]
        axis = int(np.argmax(block.max(axis=0) - block.min(axis=0)))
        order[lo:hi] = order[lo:hi][np.argsort(block[:, axis], kind="stable")]
        mid = (lo + hi) // 2
        stack += [(lo, mid), (mid, hi)]
    return order


def _check_positive(name: str, param: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise InvalidParameter(f"{name}: {param} must be a positive number, got {value!r}")


class RBFKernel(OperatorGenerator):
    """Gaussian RBF kernel matrix on random points in [0, 1]^dim, plus a nugget; dense, SPD.

    A_ij = exp(−‖x_i − x_j‖² / (2ℓ²)) + nugget·δ_ij, with n points x_i drawn uniformly from
    [0, 1]^dim (NumPy ``default_rng(seed)``) and ordered hierarchically: sorted in 1D, by
    recursive median bisection in higher dimensions, so that nearby indices are nearby points.
    Positive definite for distinct points; the nugget keeps λ_min ≥ nugget. The Learn LU post
    uses ℓ = 0.2, nugget = 1e-4, dim = 1 and divides by max|A| = 1 + nugget (``normalize``).
    ``coords`` are the points.

    Parameters
    ----------
    length_scale : float
        ℓ > 0.
    nugget : float
        Added to the diagonal (≥ 0).
    dim : int
        Dimension of the points (≥ 1).
    normalize : bool
        Divide by max|A_ij| = 1 + nugget.
    """

    name = "rbf_kernel"

    def __init__(self, length_scale: float = 0.2, nugget: float = 1e-4, dim: int = 1,
                 normalize: bool = False):
        self.length_scale = length_scale
        self.nugget = nugget
        self.dim = dim
        self.normalize = normalize

    def check_size(self, n: int) -> None:
        super().check_size(n)
        _check_positive(self.name, "length_scale", self.length_scale)
        if not (isinstance(self.nugget, (int, float)) and math.isfinite(self.nugget)
                and self.nugget >= 0):
            raise InvalidParameter(f"{self.name}: nugget must be a number >= 0, "
                                   f"got {self.nugget!r}")
        if not (isinstance(self.dim, int) and self.dim >= 1):
            raise InvalidParameter(f"{self.name}: dim must be an integer >= 1, "
                                   f"got {self.dim!r}")

    def build(self, n: int, seed: int) -> Operator:
        self.check_size(n)
        points = np.random.default_rng(seed).uniform(0.0, 1.0, size=(n, self.dim))
        points = points[hierarchical_order(points)]
        # Differences, not ‖x‖² + ‖y‖² − 2x·y: exactly symmetric and never negative.
        sq = np.zeros((n, n))
        for k in range(self.dim):
            diff = points[:, k, None] - points[None, :, k]
            sq += diff * diff
        A = np.exp(sq * (-0.5 / self.length_scale**2), out=sq)
        A[np.diag_indices(n)] += self.nugget
        if self.normalize:
            A /= np.abs(A).max()
        return Operator(self.name, A, symmetric=True, spd=True if self.nugget > 0 else None,
                        coords=points, params=self.get_params())


class ExponentialKernel(OperatorGenerator):
    """Exponential (Kac–Murdock–Szegő) covariance A_ij = ρ^|i−j|; dense, SPD for 0 < ρ < 1.

    The covariance of an AR(1) / Ornstein–Uhlenbeck process on a uniform grid. Every
    off-diagonal block of A and of its LU factors has rank 1, and A⁻¹ is tridiagonal; the LU
    factors are known in closed form: L_ij = ρ^(i−j) (i ≥ j), U_0j = ρ^j,
    U_ij = (1 − ρ²) ρ^(j−i) (1 ≤ i ≤ j). ``coords`` are the grid indices.

    Parameters
    ----------
    rho : float
        Correlation between neighbours, 0 < ρ < 1.

    Examples
    --------
    >>> print(ExponentialKernel(rho=0.5).build(4, seed=0).matrix)
    [[1.    0.5   0.25  0.125]
     [0.5   1.    0.5   0.25 ]
     [0.25  0.5   1.    0.5  ]
     [0.125 0.25  0.5   1.   ]]
    """

    name = "exponential_kernel"

    def __init__(self, rho: float = 0.5):
        self.rho = rho

    def check_size(self, n: int) -> None:
        super().check_size(n)
        if not (isinstance(self.rho, (int, float)) and 0 < self.rho < 1):
            raise InvalidParameter(f"{self.name}: rho must lie strictly between 0 and 1, "
                                   f"got {self.rho!r}")

    def build(self, n: int, seed: int) -> Operator:
        self.check_size(n)
        idx = np.arange(n)
        A = float(self.rho) ** np.abs(idx[:, None] - idx[None, :]).astype(np.float64)
        return Operator(self.name, A, symmetric=True, spd=True,
                        coords=idx.astype(np.float64)[:, None], params=self.get_params())
