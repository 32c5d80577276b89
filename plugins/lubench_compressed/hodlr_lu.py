"""``hodlr_lu``: a hierarchical (HODLR) LU built without forming A.

The classical hierarchical solver beside the GFMM methods: A's off-diagonal blocks on a
binary cluster tree over the operator's index order are compressed to a relative tolerance
— from entries by adaptive cross approximation, from a formed sparse A exactly, from the
action alone by randomized peeling — and factored by recursive block LU with low-rank
Schur-complement updates, A ≈ Π L U with L and U in HODLR form
(:mod:`lubench_structured.hodlr`). Factor O(n log² n), solve and product O(n log n) per
column, storage O(n log n), at bounded ranks.
"""

from __future__ import annotations

import textwrap
from typing import Any, Literal

import numpy as np
from lubench_structured.hodlr.options import check_options

from lubench.api import Factorization, Method, Operator, RunContext, Unsupported

__all__ = ["HodlrLU", "HodlrFactorization"]


class HodlrFactorization(Factorization):
    """A ≈ Π L U with L, U HODLR (:class:`lubench_structured.hodlr.HODLRLU`).

    ``apply`` is the product of the stored factors and ``solve`` the two hierarchical
    triangular solves, both O(n·(b + r·K)) per column (b the leaf size, r the ranks, K the
    depth); ``apply_transpose`` and ``solve_transpose`` the same with Âᵀ. ``n_params``: the
    numbers stored, the packed leaves (b² each) and both factors of every low-rank block.
    """

    expensive_apply = False

    def __init__(self, lu: Any):
        super().__init__()
        self.lu = lu
        self.n_params = int(lu.n_numbers())

    def solve(self, B: np.ndarray) -> np.ndarray:
        return self.lu.solve(B)

    def apply(self, X: np.ndarray) -> np.ndarray:
        return self.lu.apply(X)

    def solve_transpose(self, B: np.ndarray) -> np.ndarray:
        return self.lu.solve_transpose(B)

    def apply_transpose(self, X: np.ndarray) -> np.ndarray:
        return self.lu.apply_transpose(X)


class HodlrLU(Method):
    __doc__ = textwrap.dedent("""\
        Hierarchical (HODLR) LU built without forming A: off-diagonal blocks low rank.

        A binary cluster tree splits the operator's index order in halves down to leaves of
        at most ``leaf_size`` (lubench's operators are ordered hierarchically, so each node
        is a spatial cluster). Every off-diagonal block of the tree is compressed to the
        rank rule σ_j > tol·σ₀ (at most ``max_rank``) and A ≈ Π L U is factored by
        recursive block LU with low-rank Schur-complement updates, partial pivoting inside
        the leaves; L and U keep the HODLR form. Factor O(n log² n), solve and product
        O(n log n) per column, n_params O(n log n) at bounded ranks. Not exact: the error
        follows ``tol``. An operator whose Schur complement on a leaf is singular fails
        (pivots stay within a leaf).

        Parameters
        ----------
        tol : float
            Relative tolerance of every off-diagonal block (0 < tol < 1): singular values
            ≤ tol·‖block‖₂ are dropped (tol·‖A‖₂ with ``randomized``, whose samples carry
            the coarser levels' errors).
        leaf_size : int
            Most indices per leaf; leaves are dense (b² numbers each).
        max_rank : int
            Most singular vectors per block; where it cuts beyond ``tol`` the factorization
            says so in ``info["capped"]``.
        compression : str
            ``auto``: a formed sparse A exactly from its pattern, else ``aca`` where the
            operator has entries, else ``randomized``. ``aca``: adaptive cross
            approximation with partial pivoting on ``op.entries`` and QR+SVD recompression,
            O((m + n)·r) entries per block (needs entries: unsupported otherwise).
            ``randomized``: peeling from the action alone, O(r·log n) products with A and
            Aᵀ (Aᵀ's only for an operator that is not symmetric).
        """)

    name = "hodlr_lu"
    family = "compressed"

    def __init__(self, tol: float = 1e-10, leaf_size: int = 64, max_rank: int = 256,
                 compression: Literal["auto", "aca", "randomized"] = "auto"):
        self.tol = tol
        self.leaf_size = leaf_size
        self.max_rank = max_rank
        self.compression = compression

    @property
    def needs(self) -> str:  # type: ignore[override]
        """``entries`` for ``compression: aca``, else the action (``auto`` uses entries or
        the sparse matrix where the operator has them)."""
        return "entries" if self.compression == "aca" else "action"

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        """The options' ranges (:func:`~lubench_structured.hodlr.options.check_options`),
        any left out at the constructor's defaults."""
        cls(**params)._validate()

    def _validate(self) -> None:
        check_options(self.tol, self.leaf_size, self.max_rank, self.compression)

    def check(self, op: Operator) -> None:
        from lubench_structured.hodlr.build import resolve_compression

        self._validate()
        route = resolve_compression(op, self.compression)
        if route == "aca" and not op.has_entries:
            raise Unsupported(f"hodlr_lu: compression aca needs the entries of A; operator "
                              f"'{op.name}' gives only its action")
        if route == "randomized" and not op.symmetric and not _has_rmatmat(op):
            raise Unsupported(f"hodlr_lu: compression randomized needs the action of Aᵀ "
                              f"for a nonsymmetric operator; '{op.name}' gives none")

    def prepare(self, ctx: RunContext) -> None:
        """Compile (or load from Numba's cache) ACA's cross updates, the leaf LU and the
        compiled sweeps, outside ``setup_seconds``."""
        from lubench_structured.hodlr.build import warm_up

        warm_up()

    def memory_estimate(self, op: Operator) -> float:
        """Bytes the factorization needs at least (ranks 1): the leaves and one rank-1 block
        pair per node and level; the ranks reached add to it, checked as they grow."""
        from lubench_structured.hodlr.build import minimum_bytes, resolve_compression

        return minimum_bytes(op.n, int(self.leaf_size),
                             resolve_compression(op, self.compression))

    def factorize(self, op: Operator, ctx: RunContext) -> HodlrFactorization:
        from lubench_structured.hodlr.build import factor_operator

        self.check(op)
        need = self.memory_estimate(op)
        if ctx.memory_limit is not None and need > ctx.memory_limit:
            raise Unsupported(f"hodlr_lu: needs at least ~{need / 2**30:.2f} GiB at n = "
                              f"{op.n} (leaf_size {self.leaf_size}), over the memory limit "
                              f"{ctx.memory_limit / 2**30:.2f} GiB")
        lu = factor_operator(op, tol=float(self.tol), leaf_size=int(self.leaf_size),
                             max_rank=int(self.max_rank), compression=self.compression,
                             rng=ctx.rng(), memory_limit=ctx.memory_limit)
        fact = HodlrFactorization(lu)
        fact.info = dict(lu.info)
        return fact


def _has_rmatmat(op: Operator) -> bool:
    """Whether the operator gives Aᵀ·X: a formed one always, a matrix-free one when its
    class implements ``rmatmat``."""
    from lubench.api import MatrixFreeOperator

    return op.formed or type(op).rmatmat is not MatrixFreeOperator.rmatmat
