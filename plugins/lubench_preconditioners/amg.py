"""Algebraic multigrid (PyAMG): one V-cycle as the preconditioner."""

from __future__ import annotations

from typing import Literal

import numpy as np

from lubench.api import Factorization, InvalidParameter, Method, Operator, RunContext
from lubench.lazy import lazy_module

sp = lazy_module("scipy.sparse")
pyamg = lazy_module("pyamg")

__all__ = ["AMG", "VCycle", "KINDS"]

KINDS = ("sa", "rs")


def _hierarchy(A: sp.csr_matrix, kind: str, symmetric: bool, seed: int):
    """PyAMG's multilevel solver for A with its default options (symmetric Gauss–Seidel or
    block Gauss–Seidel smoothing before and after, pseudo-inverse on the coarsest level).

    PyAMG estimates spectral radii (the prolongation smoother's weight) from a random start
    vector drawn from NumPy's global generator; it is seeded with ``seed`` for the setup and
    restored afterwards, so the same seed builds the same hierarchy and nothing else sees a
    change."""
    state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        if kind == "sa":
            return pyamg.smoothed_aggregation_solver(
                A, symmetry="hermitian" if symmetric else "nonsymmetric")
        return pyamg.ruge_stuben_solver(A)
    finally:
        np.random.set_state(state)


class VCycle(Factorization):
    """M⁻¹ = one multigrid V-cycle from x₀ = 0 — a preconditioner that gives only M⁻¹.

    There is no product of factors to compare with A (``apply`` is not implemented): the
    factor metrics are not measured, the solver metrics are. ``n_params`` counts what the
    hierarchy stores besides A itself: the coarse operators A_1 … A_L, the interpolations P_l
    and restrictions R_l, and the coarsest level's dense pseudo-inverse.

    PyAMG's hierarchy holds closures and does not pickle; the copy keeps A and the seed and
    rebuilds the same hierarchy on its first solve.
    """

    def __init__(self, A: sp.csr_matrix, kind: str, symmetric: bool, seed: int):
        super().__init__()
        self.A, self.kind, self.symmetric, self.seed = A, kind, symmetric, seed
        self._ml = _hierarchy(A, kind, symmetric, seed)
        levels = self._ml.levels
        stored = sum(int(lv.A.nnz) for lv in levels[1:])
        stored += sum(int(lv.P.nnz) + int(lv.R.nnz) for lv in levels[:-1])
        coarse = levels[-1].A.shape[0]
        self.n_params = int(stored + coarse * coarse)
        self.info.update({
            "levels": len(levels),
            "operator_complexity": float(self._ml.operator_complexity()),
            "grid_complexity": float(self._ml.grid_complexity()),
        })

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_ml"] = None
        return state

    def _cycle(self, b: np.ndarray) -> np.ndarray:
        if self._ml is None:
            self._ml = _hierarchy(self.A, self.kind, self.symmetric, self.seed)
        # one V-cycle from zero: maxiter=1; tol is never met by the initial residual b
        return self._ml.solve(b, x0=np.zeros_like(b), tol=1e-300, maxiter=1, cycle="V",
                              accel=None)

    def solve(self, B: np.ndarray) -> np.ndarray:
        B = np.asarray(B, dtype=np.float64)
        if B.ndim == 1:
            return self._cycle(B)
        return np.column_stack([self._cycle(B[:, j]) for j in range(B.shape[1])]) \
            if B.shape[1] else np.empty_like(B)


class AMG(Method):
    """Algebraic multigrid (PyAMG), one V-cycle as the preconditioner.

    ``kind: sa`` is smoothed aggregation (Vaněk, Mandel, Brezina): aggregates of strongly
    connected unknowns, a tentative piecewise-constant interpolation smoothed by one
    weighted-Jacobi step; ``rs`` is classical Ruge–Stüben coarsening with direct
    interpolation. Either way PyAMG's defaults: symmetric (block) Gauss–Seidel before and
    after the coarse correction — so the V-cycle is symmetric, and positive definite for
    SPD A, and preconditions CG —, down to at most 10 unknowns solved by a pseudo-inverse.
    Setup about O(nnz(A)), a V-cycle O(operator complexity · nnz(A)).

    It gives M⁻¹ only (no factors): its factor metrics are "not measured".

    Parameters
    ----------
    kind : str
        ``sa`` (smoothed aggregation) or ``rs`` (Ruge–Stüben).
    """

    name = "amg"
    family = "classical"
    exact = False

    def __init__(self, kind: Literal["sa", "rs"] = "sa"):
        self.kind = kind

    @classmethod
    def check_params(cls, params: dict) -> None:
        if params.get("kind", "sa") not in KINDS:
            raise InvalidParameter(f"amg: kind must be 'sa' or 'rs', got {params.get('kind')!r}")

    def prepare(self, ctx: RunContext) -> None:
        import pyamg as _  # noqa: F401 - the import, outside setup_seconds

    def factorize(self, op: Operator, ctx: RunContext) -> VCycle:
        self.check_params(self.get_params())
        A = sp.csr_matrix(op.sparse(), dtype=np.float64, copy=True)
        A.sum_duplicates()
        A.sort_indices()
        return VCycle(A, self.kind, bool(op.symmetric), ctx.seed)
