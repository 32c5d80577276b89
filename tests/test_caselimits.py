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
    effective_form_limit,
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


def test_form_limit_is_a_memory_size_defaulting_to_a_quarter_of_the_memory_limit():
    assert case_limit("form_limit", "2GiB", "s.yaml: form_limit") == 2 * 2**30
    assert case_limit("form_limit", "none", "s.yaml: form_limit") == NO_MEMORY_LIMIT
    with pytest.raises(LimitError, match="s.yaml: form_limit: .*must be positive"):
        case_limit("form_limit", -1, "s.yaml: form_limit")
    assert default_limit("form_limit") is None
    assert effective_form_limit(None, 8 * 2**30) == 2 * 2**30   # FORM_SHARE of the memory
    assert effective_form_limit(None, None) is None             # no memory limit: none
    assert effective_form_limit(NO_MEMORY_LIMIT, 8 * 2**30) is None
    assert effective_form_limit(2**20, 8 * 2**30) == 2**20      # given: whatever the memory


def test_form_limit_precedence_method_over_operator_over_suite(toy_registry):
    from lubench.suite.load import build_suite

    suite = build_suite({
        "name": "f", "form_limit": "1GiB",
        "operators": [{"name": "toy_tridiag", "sizes": [8]},
                      {"name": "toy_tridiag", "sizes": [16], "form_limit": "2GiB"}],
        "methods": ["toy_lu", {"name": "toy_lu", "params": {"mode": "raise"},
                               "form_limit": "none"}],
    }, toy_registry)
    limits = {(c.n, c.method_params["mode"]): c.form_limit for c in suite.cases}
    assert limits == {(8, "ok"): 2**30, (16, "ok"): 2 * 2**30,
                      (8, "raise"): NO_MEMORY_LIMIT, (16, "raise"): NO_MEMORY_LIMIT}
    plain = build_suite({"name": "g", "operators": [{"name": "toy_tridiag", "sizes": [8]}],
                         "methods": ["toy_lu"]}, toy_registry)
    assert plain.cases[0].form_limit is None  # the default, resolved where the case runs
