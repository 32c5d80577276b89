"""Selecting cases: ``-k "plu"``, ``-k "gfmm_lu[P=16]"``, ``-k "laplacian_*[n=256]"``.

:func:`parse_selector` is the one parser of ``NAME[key=value,...]`` in lubench: ``lubench run
-k`` selectors and ``lubench check-plugin`` names both go through it.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from lubench.errors import LubenchError
from lubench.rundir.records import jsonable
from lubench.suite.cases import Case

__all__ = ["parse_selector", "case_matches", "select_cases"]

_SELECTOR = re.compile(r"^\s*([^\[\]]+?)\s*(?:\[(.*)\])?\s*$")


def parse_selector(text: str, option: str = "-k") -> tuple[str, dict[str, str]]:
    """``name[k=v,k2=v2]`` → (name pattern, {k: v}), values as text; raises LubenchError
    naming ``option`` (``-k``, ``check-plugin``) when malformed. The one parser of
    ``NAME[key=value,...]`` (selectors of ``lubench run -k``, names of ``check-plugin``)."""
    m = _SELECTOR.match(text)
    if not m:
        raise LubenchError(f"{option} {text!r}: expected NAME or NAME[key=value,...]")
    constraints: dict[str, str] = {}
    if m.group(2):
        for part in m.group(2).split(","):
            if "=" not in part:
                raise LubenchError(f"{option} {text!r}: expected key=value inside [...], "
                                   f"got {part!r}")
            k, v = part.split("=", 1)
            constraints[k.strip()] = v.strip()
    return m.group(1), constraints


def value_matches(actual: Any, wanted: str) -> bool:
    """Whether a parameter's value matches a selector's ``wanted`` text: booleans by name,
    numbers by value (``P=32`` matches 32.0), anything else by glob on its JSON form."""
    if isinstance(actual, bool):
        return wanted.lower() == str(actual).lower()
    if isinstance(actual, (int, float)):
        try:
            return float(wanted) == float(actual)
        except ValueError:
            return False
    return fnmatch.fnmatchcase(str(jsonable(actual)), wanted)


def case_matches(case: Case, selector: str) -> bool:
    """True when the selector names the case's method or operator (globs allowed) and every
    ``key=value`` constraint holds on that side's parameters (``n`` and ``seed`` anywhere)."""
    pattern, constraints = parse_selector(selector)
    sides = [(case.method, case.method_params), (case.operator, case.operator_params)]
    for name, params in sides:
        if not (fnmatch.fnmatchcase(name, pattern) or pattern in ("*", "")):
            if pattern not in name:
                continue
        ok = True
        for key, wanted in constraints.items():
            if key == "n":
                actual: Any = case.n
            elif key in params:
                actual = params[key]
            else:
                ok = False
                break
            if not value_matches(actual, wanted):
                ok = False
                break
        if ok:
            return True
    return False


def select_cases(cases: list[Case], selectors: tuple[str, ...] | list[str]) -> list[Case]:
    """The cases matched by any of the selectors (all cases when there are none)."""
    if not selectors:
        return list(cases)
    for s in selectors:
        parse_selector(s)
    return [c for c in cases if any(case_matches(c, s) for s in selectors)]
