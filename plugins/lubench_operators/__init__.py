"""Built-in operator generators of lubench, registered like any third-party plugin.

PDE operators (``pde``), float64 CSR:

* ``laplacian_1d``   tridiag(−1, 2, −1), the Learn LU post's unscaled 1D Laplacian;
* ``laplacian_2d``   5-point Laplacian on a √n × √n grid;
* ``convdiff_1d``    −εu'' + βu', upwind; ``dirichlet_rows`` reproduces the post;
* ``convdiff_2d``    −εΔu + β∂u/∂x, upwind in x, on a √n × √n grid;
* ``biharmonic_1d``  T² (5-point), or the post's TᵀT with identity boundary rows;
* ``biharmonic_2d``  13-point (5-point Laplacian)² + shift·I.

Kernel matrices (``kernels``), never formed (entries on demand, a compiled one-pass action;
``kernel_action``):

* ``rbf_kernel``          exp(−‖x_i − x_j‖²/(2ℓ²)) + nugget·δ_ij on seeded random points;
* ``matern_kernel``       Matérn ν = 1/2, 3/2, 5/2 (+ nugget) on the same points;
* ``exponential_kernel``  ρ^|x_i − x_j| on the grid x_i = i (Kac–Murdock–Szegő) or on sorted
  random points; exact O(n) action.

Random families, a new instance per seed (``families``):

* ``random_spd``    A = M Mᵀ + α I, M sparse Gaussian (NeuralIF's synthetic family);
* ``diffusion_2d``  −∇·(k∇u), 5-point finite volumes, k log-normal (Gaussian random field).

From files (``files``):

* ``matrix_market``  a square .mtx file read with scipy.io.mmread.
"""

from __future__ import annotations

from lubench import hookimpl
from lubench_operators.families import Diffusion2D, RandomSPD
from lubench_operators.files import MatrixMarket
from lubench_operators.kernels import ExponentialKernel, MaternKernel, RBFKernel
from lubench_operators.pde import (
    Biharmonic1D,
    Biharmonic2D,
    ConvDiff1D,
    ConvDiff2D,
    Laplacian1D,
    Laplacian2D,
)

__all__ = [
    "Laplacian1D", "Laplacian2D", "ConvDiff1D", "ConvDiff2D", "Biharmonic1D", "Biharmonic2D",
    "RBFKernel", "MaternKernel", "ExponentialKernel", "RandomSPD", "Diffusion2D", "MatrixMarket",
    "OPERATORS",
    "lubench_operators",
]

OPERATORS = [Laplacian1D, Laplacian2D, ConvDiff1D, ConvDiff2D, Biharmonic1D, Biharmonic2D,
             RBFKernel, MaternKernel, ExponentialKernel, RandomSPD, Diffusion2D, MatrixMarket]


@hookimpl
def lubench_operators() -> list[type]:
    """The built-in operator generators."""
    return list(OPERATORS)
