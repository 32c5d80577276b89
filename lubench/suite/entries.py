"""Each entry of a suite against its plugin: the operator and method entries expanded into
their instances (parameter grid × sizes), every problem said — the part of loading a suite
that calls plugin code, run in one contained child.

The calls into plugin code — constructors, ``get_params``, ``check_params``, ``sizes``,
``check_size`` — are announced first (:class:`_Calls`); the contained child
(:func:`lubench.registry.probe.contained`) is killed when one crashes, ends the process or
hangs past ``LUBENCH_PLUGIN_IMPORT_TIMEOUT``, and the announcement names it. An exception
other than the plugin's refusal (``InvalidParameter``, ``ValueError``, ``TypeError``) is one
more problem naming the entry, the plugin, the class and the call.
"""

from __future__ import annotations

import itertools
import logging
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lubench.api import InvalidParameter, LubenchError, has_fit
from lubench.errors import one_line, shown
from lubench.params import coerce, param_specs, validate_params
from lubench.registry import Registry
from lubench.registry.probe import Channel, InlineChannel, contained
from lubench.suite.limits import given_limit
from lubench.suite.schema import MethodEntry, OperatorEntry, SuiteModel

__all__ = ["expand_entries", "OperatorInstance", "MethodInstance"]

log = logging.getLogger("lubench")

# (name, params with defaults, n, params the suite set, (instances, train), the entry's
#  limits, where)
OperatorInstance = tuple[str, dict, int, dict, tuple[int, int], dict, str]
# (name, params with defaults, family, budget/timeout/memory/resources, params the suite set,
#  trains across instances, where)
MethodInstance = tuple[str, dict, str, dict, dict, bool, str]


def _is_grid(value: Any, ann: Any) -> bool:
    """A list is a grid axis, except a flat list given for a list- or tuple-typed parameter."""
    if not isinstance(value, list):
        return False
    if typing.get_origin(ann) in (list, tuple) or ann in (list, tuple):
        return bool(value) and all(isinstance(v, (list, tuple)) for v in value)
    return True


class _PluginFailed(Exception):
    """A plugin call at load that raised something other than a refusal; its message is the
    problem line."""


class _Calls:
    """Calls into plugin code while a suite's entries expand (in the contained child,
    :func:`lubench.registry.probe.contained`): each is announced first — the parent names it
    if the process dies or hangs there, and its timeout starts again — and an exception other
    than the plugin's refusal (``InvalidParameter``, ``ValueError``, ``TypeError``, said as
    before) becomes one problem naming the entry, the plugin, the class and the call."""

    def __init__(self, registry: Registry, channel: Channel):
        self.registry = registry
        self.channel = channel

    def __call__(self, where: str, kind: str, cls: type, what: str,
                 fn: Callable[[], Any]) -> Any:
        plugin = self.registry.provider.get((kind, cls.name), "?")
        label = f"{where}: {kind} '{cls.name}' (plugin '{plugin}'): {what}"
        self.channel.crumb(label)
        try:
            return fn()
        except (InvalidParameter, ValueError, TypeError, OSError):
            raise
        except BaseException as exc:  # noqa: BLE001 - plugin code: whatever it raises
            raise _PluginFailed(f"{label} raised {one_line(exc)}") from None


