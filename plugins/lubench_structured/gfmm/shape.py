"""The shape of a GFMM factor: M = 2^K leaves of P unknowns, A padded to N = M·P.

* ``is_power_of_two(M)``: the tree needs M = 2^K leaves;
* ``derive_M(n, P)``: the smallest such M with M·P ≥ n, what ``gfmm_lu`` and
  ``gfmm_compressed`` take when M is not given;
* ``pad_identity(A, N)``: Ā = [[A, 0], [0, I]], the padding both methods factor.
"""

from __future__ import annotations

import numpy as np

__all__ = ["is_power_of_two", "derive_M", "pad_identity"]


def is_power_of_two(m: int) -> bool:
    """Whether m = 2^K for some K ≥ 0."""
    return m >= 1 and (m & (m - 1)) == 0


def derive_M(n: int, P: int) -> int:
    """The smallest power of two M with M·P ≥ n (as ``gfmm_lu`` chooses it)."""
    M = 1
    while M * P < n:
        M *= 2
    return M


def pad_identity(A: np.ndarray, N: int) -> np.ndarray:
    """Ā = [[A, 0], [0, I]] of size N ≥ n (``gfmm_lu``'s padding)."""
    n = A.shape[0]
    if N == n:
        return np.array(A, dtype=np.float64, copy=True)
    out = np.zeros((N, N))
    out[:n, :n] = A
    out[np.arange(n, N), np.arange(n, N)] = 1.0
    return out

