"""Values the suite format and the command line share: times, memory sizes, names.

Kept free of heavy imports: ``lubench.cli`` needs the names at import time, and
``lubench.suite.schema`` (pydantic) is only imported by the commands that read a suite.

A time is a number of seconds or a string with units: ``"90s"``, ``"10m"``, ``"1.5h"``,
``"1h30m"``, ``"2d"``. A memory size is a number of bytes or a string such as ``"512MB"``,
``"4GiB"`` (K/M/G/T powers of 1000, Ki/Mi/Gi/Ti powers of 1024). ``none`` (or None) says "no
limit"; 0, negative and NaN are errors.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["DEVICES", "EXECUTOR_KINDS", "NO_LIMIT", "MIN_MEMORY", "parse_duration",
           "parse_memory"]

DEVICES = ("auto", "cpu", "cuda")
EXECUTOR_KINDS = ("local", "inline", "slurm")
NO_LIMIT = "none"
MIN_MEMORY = 1  # bytes: below one byte a "limit" is a slip of the unit (0.5 meant 0.5GiB)


# --------------------------------------------------------------------------------------------
# Units
# --------------------------------------------------------------------------------------------
_TIME_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
               "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
               "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0,
               "d": 86400.0, "day": 86400.0, "days": 86400.0}
_TIME_PART = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*([a-zA-Z]*)\s*")
_MEMORY_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6,
                 "G": 10**9, "GB": 10**9, "T": 10**12, "TB": 10**12,
                 "Ki": 2**10, "KiB": 2**10, "Mi": 2**20, "MiB": 2**20,
                 "Gi": 2**30, "GiB": 2**30, "Ti": 2**40, "TiB": 2**40}
_MEMORY = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)\s*")


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() == NO_LIMIT)


def parse_duration(value: Any) -> float | None:
    """Seconds from ``90``, ``"90s"``, ``"10m"``, ``"1.5h"``, ``"1h30m"`` or ``"2d"``.

    ``None`` and ``"none"`` give None (no limit). Raises ValueError, saying what is accepted,
    for anything else and for values that are not positive and finite.
    """
    if _is_none(value):
        return None
    if isinstance(value, bool):
        raise ValueError(f"expected a time such as 600, '90s' or '10m', got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        parts = list(_TIME_PART.finditer(text))
        if not parts or "".join(p.group(0) for p in parts).strip() != text or any(
                p.group(2).lower() not in _TIME_UNITS for p in parts) or (
                len(parts) > 1 and any(not p.group(2) for p in parts)):
            raise ValueError(f"expected a time such as 600, '90s', '10m' or '1h30m' "
                             f"(or 'none'), got {value!r}")
        seconds = 0.0
        for p in parts:
            number = p.group(0).strip()[: len(p.group(0).strip()) - len(p.group(2))]
            seconds += float(number) * _TIME_UNITS[p.group(2).lower()]
    else:
        raise ValueError(f"expected a time such as 600, '90s' or '10m', got {value!r}")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"must be positive (say '{NO_LIMIT}' for no limit), got {value!r}")
    return seconds


def parse_memory(value: Any) -> int | None:
    """Bytes from ``4GiB``, ``512MB``, ``1e9`` or an int; ``None``/``"none"`` give None.

    Raises ValueError for an unreadable size and for less than one byte (a unit left out:
    ``0.5`` is half a byte, not half a GiB).
    """
    if _is_none(value):
        return None
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as '4GiB' or '512MB', got {value!r}")
    if isinstance(value, (int, float)):
        nbytes = float(value)
    elif isinstance(value, str):
        m = _MEMORY.fullmatch(value)
        unit = m.group(2) if m else None
        if unit is not None and unit not in _MEMORY_UNITS:
            unit = {u.lower(): u for u in _MEMORY_UNITS}.get(unit.lower(), unit)
        if not m or unit not in _MEMORY_UNITS:
            raise ValueError(f"expected a size such as '4GiB' or '512MB' (or 'none'), "
                             f"got {value!r}")
        nbytes = float(m.group(1)) * _MEMORY_UNITS[unit]
    else:
        raise ValueError(f"expected a size such as '4GiB' or '512MB', got {value!r}")
    if not math.isfinite(nbytes) or nbytes <= 0:
        raise ValueError(f"must be positive (say '{NO_LIMIT}' for no limit), got {value!r}")
    if nbytes >= 2 ** 63:
        raise ValueError(f"is more memory than any machine has (at most 8 EiB), got "
                         f"{value!r}")
    if nbytes < MIN_MEMORY:
        raise ValueError(f"is less than one byte, a unit left out? write e.g. '512MiB' or "
                         f"'4GiB' (or '{NO_LIMIT}' for no limit), got {value!r}")
    return int(nbytes)
