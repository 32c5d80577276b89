"""Suite files: reading, validation, and the expansion into cases.

A suite (YAML) says *what* to run::

    name: pde
    seed: 0
    operators:
      - name: laplacian_1d
        sizes: [256, 1024]
    methods:
      - name: plu
      - name: gfmm_lu
        params: {P: [16, 32]}          # a list is a grid axis
        budget: {max_steps: 2000}

Cases are the product of every operator entry × its parameter grid × its sizes with every
method entry × its parameter grid. Validation has two stages, each reporting every problem
it finds, with the file and the path, in one :class:`SuiteError`: the fixed part of the format
(:mod:`lubench.suite.schema`: keys, types, ranges, units), then each entry against its plugin (the
name, with the closest one suggested; the parameters' names and types; the class's
``check_params``; the sizes the operator can take).

The file is read once (:mod:`lubench.suite.yamlfile`). The second stage calls plugin code —
constructors, ``get_params``, ``check_params``, ``sizes``, ``check_size`` — so it runs in one
contained child (:func:`lubench.registry.probe.contained`), each call announced first: a
call that raises (other than the plugin's refusal), crashes, ends the process or hangs is one
more problem naming the entry, the plugin, the class and the call.
"""

from __future__ import annotations

import itertools
import logging
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lubench.api import InvalidParameter, LubenchError
from lubench.errors import SuiteError, one_line, shown
from lubench.params import coerce, param_specs, validate_params
from lubench.registry import Registry
from lubench.registry.probe import Channel, InlineChannel, contained
from lubench.suite.cases import Case, Suite, derive_seed, fmt_params, short_params
from lubench.suite.limits import NO_MEMORY_LIMIT, default_limit
from lubench.suite.report_spec import parse_spec
from lubench.suite.schema import (
    MethodEntry,
    OperatorEntry,
    SuiteModel,
    check_suite,
    name_problem,
    suite_error,
)
from lubench.suite.values import parse_duration
from lubench.suite.yamlfile import read_yaml

log = logging.getLogger("lubench")

__all__ = ["load_suite", "build_suite", "read_suite", "suite_plugins", "plugin_specs"]


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


def read_suite(path: str | Path) -> tuple[dict, str]:
    """``(mapping, text)`` of a suite file, read once (:mod:`lubench.suite.yamlfile`: a regular
    file or a pipe, UTF-8, no key twice in a mapping); :class:`SuiteError` otherwise."""
    data, text = read_yaml(path, "suite file")
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: a suite is a YAML mapping (name:, operators:, methods:, ...)"
                         f", got {type(data).__name__}")
    return data, text


def suite_plugins(path: Path, data: dict | None = None) -> list[str]:
    """The ``plugins:`` list of a suite file (of ``data``, its mapping, when already read),
    read before the registry is built."""
    if data is None:
        data, _ = read_suite(path)
    plugins = data.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise SuiteError(f"{path}: plugins: expected a list of module names or .py paths, "
                         f"got {shown(plugins)}")
    return plugins


def plugin_specs(path: Path, extra: tuple[str, ...] | list[str] = (),
                 data: dict | None = None) -> tuple[str, ...]:
    """The plugins a run of the suite file loads: ``extra`` (``--plugin``), then the suite's
    ``plugins:`` entries, ``.py`` paths made absolute from the suite file's folder."""
    base_dir = Path(path).resolve().parent
    return tuple(extra) + tuple(_resolve_spec(s, base_dir) for s in suite_plugins(path, data))


def _resolve_spec(spec: str, base_dir: Path) -> str:
    """A suite's ``plugins:`` entry: .py paths relative to the suite file, modules as they are."""
    if spec.endswith(".py") or "/" in spec:
        p = Path(spec).expanduser()
        return str(p if p.is_absolute() else (base_dir / p).resolve())
    return spec


