"""Checks shared by methods and operator generators: the name, the documented parameters,
a constructor that only stores them."""

from __future__ import annotations

import inspect
import re
from typing import Any

import numpy as np

from lubench.api import (
    FAMILIES,
    Method,
)
from lubench.errors import one_line
from lubench.params import param_specs
from lubench.testing.results import CheckFailed

_NAME_RE = re.compile(r"[A-Za-z][\w.-]*")


def check_name(cls: type, params: dict | None = None, *, cache: Any = None) -> None:
    """A ``name`` (letters, digits, ``_.-``), a one-line description, and (methods) a family."""
    name = cls.__dict__.get("name", getattr(cls, "name", ""))
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise CheckFailed("a class attribute 'name' of letters, digits, '_', '.' or '-' "
                          "(how suites refer to it)", f"name = {name!r}")
    if not cls.describe():
        raise CheckFailed("a class docstring whose first line describes it", "no docstring")
    if issubclass(cls, Method) and cls.family not in FAMILIES:
        raise CheckFailed(f"family one of {', '.join(FAMILIES)}", f"family = {cls.family!r}")


def check_params_documented(cls: type, params: dict | None = None, *, cache: Any = None) -> None:
    """Every constructor parameter is a keyword with a default, a type annotation, and an
    entry in the numpydoc ``Parameters`` section of the class docstring."""
    sig = inspect.signature(cls.__init__)
    varargs = [p.name for p in list(sig.parameters.values())[1:]
               if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if varargs and cls.__init__ is not object.__init__:  # no __init__: no parameters
        raise CheckFailed("explicit keyword parameters (they are what a suite may set)",
                          f"*{'/**'.join(varargs)} in __init__")
    problems = []
    for spec in param_specs(cls).values():
        missing = [what for what, bad in (
            ("default", spec.default is inspect.Parameter.empty),
            ("type annotation", spec.annotation is None),
            ("description under 'Parameters' in the class docstring", not spec.doc),
        ) if bad]
        if missing:
            problems.append(f"'{spec.name}' has no {' and no '.join(missing)}")
    if problems:
        raise CheckFailed("every parameter with a default, an annotation and a description",
                          "; ".join(problems))


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(np.all(a == b)) and type(a) is type(b)
    except Exception:
        return False


def check_init_stores_params(cls: type, params: dict | None = None, *,
                             cache: Any = None) -> None:
    """The constructor only stores each parameter under its own name (scikit-learn's rule)."""
    params = dict(params or {})
    try:
        obj = cls(**params)
    except Exception as exc:
        raise CheckFailed(f"{cls.__name__}(**{params!r}) to construct", one_line(exc)) from None
    specs = param_specs(cls)
    wrong = []
    for name, spec in specs.items():
        want = params.get(name, spec.default)
        if not hasattr(obj, name):
            wrong.append(f"no attribute '{name}'")
        elif not _same(getattr(obj, name), want):
            wrong.append(f"{name} = {getattr(obj, name)!r} (given {want!r})")
    if wrong:
        raise CheckFailed("each parameter stored unchanged under its own name",
                          "; ".join(wrong))
    try:
        got = obj.get_params()
    except Exception as exc:
        raise CheckFailed("get_params() to return the parameters", one_line(exc)) from None
    if set(got) != set(specs):
        raise CheckFailed(f"get_params() keys {sorted(specs)}", f"{sorted(got)}")


def check_params_accepted(cls: type, params: dict | None = None, *,
                          cache: Any = None) -> None:
    """``check_params`` takes the parameters the class is checked with (its defaults filled
    in) without raising: it runs whenever a suite names the class, so a ``check_params``
    that refuses its own defaults — or raises something else — makes every suite fail."""
    try:
        full = cls(**dict(params or {})).get_params()
    except Exception as exc:
        raise CheckFailed(f"{cls.__name__}(**{params!r}) to construct", one_line(exc)) from None
    try:
        cls.check_params(full)
    except Exception as exc:
        raise CheckFailed(f"check_params({full!r}) to accept them", one_line(exc)) from None
