"""The limits of a case — ``timeout``, ``memory_limit``, ``form_limit`` and ``grade_limit``
— as a suite or the command line gives them, validated in one place, with the defaults that
apply when they are not given.

Values (parsed by :mod:`lubench.suite.values`, the one reader of times and sizes)
---------------------------------------------------------------------------
``timeout``       seconds: a positive finite number, or a string with units (``"90s"``,
                  ``"10m"``, ``"1h30m"``); ``"none"`` for no limit.
``memory_limit``  bytes: a number, or a size (``"4GiB"``, ``"512MB"``, ``"1e9"``), at least
                  one byte; ``"none"`` for no limit.
``form_limit``    bytes, as ``memory_limit``: the most a dense A formed for a method that
                  needs the matrix may take (an operator that is not formed is formed only
                  when 8·n² bytes fit, else that method's case is ``unsupported``).
``grade_limit``   seconds, as ``timeout``: what grading one case may spend; a metric whose
                  predicted cost exceeds what is left (plain GMRES, the spectral estimate
                  above ``exact_limit``) is not computed, and the row says so
                  (:func:`lubench.metrics.grading.grade`).

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
``form_limit``    :data:`FORM_SHARE` (a quarter) of the case's effective memory limit (the
                  method's own work needs the rest); no limit when there is no memory limit.
                  Held like the memory limit (None: the default, 0: ``none``) and resolved
                  by :func:`effective_form_limit`.
``grade_limit``   :data:`DEFAULT_GRADE_LIMIT` (10 minutes), set when the suite loads.
"""

from __future__ import annotations

from typing import Any

from lubench.errors import LubenchError
from lubench.suite.values import MIN_MEMORY, NO_LIMIT, parse_duration, parse_memory

__all__ = ["case_limit", "given_limit", "default_memory_limit", "default_limit",
           "effective_memory_limit", "effective_form_limit", "DEFAULT_TIMEOUT",
           "DEFAULT_GRADE_LIMIT", "DEFAULT_MEMORY_SHARE", "FORM_SHARE", "MIN_MEMORY",
           "NO_MEMORY_LIMIT", "LimitError", "LIMIT_KEYS"]

DEFAULT_TIMEOUT = 3600.0  # seconds
DEFAULT_GRADE_LIMIT = 600.0  # seconds of grading per case
DEFAULT_MEMORY_SHARE = 0.5  # of the machine's physical memory
NO_MEMORY_LIMIT = 0  # a case's memory_limit after an explicit "none" (None: the default)
FORM_SHARE = 0.25  # of the case's memory limit that a formed operator may take by default
LIMIT_KEYS = ("timeout", "memory_limit", "form_limit", "grade_limit")
DURATION_KEYS = ("timeout", "grade_limit")


class LimitError(LubenchError, ValueError):
    """A timeout or memory limit that cannot be used; the message names where it came from."""


def case_limit(key: str, value: Any, where: str) -> float | int | None:
    """The validated value of the limit ``key`` (:data:`LIMIT_KEYS`) given as ``value`` at
    ``where`` (a file and field, or an option): seconds (float) or bytes (int); an explicit
    ``none`` gives None for a duration and :data:`NO_MEMORY_LIMIT` for a memory size. Raises
    :class:`LimitError` with one line naming ``where``, the value and what is accepted. Call
    it only for a value that was given: an absent key takes
    :func:`default_limit`.
    """
    if key not in LIMIT_KEYS:
        raise ValueError(f"not a case limit: {key!r}")
    duration = key in DURATION_KEYS
    example = "600 or '10m'" if duration else "'4GiB'"
    if value is None or (isinstance(value, str) and not value.strip()):
        raise LimitError(f"{where}: empty; give a value such as {example}, or "
                         f"'{NO_LIMIT}' for no limit")
    try:
        parsed = parse_duration(value) if duration else parse_memory(value)
    except ValueError as exc:
        raise LimitError(f"{where}: {exc}") from None
    if parsed is None:  # "none", said explicitly
        return None if duration else NO_MEMORY_LIMIT
    return parsed


def default_limit(key: str) -> float | None:
    """The value a case holds for the limit ``key`` when the suite does not give one:
    :data:`DEFAULT_TIMEOUT`, :data:`DEFAULT_GRADE_LIMIT`; None for the memory sizes
    (resolved where the case runs)."""
    if key == "timeout":
        return DEFAULT_TIMEOUT
    if key == "grade_limit":
        return DEFAULT_GRADE_LIMIT
    if key in ("memory_limit", "form_limit"):
        return None
    raise ValueError(f"not a case limit: {key!r}")


def default_memory_limit() -> int:
    """:data:`DEFAULT_MEMORY_SHARE` of this machine's physical memory, bytes."""
    try:
        import psutil

        total = int(psutil.virtual_memory().total)
    except Exception:
        import os

        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(total * DEFAULT_MEMORY_SHARE)


def effective_form_limit(value: int | None, memory_limit: int | None) -> int | None:
    """The form limit that applies to a case, bytes (None: no limit), given the case's
    ``form_limit`` as held (None: the default, :data:`NO_MEMORY_LIMIT`: ``none``) and its
    effective memory limit: :data:`FORM_SHARE` of the memory limit by default."""
    if value is None:
        return int(FORM_SHARE * memory_limit) if memory_limit else None
    return int(value) if value > 0 else None


def effective_memory_limit(value: int | None) -> int | None:
    """The memory limit that applies to a case on this machine, bytes (None: no limit):
    the default for None, no limit for :data:`NO_MEMORY_LIMIT`, else ``value``."""
    if value is None:
        return default_memory_limit()
    return int(value) if value > 0 else None


def given_limit(key: str, value: Any, given: set[str]) -> Any:
    """A limit as a case holds it (this module): the default when the key is
    absent, else its value — an explicit ``none`` (parsed to None by the schema) being no
    timeout or grading limit, resp. :data:`NO_MEMORY_LIMIT` for a memory size."""
    if key not in given:
        return default_limit(key)
    if value is None and key in ("memory_limit", "form_limit"):  # the memory sizes
        return NO_MEMORY_LIMIT
    return value