def load_suite(path: str | Path, registry: Registry, device: str | None = None,
               timeout: float | str | None = None,
               source: tuple[dict, str] | None = None) -> Suite:
    """Read, validate and expand a suite file. Raises SuiteError naming the file and every
    problem with its path.

    ``device`` and ``timeout`` given on the command line override the suite's values
    (``timeout``: seconds, a time such as ``"10m"``, or ``"none"`` for no limit).
    ``source``: the ``(mapping, text)`` :func:`read_suite` already read (a pipe can be read
    only once).
    """
    path = Path(path)
    data, text = source if source is not None else read_suite(path)
    return build_suite(data, registry, path=path, text=text, device=device, timeout=timeout)


@dataclass
class _Settings:
    """The suite-wide settings (top-level keys), command-line overrides applied."""

    name: str
    seed: int
    repeats: int
    timeout: float | None
    timeout_forced: bool  # --timeout given: it wins over every method's own
    memory_limit: int | None
    exact_limit: int
    device: str
    plugins: list[str]
    executor: dict


# (name, params with defaults, n, params the suite set)
_OperatorInstance = tuple[str, dict, int, dict]
# (name, params with defaults, family, budget/timeout/memory/resources, params the suite set)
_MethodInstance = tuple[str, dict, str, dict, dict]


def _settings(model: SuiteModel, path: Path | None, device: str | None,
              timeout: float | str | None, problems: list[str]) -> _Settings:
    """The top-level values (already checked by the schema), command-line overrides applied."""
    name = model.name or (path.stem if path else "suite")
    if name_problem(name):
        problems.append(f"name: the file name {shown(name)} is no run name ({name_problem(name)}"
                        f"); set 'name:'")
    forced = timeout is not None
    if forced and not isinstance(timeout, (int, float)):
        timeout = parse_duration(timeout)
    given = model.model_fields_set
    return _Settings(
        name=name, seed=model.seed, repeats=model.repeats,
        timeout=timeout if forced else _given_limit("timeout", model.timeout, given),
        timeout_forced=forced,
        memory_limit=_given_limit("memory_limit", model.memory_limit, given),
        exact_limit=model.exact_limit,
        device=device or model.device, plugins=list(model.plugins),
        executor=model.executor.model_dump(exclude_unset=True))


def _given_limit(key: str, value: Any, given: set[str]) -> Any:
    """A limit as a case holds it (:mod:`lubench.suite.limits`): the default when the key is
    absent, else its value — an explicit ``none`` (parsed to None by the schema) being no
    timeout, resp. :data:`~lubench.suite.limits.NO_MEMORY_LIMIT`."""
    if key not in given:
        return default_limit(key)
    if value is None and key == "memory_limit":
        return NO_MEMORY_LIMIT
    return value


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
               calls: _Calls) -> list[_OperatorInstance]:
    """Every operator entry × its parameter grid × its sizes, each validated."""
    out: list[_OperatorInstance] = []
    for i, entry in enumerate(entries):
        where = f"operators[{i}]"
        try:
            cls = registry.operator(entry.name)
        except LubenchError as exc:
            calls.channel.problem(f"{where}.name: {exc}")
            continue
        runnable = registry.unavailable("operator", cls.name) is None
        for params, given in _grid(cls, "operator", entry.params, f"{where}.params", base_dir,
                                   runnable, calls):
            try:
                gen = calls(where, "operator", cls, "constructor", lambda p=params, c=cls: c(**p))
            except (ValueError, TypeError, OSError, _PluginFailed) as exc:
                calls.channel.problem(str(exc) if isinstance(exc, _PluginFailed)
                                      else f"{where}.params: {exc}")
                continue
            for n in _sizes(entry, cls, gen, where, calls):
                out.append((cls.name, params, n, given))
    return out


def _methods(entries: list[MethodEntry], registry: Registry, base_dir: Path,
             settings: _Settings, calls: _Calls) -> list[_MethodInstance]:
    """Every method entry × its parameter grid, with its budget, limits and resources.

    A method entry's ``timeout`` and ``memory_limit`` override the suite's (``none`` there
    lifts the limit for that method); ``--timeout`` overrides both."""
    out: list[_MethodInstance] = []
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
            else _given_limit("timeout", entry.timeout, given),
            "memory_limit": _given_limit("memory_limit", entry.memory_limit, given)
            if "memory_limit" in given else settings.memory_limit,
            "resources": {**getattr(cls, "resources", {}),
                          **entry.resources.model_dump(exclude_unset=True)},
        }
        runnable = registry.unavailable("method", cls.name) is None
        for params, given_params in _grid(cls, "method", entry.params, f"{where}.params",
                                          base_dir, runnable, calls):
            out.append((cls.name, params, cls.family, overrides, given_params))
    return out


