"""Random families of SPD operators: every seed builds another instance of the same family.

The learned-preconditioner papers train on many instances of one family and test on held-out
ones; these generators are such families (NumPy and SciPy only). The instance is a function
of the seed alone: the same seed builds the same matrix, bit for bit.

* ``random_spd``   A = M Mᵀ + α I with sparse Gaussian M: NeuralIF's synthetic family;
* ``diffusion_2d`` −∇·(k∇u) on the unit square, 5-point finite volumes, k log-normal from a
  Gaussian random field (PreCorrector's family).
"""

from __future__ import annotations

import math

import numpy as np

from lubench.api import InvalidParameter, Operator, OperatorGenerator
from lubench.lazy import lazy_module
from lubench_operators.pde import _grid_coords_2d, grid_side

sp = lazy_module("scipy.sparse")

__all__ = ["RandomSPD", "Diffusion2D", "gaussian_random_field", "NNZ_LIMIT"]

#: The most nonzeros (expected) a random_spd instance may have: about 2.4 GB in CSR.
NNZ_LIMIT = 200_000_000


def _number(name: str, param: str, value: object, low: float, high: float,
            open_low: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value) and (low < value if open_low else low <= value) and value <= high
    if not ok:
        span = f"({low:g}, {high:g}]" if open_low else f"[{low:g}, {high:g}]"
        raise InvalidParameter(f"{name}: {param} must lie in {span}, got {value!r}")
    return float(value)


class RandomSPD(OperatorGenerator):
    """NeuralIF's synthetic SPD family: A = M Mᵀ + α I, M sparse with N(0, 1) entries.

    M is n × n with ⌊density·n²⌋ positions drawn uniformly (with replacement; a position
    drawn twice is kept once) and independent standard normal values there; then
    A = M Mᵀ + α I, made exactly symmetric as (A + Aᵀ)/2. A is SPD (M Mᵀ is positive
    semidefinite, α > 0) and A_ij ≠ 0 when rows i and j of M share a column, so A's density
    is about 1 − exp(−n·density²): 1 % at NeuralIF's setting n = 10 000, density = 10⁻³,
    α = 10⁻³ (Häusner, Öktem, Sjölund, TMLR 2024, whose generator draws the same way). Its
    condition number grows with n; α bounds λ_min from below. No ordering structure:
    ``coords`` is None.

    Parameters
    ----------
    density : float
        Fraction of M's entries drawn, in (0, 1].
    alpha : float
        The shift α > 0 (at most 10⁶).

    Examples
    --------
    >>> A = RandomSPD(density=0.5, alpha=1.0).build(4, seed=0).matrix
    >>> bool((A != A.T).nnz == 0), bool(min(np.linalg.eigvalsh(A.toarray())) >= 1.0 - 1e-12)
    (True, True)
    """

    name = "random_spd"

    def __init__(self, density: float = 1e-3, alpha: float = 1e-3):
        self.density = density
        self.alpha = alpha

    @classmethod
    def check_params(cls, params: dict) -> None:
        _number(cls.name, "density", params.get("density", 1e-3), 0.0, 1.0, open_low=True)
        _number(cls.name, "alpha", params.get("alpha", 1e-3), 0.0, 1e6, open_low=True)

    def check_size(self, n: int) -> None:
        super().check_size(n)
        self.check_params(self.get_params())
        nnz = n + n * n * (1.0 - math.exp(-n * self.density ** 2))
        if nnz > NNZ_LIMIT:
            raise InvalidParameter(f"{self.name}: n = {n} with density {self.density:g} "
                                   f"gives about {nnz:.2g} nonzeros (at most {NNZ_LIMIT:.0e})")

    def build(self, n: int, seed: int) -> Operator:
        self.check_size(n)
        rng = np.random.default_rng(seed)
        draws = int(self.density * n * n)
        flat = np.unique(rng.integers(0, n, draws, dtype=np.int64) * n
                         + rng.integers(0, n, draws, dtype=np.int64))
        M = sp.csr_array((rng.standard_normal(flat.size), (flat // n, flat % n)),
                         shape=(n, n))
        A = sp.csr_array(M @ M.T + self.alpha * sp.eye_array(n, format="csr"))
        A = sp.csr_array((A + A.T) * 0.5)
        A.sort_indices()
        return Operator(self.name, A, symmetric=True, spd=True, coords=None,
                        params=self.get_params())


def gaussian_random_field(m: int, variance: float, correlation_length: float,
                          rng: np.random.Generator) -> np.ndarray:
    """A stationary Gaussian field g on the (m+2) × (m+2) nodes x_j = j·h, h = 1/(m+1), of
    the unit square: mean 0, covariance Cov(g(x), g(y)) = σ² exp(−‖x − y‖²/(2ℓ²)).

    By circulant embedding: the covariance on a periodic grid of P = m + 2 + max(m + 2,
    ⌈10ℓ/h⌉) nodes per side (period at least twice the square and 10ℓ longer than it, so the
    covariance has decayed to exp(−12.5) at half the period) is diagonalised by the 2D FFT;
    its eigenvalues, clipped at 0 where round-off makes them negative, scale complex white
    noise; the real part of the transform, restricted to the square, has the covariance above
    up to the clipped mass (measured below 10⁻⁸ of the total for every ℓ ≤ 0.5 and m ≤ 256).
    """
    N = m + 2
    h = 1.0 / (m + 1)
    P = N + max(N, math.ceil(10 * correlation_length / h))
    d = np.minimum(np.arange(P), P - np.arange(P)) * h
    cov = variance * np.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2 * correlation_length ** 2))
    lam = np.maximum(np.fft.fft2(cov).real, 0.0)
    noise = rng.standard_normal((P, P)) + 1j * rng.standard_normal((P, P))
    field = np.fft.fft2(np.sqrt(lam / (P * P)) * noise).real
    return field[:N, :N]