def _grid(cls: type, kind: str, params: dict, where: str, base_dir: Path | None, check: bool,
          calls: _Calls) -> list[tuple[dict, dict]]:
    """Every combination of the grid axes in ``params``, validated against ``cls``: pairs of
    (all parameters with defaults filled in, the parameters the suite set). A combination
    that does not validate is left out and its problem said (``calls.channel.problem``);
    ``check`` runs the class's ``check_params`` (not for a plugin that cannot run here)."""
    problem = calls.channel.problem
    specs = param_specs(cls)
    axes: list[list[tuple[str, Any]]] = []
    for key, value in params.items():
        ann = specs[key].annotation if key in specs else None
        values = value if _is_grid(value, ann) else [value]
        if not values:
            problem(f"{where}.{key}: an empty list gives no cases")
            return []
        axes.append([(key, v) for v in values])
    out = []
    for combo in itertools.product(*axes):
        given = dict(combo)
        try:
            valid = validate_params(cls, given, where, base_dir)
            obj = calls(where, kind, cls, "constructor", lambda v=valid: cls(**v))
            full = calls(where, kind, cls, "get_params", obj.get_params)  # defaults filled in
        except InvalidParameter as exc:
            for line in getattr(exc, "problems", None) or [_at(where, exc)]:
                problem(line)
            continue
        except (ValueError, TypeError, OSError) as exc:
            problem(f"{where}: '{cls.name}' refuses {shown(given)}: {exc}")
            continue
        except _PluginFailed as exc:
            problem(str(exc))
            continue
        if check:
            try:
                calls(where, kind, cls, "check_params", lambda f=full: cls.check_params(f))
            except (InvalidParameter, ValueError, TypeError, OSError) as exc:
                problem(_at(where, exc))
                continue
            except _PluginFailed as exc:
                problem(str(exc))
                continue
        out.append((full, dict(valid)))
    return out


def _at(where: str, exc: BaseException) -> str:
    """``where.param: message`` for an InvalidParameter that names its parameter."""
    param = getattr(exc, "param", None)
    return f"{where}.{param}: {exc}" if param else f"{where}: {exc}"


def _sizes(entry: OperatorEntry, cls: type, gen: Any, where: str,
           calls: _Calls) -> list[int]:
    """The sizes of one operator entry that the generator accepts (problems for the others)."""
    problem = calls.channel.problem
    try:
        fixed = calls(where, "operator", cls, "sizes", gen.sizes)
    except (InvalidParameter, OSError, ValueError, TypeError) as exc:
        problem(_at(f"{where}.params", exc))
        return []
    except _PluginFailed as exc:
        problem(str(exc))
        return []
    sizes = entry.sizes
    if sizes is None:
        if fixed is None:
            problem(f"{where}: 'sizes' is required for operator '{cls.name}'")
            return []
        try:
            sizes = [coerce(n, int) for n in fixed]
        except (ValueError, TypeError):
            problem(f"{where}: operator '{cls.name}' gave no list of sizes: {shown(fixed)}")
            return []
    out = []
    for j, n in enumerate(sizes):
        if fixed is not None and n not in fixed:
            problem(f"{where}.sizes[{j}]: operator '{cls.name}' has fixed size "
                    f"{shown(fixed)}, got {n}")
            continue
        try:
            calls(f"{where}.sizes[{j}]", "operator", cls, f"check_size({n})",
                  lambda n=n: gen.check_size(n))
        except (InvalidParameter, ValueError, TypeError, OSError) as exc:
            msg = str(exc) if str(exc).startswith(cls.name) else f"{cls.name}: {exc}"
            problem(f"{where}.sizes[{j}]: {msg}")
            continue
        except _PluginFailed as exc:
            problem(str(exc))
            continue
        out.append(n)
    return out


def _operators(entries: list[OperatorEntry], registry: Registry, base_dir: Path,
               calls: _Calls) -> list[OperatorInstance]:
    """Every operator entry × its parameter grid × its sizes, each validated."""
    out: list[OperatorInstance] = []
    for i, entry in enumerate(entries):
        where = f"operators[{i}]"
        try:
            cls = registry.operator(entry.name)
        except LubenchError as exc:
            calls.channel.problem(f"{where}.name: {exc}")
            continue
        runnable = registry.unavailable("operator", cls.name) is None
        limits = {key: given_limit(key, getattr(entry, key), {key})
                  for key in ("form_limit", "grade_limit") if key in entry.model_fields_set}
        for params, given in _grid(cls, "operator", entry.params, f"{where}.params", base_dir,
                                   runnable, calls):
            try:
                gen = calls(where, "operator", cls, "constructor", lambda p=params, c=cls: c(**p))
            except (ValueError, TypeError, OSError, _PluginFailed) as exc:
                calls.channel.problem(str(exc) if isinstance(exc, _PluginFailed)
                                      else f"{where}.params: {exc}")
                continue
            for n in _sizes(entry, cls, gen, where, calls):
                out.append((cls.name, params, n, given, (entry.instances, entry.train),
                            limits, where))
    return out