def _entries(model: SuiteModel, registry: Registry, base_dir: Path, settings: _Settings,
             channel: Channel) -> tuple[list[_OperatorInstance], list[_MethodInstance]]:
    """The operator and method entries expanded — the part of loading that runs plugin
    code, run contained by :func:`build_suite`."""
    calls = _Calls(registry, channel)
    return (_operators(model.operators, registry, base_dir, calls),
            _methods(model.methods, registry, base_dir, settings, calls))


def _contained_entries(model: SuiteModel, registry: Registry, base_dir: Path,
                       settings: _Settings, where0: str, problems: list[str]
                       ) -> tuple[list[_OperatorInstance], list[_MethodInstance]]:
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


def _expand(settings: _Settings, operators: list[_OperatorInstance],
            methods: list[_MethodInstance]) -> list[Case]:
    """Every operator instance × every method instance, in order; a case listed twice once."""
    cases: list[Case] = []
    seen: set[str] = set()
    seed = settings.seed
    for (op, op_params, n, op_given), (me, me_params, family, ov, me_given) in \
            itertools.product(operators, methods):
        display = f"{op}{fmt_params(short_params(op_given))}[n={n}] × {me}{fmt_params(me_given)}"
        case = Case(
            suite=settings.name, operator=op, operator_params=op_params, n=n, method=me,
            method_params=me_params, family=family, suite_seed=seed,
            seed=derive_seed(seed, op, op_params, n, me, me_params),
            operator_seed=derive_seed(seed, op, op_params, n),
            repeats=settings.repeats, timeout=ov["timeout"], memory_limit=ov["memory_limit"],
            exact_limit=settings.exact_limit, device=settings.device, budget=ov["budget"],
            resources=ov["resources"], display=display)
        if case.case_id in seen:
            continue  # the same case listed twice runs once
        seen.add(case.case_id)
        cases.append(case)
    return cases


def _report_section(report: dict | None, problems: list[str]) -> None:
    """The ``report:`` section, checked against the report's own schema
    (:mod:`lubench.suite.report_spec`, read again by ``lubench report``)."""
    try:
        parse_spec(report, "report")
    except LubenchError as exc:
        problems.append(str(exc))


def build_suite(data: dict, registry: Registry, path: Path | None = None, text: str = "",
                device: str | None = None, timeout: float | str | None = None) -> Suite:
    """Validate a suite given as a dict (the parsed YAML) and expand it into cases:
    the fixed part (schema), the settings, the operators, the methods, then their product.
    Raises one :class:`SuiteError` listing every problem found."""
    where0 = str(path) if path else "<suite>"
    base_dir = path.resolve().parent if path else Path.cwd()
    model, problems = check_suite(data)
    if model is None:  # the report section too, so that every problem is said at once
        report = data.get("report") if isinstance(data, dict) else None
        if isinstance(report, dict):
            _report_section(report, problems)
        raise suite_error(where0, list(dict.fromkeys(problems)))
    settings = _settings(model, path, device, timeout, problems)
    _report_section(model.report, problems)
    operators, methods = _contained_entries(model, registry, base_dir, settings, where0,
                                            problems)
    if problems:
        raise suite_error(where0, list(dict.fromkeys(problems)))
    return Suite(path=path, name=settings.name, description=model.description,
                 seed=settings.seed, repeats=settings.repeats, timeout=settings.timeout,
                 memory_limit=settings.memory_limit, exact_limit=settings.exact_limit,
                 device=settings.device, plugins=settings.plugins, executor=settings.executor,
                 cases=_expand(settings, operators, methods), raw=data, text=text)