class Diffusion2D(OperatorGenerator):
    """2D diffusion −∇·(k∇u) = f on the unit square, u = 0 on the boundary, with a
    log-normal random coefficient k = exp(g), g a Gaussian random field.

    Grid: m × m interior nodes, m = √n, h = 1/(m+1), lexicographic ordering (unknown
    i·m + j at x = (j+1)h, y = (i+1)h; x fastest), as ``laplacian_2d``. g has mean 0 and
    covariance σ² exp(−r²/(2ℓ²)) (:func:`gaussian_random_field`), sampled at every node of
    the grid including the boundary. Finite volumes, the 5-point stencil times h²: for node
    P and each of its four neighbours Q (interior or boundary),

        A_PP = Σ_Q k_PQ,   A_PQ = −k_PQ (Q interior),   k_PQ = 2 k_P k_Q / (k_P + k_Q),

    the harmonic mean of k across the face. A is symmetric, an irreducibly diagonally
    dominant M-matrix, hence SPD; variance 0 gives k ≡ 1, ``laplacian_2d`` exactly. Its
    condition grows as h⁻² times the contrast of k. ``coords`` are (x-index j, y-index i).
    PreCorrector (Trifonov et al., 2024) trains on this family with variance 0.1 … 1.1 on
    grids 32 … 256.

    Parameters
    ----------
    variance : float
        σ², the variance of g = log k, in [0, 16].
    correlation_length : float
        ℓ, relative to the side of the square, in (0, 0.5].

    Examples
    --------
    >>> print(Diffusion2D(variance=0.0).build(4, seed=0).matrix.toarray())
    [[ 4. -1. -1.  0.]
     [-1.  4.  0. -1.]
     [-1.  0.  4. -1.]
     [ 0. -1. -1.  4.]]
    """

    name = "diffusion_2d"

    def __init__(self, variance: float = 1.0, correlation_length: float = 0.1):
        self.variance = variance
        self.correlation_length = correlation_length

    @classmethod
    def check_params(cls, params: dict) -> None:
        _number(cls.name, "variance", params.get("variance", 1.0), 0.0, 16.0)
        _number(cls.name, "correlation_length", params.get("correlation_length", 0.1),
                0.0, 0.5, open_low=True)

    def check_size(self, n: int) -> None:
        super().check_size(n)
        grid_side(self.name, n)
        self.check_params(self.get_params())

    def build(self, n: int, seed: int) -> Operator:
        self.check_size(n)
        m = grid_side(self.name, n)
        g = gaussian_random_field(m, float(self.variance), float(self.correlation_length),
                                  np.random.default_rng(seed))
        k = np.exp(g)  # (m+2) × (m+2), boundary nodes included

        def face(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return 2.0 * a * b / (a + b)

        kc = k[1:-1, 1:-1]
        west, east = face(kc, k[1:-1, :-2]), face(kc, k[1:-1, 2:])
        south, north = face(kc, k[:-2, 1:-1]), face(kc, k[2:, 1:-1])
        idx = np.arange(n).reshape(m, m)
        rows = [idx.ravel(), idx[:, 1:].ravel(), idx[:, :-1].ravel(),
                idx[1:, :].ravel(), idx[:-1, :].ravel()]
        cols = [idx.ravel(), idx[:, :-1].ravel(), idx[:, 1:].ravel(),
                idx[:-1, :].ravel(), idx[1:, :].ravel()]
        vals = [(west + east + south + north).ravel(), -west[:, 1:].ravel(),
                -east[:, :-1].ravel(), -south[1:, :].ravel(), -north[:-1, :].ravel()]
        A = sp.csr_array((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(n, n))
        A.sort_indices()
        return Operator(self.name, A, symmetric=bool((A != A.T).nnz == 0), spd=True,
                        coords=_grid_coords_2d(m), params=self.get_params())
