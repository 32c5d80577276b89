"""What grading computes once per operator and shares: the cache protocol and the key.

Plain GMRES and plain CG depend on the operator alone; they are computed once per operator
and reused by every method's row, keyed on a digest of A's action (:func:`fingerprint`),
memoized in the process and, given a :class:`GradingCache` (the run directory's ``cache/``,
:class:`lubench.rundir.cache.FolderCache`), in an entry there that the freshly forked worker
of every later case reads.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

import numpy as np

from lubench.api import Operator

__all__ = ["GradingCache", "fingerprint", "key_vector", "KEY_SALT"]

KEY_SALT = 5  # the fixed vector of the key (not seeded by the operator)


class GradingCache(Protocol):
    """Where grading keeps, across processes, what it computes once per operator: entries of
    JSON values by (kind, key), best effort (:class:`lubench.rundir.cache.FolderCache`, the
    run directory's ``cache/``)."""

    def get(self, kind: str, key: str) -> dict | None: ...

    def put(self, kind: str, key: str, values: dict) -> None: ...


def key_vector(n: int) -> np.ndarray:
    """w, the fixed vector of the key (seeded by :data:`KEY_SALT` alone, not the operator)."""
    return np.random.default_rng([KEY_SALT]).standard_normal(n)


def fingerprint(op: Operator, b: np.ndarray, A_w: np.ndarray | None = None) -> str:
    """A digest of A's action, the key of what is computed once per operator: its shape,
    b (a product A·z or a vector drawn from the operator's seed) and A·w (w =
    :func:`key_vector`; given as ``A_w`` when the caller has it already, as grading's one
    35-column product does). Two matrices share a key only if their difference annihilates
    both vectors — with probability zero — and the key costs one or two products with A
    instead of hashing n² numbers."""
    if A_w is None:
        A_w = op.matmat(key_vector(op.n))
    h = hashlib.blake2b(digest_size=20)
    h.update(repr((op.n, op.n)).encode())
    h.update(np.ascontiguousarray(b, dtype=np.float64))
    h.update(np.ascontiguousarray(A_w, dtype=np.float64))
    return h.hexdigest()
