"""What a plugin must keep to be registered, checked when it is: its hook functions marked
and spelled right, its hooks returning lists of subclasses of the right base, each with a
``name`` no other plugin provides (and, for a method, a known ``family``).

A broken rule is either a reason (a string, or a ``TypeError`` raised here: the plugin is
recorded as ``broken: <reason>``) or, for a name provided twice, a :class:`PluginError`
naming both providers.
"""

from __future__ import annotations

import difflib
import inspect
import re
from typing import TYPE_CHECKING

from lubench import hookspecs
from lubench.api import FAMILIES, Method, OperatorGenerator
from lubench.errors import PluginError, one_line
from lubench.params import closest
from lubench.registry.info import DISABLE_VAR, PluginInfo

if TYPE_CHECKING:
    from lubench.registry.manager import Registry

__all__ = ["HOOKS", "KIND", "hook_problem", "validation_message", "check_classes"]

HOOKS = ("lubench_operators", "lubench_methods")
KIND = {"lubench_operators": "operator", "lubench_methods": "method"}
_BASE = {"lubench_operators": OperatorGenerator, "lubench_methods": Method}


def hook_problem(obj: object) -> str:
    """A hook function pluggy would silently ignore: not marked, or no hook at all ("" when
    there is none)."""
    marker = f"{hookspecs.PROJECT}_impl"
    functions = {n: getattr(obj, n, None) for n in dir(obj) if n.startswith("lubench_")}
    functions = {n: f for n, f in functions.items() if inspect.isroutine(f)}
    for hook in HOOKS:
        fn = functions.get(hook)
        if fn is not None and not hasattr(fn, marker):
            return (f"function {hook}() is not marked as a hook: decorate it with "
                    f"@lubench.hookimpl")
    if any(hasattr(f, marker) for f in functions.values()):
        return ""  # misspelled marked hooks are pluggy's check_pending's business
    near = [(n, difflib.get_close_matches(n, HOOKS, n=1, cutoff=0.8)) for n in functions]
    near = [(n, m[0]) for n, m in near if m]
    if near:
        return f"function {near[0][0]}() is not a lubench hook; did you mean {near[0][1]}()?"
    return f"implements no lubench hook ({', '.join(h + '()' for h in HOOKS)})"


def validation_message(exc: BaseException) -> str:
    """pluggy's refusal (``PluginValidationError``) in one line, with the closest hook name
    for an unknown one."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    m = re.search(r"unknown hook '(\w+)'", text)
    if m:
        return (f"unknown hook {m.group(1)}(){closest(m.group(1), HOOKS)} "
                f"(the hooks are {', '.join(HOOKS)})")
    return one_line(exc)


def check_classes(classes: list, hook: str, info: PluginInfo, reg: Registry) -> list[type]:
    """The classes one plugin's ``hook`` returned, checked against ``reg``, duplicates of one
    class dropped. ``TypeError`` for a class that is not a subclass of the hook's base, has
    no ``name`` or (a method) an unknown ``family``; :class:`PluginError` for a name given to
    two classes, by this plugin or by another."""
    kind, base = KIND[hook], _BASE[hook]
    table = reg.operators if kind == "operator" else reg.methods
    seen: dict[str, type] = {}
    for cls in classes:
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise TypeError(f"{hook}() returned {cls!r}, which is not a subclass of "
                            f"lubench.api.{base.__name__}")
        name = getattr(cls, "name", "")
        if not isinstance(name, str) or not name.strip():
            raise TypeError(f"{hook}() returned {cls.__name__}, which sets no 'name'")
        if kind == "method" and cls.family not in FAMILIES:
            raise TypeError(f"method '{name}' has family {cls.family!r}; expected one of "
                            f"{', '.join(FAMILIES)}")
        if name in seen:
            if seen[name] is cls:
                continue
            raise PluginError(f"plugin '{info.name}' ({info.origin}) adds two {kind}s "
                              f"named '{name}': {seen[name].__qualname__} and "
                              f"{cls.__qualname__}", plugin=info.name)
        if name in table:
            other = reg.provider.get((kind, name), "?")
            where = reg.plugins[other].origin if other in reg.plugins else "?"
            raise PluginError(
                f"{kind} name '{name}' is provided twice: by plugin '{other}' ({where}) "
                f"and by plugin '{info.name}' ({info.origin}); rename one, or skip one "
                f"with {DISABLE_VAR}={info.name}", plugin=info.name)
        seen[name] = cls
    return list(seen.values())
