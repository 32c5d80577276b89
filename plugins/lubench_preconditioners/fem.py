"""FEM Poisson on generated unstructured meshes (scikit-fem)."""

from __future__ import annotations

import math

import numpy as np

from lubench.api import InvalidParameter, Operator, OperatorGenerator
from lubench.lazy import lazy_module

sp = lazy_module("scipy.sparse")
csgraph = lazy_module("scipy.sparse.csgraph")
spatial = lazy_module("scipy.spatial")
skfem = lazy_module("skfem")

__all__ = ["FEMPoisson", "square_mesh"]

LLOYD_SAMPLES = 16  # uniform samples per generator in one Lloyd step


def square_mesh(n: int, lloyd_iterations: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """(points, triangles, b): a Delaunay mesh of the unit square with exactly n interior
    nodes. points[:b] are the boundary nodes — 4·⌈√n⌉ equispaced on the boundary, the
    corners included —, points[b:] the interior ones: n points drawn uniformly, then moved by
    ``lloyd_iterations`` Lloyd steps (each interior point to the centroid of the uniform
    samples nearest to it, the boundary nodes held fixed), which makes the spacing nearly
    uniform (about 1/√n) and the triangles well shaped. Zero-area triangles (collinear
    boundary nodes) are dropped."""
    side = max(1, math.ceil(math.sqrt(n)))
    s = np.arange(side) / side
    zeros, ones = np.zeros(side), np.ones(side)
    boundary = np.concatenate([np.column_stack([s, zeros]), np.column_stack([ones, s]),
                               np.column_stack([1 - s, ones]), np.column_stack([zeros, 1 - s])])
    b = boundary.shape[0]
    inner = rng.uniform(0.0, 1.0, (n, 2))
    for _ in range(lloyd_iterations):
        samples = rng.uniform(0.0, 1.0, (LLOYD_SAMPLES * n, 2))
        owner = spatial.cKDTree(np.vstack([boundary, inner])).query(samples)[1] - b
        mine = owner >= 0
        counts = np.bincount(owner[mine], minlength=n)
        sums = np.column_stack([np.bincount(owner[mine], weights=samples[mine, k], minlength=n)
                                for k in range(2)])
        moved = counts > 0
        inner[moved] = sums[moved] / counts[moved, None]
    points = np.vstack([boundary, inner])
    tri = spatial.Delaunay(points).simplices
    e1, e2 = points[tri[:, 1]] - points[tri[:, 0]], points[tri[:, 2]] - points[tri[:, 0]]
    area = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    return points, tri[area > 1e-12 / n], b


class FEMPoisson(OperatorGenerator):
    """Poisson −Δu = f on the unit square, P1 finite elements on a random unstructured mesh.

    Every seed generates another mesh (:func:`square_mesh`: n interior nodes from uniform
    draws relaxed by Lloyd steps, 4⌈√n⌉ boundary nodes, Delaunay triangles). scikit-fem
    assembles the stiffness matrix K_ij = ∫ ∇φ_i·∇φ_j of the piecewise-linear hat functions;
    the boundary values u = 0 are eliminated, so A is K restricted to the n interior nodes:
    symmetric positive definite (made exactly symmetric as (A + Aᵀ)/2), about 7 nonzeros per
    row, condition O(n) on a quasi-uniform mesh. Ordering: reverse Cuthill–McKee of A's graph
    (a mesh's node order is otherwise arbitrary; RCM gives incomplete factorizations the
    banded order a grid's lexicographic one gives them). ``coords`` are the nodes' (x, y).

    Parameters
    ----------
    lloyd_iterations : int
        Lloyd relaxation steps of the interior nodes, 0 … 50 (0: uniform random nodes and
        badly shaped triangles).
    """

    name = "fem_poisson"

    def __init__(self, lloyd_iterations: int = 5):
        self.lloyd_iterations = lloyd_iterations

    @classmethod
    def check_params(cls, params: dict) -> None:
        it = params.get("lloyd_iterations", 5)
        if isinstance(it, bool) or not isinstance(it, int) or not 0 <= it <= 50:
            raise InvalidParameter(f"{cls.name}: lloyd_iterations must be an integer in "
                                   f"[0, 50], got {it!r}")

    def check_size(self, n: int) -> None:
        super().check_size(n)
        self.check_params(self.get_params())

    def build(self, n: int, seed: int) -> Operator:
        self.check_size(n)
        points, tri, b = square_mesh(n, int(self.lloyd_iterations), np.random.default_rng(seed))
        mesh = skfem.MeshTri(np.ascontiguousarray(points.T), np.ascontiguousarray(tri.T))
        basis = skfem.Basis(mesh, skfem.ElementTriP1())
        from skfem.models.poisson import laplace

        K = sp.csr_array(laplace.assemble(basis))
        interior = basis.nodal_dofs[0][b:]  # the dofs of nodes b … b+n−1
        A = sp.csr_array(K[interior][:, interior])
        order = np.asarray(csgraph.reverse_cuthill_mckee(sp.csr_matrix(A), symmetric_mode=True))
        A = sp.csr_array(A[order][:, order])
        A = sp.csr_array((A + A.T) * 0.5)
        A.sort_indices()
        return Operator(self.name, A, symmetric=True, spd=True,
                        coords=points[b:][order].astype(np.float64), params=self.get_params())
