"""Finite-difference operators on the unit interval and the unit square.

Conventions shared by every generator here:

* T_m = tridiag(−1, 2, −1) of size m is the unscaled second difference;
* 2D unknowns live on an m × m grid with n = m², ordered lexicographically: unknown
  k = i·m + j has x-index j (varying fastest) and y-index i, so x-neighbours are k ± 1 and
  y-neighbours k ± m; then the 2D second difference is I_m ⊗ T_m + T_m ⊗ I_m;
* ``boundary="eliminate"`` discretises the interior nodes only (homogeneous Dirichlet values
  eliminated); ``boundary="dirichlet_rows"`` keeps the boundary nodes as unknowns and replaces
  their rows by identity rows, which is how the "Learn LU" post built its matrices;
* ``normalize`` divides the matrix by max|A_ij| (the post does this for every operator but
  the 1D Laplacian);
* ``coords`` holds grid indices: (i,) in 1D, (x-index, y-index) in 2D, as float64.

Matrices are ``scipy.sparse.csr_array`` in float64; ``symmetric`` is checked exactly on the
built matrix, ``spd`` follows from the construction.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from lubench.api import InvalidParameter, Operator, OperatorGenerator
from lubench.lazy import lazy_module

sp = lazy_module("scipy.sparse")

__all__ = [
    "Laplacian1D", "Laplacian2D", "ConvDiff1D", "ConvDiff2D", "Biharmonic1D", "Biharmonic2D",
    "second_difference", "grid_side",
]

Boundary = Literal["eliminate", "dirichlet_rows"]
Scale = Literal["none", "h2", "max"]


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------
def second_difference(m: int) -> sp.csr_array:
    """T_m = tridiag(−1, 2, −1), m × m, CSR float64."""
    e = np.ones(m)
    return sp.diags_array([-e[1:], 2 * e, -e[1:]], offsets=[-1, 0, 1], format="csr")


def upwind_difference(m: int, beta: float) -> sp.csr_array:
    """β·D_m, the first difference taken from the upstream side (m × m, unscaled by h).

    β ≥ 0: (β·D u)_i = β (u_i − u_{i−1}); β < 0: (β·D u)_i = β (u_{i+1} − u_i). Either way the
    diagonal is |β| and the off-diagonal −|β| sits on the upstream neighbour.
    """
    e = np.ones(m - 1)
    return sp.diags_array([-max(beta, 0.0) * e, abs(beta) * np.ones(m), min(beta, 0.0) * e],
                          offsets=[-1, 0, 1], format="csr")


def grid_side(name: str, n: int) -> int:
    """m with m² = n, or InvalidParameter naming the operator and n."""
    m = math.isqrt(n) if n >= 1 else 0
    if m < 1 or m * m != n:
        near = max(round(math.sqrt(max(n, 0))), 2)  # the nearest perfect square, as a hint
        raise InvalidParameter(f"{name} needs n to be a perfect square (e.g. {near * near} = "
                               f"{near}²), got {n}")
    return m


def _laplacian_2d(m: int) -> sp.csr_array:
    T, eye = second_difference(m), sp.eye_array(m, format="csr")
    return sp.csr_array(sp.kron(eye, T) + sp.kron(T, eye))


def _identity_rows(A: sp.csr_array, rows: np.ndarray) -> sp.csr_array:
    """A with the given rows replaced by the matching rows of the identity."""
    n = A.shape[0]
    keep = np.ones(n)
    keep[rows] = 0.0
    mark = np.zeros(n)
    mark[rows] = 1.0
    out = sp.diags_array(keep) @ A + sp.diags_array(mark)
    out = sp.csr_array(out)
    out.eliminate_zeros()
    return out


def _max_normalized(A: sp.csr_array) -> sp.csr_array:
    return sp.csr_array(A / np.abs(A.data).max())


def _is_symmetric(A: sp.csr_array) -> bool:
    return (A != A.T).nnz == 0


def _grid_coords_1d(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64)[:, None]


def _grid_coords_2d(m: int) -> np.ndarray:
    i, j = np.divmod(np.arange(m * m), m)
    return np.column_stack([j, i]).astype(np.float64)


def _boundary_nodes_2d(m: int) -> np.ndarray:
    i, j = np.divmod(np.arange(m * m), m)
    return np.flatnonzero((i == 0) | (i == m - 1) | (j == 0) | (j == m - 1))


def _check_choice(name: str, param: str, value: object, choices: tuple) -> None:
    if value not in choices:
        raise InvalidParameter(f"{name}: {param} must be one of "
                               f"{', '.join(map(repr, choices))}, got {value!r}", param=param)


def _check_positive(name: str, param: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise InvalidParameter(f"{name}: {param} must be a positive number, got {value!r}",
                               param=param)


def _check_shift(name: str, value: float) -> None:
    _check_finite(name, "shift", value)
    if value < 0:
        raise InvalidParameter(f"{name}: shift must be >= 0 (A stays positive definite), "
                               f"got {value!r}", param="shift")


def _check_finite(name: str, param: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value)):
        raise InvalidParameter(f"{name}: {param} must be a finite number, got {value!r}",
                               param=param)


def _check_convection(name: str, eps: float, beta: float) -> None:
    """The coefficients of ``convdiff_1d`` and ``convdiff_2d``: eps > 0, beta finite."""
    _check_positive(name, "eps", eps)
    _check_finite(name, "beta", beta)


def _normalize_flag(normalize: bool | None, boundary: str) -> bool:
    return boundary == "dirichlet_rows" if normalize is None else bool(normalize)


def _scaled(A: sp.csr_array, scale: str, h: float) -> sp.csr_array:
    if scale == "h2":
        return sp.csr_array(A / h**2)
    if scale == "max":
        return _max_normalized(A)
    return A


# --------------------------------------------------------------------------------------------
# Laplacians
# --------------------------------------------------------------------------------------------
class Laplacian1D(OperatorGenerator):
    """1D Laplacian tridiag(−1, 2, −1), the Learn LU post's unscaled first example.

    A = T_n: the second difference −u'' on the n interior nodes x_i = (i+1)h, h = 1/(n+1), of
    (0, 1) with u(0) = u(1) = 0, times h² (``scale="none"``). Symmetric positive definite,
    eigenvalues 2 − 2cos(kπ/(n+1)). ``coords`` are the node indices.

    Parameters
    ----------
    scale : str
        ``none``: the integer stencil (the post); ``h2``: divided by h², the discrete −d²/dx²;
        ``max``: divided by max|A_ij| = 2.

    Examples
    --------
    >>> print(Laplacian1D().build(4, seed=0).matrix.toarray())
    [[ 2. -1.  0.  0.]
     [-1.  2. -1.  0.]
     [ 0. -1.  2. -1.]
     [ 0.  0. -1.  2.]]
    """

    name = "laplacian_1d"

    def __init__(self, scale: Scale = "none"):
        self.scale = scale

    def check_size(self, n: int) -> None:
        super().check_size(n)
        _check_choice(self.name, "scale", self.scale, ("none", "h2", "max"))

    def build(self, n: int, seed: int) -> Operator:
        self.check_size(n)
        A = _scaled(second_difference(n), self.scale, 1.0 / (n + 1))
        return Operator(self.name, A, symmetric=_is_symmetric(A), spd=True,
                        coords=_grid_coords_1d(n), params=self.get_params())


class Laplacian2D(OperatorGenerator):
    """2D Laplacian, 5-point stencil on a √n × √n grid, lexicographic ordering.

    A = I_m ⊗ T_m + T_m ⊗ I_m with m = √n: −Δu on the m × m interior nodes of the unit square
    with u = 0 on the boundary, times h² (h = 1/(m+1)). Row k = i·m + j holds 4 on the
    diagonal and −1 for the neighbours (i, j±1) and (i±1, j) that are interior. Symmetric
    positive definite. ``coords`` are (x-index j, y-index i).

    Parameters
    ----------
    scale : str
        ``none``: the integer stencil; ``h2``: divided by h²; ``max``: divided by
        max|A_ij| = 4.

    Examples
    --------
    >>> print(Laplacian2D().build(4, seed=0).matrix.toarray())
    [[ 4. -1. -1.  0.]
     [-1.  4.  0. -1.]
     [-1.  0.  4. -1.]
     [ 0. -1. -1.  4.]]
    """

    name = "laplacian_2d"

    def __init__(self, scale: Scale = "none"):
        self.scale = scale

    def check_size(self, n: int) -> None:
        grid_side(self.name, n)
        _check_choice(self.name, "scale", self.scale, ("none", "h2", "max"))

    def build(self, n: int, seed: int) -> Operator:
        self.check_size(n)
        m = grid_side(self.name, n)
        A = _scaled(_laplacian_2d(m), self.scale, 1.0 / (m + 1))
        return Operator(self.name, A, symmetric=_is_symmetric(A), spd=True,
                        coords=_grid_coords_2d(m), params=self.get_params())


# --------------------------------------------------------------------------------------------
# Convection-diffusion
# --------------------------------------------------------------------------------------------
class ConvDiff1D(OperatorGenerator):
    """1D convection-diffusion −ε u'' + β u' on (0, 1), upwind convection; not symmetric.

    Row i of the stencil, with β⁺ = max(β, 0) and β⁻ = max(−β, 0)::

        −(ε/h² + β⁺/h) u_{i−1} + (2ε/h² + |β|/h) u_i − (ε/h² + β⁻/h) u_{i+1}

    ``boundary="eliminate"``: the n interior nodes, h = 1/(n+1), u(0) = u(1) = 0 eliminated.
    ``boundary="dirichlet_rows"`` (the Learn LU post): n nodes x_i = i·h including both ends,
    h = 1/(n−1), rows 0 and n−1 replaced by identity rows, then (``normalize``) A / max|A|.
    With ε = 0.1, β = 1, n = 256 that leaves the pivots A[0, 0] = A[n−1, n−1] =
    1/(2ε/h² + β/h) ≈ 7.5e-5, so LU without pivoting has L[1, 0] = −(ε/h² + β/h) ≈ −6.8e3.
    ``coords`` are the node indices.

    Parameters
    ----------
    eps : float
        Diffusion coefficient ε > 0.
    beta : float
        Convection velocity β (its sign picks the upwind side).
    boundary : str
        ``eliminate`` (interior nodes only) or ``dirichlet_rows`` (the post's identity rows).
    normalize : bool or None
        Divide by max|A_ij|; None: true for ``dirichlet_rows`` (as the post), false otherwise.

    Examples
    --------
    >>> print(ConvDiff1D(eps=0.1, beta=1.0).build(4, seed=0).matrix.toarray())
    [[10.  -2.5  0.   0. ]
     [-7.5 10.  -2.5  0. ]
     [ 0.  -7.5 10.  -2.5]
     [ 0.   0.  -7.5 10. ]]
    """

    name = "convdiff_1d"

    def __init__(self, eps: float = 0.1, beta: float = 1.0, boundary: Boundary = "eliminate",
                 normalize: bool | None = None):
        self.eps = eps
        self.beta = beta
        self.boundary = boundary
        self.normalize = normalize

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        """eps > 0 and beta finite, at load: a bad value is that parameter's error once, not
        one per size."""
        gen = cls(**params)
        _check_convection(cls.name, gen.eps, gen.beta)

    def check_size(self, n: int) -> None:
        super().check_size(n)
        _check_convection(self.name, self.eps, self.beta)
        _check_choice(self.name, "boundary", self.boundary, ("eliminate", "dirichlet_rows"))
        if self.boundary == "dirichlet_rows" and n < 3:
            raise InvalidParameter(f"{self.name} with boundary='dirichlet_rows' needs n >= 3 "
                                   f"(two boundary nodes and an interior one), got {n}")

    def build(self, n: int, seed: int) -> Operator:
        self.check_size(n)
        h = 1.0 / (n - 1) if self.boundary == "dirichlet_rows" else 1.0 / (n + 1)
        A = sp.csr_array(self.eps / h**2 * second_difference(n)
                         + upwind_difference(n, self.beta) / h)
        if self.boundary == "dirichlet_rows":
            A = _identity_rows(A, np.array([0, n - 1]))
        if _normalize_flag(self.normalize, self.boundary):
            A = _max_normalized(A)
        sym = _is_symmetric(A)
        return Operator(self.name, A, symmetric=sym, spd=sym and self.beta == 0 and
                        self.boundary == "eliminate", coords=_grid_coords_1d(n),
                        params=self.get_params())


class ConvDiff2D(OperatorGenerator):
    """2D convection-diffusion −εΔu + β ∂u/∂x on the unit square, upwind in x; not symmetric.

    On the m × m grid (n = m², lexicographic, x fastest):
    A = ε/h² (I_m ⊗ T_m + T_m ⊗ I_m) + (1/h) I_m ⊗ (β·D_m), with β·D_m the upwind first
    difference in x (diagonal |β|, −|β| on the upstream neighbour).
    ``boundary="eliminate"``: the m² interior nodes, h = 1/(m+1).
    ``boundary="dirichlet_rows"`` (the Learn LU post, 16 × 16 at n = 256): the m × m grid
    includes the boundary, h = 1/(m−1), the rows of the 4m − 4 boundary nodes are identity
    rows, then (``normalize``) A / max|A|. ``coords`` are (x-index, y-index).

    Parameters
    ----------
    eps : float
        Diffusion coefficient ε > 0.
    beta : float
        Convection velocity in x (its sign picks the upwind side).
    boundary : str
        ``eliminate`` (interior nodes only) or ``dirichlet_rows`` (the post's identity rows).
    normalize : bool or None
        Divide by max|A_ij|; None: true for ``dirichlet_rows`` (as the post), false otherwise.

    Examples
    --------
    >>> print(ConvDiff2D(eps=0.1, beta=1.0).build(4, seed=0).matrix.toarray().round(3))
    [[ 6.6 -0.9 -0.9  0. ]
     [-3.9  6.6  0.  -0.9]
     [-0.9  0.   6.6 -0.9]
     [ 0.  -0.9 -3.9  6.6]]
    """

    name = "convdiff_2d"

    def __init__(self, eps: float = 0.1, beta: float = 1.0, boundary: Boundary = "eliminate",
                 normalize: bool | None = None):
        self.eps = eps
        self.beta = beta
        self.boundary = boundary
        self.normalize = normalize

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        """eps > 0 and beta finite, at load: a bad value is that parameter's error once, not
        one per size."""
        gen = cls(**params)
        _check_convection(cls.name, gen.eps, gen.beta)

    def check_size(self, n: int) -> None:
        m = grid_side(self.name, n)
        _check_convection(self.name, self.eps, self.beta)
        _check_choice(self.name, "boundary", self.boundary, ("eliminate", "dirichlet_rows"))
        if self.boundary == "dirichlet_rows" and m < 3:
            raise InvalidParameter(f"{self.name} with boundary='dirichlet_rows' needs a grid "
                                   f"of at least 3 × 3 (n >= 9), got n = {n}")

    def build(self, n: int, seed: int) -> Operator:
        self.check_size(n)
        m = grid_side(self.name, n)
        h = 1.0 / (m - 1) if self.boundary == "dirichlet_rows" else 1.0 / (m + 1)
        convection = sp.kron(sp.eye_array(m), upwind_difference(m, self.beta))
        A = sp.csr_array(self.eps / h**2 * _laplacian_2d(m) + convection / h)
        if self.boundary == "dirichlet_rows":
            A = _identity_rows(A, _boundary_nodes_2d(m))
        if _normalize_flag(self.normalize, self.boundary):
            A = _max_normalized(A)
        sym = _is_symmetric(A)
        return Operator(self.name, A, symmetric=sym, spd=sym and self.beta == 0 and
                        self.boundary == "eliminate", coords=_grid_coords_2d(m),
                        params=self.get_params())


# --------------------------------------------------------------------------------------------
# Biharmonic
# --------------------------------------------------------------------------------------------
class Biharmonic1D(OperatorGenerator):
    """1D biharmonic d⁴u/dx⁴ as the squared second difference T² (unscaled).

    ``boundary="eliminate"``: A = T_n², the 5-point stencil (1, −4, 6, −4, 1) on the n
    interior nodes with u = u'' = 0 at both ends (first and last diagonal entries 5);
    symmetric positive definite. ``boundary="dirichlet_rows"``, our reading of the Learn LU
    post's "TᵀT-like with identity boundary rows": A = T_nᵀT_n on n nodes including both ends,
    rows 0 and n−1 replaced by identity rows, then (``normalize``) A / max|A| = A / 6; not
    symmetric (columns 0 and n−1 keep their coupling). ``coords`` are the node indices.

    Parameters
    ----------
    boundary : str
        ``eliminate`` (T², SPD) or ``dirichlet_rows`` (the post's identity rows).
    normalize : bool or None
        Divide by max|A_ij|; None: true for ``dirichlet_rows`` (as the post), false otherwise.

    Examples
    --------
    >>> print(Biharmonic1D().build(4, seed=0).matrix.toarray())
    [[ 5. -4.  1.  0.]
     [-4.  6. -4.  1.]
     [ 1. -4.  6. -4.]
     [ 0.  1. -4.  5.]]
    """

    name = "biharmonic_1d"

    def __init__(self, boundary: Boundary = "eliminate", normalize: bool | None = None):
        self.boundary = boundary
        self.normalize = normalize

    def check_size(self, n: int) -> None:
        super().check_size(n)
        _check_choice(self.name, "boundary", self.boundary, ("eliminate", "dirichlet_rows"))
        if self.boundary == "dirichlet_rows" and n < 3:
            raise InvalidParameter(f"{self.name} with boundary='dirichlet_rows' needs n >= 3, "
                                   f"got {n}")

    def build(self, n: int, seed: int) -> Operator:
        self.check_size(n)
        T = second_difference(n)
        A = sp.csr_array(T.T @ T)
        if self.boundary == "dirichlet_rows":
            A = _identity_rows(A, np.array([0, n - 1]))
        if _normalize_flag(self.normalize, self.boundary):
            A = _max_normalized(A)
        sym = _is_symmetric(A)
        return Operator(self.name, A, symmetric=sym,
                        spd=sym and self.boundary == "eliminate",
                        coords=_grid_coords_1d(n), params=self.get_params())


class Biharmonic2D(OperatorGenerator):
    """2D biharmonic Δ²u, 13-point stencil: A = L₂² + shift·I on a √n × √n grid.

    L₂ = I_m ⊗ T_m + T_m ⊗ I_m is the unscaled 5-point Laplacian on the m × m interior nodes
    (u = 0 on the boundary, lexicographic ordering, m = √n), so A's interior rows hold 20 on
    the diagonal, −8 for the 4 nearest neighbours, 2 for the 4 diagonal neighbours and 1 at
    distance 2 (13 points). The Learn LU post uses shift = 1e-6 and divides by max|A|
    (``normalize``). Symmetric positive definite for shift ≥ 0. ``coords`` are (x-index,
    y-index).

    Parameters
    ----------
    shift : float
        Added to the diagonal (≥ 0).
    normalize : bool
        Divide by max|A_ij| (the post does).

    Examples
    --------
    >>> print(Biharmonic2D(shift=0.0).build(4, seed=0).matrix.toarray())
    [[18. -8. -8.  2.]
     [-8. 18.  2. -8.]
     [-8.  2. 18. -8.]
     [ 2. -8. -8. 18.]]
    """

    name = "biharmonic_2d"

    def __init__(self, shift: float = 1e-6, normalize: bool = False):
        self.shift = shift
        self.normalize = normalize

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        """shift finite and ≥ 0, at load (once, not once per size)."""
        _check_shift(cls.name, cls(**params).shift)

    def check_size(self, n: int) -> None:
        grid_side(self.name, n)
        _check_shift(self.name, self.shift)

    def build(self, n: int, seed: int) -> Operator:
        self.check_size(n)
        m = grid_side(self.name, n)
        L2 = _laplacian_2d(m)
        A = sp.csr_array(L2 @ L2 + self.shift * sp.eye_array(n, format="csr"))
        if self.normalize:
            A = _max_normalized(A)
        return Operator(self.name, A, symmetric=_is_symmetric(A), spd=True,
                        coords=_grid_coords_2d(m), params=self.get_params())
