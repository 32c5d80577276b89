"""The real matrices PyAMG ships (``pyamg.gallery.load_example``), as fixed-size operators."""

from __future__ import annotations

from typing import Literal

import numpy as np

from lubench.api import InvalidParameter, Operator, OperatorGenerator
from lubench.lazy import lazy_module

sp = lazy_module("scipy.sparse")
pyamg_gallery = lazy_module("pyamg.gallery")

__all__ = ["PyAMGExample", "EXAMPLES"]

#: name → n (the table of :class:`PyAMGExample` says what each is).
EXAMPLES: dict[str, int] = {"airfoil": 260, "bar": 600, "knot": 239,
                            "local_disc_galerkin_diffusion": 966, "recirc_flow": 225,
                            "unit_cube": 125, "unit_square": 191}
ExampleName = Literal["airfoil", "bar", "knot", "local_disc_galerkin_diffusion",
                      "recirc_flow", "unit_cube", "unit_square"]
SYMMETRIZE_BELOW = 1e-10  # relative asymmetry treated as round-off in the file


class PyAMGExample(OperatorGenerator):
    """A real matrix that PyAMG ships (its ``gallery.load_example``); a fixed size each.

    ============================== ===== ================================================
    name                           n     what
    ============================== ===== ================================================
    airfoil                        260   2D triangle mesh around an airfoil; SPD, κ₂ ≈ 75
    bar                            600   3D elasticity, hexahedra, 3 unknowns per node;
                                         SPD, κ₂ ≈ 3.4e4
    knot                           239   triangulated knotted surface in 3D; SPD, κ₂ ≈ 1e3
    local_disc_galerkin_diffusion  966   local DG diffusion in 2D; SPD, κ₂ ≈ 4.6e3
    recirc_flow                    225   recirculating flow, 2D quads; not symmetric
    unit_cube                      125   tetrahedral mesh of the unit cube; SPD, κ₂ ≈ 22
    unit_square                    191   triangle mesh of the unit square, row sums 0
                                         (Neumann): symmetric, singular, not SPD
    ============================== ===== ================================================

    (κ₂ from the dense eigenvalues, PyAMG 5.4.) Dirichlet unknowns are already eliminated in
    the files (PyAMG's README). A matrix that is symmetric up to round-off (relative
    asymmetry ≤ 10⁻¹⁰: local_disc_galerkin_diffusion) is replaced by (A + Aᵀ)/2;
    ``symmetric`` is then exact and ``spd`` is whether dense Cholesky succeeds. ``coords``
    are the mesh vertices of a scalar problem (``bar`` has three unknowns per vertex:
    None). PyAMG's complex ``helmholtz_2D`` is left out (lubench works in float64).

    Parameters
    ----------
    example : str
        Which matrix (the table above).
    """

    name = "pyamg_example"

    def __init__(self, example: ExampleName = "airfoil"):
        self.example = example

    @classmethod
    def check_params(cls, params: dict) -> None:
        name = params.get("example", "airfoil")
        if name not in EXAMPLES:
            raise InvalidParameter(f"{cls.name}: example must be one of "
                                   f"{', '.join(EXAMPLES)}, got {name!r}")

    def sizes(self) -> list[int]:
        self.check_params(self.get_params())
        return [EXAMPLES[self.example]]

    def check_size(self, n: int) -> None:
        (size,) = self.sizes()
        if n != size:
            raise InvalidParameter(f"{self.name}: {self.example} has n = {size}, got {n}")

    def build(self, n: int, seed: int) -> Operator:
        self.check_size(n)
        data = pyamg_gallery.load_example(self.example)
        A = sp.csr_array(data["A"], dtype=np.float64)
        A.sum_duplicates()
        asym = abs(A - A.T).max() / abs(A).max()
        if 0 < asym <= SYMMETRIZE_BELOW:
            A = sp.csr_array((A + A.T) * 0.5)
        A.sort_indices()
        symmetric = bool((A != A.T).nnz == 0)
        spd = False
        if symmetric:
            try:
                np.linalg.cholesky(A.toarray())
                spd = True
            except np.linalg.LinAlgError:
                spd = False
        B = np.asarray(data.get("B", np.ones((n, 1))))
        V = data.get("vertices")
        coords = None
        if V is not None and B.ndim == 2 and B.shape[1] == 1 and len(V) >= n:
            coords = np.asarray(V, dtype=np.float64)[:n]
        return Operator(self.name, A, symmetric=symmetric, spd=spd, coords=coords,
                        params=self.get_params())
