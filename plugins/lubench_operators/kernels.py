"""Kernel (covariance) matrices on points, never formed: Gaussian RBF, exponential, Matérn.

Every generator here builds a :class:`KernelOperator`, a
:class:`~lubench.api.MatrixFreeOperator` that holds the n points and nothing of size n²:

* ``entries(rows, cols)`` evaluates the block A[rows, cols] with NumPy, by the same
  expressions as the dense matrices lubench formed before operators could be matrix-free —
  so ``form()`` gives those matrices bit for bit;
* ``matmat(X)`` is one pass over the n² kernel values whatever the number of columns of X,
  compiled and threaded (:mod:`lubench_operators.kernel_action`; O(n²·(d + k)) time, O(n·k)
  memory) — it agrees with ``entries`` to round-off (its exponential is within 1 ulp of
  NumPy's and its sums run in another order);
* the exponential kernel on sorted 1D points (``exponential_kernel``; ``matern_kernel`` with
  ν = 1/2 and ``dim`` 1) has the exact O(n·k) action of REFERENCE.md instead: A⁻¹ is
  tridiagonal, and A X is a forward and a backward recurrence, so it can be graded exactly at
  any n (2²⁰ in a fraction of a second).

Points are drawn uniformly (NumPy ``default_rng(seed)``) and ordered hierarchically
(:func:`hierarchical_order`), so that contiguous index blocks are spatial clusters — the
order in which hierarchical (HODLR, GFMM) methods see them.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import numpy as np

from lubench.api import InvalidParameter, MatrixFreeOperator, OperatorGenerator
from lubench.lazy import lazy_module

action = lazy_module("lubench_operators.kernel_action")  # Numba, on the first action only

__all__ = ["RBFKernel", "ExponentialKernel", "MaternKernel", "KernelOperator",
           "hierarchical_order", "DIMS", "NUS"]

DIMS = (1, 2, 3)
NUS = (0.5, 1.5, 2.5)


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


def _uniform_points(n: int, dim: int, seed: int) -> np.ndarray:
    """n points uniform on [0, 1]^dim from ``default_rng(seed)``, hierarchically ordered."""
    points = np.random.default_rng(seed).uniform(0.0, 1.0, size=(n, dim))
    return points[hierarchical_order(points)]


# --------------------------------------------------------------------------------------------
# Checks (one message per field, naming it and the value)
# --------------------------------------------------------------------------------------------
def _check_positive(name: str, param: str, value: Any) -> None:
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value)
                                       and value > 0):
        raise InvalidParameter(f"{name}: {param} must be a positive number, got {value!r}",
                               param=param)


def _check_nugget(name: str, value: Any) -> None:
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value)
                                       and value >= 0):
        raise InvalidParameter(f"{name}: nugget must be a number >= 0, got {value!r}",
                               param="nugget")


def _check_dim(name: str, value: Any) -> None:
    if isinstance(value, bool) or value not in DIMS or not isinstance(value, int):
        raise InvalidParameter(f"{name}: dim must be 1, 2 or 3 (the dimension of the points), "
                               f"got {value!r}", param="dim")


def _check_points_kernel(name: str, params: dict[str, Any]) -> None:
    """The parameters of a kernel on random points (``rbf_kernel``, ``matern_kernel``)."""
    _check_positive(name, "length_scale", params.get("length_scale", 0.2))
    _check_nugget(name, params.get("nugget", 1e-4))
    _check_dim(name, params.get("dim", 1))


# --------------------------------------------------------------------------------------------
# The operator
# --------------------------------------------------------------------------------------------
class KernelOperator(MatrixFreeOperator):
    """A = (K + nugget·I) / divisor with K_ij = f(‖p_i − p_j‖), on n points p_i (``coords``).

    The kernel functions f(r) (``kind``) and what ``scale`` is for each:

    ==============  ==================================  =======================
    ``gaussian``    exp(−r²·s)                          s = 1/(2ℓ²)
    ``exponential`` exp(−r·s)                           s = 1/ℓ   (Matérn 1/2)
    ``matern32``    (1 + t)·e^{−t},  t = r·s            s = √3/ℓ
    ``matern52``    (1 + t + t²/3)·e^{−t},  t = r·s     s = √5/ℓ
    ``power``       s^r, r = |i − j| on the grid x_i = i  s = ρ
    ==============  ==================================  =======================

