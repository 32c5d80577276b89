"""Incomplete factorizations through ILU++ (``ilupp``): IC(0), ICT and ILU(0).

ILU++ (Mayer; Python bindings ``ilupp``) is what NeuralIF's baselines call, so the rows here
are the papers' IC(0) and ICT. It falls short in one place, which this module makes up for:
**it does not report a breakdown.** Incomplete Cholesky of an SPD matrix can meet a pivot
≤ 0 (Kershaw's 4 × 4 matrix does at the last step); ``ilupp.ichol0`` then returns NaN in
the factor and ``ilupp.icholt`` a zero diagonal entry, silently. Here every factor is
checked (finite, diagonal > 0), and a breakdown is handled as the method's ``on_breakdown``
says: ``shift`` factors A + α·diag(A) instead, α = 10⁻³, 2·10⁻³, 4·10⁻³, … until the factor
is sound (Manteuffel's shifted incomplete Cholesky, 1980; α is recorded in ``info``), or
``fail`` ends the case with the breakdown as a ``failed`` row.

ILU++ wants a ``scipy.sparse.csr_matrix`` with 32-bit indices; :func:`ilupp_matrix` makes
one (a copy: the operator's matrix is never touched).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from lubench.api import (
    FactorizationError,
    InvalidParameter,
    Method,
    Operator,
    RunContext,
    Unsupported,
)
from lubench.lazy import lazy_module
from lubench_preconditioners.triangular import CholeskyFactor, LUFactors, warm_up

sp = lazy_module("scipy.sparse")
ilupp = lazy_module("ilupp")

__all__ = ["IC0", "ICT", "ILU0", "ilupp_matrix", "SHIFT_START", "SHIFT_TRIES"]

SHIFT_START = 1e-3  # the first α of a shifted factorization
SHIFT_TRIES = 30    # α doubles at most this often (10⁻³·2²⁹ ≈ 5·10⁵: A + α·diag(A) is
                    # then diagonally dominant for any A a suite can hold)

OnBreakdown = Literal["shift", "fail"]


def ilupp_matrix(A: object) -> sp.csr_matrix:
    """A as ILU++ takes it: ``csr_matrix``, float64, int32 indices, sorted, a copy."""
    M = sp.csr_matrix(A, dtype=np.float64, copy=True)
    M.sum_duplicates()
    M.sort_indices()
    M.indices = M.indices.astype(np.int32)
    M.indptr = M.indptr.astype(np.int32)
    return M


def _breakdown(F: sp.spmatrix) -> str | None:
    """Why the factor is unusable (NaN/inf, a diagonal entry ≤ 0 or missing), or None."""
    F = sp.csr_array(F)
    if not np.all(np.isfinite(F.data)):
        return "NaN in the factor (a pivot ≤ 0)"
    d = F.diagonal()
    if not np.all(d > 0):
        i = int(np.flatnonzero(~(d > 0))[0])
        return f"pivot {d[i]:.3g} at row {i}"
    return None


def _check_on_breakdown(name: str, value: object) -> None:
    if value not in ("shift", "fail"):
        raise InvalidParameter(f"{name}: on_breakdown must be 'shift' or 'fail', got {value!r}")


def _shifted_cholesky(A: sp.csr_array, factor, on_breakdown: str,
                      name: str) -> tuple[sp.csr_matrix, float]:
    """(L, α): ``factor(A + α·diag(A))`` for the first α in 0, 10⁻³, 2·10⁻³, … that gives a
    sound L (see the module docstring)."""
    d = sp.diags_array(A.diagonal())
    alpha = 0.0
    for _ in range(SHIFT_TRIES + 1):
        L = factor(ilupp_matrix(A + alpha * d) if alpha else ilupp_matrix(A))
        why = _breakdown(L)
        if why is None:
            return L, alpha
        if on_breakdown == "fail":
            raise FactorizationError(f"{name} breaks down: {why} (on_breakdown: shift "
                                     f"factors A + α·diag(A) instead)")
        alpha = SHIFT_START if alpha == 0.0 else 2 * alpha
    raise FactorizationError(f"{name} breaks down even on A + {alpha / 2:.3g}·diag(A)")


class _SPDOnly(Method):
    """The checks shared by the incomplete Cholesky methods."""

    family = "classical"
    exact = False  # incomplete: L Lᵀ approximates A

    def check(self, op: Operator) -> None:
        if not op.symmetric or op.spd is False:
            what = "not symmetric" if not op.symmetric else "not SPD"
            raise Unsupported(f"{self.name} needs a symmetric positive definite operator "
                              f"({op.name} is {what})")
        if np.any(op.sparse().diagonal() <= 0):
            raise Unsupported(f"{self.name} needs a positive diagonal")

    def prepare(self, ctx: RunContext) -> None:
        import ilupp as _  # noqa: F401 - the import, outside setup_seconds

        warm_up()


class IC0(_SPDOnly):
    """Incomplete Cholesky with zero fill, IC(0): A ≈ L Lᵀ with L on A's lower pattern.

    L is the Cholesky recurrence restricted to the pattern of tril(A): every fill entry is
    dropped, so (L Lᵀ)_ij = A_ij wherever A_ij ≠ 0 (ILU++ ``ichol0``). Stores nnz(tril(A))
    numbers; ``solve`` is two sparse triangular substitutions, O(nnz(A)). The baseline of
    NeuralIF and of the papers after it.

    A pivot ≤ 0 can occur on an SPD matrix that is not an M-matrix; then ``on_breakdown``
    decides (module docstring): ``shift`` factors A + α·diag(A) with the first α in 10⁻³,
    2·10⁻³, … that works (``info["shift"]``), ``fail`` records the breakdown.

    Parameters
    ----------
    on_breakdown : str
        ``shift`` (Manteuffel's diagonal shift) or ``fail``.
    """

    name = "ic0"

    def __init__(self, on_breakdown: OnBreakdown = "shift"):
        self.on_breakdown = on_breakdown

    @classmethod
    def check_params(cls, params: dict) -> None:
        _check_on_breakdown(cls.name, params.get("on_breakdown", "shift"))

    def factorize(self, op: Operator, ctx: RunContext) -> CholeskyFactor:
        self.check_params(self.get_params())
        L, alpha = _shifted_cholesky(op.sparse(), ilupp.ichol0, self.on_breakdown, self.name)
        fact = CholeskyFactor(L)
        fact.info.update({"shift": alpha})
        return fact


class ICT(_SPDOnly):
    """Incomplete Cholesky with threshold dropping, ICT: A ≈ L Lᵀ with limited fill.

    Lin and Moré's limited-memory incomplete Cholesky (ILU++ ``icholt``): column j of L keeps
    its largest entries — as many as tril(A) has in column j plus ``fill`` more — after
    dropping those below ``threshold`` times the column's norm. ``fill = 0`` with
    ``threshold = 0`` keeps A's count per column (not its positions). Stores nnz(L). The
    defaults are PreCorrector's ICT baseline (fill 5, threshold 10⁻⁴).

    Parameters
    ----------
    fill : int
        Extra entries allowed per column of L beyond A's count, ≥ 0.
    threshold : float
        Relative drop tolerance in [0, 1).
    on_breakdown : str
        ``shift`` (Manteuffel's diagonal shift, see ``ic0``) or ``fail``.
    """

    name = "ict"

    def __init__(self, fill: int = 5, threshold: float = 1e-4,
                 on_breakdown: OnBreakdown = "shift"):
        self.fill = fill
        self.threshold = threshold
        self.on_breakdown = on_breakdown

    @classmethod
    def check_params(cls, params: dict) -> None:
        fill, thr = params.get("fill", 5), params.get("threshold", 1e-4)
        if isinstance(fill, bool) or not isinstance(fill, int) or fill < 0:
            raise InvalidParameter(f"ict: fill must be an integer >= 0, got {fill!r}")
        if isinstance(thr, bool) or not (isinstance(thr, (int, float)) and math.isfinite(thr)
                                         and 0 <= thr < 1):
            raise InvalidParameter(f"ict: threshold must lie in [0, 1), got {thr!r}")
        _check_on_breakdown(cls.name, params.get("on_breakdown", "shift"))

    def factorize(self, op: Operator, ctx: RunContext) -> CholeskyFactor:
        self.check_params(self.get_params())

        def factor(M: sp.csr_matrix) -> sp.csr_matrix:
            return ilupp.icholt(M, add_fill_in=int(self.fill), threshold=float(self.threshold))

        L, alpha = _shifted_cholesky(op.sparse(), factor, self.on_breakdown, self.name)
        fact = CholeskyFactor(L)
        fact.info.update({"shift": alpha})
        return fact


class ILU0(Method):
    """Incomplete LU with zero fill, ILU(0): A ≈ L U on A's pattern, L unit lower.

    The LU recurrence restricted to A's pattern, in the natural order, without pivoting
    (ILU++ ``ILU0Preconditioner``): (L U)_ij = A_ij wherever A_ij ≠ 0. For symmetric A,
    U = D Lᵀ with D = diag(U), so L U is symmetric and, when the pivots are positive, the
    same preconditioner as IC(0) (and graded by CG); for any other A it is a GMRES
    preconditioner, and CG reports it as not SPD. Stores nnz(A) numbers (L's unit diagonal
    is not stored). A zero or non-finite pivot is a breakdown (a ``failed`` row).
    """

    name = "ilu0"
    family = "classical"
    exact = False

    def check(self, op: Operator) -> None:
        if np.any(op.sparse().diagonal() == 0):
            raise Unsupported("ilu0 needs a nonzero diagonal (no pivoting)")

    def prepare(self, ctx: RunContext) -> None:
        import ilupp as _  # noqa: F401

        warm_up()

    def factorize(self, op: Operator, ctx: RunContext) -> LUFactors:
        L, U = ilupp.ILU0Preconditioner(ilupp_matrix(op.sparse())).factors()
        U = sp.csr_array(U)
        d = U.diagonal()
        if not (np.all(np.isfinite(U.data)) and np.all(np.isfinite(sp.csr_array(L).data))):
            raise FactorizationError("ilu0 breaks down: NaN or inf in the factors")
        if np.any(d == 0):
            raise FactorizationError(f"ilu0 breaks down: zero pivot at row "
                                     f"{int(np.flatnonzero(d == 0)[0])}")
        return LUFactors(L, U)
