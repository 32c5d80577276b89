"""The HODLR LU of an operator, A never formed: pick the block source, factor.

:func:`factor_operator` is what the ``hodlr_lu`` method (``lubench_compressed``) calls and what
a GFMM build from hierarchical factors starts from.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from .lu import HODLRLU, factor
from .options import COMPRESSIONS
from .peeling import peel
from .sources import EntriesSource, SparseSource
from .tree import ClusterTree

__all__ = ["factor_operator", "padded", "resolve_compression", "minimum_bytes", "warm_up"]


def warm_up() -> None:
    """Compile (or load from Numba's cache, next to the sources) the compiled parts — ACA's
    cross updates, the leaf LU, the solve and product sweeps — on a tiny operator, so that
    neither lands in the first factorization's time (seconds when compiling)."""
    from lubench.api import Operator

    from . import _kernels

    _kernels.warm_up()
    A = np.exp(-np.abs(np.subtract.outer(np.arange(8.0), np.arange(8.0))))
    lu = factor_operator(Operator("warm-up", A, symmetric=True, spd=True), tol=1e-8,
                         leaf_size=2, max_rank=4)
    lu.solve(np.ones(8))


def resolve_compression(op: Any, compression: str) -> str:
    """The route a compression setting takes on ``op``: ``sparse`` (a formed sparse A: blocks
    read exactly from its pattern), ``aca`` (entries) or ``randomized`` (the action).

    ``auto``: sparse for a formed sparse A, aca where the operator has entries, randomized
    otherwise. ``aca`` and ``randomized`` are taken as asked.
    """
    if compression == "auto":
        if getattr(op, "is_sparse", False):
            return "sparse"
        return "aca" if op.has_entries else "randomized"
    return compression


def minimum_bytes(n: int, leaf_size: int, route: str) -> float:
    """Bytes the factorization needs at least, whatever the ranks: the leaves' packed LU
    (about n·leaf_size numbers), a rank-1 block pair per node of each level (4·n per
    level), and for the randomized route a second copy of the leaves and the sample block
    (n × (leaf_size + 16))."""
    tree = ClusterTree(n, leaf_size)
    b = int(np.diff(tree.leaf_bounds).max())
    numbers = n * b + 4.0 * n * tree.depth
    if route == "randomized":
        numbers += n * b + n * (b + 16)
    return 8.0 * numbers


def padded(op: Any, N: int) -> Any:
    """Ā = [[A, 0], [0, I]] of size N ≥ n, never formed (a formed sparse A stays sparse):
    the GFMM pattern pads A so, and its HODLR LU is that of Ā on the GFMM tree."""
    from lubench.api import MatrixFreeOperator, Operator

    n = op.n
    if N == n:
        return op
    if N < n:
        raise ValueError(f"cannot pad an operator of size {n} to {N}")
    if getattr(op, "is_sparse", False):
        import scipy.sparse as sp

        return Operator(op.name, sp.block_diag((op.matrix, sp.identity(N - n)), format="csr"),
                        symmetric=op.symmetric, spd=op.spd)

    class Padded(MatrixFreeOperator):
        has_entries = bool(op.has_entries)

        def entries(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
            rows, cols = np.asarray(rows, dtype=np.intp), np.asarray(cols, dtype=np.intp)
            out = (rows[:, None] == cols[None, :]).astype(np.float64)
            ri, ci = np.flatnonzero(rows < n), np.flatnonzero(cols < n)
            out[np.ix_(ri, ci)] = op.entries(rows[ri], cols[ci])
            return out

        def matmat(self, X: np.ndarray) -> np.ndarray:
            Y = np.array(X, dtype=np.float64)
            Y[:n] = op.matmat(Y[:n])
            return Y

        def rmatmat(self, X: np.ndarray) -> np.ndarray:
            Y = np.array(X, dtype=np.float64)
            Y[:n] = op.rmatmat(Y[:n])
            return Y

    return Padded(op.name, N, symmetric=op.symmetric, spd=op.spd)


def factor_operator(op: Any, *, tol: float, leaf_size: int, max_rank: int,
                    compression: str = "auto", rng: np.random.Generator | None = None,
                    memory_limit: float | None = None, pivoting: str = "auto") -> HODLRLU:
    """A ≈ Π L U in HODLR form (:mod:`.lu`), built from ``op`` without forming A.

    ``op`` follows lubench's operator contract (``n``, ``entries``, ``matmat``/``rmatmat``,
    ``has_entries``, ``is_sparse``/``matrix``, ``symmetric``), its index order hierarchical
    (nearby indices nearby points, as lubench's generators order them; any order works, but
    the ranks are only low for such an order). ``tol`` and ``max_rank``: the rank rule of
    every off-diagonal block (:mod:`.lowrank`; absolute, tol·‖A‖₂, for the randomized
    route, :mod:`.peeling`). ``memory_limit``: bytes the factors may take before
    :class:`~lubench.api.Unsupported`. ``pivoting``: within the leaves (:func:`.lu.factor`).
    The result's ``info`` says the route taken and what it read (entries, or products with
    A).
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    # One BLAS thread: the pass is a long sequence of small QRs, SVDs and products, which
    # threads only slow down — and on a shared machine by 20× (rbf dim 2, n = 16 384,
    # tol 1e-8: 4.2–6.8 s with one OpenBLAS thread, 99–164 s with two, side by side).
    with threadpool_limits(1):
        return _factor_operator(op, tol, leaf_size, max_rank, compression, rng, memory_limit,
                                pivoting)


def _factor_operator(op: Any, tol: float, leaf_size: int, max_rank: int, compression: str,
                     rng: np.random.Generator, memory_limit: float | None,
                     pivoting: str) -> HODLRLU:
    tree = ClusterTree(op.n, int(leaf_size))
    route = resolve_compression(op, compression)
    if route == "sparse":
        src: Any = SparseSource(op.matrix, tree, tol, max_rank)
    elif route == "aca":
        src = EntriesSource(op, tree, tol, max_rank, rng)
    elif route == "randomized":
        src, stats = peel(op, tree, tol, max_rank, rng)
        src.stats = stats  # type: ignore[attr-defined]
    else:
        raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}, "
                         f"got {compression!r}")
    lu = factor(src, tree, tol, max_rank, memory_limit, pivoting)
    lu.info["compression"] = route
    return lu
