"""The cluster tree of a HODLR matrix: a complete binary tree on the index range [0, n).

The operators lubench builds are already ordered hierarchically (1D points sorted, points in
higher dimension ordered by recursive median bisection, ``lubench_operators.kernels.
hierarchical_order``), so the tree needs no geometry: node [lo, hi) splits at
mid = ⌊(lo + hi)/2⌋ into [lo, mid) and [mid, hi) — the split that ordering made, so that
every node is a spatial cluster. All leaves lie on level K, the smallest depth at which every
leaf holds at most ``leaf_size`` indices (leaf sizes then differ by at most one).

Nodes are numbered in heap order: the root is 0, node k has children 2k + 1 and 2k + 2, level
ℓ holds nodes 2^ℓ − 1 … 2^(ℓ+1) − 2 left to right, and leaf j is node 2^K − 1 + j.

Example
-------
>>> t = ClusterTree(10, leaf_size=3)
>>> t.depth, t.leaf_bounds.tolist()
(2, [0, 2, 5, 7, 10])
>>> t.range(2)
(5, 10)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["ClusterTree"]


@dataclass(frozen=True)
class ClusterTree:
    """Complete binary tree on [0, n) with leaves of at most ``leaf_size`` indices.

    Attributes
    ----------
    n : int
        Number of indices.
    leaf_size : int
        Most indices per leaf (≥ 1).
    depth : int
        K: the leaves' level (0 when n ≤ leaf_size: the root is the only leaf).
    bounds : list of numpy.ndarray
        ``bounds[ℓ]`` (2^ℓ + 1 integers): node i of level ℓ is [bounds[ℓ][i], bounds[ℓ][i+1]).
    """

    n: int
    leaf_size: int
    bounds: list = field(init=False, repr=False, compare=False)
    depth: int = field(init=False)

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"ClusterTree needs n ≥ 1, got {self.n}")
        if self.leaf_size < 1:
            raise ValueError(f"ClusterTree needs leaf_size ≥ 1, got {self.leaf_size}")
        bounds = [np.array([0, self.n], dtype=np.int64)]
        while int(np.diff(bounds[-1]).max()) > self.leaf_size:
            b = bounds[-1]
            nxt = np.empty(2 * len(b) - 1, dtype=np.int64)
            nxt[0::2] = b
            nxt[1::2] = (b[:-1] + b[1:]) // 2
            bounds.append(nxt)
        object.__setattr__(self, "bounds", bounds)
        object.__setattr__(self, "depth", len(bounds) - 1)

    @property
    def n_leaves(self) -> int:
        return 1 << self.depth

    @property
    def n_nodes(self) -> int:
        return (2 << self.depth) - 1

    @property
    def n_internal(self) -> int:
        """Nodes with children: 0 … 2^K − 2."""
        return (1 << self.depth) - 1

    @property
    def leaf_bounds(self) -> np.ndarray:
        """2^K + 1 integers: leaf j is [leaf_bounds[j], leaf_bounds[j+1])."""
        return self.bounds[-1]

    @staticmethod
    def level(k: int) -> int:
        """ℓ with 2^ℓ − 1 ≤ k < 2^(ℓ+1) − 1."""
        return (k + 1).bit_length() - 1

    def range(self, k: int) -> tuple[int, int]:
        """(lo, hi): node k holds the indices lo … hi − 1."""
        lev = self.level(k)
        i = k - ((1 << lev) - 1)
        b = self.bounds[lev]
        return int(b[i]), int(b[i + 1])

    def split(self, k: int) -> tuple[int, int, int]:
        """(lo, mid, hi) of internal node k: children [lo, mid) and [mid, hi)."""
        lo, hi = self.range(k)
        return lo, (lo + hi) // 2, hi

    def is_leaf(self, k: int) -> bool:
        return k >= self.n_internal