def _methods(entries: list[MethodEntry], registry: Registry, base_dir: Path,
             settings: Any, calls: _Calls) -> list[MethodInstance]:
    """Every method entry × its parameter grid, with its budget, limits and resources.

    A method entry's ``timeout``, ``memory_limit`` and ``form_limit`` override the suite's
    (``none`` there lifts the limit for that method; its ``form_limit`` also the operator
    entry's); ``--timeout`` overrides both."""
    out: list[MethodInstance] = []
    for i, entry in enumerate(entries):
        where = f"methods[{i}]"
        try:
            cls = registry.method(entry.name)
        except LubenchError as exc:
            calls.channel.problem(f"{where}.name: {exc}")
            continue
        given = entry.model_fields_set
        overrides = {
            "budget": entry.budget.model_dump(),
            "timeout": settings.timeout if settings.timeout_forced or "timeout" not in given
            else given_limit("timeout", entry.timeout, given),
            "memory_limit": given_limit("memory_limit", entry.memory_limit, given)
            if "memory_limit" in given else settings.memory_limit,
            **({"form_limit": given_limit("form_limit", entry.form_limit, given)}
               if "form_limit" in given else {}),
            "resources": {**getattr(cls, "resources", {}),
                          **entry.resources.model_dump(exclude_unset=True)},
            "fit_budget": entry.fit_budget.model_dump(),
        }
        overrides["fit_timeout"] = overrides["timeout"] if settings.timeout_forced or \
            "fit_timeout" not in given else given_limit("fit_timeout", entry.fit_timeout, given)
        runnable = registry.unavailable("method", cls.name) is None
        for params, given_params in _grid(cls, "method", entry.params, f"{where}.params",
                                          base_dir, runnable, calls):
            out.append((cls.name, params, cls.family, overrides, given_params, has_fit(cls),
                        where))
    return out


def _entries(model: SuiteModel, registry: Registry, base_dir: Path, settings: Any,
             channel: Channel) -> tuple[list[OperatorInstance], list[MethodInstance]]:
    """The operator and method entries expanded — the part of loading that runs plugin
    code, run contained by :func:`build_suite`."""
    calls = _Calls(registry, channel)
    return (_operators(model.operators, registry, base_dir, calls),
            _methods(model.methods, registry, base_dir, settings, calls))


def expand_entries(model: SuiteModel, registry: Registry, base_dir: Path,
                       settings: Any, where0: str, problems: list[str]
                       ) -> tuple[list[OperatorInstance], list[MethodInstance]]:
    """:func:`_entries` in a contained child (:func:`lubench.registry.probe.contained`): a
    plugin call that crashes, ends the process or hangs past LUBENCH_PLUGIN_IMPORT_TIMEOUT
    is one more problem naming the entry, the plugin, the class and the call."""
    outcome = contained(lambda channel: _entries(model, registry, base_dir, settings, channel))
    problems.extend(outcome.problems)
    if outcome.unpicklable:  # a parameter value that cannot travel: expand here instead
        log.warning("lubench: warning: %s: the suite's entries were checked in lubench's own "
                    "process (%s)", where0, outcome.unpicklable)
        inline = InlineChannel()
        found = _entries(model, registry, base_dir, settings, inline)
        problems.extend(p for p in inline.problems if p not in problems)
        return found
    if not outcome.ok:
        where = outcome.crumb or "loading the suite's entries"
        problems.append(f"{where} {outcome.failure}")
        return [], []
    return outcome.value