``power`` (``exponential_kernel`` on its grid) reads s^r from a table of s^0 … s^(n−1)
computed once by NumPy's ``power`` — the numbers of the dense ρ^|i−j| lubench formed before,
at the cost of a look-up (``pow`` itself costs ~130 ns a value).

    ``exponential`` and ``power`` on 1D points sorted increasingly act by the exact O(n·k)
    recurrences (:func:`lubench_operators.kernel_action.chain_matmat`); every other kernel by
    the compiled one-pass tile loop (:func:`lubench_operators.kernel_action.kernel_matmat`).
    Symmetric; ``spd`` as the generator says.
    """

    has_entries: ClassVar[bool] = True

    def __init__(self, name: str, points: np.ndarray, *, kind: str, scale: float,
                 nugget: float = 0.0, divisor: float = 1.0, spd: bool | None = True,
                 params: dict | None = None):
        points = np.ascontiguousarray(points, dtype=np.float64)
        super().__init__(name, points.shape[0], symmetric=True, spd=spd, coords=points,
                         params=params)
        self.kind = kind
        self.scale = float(scale)
        self.nugget = float(nugget)
        self.divisor = float(divisor)
        self._chain: bool | None = None
        self._factors: tuple | None = None  # the recurrences' factors, on first use
        self._powers: np.ndarray | None = None  # s^0 … s^(n−1) for ``power``, on first use

    @property
    def chain(self) -> bool:
        """Whether the action is the exact O(n) pair of recurrences (exponential kernel on
        sorted 1D points) rather than the O(n²) pass over the kernel values."""
        if self._chain is None:
            x = self.coords
            self._chain = (self.kind in ("exponential", "power") and x.shape[1] == 1
                           and bool(np.all(x[1:, 0] >= x[:-1, 0])))
        return self._chain

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_factors"] = state["_powers"] = None  # O(n) each, recomputed on first use
        return state

    def _of_distance(self, r: np.ndarray) -> np.ndarray:
        """f(r) for every kernel but the Gaussian (NumPy; ``r`` is overwritten)."""
        s = self.scale
        if self.kind == "power":
            if self._powers is None:
                self._powers = s ** np.arange(self.n, dtype=np.float64)
            return self._powers[r.astype(np.intp)]
        t = np.multiply(r, s, out=r)
        if self.kind == "exponential":
            return np.exp(-t)
        if self.kind == "matern32":
            return (1.0 + t) * np.exp(-t)
        return (1.0 + t + t * t / 3.0) * np.exp(-t)

    def entries(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """A[rows, cols] (dense block), O(len(rows)·len(cols)·d)."""
        rows = np.asarray(rows, dtype=np.intp).reshape(-1)
        cols = np.asarray(cols, dtype=np.intp).reshape(-1)
        p, q = self.coords[rows], self.coords[cols]
        if p.shape[1] == 1 and self.kind != "gaussian":
            A = self._of_distance(np.abs(p[:, 0, None] - q[None, :, 0]))
        else:
            # Differences, not ‖x‖² + ‖y‖² − 2x·y: exactly symmetric and never negative.
            sq = np.zeros((rows.size, cols.size))
            for k in range(p.shape[1]):
                diff = p[:, k, None] - q[None, :, k]
                sq += diff * diff
            if self.kind == "gaussian":
                A = np.exp(sq * (-self.scale), out=sq)
            else:
                A = self._of_distance(np.sqrt(sq, out=sq))
        if self.nugget:
            A[rows[:, None] == cols[None, :]] += self.nugget
        if self.divisor != 1.0:
            A /= self.divisor
        return A

    def diagonal(self) -> np.ndarray:
        """(f(0) + nugget) / divisor on every row: f(0) = 1 for every kernel here."""
        return np.full(self.n, (1.0 + self.nugget) / self.divisor)

    def matmat(self, X: np.ndarray) -> np.ndarray:
        """A·X for X of shape (n,) or (n, k): one pass over the kernel whatever k."""
        X = np.asarray(X, dtype=np.float64)
        vector = X.ndim == 1
        X2 = np.ascontiguousarray(X.reshape(self.n, -1))
        if self.chain:
            if self._factors is None:
                self._factors = action.chain_factors(self.coords[:, 0], self._of_distance)
            Y = action.chain_matmat(self._factors, X2)
        else:
            kind, scale = self.kind, self.scale
            if kind == "power":  # s^r = exp(−r·(−ln s))
                kind, scale = "exponential", -math.log(scale)
            Y = action.kernel_matmat(self.coords, X2, kind, scale)
        if self.nugget:
            Y += self.nugget * X2
        if self.divisor != 1.0:
            Y /= self.divisor
        return Y[:, 0] if vector else Y


# --------------------------------------------------------------------------------------------
# The generators
# --------------------------------------------------------------------------------------------
class RBFKernel(OperatorGenerator):
    """Gaussian RBF kernel matrix on random points in [0, 1]^dim, plus a nugget; SPD, never formed.

    A_ij = exp(−‖x_i − x_j‖² / (2ℓ²)) + nugget·δ_ij, with n points x_i drawn uniformly from
    [0, 1]^dim (NumPy ``default_rng(seed)``) and ordered hierarchically: sorted in 1D, by
    recursive median bisection in higher dimensions, so that nearby indices are nearby points.
    Positive definite for distinct points; the nugget keeps λ_min ≥ nugget. The Learn LU post
    uses ℓ = 0.2, nugget = 1e-4, dim = 1 and divides by max|A| = 1 + nugget (``normalize``).
    ``coords`` are the points. A :class:`KernelOperator`: entries on demand, the action in one
    compiled pass over the n² values (benchmarks/README.md times it at n = 65 536).

    Parameters
    ----------
    length_scale : float
        ℓ > 0.
    nugget : float
        Added to the diagonal (≥ 0).
    dim : int
        Dimension of the points: 1, 2 or 3.
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

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        _check_points_kernel(cls.name, params)

    def check_size(self, n: int) -> None:
        super().check_size(n)
        self.check_params(self.get_params())

    def build(self, n: int, seed: int) -> KernelOperator:
        self.check_size(n)
        points = _uniform_points(n, self.dim, seed)
        divisor = 1.0 + self.nugget if self.normalize else 1.0  # max|A|, on the diagonal
        action.warm_up()  # compile (or load) the action now: build is not timed, factorize is
        return KernelOperator(self.name, points, kind="gaussian",
                              scale=0.5 / self.length_scale**2, nugget=self.nugget,
                              divisor=divisor, spd=True if self.nugget > 0 else None,
                              params=self.get_params())


