"""The limits of a case — ``timeout`` and ``memory_limit`` — as a suite or the command line
gives them, validated in one place, with the defaults that apply when they are not given.

Values
------
``timeout``       seconds: a positive finite number, or a string with a unit (``"90s"``,
                  ``"10m"``, ``"2h"``, ``"1d"``); ``"none"`` for no limit.
``memory_limit``  bytes: a number, or a size (``"4GiB"``, ``"512MB"``, ``"1e9"``), at least
                  one byte; ``"none"`` for no limit.

Zero, a negative number, NaN, infinity, a boolean or an empty value (YAML ``null``) is an
input error: "no limit" must be said with ``none``.

Defaults (a key that is absent)
-------------------------------
``timeout``       :data:`DEFAULT_TIMEOUT` (1 hour), set when the suite loads.
``memory_limit``  :func:`default_memory_limit`: half of the physical memory of the machine
                  *that runs the case* (a SLURM node, not the login node). A case therefore
                  holds ``memory_limit=None`` for "the default" and :data:`NO_MEMORY_LIMIT`
                  (0) for an explicit ``none``; :func:`effective_memory_limit` turns either
                  into what applies where it runs.
"""

from __future__ import annotations

import math
import re
from typing import Any

from lubench.errors import LubenchError

__all__ = ["case_limit", "parse_size", "parse_duration", "default_memory_limit",
           "default_limit", "effective_memory_limit", "DEFAULT_TIMEOUT", "DEFAULT_MEMORY_SHARE",
           "MIN_MEMORY", "NONE", "NO_MEMORY_LIMIT", "LimitError"]

DEFAULT_TIMEOUT = 3600.0  # seconds
DEFAULT_MEMORY_SHARE = 0.5  # of the machine's physical memory
MIN_MEMORY = 1  # byte: a fraction of a byte (``0.5``) would silently mean "no limit"
NONE = "none"
NO_MEMORY_LIMIT = 0  # a case's memory_limit after an explicit "none" (None: the default)

_SIZE_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6,
               "G": 10**9, "GB": 10**9, "T": 10**12, "TB": 10**12, "KI": 2**10,
               "KIB": 2**10, "MI": 2**20, "MIB": 2**20, "GI": 2**30, "GIB": 2**30,
               "TI": 2**40, "TIB": 2**40}
_TIME_UNITS = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


class LimitError(LubenchError, ValueError):
    """A timeout or memory limit that cannot be used; the message names where it came from."""


def parse_size(value: Any, where: str) -> float:
    """Bytes from ``4GiB``, ``512MB``, ``1e9`` or a number (not validated for range)."""
    if isinstance(value, bool):
        raise LimitError(f"{where}: expected a size such as '4GiB', got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    m = re.fullmatch(r"\s*([-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?|[-+]?nan|[-+]?inf)\s*([A-Za-z]*)\s*",
                     str(value))
    unit = m.group(2).upper() if m else ""
    if not m or unit not in _SIZE_UNITS:
        raise LimitError(f"{where}: expected a size such as '4GiB' or '512MB' (or 'none'), "
                         f"got {value!r}")
    try:
        return float(m.group(1)) * _SIZE_UNITS[unit]
    except ValueError:
        raise LimitError(f"{where}: cannot read size {value!r}") from None


def parse_duration(value: Any, where: str) -> float:
    """Seconds from a number or ``90s``, ``10m``, ``2h``, ``1d`` (not validated for range)."""
    if isinstance(value, bool):
        raise LimitError(f"{where}: expected seconds such as 600 or '10m', got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    m = re.fullmatch(r"\s*([-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?|[-+]?nan|[-+]?inf)\s*([a-z]*)\s*",
                     str(value).lower())
    if not m or m.group(2) not in _TIME_UNITS:
        raise LimitError(f"{where}: expected seconds such as 600 or '10m' (or 'none'), "
                         f"got {value!r}")
    try:
        return float(m.group(1)) * _TIME_UNITS[m.group(2)]
    except ValueError:
        raise LimitError(f"{where}: cannot read duration {value!r}") from None


def default_memory_limit() -> int:
    """:data:`DEFAULT_MEMORY_SHARE` of this machine's physical memory, bytes."""
    try:
        import psutil

        total = int(psutil.virtual_memory().total)
    except Exception:
        import os

        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(total * DEFAULT_MEMORY_SHARE)


def case_limit(key: str, value: Any, where: str) -> float | int | None:
    """The validated value of the limit ``key`` (``timeout`` or ``memory_limit``) given as
    ``value`` at ``where`` (a file and field, or an option): seconds (float) or bytes (int),
    None for an explicit ``none``. Raises :class:`LimitError` with one line naming ``where``,
    the value and what is accepted; for ``memory_limit``, ``none`` gives
    :data:`NO_MEMORY_LIMIT`. Call it only for a value that was given: an absent key takes
    :func:`default_limit`.
    """
    if key not in ("timeout", "memory_limit"):
        raise ValueError(f"not a case limit: {key!r}")
    if isinstance(value, str) and value.strip().lower() == NONE:
        return None if key == "timeout" else NO_MEMORY_LIMIT
    example = "600 or '10m'" if key == "timeout" else "'4GiB'"
    if value is None or (isinstance(value, str) and not value.strip()):
        raise LimitError(f"{where}: empty; give a value such as {example}, or 'none' for no "
                         f"limit")
    number = parse_duration(value, where) if key == "timeout" else parse_size(value, where)
    if math.isnan(number) or math.isinf(number) or number <= 0:
        what = "number of seconds" if key == "timeout" else "size"
        raise LimitError(f"{where}: must be a positive finite {what}, got {value!r}; write "
                         f"'none' for no limit")
    if key == "timeout":
        return number
    if number < MIN_MEMORY:
        raise LimitError(f"{where}: {value!r} is less than one byte (a size without a unit "
                         f"is in bytes); give a size such as '4GiB', or 'none'")
    return int(number)


def default_limit(key: str) -> float | None:
    """The value a case holds for the limit ``key`` when the suite does not give one:
    :data:`DEFAULT_TIMEOUT`; None for the memory (resolved where the case runs)."""
    if key == "timeout":
        return DEFAULT_TIMEOUT
    if key == "memory_limit":
        return None
    raise ValueError(f"not a case limit: {key!r}")


def effective_memory_limit(value: int | None) -> int | None:
    """The memory limit that applies to a case on this machine, bytes (None: no limit):
    the default for None, no limit for :data:`NO_MEMORY_LIMIT`, else ``value``."""
    if value is None:
        return default_memory_limit()
    return int(value) if value > 0 else None
