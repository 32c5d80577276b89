"""``lubench check-plugin``: resolve names (method, operator, plugin) and run their checks."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from lubench.api import (
    LubenchError,
    Method,
)
from lubench.errors import printable
from lubench.params import closest, validate_params
from lubench.registry.probe import Channel, contained, import_timeout
from lubench.suite.selection import parse_selector
from lubench.testing.results import CheckResult
from lubench.testing.run import method_checks, operator_checks, run_bound

CHECK_TIMEOUT = 600.0
"""Seconds one check may take at least (a check may run a whole case), before it is
killed as hung; ``LUBENCH_PLUGIN_IMPORT_TIMEOUT`` when that is longer."""


def contained_checks(target: str, checks: list[Callable[[], None]]) -> list[CheckResult]:
    """``run_bound`` in a contained child (:func:`lubench.registry.probe.contained`), so that a
    check whose plugin code segfaults, ends the process or hangs past
    :data:`CHECK_TIMEOUT` is that check's failure, and the checks after it still
    run (in a fresh child). Results come back one by one."""
    results: list[CheckResult] = []
    remaining = list(checks)
    while remaining:
        def call(channel: Channel, todo: list = remaining) -> None:
            for check in todo:
                channel.crumb(check.__name__)
                (result,) = run_bound(target, [check])
                channel.problem(json.dumps(result.as_dict()))

        outcome = contained(call, timeout=max(import_timeout(), CHECK_TIMEOUT))
        done = [CheckResult(**json.loads(text)) for text in outcome.problems]
        results.extend(done)
        remaining = remaining[len(done):]
        if outcome.ok or not remaining:
            break
        crashed = remaining.pop(0)
        results.append(CheckResult(target, crashed.__name__, "fail", "the check to run",
                                   printable(outcome.failure or "")))
    return results


def _parse_name(text: str) -> tuple[str, dict[str, Any]]:
    """``name`` or ``name[key=value,...]`` (:func:`lubench.suite.selection.parse_selector`), values
    read as YAML scalars, as in a suite."""
    name, params = parse_selector(text, option="check-plugin")
    return name, {key: yaml.safe_load(value) for key, value in params.items()}


def run_checks(registry: Any, names: Iterable[str],
               echo: Callable[[str], Any] = print) -> list[CheckResult]:
    """``lubench check-plugin``: check each named method, operator, or plugin (every class
    it adds), print a line per check, and return the failed checks (empty: all passed).

    A method or operator may carry parameters, ``textbook_lu[pivot_tol=0]``. A plugin that is
    broken, or adds nothing, is one failed check (``check_plugin_loads``). An unknown name, or
    a parameter the class does not take, is a :class:`~lubench.api.LubenchError`.
    """
    # (target, class or None for a plugin that adds nothing, parameters, plugin name)
    targets: list[tuple[str, type | None, dict, str]] = []
    for text in names:
        name, params = _parse_name(text)
        if name in registry.methods or name in registry.operators:
            kind = "method" if name in registry.methods else "operator"
            cls = registry.methods[name] if kind == "method" else registry.operators[name]
            valid = validate_params(cls, params, f"check-plugin {text!r}", Path.cwd())
            shown = f"{name}[{', '.join(f'{k}={v!r}' for k, v in valid.items())}]" \
                if valid else name
            targets.append((f"{kind} {shown}", cls, valid,
                            registry.provider.get((kind, name), "?")))
        elif name in registry.plugins and not params:
            info = registry.plugins[name]
            for op in info.operators:
                targets.append((f"operator {op}", registry.operators[op], {}, name))
            for me in info.methods:
                targets.append((f"method {me}", registry.methods[me], {}, name))
            if not (info.operators or info.methods):
                targets.append((f"plugin {name}", None, {}, name))
        else:
            known = [*registry.methods, *registry.operators, *registry.plugins]
            raise LubenchError(f"check-plugin: '{name}' is no method, operator or plugin"
                               f"{closest(name, known)} (see `lubench plugins`)")
    results: list[CheckResult] = []
    for target, cls, params, plugin in targets:
        info = registry.plugins.get(plugin)
        origin = f" — {info.origin}" if info is not None else ""
        echo(f"{target} (plugin {plugin}{origin})")
        if cls is None:
            status = info.status if info is not None else "missing"
            got = status if status != "ok" else "a plugin that adds nothing"
            res = [CheckResult(target, "check_plugin_loads", "fail",
                               "the plugin to load and add operators or methods", got)]
        elif issubclass(cls, Method):
            res = contained_checks(target, method_checks(cls, **params))
        else:
            res = contained_checks(target, operator_checks(cls, **params))
        for r in res:
            echo(r.line())
        results.extend(res)
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "skip")}
    echo(f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped")
    return [r for r in results if r.status == "fail"]