class MaternKernel(OperatorGenerator):
    """Matérn kernel matrix (ν = 1/2, 3/2, 5/2) on random points in [0, 1]^dim, plus a nugget.

    A_ij = k_ν(‖x_i − x_j‖) + nugget·δ_ij with, for r the distance and ℓ the length scale,
    k_{1/2}(r) = e^{−r/ℓ}, k_{3/2}(r) = (1 + √3 r/ℓ) e^{−√3 r/ℓ},
    k_{5/2}(r) = (1 + √5 r/ℓ + 5r²/(3ℓ²)) e^{−√5 r/ℓ}: the covariance of a process that is
    ⌈ν⌉ − 1 times differentiable (ν = 1/2: Ornstein–Uhlenbeck; ν → ∞ gives ``rbf_kernel``).
    Points as for ``rbf_kernel`` (the same seed gives the same points), hierarchically
    ordered; ``coords`` are the points. Positive definite for distinct points. ν = 1/2 in 1D
    is the exponential kernel on sorted random points: its inverse (without nugget) is
    tridiagonal and its action is exact in O(n) (two recurrences), so it can be graded
    exactly at any n; every other case acts in one compiled pass over the n² values.

    Parameters
    ----------
    nu : float
        Smoothness ν: 0.5, 1.5 or 2.5.
    length_scale : float
        ℓ > 0.
    nugget : float
        Added to the diagonal (≥ 0).
    dim : int
        Dimension of the points: 1, 2 or 3.

    Examples
    --------
    >>> op = MaternKernel(nu=0.5, length_scale=0.5, nugget=0.0).build(3, seed=0)
    >>> x = op.coords[:, 0]
    >>> bool(np.allclose(op.dense(), np.exp(-abs(x[:, None] - x[None, :]) / 0.5)))
    True
    """

    name = "matern_kernel"

    def __init__(self, nu: Literal[0.5, 1.5, 2.5] = 1.5, length_scale: float = 0.2,
                 nugget: float = 1e-4, dim: int = 1):
        self.nu = nu
        self.length_scale = length_scale
        self.nugget = nugget
        self.dim = dim

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        nu = params.get("nu", 1.5)
        if isinstance(nu, bool) or nu not in NUS:
            raise InvalidParameter(f"{cls.name}: nu must be 0.5, 1.5 or 2.5 (the half-integer "
                                   f"Matérn kernels in closed form), got {nu!r}", param="nu")
        _check_points_kernel(cls.name, params)

    def check_size(self, n: int) -> None:
        super().check_size(n)
        self.check_params(self.get_params())

    def build(self, n: int, seed: int) -> KernelOperator:
        self.check_size(n)
        points = _uniform_points(n, self.dim, seed)
        kind, root = {0.5: ("exponential", 1.0), 1.5: ("matern32", 3.0),
                      2.5: ("matern52", 5.0)}[float(self.nu)]
        action.warm_up()
        return KernelOperator(self.name, points, kind=kind,
                              scale=math.sqrt(root) / self.length_scale, nugget=self.nugget,
                              spd=True if self.nugget > 0 else None, params=self.get_params())


