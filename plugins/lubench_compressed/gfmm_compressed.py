"""``gfmm_compressed``: the LU factors of A placed into the GFMM pattern, far field compressed.

The construction (exact LU of the padded A, then truncated SVDs into the tree's nested
bases) is :mod:`lubench_structured.gfmm.compression`; for an operator that is not formed, or
whose dense LU does not fit, the factors come from a HODLR LU and are compressed from it
without forming anything dense (:mod:`lubench_structured.gfmm.from_hodlr`). The factors are
applied and solved through their graphs (:class:`lubench_structured.gfmm.GFMMFactorization`).
"""

from __future__ import annotations

import textwrap
from typing import Literal

from lubench_structured.gfmm import TOL, GFMMFactorization, compress_lu, derive_M

from lubench.api import InvalidParameter, Method, Operator, RunContext, Unsupported

__all__ = ["GfmmCompressed"]


class GfmmCompressed(Method):
    __doc__ = textwrap.dedent("""\
        GFMM-compressed LU: exact LU of A placed into the GFMM pattern, far field truncated.

        Classical and untrained: A (padded to N = M·P with an identity block) is factored,
        Ā[perm] = L·U (without row exchanges when that is safe, see ``pivoting``), and L
        and U are written as the GFMM graphs of ``gfmm_lu``: diagonal blocks and leaf band
        exact, the far field as an H² matrix whose nested bases are the tree's encoder and
        decoder edges and whose couplings are its bridges (truncated SVDs, leaves up; then
        the couplings root down). Exact to round-off when the factors' bandwidth is ≤ P.
        Solved (block substitution, compiled) and applied through the graphs, O(n·P) per column.
        n_params counts what the factors store at the ranks reached.

        Parameters
        ----------
        P : int
            Leaf size: the size of every block and edge (as ``gfmm_lu``'s).
        M : int or None
            Number of leaves, a power of two; None or 0: the smallest with M·P ≥ n.
        rank : int or None
            Most basis vectors per tree node (≤ P); None: P, what the GFMM edges hold.
        tol : float
            Singular values ≤ tol·‖L‖_F (resp. ‖U‖_F) of a node's far block row/column are
            dropped. The default 1e-16, the factor's round-off, changes no measured error
            and keeps exactly low-rank far fields at their rank; 0 keeps every nonzero one.
        pivoting : str
            ``auto``: no row exchanges when LU without them completes with growth
            ‖|L||U|‖_∞/‖A‖_∞ ≤ 1e4, partial pivoting otherwise; ``never``; ``partial``
            (the hierarchical LU applies the same rule to each leaf, and its pivots stay
            within a leaf).
        lu : str
            Where L and U come from. ``dense``: the exact LU of the formed Ā (O(N³) time,
            O(N²) memory). ``hodlr``: the hierarchical LU of Ā built without forming it
            (``hodlr_lu``'s, tolerance ``hodlr_tol``, leaves of P·2^t ≥ 64), compressed into
            the pattern from its low-rank blocks: O(N log² N), nothing dense. ``auto``: dense
            for a formed operator whose dense LU fits the memory limit, hodlr otherwise.
        hodlr_tol : float
            The hierarchical LU's relative tolerance per block (route ``hodlr``).
        """)

    name = "gfmm_compressed"
    family = "compressed"

    def __init__(self, P: int = 32, M: int | None = None, rank: int | None = None,
                 tol: float = TOL,
                 pivoting: Literal["auto", "never", "partial"] = "auto",
                 lu: Literal["auto", "dense", "hodlr"] = "auto", hodlr_tol: float = 1e-12):
        self.P = P
        self.M = M
        self.rank = rank
        self.tol = tol
        self.pivoting = pivoting
        self.lu = lu
        self.hodlr_tol = hodlr_tol

    @property
    def needs(self) -> str:  # type: ignore[override]
        """The formed matrix for ``lu: dense``; else only the action (entries where the
        operator has them), which the hierarchical LU reads."""
        return "matrix" if self.lu == "dense" else "action"

    @classmethod
    def check_params(cls, params: dict) -> None:
        """P ≥ 1, M a power of two (or 0/None), rank ≥ 0 (or None), tol ≥ 0, pivoting one of
        auto, never, partial, lu one of auto, dense, hodlr, 0 < hodlr_tol < 1 — checked when
        the suite loads, so that ``P: 0`` is an error of the suite file, not a failed case
        per operator."""
        cls(**params)._validate()

    def _validate(self) -> None:
        def refuse(param: str, rule: str, value: object) -> None:
            raise InvalidParameter(f"gfmm_compressed: {param} must be {rule}, got {value!r}",
                                   param=param)

        if int(self.P) < 1:
            refuse("P", "at least 1", self.P)
        if self.M not in (None, 0) and (int(self.M) < 1 or int(self.M) & (int(self.M) - 1)):
            refuse("M", "a power of two (or 0/None to derive it from n)", self.M)
        if self.rank is not None and int(self.rank) < 0:
            refuse("rank", "≥ 0 or None", self.rank)
        if not float(self.tol) >= 0:
            refuse("tol", "≥ 0", self.tol)
        if self.pivoting not in ("auto", "never", "partial"):
            refuse("pivoting", "auto, never or partial", self.pivoting)
        if self.lu not in ("auto", "dense", "hodlr"):
            refuse("lu", "auto, dense or hodlr", self.lu)
        if isinstance(self.hodlr_tol, bool) or not isinstance(self.hodlr_tol, (int, float)) \
                or not 0 < self.hodlr_tol < 1:
            refuse("hodlr_tol", "a number with 0 < hodlr_tol < 1", self.hodlr_tol)

    def shape_for(self, n: int) -> tuple[int, int]:
        """(M, P) used for size n."""
        P = int(self.P)
        return (int(self.M) if self.M else derive_M(n, P)), P

    def memory_estimate(self, op: Operator, route: str = "dense") -> float:
        """Bytes. ``dense``: a handful of dense N×N float64 arrays (Ā, L, U, the residual);
        ``hodlr``: the hierarchical LU at ranks 1 (it checks its ranks as they grow) and
        the GFMM arrays (about 7·N·P numbers per factor):
        :func:`lubench_structured.gfmm.from_hodlr.route_bytes`."""
        from lubench_structured.gfmm.from_hodlr import route_bytes

        M, P = self.shape_for(op.n)
        return route_bytes(op, M * P, P, route)

    def route(self, op: Operator, memory_limit: float | None) -> str:
        """``dense`` or ``hodlr`` for this operator (``lu``; ``auto``:
        :func:`lubench_structured.gfmm.from_hodlr.lu_route`)."""
        from lubench_structured.gfmm.from_hodlr import lu_route

        M, P = self.shape_for(op.n)
        return lu_route(op, M * P, memory_limit, self.lu)

    def check(self, op: Operator) -> None:
        self._validate()
        M, P = self.shape_for(op.n)
        if M * P < op.n:
            raise Unsupported(f"M·P = {M}·{P} = {M * P} is smaller than n = {op.n}; "
                              f"raise M or leave it unset")

    def prepare(self, ctx: RunContext) -> None:
        """Compile (or load from cache) the structured solve, outside ``setup_seconds``."""
        # Numba: imported only when a case runs
        from lubench_structured.gfmm.substitution import warm_up

        warm_up()
        if self.lu != "dense":       # the hierarchical route's compiled parts too
            from lubench_structured.hodlr.build import warm_up as warm_up_hodlr

            warm_up_hodlr()

    def factorize(self, op: Operator, ctx: RunContext) -> GFMMFactorization:
        self.check(op)
        M, P = self.shape_for(op.n)
        route = self.route(op, ctx.memory_limit)
        need = self.memory_estimate(op, route)
        if ctx.memory_limit is not None and need > ctx.memory_limit:
            what = "dense LU" if route == "dense" else "the hierarchical LU and the pattern"
            raise Unsupported(f"needs ~{need / 2**30:.2f} GiB for {what} at N = {M * P}, "
                              f"over the memory limit {ctx.memory_limit / 2**30:.2f} GiB")
        if route == "dense":
            perm, L, U, info = compress_lu(op.dense(), M, P, self.rank, float(self.tol),
                                           self.pivoting)
            info["lu"] = "dense"
        else:
            from lubench_structured.gfmm.from_hodlr import compress_operator

            perm, L, U, info = compress_operator(op, M, P, self.rank, float(self.tol),
                                                 hodlr_tol=float(self.hodlr_tol),
                                                 rng=ctx.rng(), memory_limit=ctx.memory_limit,
                                                 pivoting=self.pivoting)
        fact = GFMMFactorization(perm, L, U, op.n, info["n_params"])
        fact.info = {**info, "M": M, "P": P, "N": M * P, "padding": M * P - op.n,
                     "gfmm_numbers": L.n_numbers() + U.n_numbers()}
        return fact
