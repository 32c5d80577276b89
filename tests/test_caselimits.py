"""Case limits: one validating function, explicit 'none', defaults."""

from __future__ import annotations

import math

import pytest

from lubench.suite.limits import (
    DEFAULT_TIMEOUT,
    NO_MEMORY_LIMIT,
    LimitError,
    case_limit,
    default_limit,
    default_memory_limit,
    effective_memory_limit,
)


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("timeout", 10, 10.0), ("timeout", 2.5, 2.5), ("timeout", "90s", 90.0),
    ("timeout", "10m", 600.0), ("timeout", "2h", 7200.0), ("timeout", "none", None),
    ("timeout", "None", None), ("memory_limit", "4GiB", 4 * 2**30),
    ("memory_limit", "512MB", 512 * 10**6), ("memory_limit", 1e9, 10**9),
    ("memory_limit", "none", 0),
])
def test_accepted_values(key, value, expected):
    assert case_limit(key, value, "s.yaml: timeout") == expected


@pytest.mark.parametrize(("key", "value", "words"), [
    ("timeout", 0, "must be positive"), ("timeout", -1, "must be positive"),
    ("timeout", math.nan, "must be positive"), ("timeout", math.inf, "must be positive"),
    ("timeout", ".nan", "expected a time"), ("timeout", None, "empty"),
    ("timeout", True, "expected a time"), ("timeout", "ten", "expected a time"),
    ("memory_limit", 0.5, "less than one byte"), ("memory_limit", -5, "must be positive"),
    ("memory_limit", 0, "must be positive"), ("memory_limit", "nan", "expected a size"),
    ("memory_limit", "4 parsecs", "expected a size"), ("memory_limit", "", "empty"),
])
def test_rejected_values_name_the_place_and_the_way_out(key, value, words):
    with pytest.raises(LimitError) as info:
        case_limit(key, value, "s.yaml: methods[0].timeout")
    message = str(info.value)
    assert message.startswith("s.yaml: methods[0].timeout: ") and words in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)  # usable from a pydantic validator


def test_defaults():
    assert default_limit("timeout") == DEFAULT_TIMEOUT == 3600.0
    import psutil

    assert default_limit("memory_limit") is None  # resolved where the case runs:
    assert effective_memory_limit(None) == default_memory_limit() == \
        int(psutil.virtual_memory().total * 0.5)
    assert effective_memory_limit(NO_MEMORY_LIMIT) is None
    assert effective_memory_limit(2**30) == 2**30
