"""The HODLR LU's options and their ranges — light (no SciPy, no Numba): the ``hodlr_lu``
method checks a suite's values with it when the suite loads."""

from __future__ import annotations

import math
from typing import Any

from lubench.api import InvalidParameter

__all__ = ["COMPRESSIONS", "check_options"]

COMPRESSIONS = ("auto", "aca", "randomized")
"""How off-diagonal blocks are compressed: ``auto`` (a formed sparse A: exactly from its
pattern; entries: ACA; only the action: randomized), ``aca`` (needs entries), ``randomized``
(needs only the action, and Aᵀ's unless A is symmetric)."""


def check_options(tol: Any, leaf_size: Any, max_rank: Any, compression: Any,
                  owner: str = "hodlr_lu") -> None:
    """Raise :class:`~lubench.api.InvalidParameter` naming the first option out of range:
    0 < tol < 1, leaf_size ≥ 1, max_rank ≥ 1 (integers), compression in
    :data:`COMPRESSIONS`."""
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) \
            or not 0 < tol < 1:
        raise InvalidParameter(f"{owner}: tol must be a number with 0 < tol < 1, got {tol!r}")
    for name, value, low in (("leaf_size", leaf_size, 1), ("max_rank", max_rank, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidParameter(f"{owner}: {name} must be an integer ≥ {low}, "
                                   f"got {value!r}")
    if compression not in COMPRESSIONS:
        raise InvalidParameter(f"{owner}: compression must be one of "
                               f"{', '.join(COMPRESSIONS)}, got {compression!r}")
