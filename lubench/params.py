"""Plugin parameters: read from constructor signatures, documented by numpydoc, validated.

A plugin class declares its parameters as constructor keyword arguments with defaults and
type annotations; the class docstring's numpydoc ``Parameters`` section describes them::

    class Plu(Method):
        '''Dense LU with partial pivoting (LAPACK getrf): A = P L U.

        Parameters
        ----------
        check_finite : bool
            Let SciPy check the input for NaN and Inf.
        '''
        def __init__(self, check_finite: bool = True): ...

``validate_params`` turns suite values (YAML scalars) into the annotated types and refuses
unknown names (suggesting the closest) and values of the wrong type.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import math
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Literal, Union

from lubench.errors import InvalidParameter, shown

__all__ = ["ParamSpec", "param_specs", "validate_params", "coerce", "closest"]

_EMPTY = inspect.Parameter.empty


@dataclass(frozen=True)
class ParamSpec:
    """One constructor parameter: its name, default, annotation (as text) and description."""

    name: str
    default: Any
    annotation: Any
    doc: str

    @property
    def type_name(self) -> str:
        return _type_name(self.annotation)


def closest(name: str, choices: typing.Iterable[str]) -> str:
    """'; did you mean 'x'?' for the closest choice, or '' when nothing is close."""
    match = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.5)
    return f"; did you mean '{match[0]}'?" if match else ""


def _numpydoc_params(doc: str) -> dict[str, str]:
    """Map parameter name → first sentence(s) of its description in a numpydoc section."""
    lines = inspect.cleandoc(doc or "").splitlines()
    out: dict[str, str] = {}
    try:
        start = next(
            i for i, line in enumerate(lines)
            if line.strip() == "Parameters" and i + 1 < len(lines)
            and set(lines[i + 1].strip()) == {"-"}
        )
    except StopIteration:
        return out
    current: str | None = None
    for line in lines[start + 2:]:
        if not line.strip():
            continue
        if not line.startswith((" ", "\t")):
            if re.match(r"^[A-Za-z][\w ]*$", line.strip()) and current is not None and \
                    line.strip() in {"Returns", "Attributes", "Notes", "Examples",
                                     "References", "See Also", "Raises", "Class attributes"}:
                break
            m = re.match(r"^(\w+)\s*(?::.*)?$", line.strip())
            if m:
                current = m.group(1)
                out[current] = ""
                continue
            break
        elif current is not None:
            out[current] = (out[current] + " " + line.strip()).strip()
    return out


def param_specs(cls: type) -> dict[str, ParamSpec]:
    """The parameters of a plugin class, in signature order."""
    sig = inspect.signature(cls.__init__)
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # unresolvable forward references: fall back to raw annotations
        hints = {}
    docs = _numpydoc_params(cls.__doc__ or "")
    specs: dict[str, ParamSpec] = {}
    for p in list(sig.parameters.values())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        ann = hints.get(p.name, p.annotation)
        specs[p.name] = ParamSpec(p.name, p.default, None if ann is _EMPTY else ann,
                                  docs.get(p.name, ""))
    return specs


def _type_name(ann: Any) -> str:
    if ann is None:
        return "any"
    origin = typing.get_origin(ann)
    if origin is Literal:
        return "|".join(str(a) for a in typing.get_args(ann))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(ann))
    if origin in (list, tuple):
        args = typing.get_args(ann)
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in args if a is not ...)}]"
    if ann is type(None):
        return "None"
    return getattr(ann, "__name__", str(ann))


def coerce(value: Any, ann: Any, base_dir: Path | None = None) -> Any:
    """``value`` converted to annotation ``ann``, or ValueError saying what was expected.

    YAML writes ``1e-3`` as a string and ``[0.9, 0.999]`` as a list: both are accepted where
    the annotation asks for a float or a tuple. A ``pathlib.Path`` parameter given as a
    relative path is resolved against ``base_dir`` (the suite file's folder).
    """
    if ann is None or ann is Any:
        return value
    if ann is Path or ann is PurePath:
        if not isinstance(value, (str, PurePath)):
            raise ValueError(f"expected a file path, got {shown(value)}")
        path = Path(value).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return path
    origin = typing.get_origin(ann)
    if origin is Literal:
        choices = typing.get_args(ann)
        if value in choices:
            return value
        raise ValueError(f"expected one of {', '.join(map(repr, choices))}, got {shown(value)}")
    if origin in (Union, types.UnionType):
        args = typing.get_args(ann)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, base_dir)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(f"expected {_type_name(ann)}, got {shown(value)}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list ({_type_name(ann)}), got {shown(value)}")
        args = [a for a in typing.get_args(ann) if a is not ...]
        if origin is tuple and len(args) > 1 and ... not in typing.get_args(ann):
            if len(value) != len(args):
                raise ValueError(f"expected {len(args)} values ({_type_name(ann)}), "
                                 f"got {shown(value)}")
            return tuple(coerce(v, a, base_dir) for v, a in zip(value, args))
        item = args[0] if args else None
        return origin(coerce(v, item, base_dir) for v in value)
    if ann is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"expected true or false, got {shown(value)}")
    if ann is int:
        if isinstance(value, bool):
            raise ValueError(f"expected an integer, got {shown(value)}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                f = float(value)
            except ValueError:
                pass
            else:
                if f.is_integer():
                    return int(f)
        raise ValueError(f"expected an integer, got {shown(value)}")
    if ann is float:
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {shown(value)}")
        number = None
        if isinstance(value, (int, float)):
            number = float(value) if abs(value) < 2 ** 1024 else math.inf
        elif isinstance(value, str):
            with contextlib.suppress(ValueError):
                number = float(value)
        if number is None:
            raise ValueError(f"expected a number, got {shown(value)}")
        if not math.isfinite(number):  # no parameter means anything by NaN or infinity
            raise ValueError(f"expected a finite number, got {shown(value)}")
        return number
    if ann is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"expected a string, got {shown(value)}")
    if isinstance(ann, type):
        if isinstance(value, ann):
            return value
        raise ValueError(f"expected {ann.__name__}, got {shown(value)}")
    return value


def validate_params(cls: type, params: dict[str, Any] | None, where: str,
                    base_dir: Path | None = None) -> dict[str, Any]:
    """Suite values for ``cls``'s parameters, checked and converted.

    Raises :class:`InvalidParameter` naming ``where`` (e.g. ``suite.yaml: methods[2].params``),
    the parameter and what was expected — every bad parameter, one per line in its
    ``problems`` attribute. A float parameter must be finite: no parameter means anything by
    NaN or infinity.
    """
    specs = param_specs(cls)
    out: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in (params or {}).items():
        if key not in specs:
            known = ", ".join(specs) or "none"
            problems.append(f"{where}: '{cls.name}' takes no parameter {shown(key)}"
                            f"{closest(str(key), specs)} (it takes: {known})")
            continue
        try:
            out[key] = coerce(value, specs[key].annotation, base_dir)
        except ValueError as exc:
            problems.append(f"{where}.{key}: {exc}")
    if problems:
        error = InvalidParameter("; ".join(problems))
        error.problems = problems  # every one, for a suite's list of problems
        raise error
    return out