class ExponentialKernel(OperatorGenerator):
    """Exponential (Kac–Murdock–Szegő) covariance ρ^|x_i − x_j| on a 1D grid or random points.

    ``points="grid"`` (the default): x_i = i, so A_ij = ρ^|i−j| — the covariance of an
    AR(1) / Ornstein–Uhlenbeck process on a uniform grid. Every off-diagonal block of A and of
    its LU factors has rank 1, and A⁻¹ is tridiagonal; the LU factors are known in closed
    form: L_ij = ρ^(i−j) (i ≥ j), U_0j = ρ^j, U_ij = (1 − ρ²) ρ^(j−i) (1 ≤ i ≤ j).
    ``points="random"``: x_i uniform on [0, n) (``default_rng(seed)``), sorted — the same mean
    spacing, so ρ is still the correlation at the mean distance between neighbours; the
    off-diagonal blocks keep rank 1 and A⁻¹ stays tridiagonal. ``coords`` are the x_i.
    SPD for 0 < ρ < 1. Never formed: its action is exact in O(n) (a forward and a backward
    recurrence), so it is graded exactly at any n.

    Parameters
    ----------
    rho : float
        Correlation between neighbours at unit distance, 0 < ρ < 1.
    points : str
        ``grid`` (x_i = i) or ``random`` (sorted uniform on [0, n)).

    Examples
    --------
    >>> print(ExponentialKernel(rho=0.5).build(4, seed=0).dense())
    [[1.    0.5   0.25  0.125]
     [0.5   1.    0.5   0.25 ]
     [0.25  0.5   1.    0.5  ]
     [0.125 0.25  0.5   1.   ]]
    """

    name = "exponential_kernel"

    def __init__(self, rho: float = 0.5, points: Literal["grid", "random"] = "grid"):
        self.rho = rho
        self.points = points

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        rho = params.get("rho", 0.5)
        if isinstance(rho, bool) or not (isinstance(rho, (int, float)) and 0 < rho < 1):
            raise InvalidParameter(f"{cls.name}: rho must lie strictly between 0 and 1, "
                                   f"got {rho!r}", param="rho")
        if params.get("points", "grid") not in ("grid", "random"):
            raise InvalidParameter(f"{cls.name}: points must be 'grid' or 'random', "
                                   f"got {params.get('points')!r}", param="points")

    def check_size(self, n: int) -> None:
        super().check_size(n)
        self.check_params(self.get_params())

    def build(self, n: int, seed: int) -> KernelOperator:
        self.check_size(n)
        action.warm_up()
        if self.points == "grid":
            return KernelOperator(self.name, np.arange(n, dtype=np.float64)[:, None],
                                  kind="power", scale=float(self.rho), spd=True,
                                  params=self.get_params())
        x = np.sort(np.random.default_rng(seed).uniform(0.0, float(n), size=n))
        return KernelOperator(self.name, x[:, None], kind="exponential",  # ρ^r = e^{−r·(−ln ρ)}
                              scale=-math.log(self.rho), spd=True, params=self.get_params())
