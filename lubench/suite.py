"""Suite files: the schema, its validation, and the expansion into cases.

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
method entry × its parameter grid. An unknown key anywhere is an error naming the file and
the field; so is an unknown plugin name (with the closest one suggested), a parameter the
plugin does not take or of the wrong type, and a size the operator cannot take.
"""

from __future__ import annotations

import itertools
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lubench.api import InvalidParameter, LubenchError
from lubench.caselimits import (
    LimitError,
    case_limit,
    default_limit,
    parse_size,
)
from lubench.cases import Case, Suite, derive_seed, fmt_params, short_params
from lubench.params import closest, coerce, param_specs, validate_params
from lubench.plugins import Registry
from lubench.records import canonical_json
from lubench.selection import parse_selector, select_cases

__all__ = ["Suite", "Case", "SuiteError", "load_suite", "build_suite", "suite_plugins",
           "plugin_specs", "parse_memory", "parse_selector", "select_cases", "canonical_json"]

TOP_KEYS = {
    "name": "names the run directory",
    "description": "free text",
    "seed": "every case's seed derives from this and the case identity",
    "repeats": "timed repeats of each case",
    "timeout": "hard limit per case: seconds, '10m', or 'none' (default 1 h)",
    "memory_limit": "memory limit per case, e.g. '4GiB', or 'none' (default: half the RAM)",
    "exact_limit": "up to this n, errors are exact (else probe estimates)",
    "device": "auto | cpu | cuda",
    "plugins": "extra plugin modules or .py files (relative to the suite file)",
    "executor": "how cases run: {kind: local|inline|slurm, jobs, slurm_* options}",
    "operators": "operator entries",
    "methods": "method entries",
    "report": "what `lubench report` writes (lubench/report/spec.py: columns, methods, ...)",
}
OPERATOR_KEYS = {"name", "sizes", "params"}
METHOD_KEYS = {"name", "params", "budget", "timeout", "memory_limit", "resources"}
BUDGET_KEYS = {"max_steps", "max_seconds", "target_loss"}
EXECUTOR_KEYS = {
    "kind", "jobs", "slurm_partition", "slurm_time", "slurm_gpus_per_task",
    "slurm_cpus_per_task", "slurm_mem_gb", "slurm_array_parallelism", "slurm_account",
    "slurm_qos", "slurm_constraint", "slurm_additional_parameters", "folder",
}
DEVICES = ("auto", "cpu", "cuda")


class SuiteError(LubenchError):
    """A suite file that cannot be used; the message names the file and the field."""


def parse_memory(value: Any, where: str) -> int | None:
    """Bytes from ``4GiB``, ``512MB``, ``1e9`` or an int; None stays None (no range check:
    a case's ``memory_limit`` goes through :func:`lubench.caselimits.case_limit`)."""
    return None if value is None else int(parse_size(value, where))


def _limit(d: dict, key: str, where: str, inherited: Any) -> Any:
    """The limit ``key`` (timeout, memory_limit) of mapping ``d``, validated, else
    ``inherited``."""
    if key not in d:
        return inherited
    try:
        return case_limit(key, d[key], where)
    except LimitError as exc:
        raise SuiteError(str(exc)) from None


# --------------------------------------------------------------------------------------------
def _err(where: str, message: str) -> SuiteError:
    return SuiteError(f"{where}: {message}")


def _check_keys(d: Any, allowed: set[str] | dict, where: str) -> dict:
    if not isinstance(d, dict):
        raise _err(where, f"expected a mapping, got {type(d).__name__} {d!r}")
    for key in d:
        if key not in allowed:
            raise _err(where, f"unknown key '{key}'{closest(str(key), allowed)} "
                              f"(allowed: {', '.join(sorted(allowed))})")
    return d


def _scalar(d: dict, key: str, kind: type, where: str, default: Any) -> Any:
    if key not in d or d[key] is None:
        return default
    try:
        return coerce(d[key], kind)
    except ValueError as exc:
        raise _err(f"{where}.{key}", str(exc)) from None


def _is_grid(value: Any, ann: Any) -> bool:
    """A list is a grid axis, except a flat list given for a list- or tuple-typed parameter."""
    if not isinstance(value, list):
        return False
    if typing.get_origin(ann) in (list, tuple) or ann in (list, tuple):
        return bool(value) and all(isinstance(v, (list, tuple)) for v in value)
    return True


def _grid(cls: type, params: Any, where: str,
          base_dir: Path | None) -> list[tuple[dict, dict]]:
    """Every combination of the grid axes in ``params``, validated against ``cls``: pairs of
    (all parameters with defaults filled in, the parameters the suite set)."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise _err(where, f"expected a mapping of parameter values, got {params!r}")
    specs = param_specs(cls)
    axes: list[list[tuple[str, Any]]] = []
    for key, value in params.items():
        ann = specs[key].annotation if key in specs else None
        values = value if _is_grid(value, ann) else [value]
        if not values:
            raise _err(f"{where}.{key}", "an empty list gives no cases")
        axes.append([(key, v) for v in values])
    out = []
    for combo in itertools.product(*axes):
        given = dict(combo)
        try:
            valid = validate_params(cls, given, where, base_dir)
        except InvalidParameter as exc:
            raise SuiteError(str(exc)) from None
        try:
            full = cls(**valid).get_params()  # defaults filled in: the row says everything
        except (InvalidParameter, ValueError, TypeError) as exc:
            raise _err(where, f"'{cls.name}' refuses {given}: {exc}") from None
        out.append((full, {k: v for k, v in valid.items()}))
    return out


def _read_yaml(path: Path) -> tuple[dict, str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SuiteError(f"{path}: suite file not found") from None
    except OSError as exc:
        raise SuiteError(f"{path}: cannot read the suite file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SuiteError(f"{path}: malformed YAML{at}: {problem}") from None
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: a suite is a YAML mapping (name:, operators:, methods:, ...)"
                         f", got {type(data).__name__}")
    return data, text


def suite_plugins(path: Path) -> list[str]:
    """The ``plugins:`` list of a suite file, read before the registry is built."""
    data, _ = _read_yaml(path)
    plugins = data.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise SuiteError(f"{path}: plugins: expected a list of module names or .py paths, "
                         f"got {plugins!r}")
    return plugins


def plugin_specs(path: Path, extra: tuple[str, ...] | list[str] = ()) -> tuple[str, ...]:
    """The plugins a run of the suite file loads: ``extra`` (``--plugin``), then the suite's
    ``plugins:`` entries, ``.py`` paths made absolute from the suite file's folder."""
    base_dir = Path(path).resolve().parent
    return tuple(extra) + tuple(_resolve_spec(s, base_dir) for s in suite_plugins(path))


def _resolve_spec(spec: str, base_dir: Path) -> str:
    """A suite's ``plugins:`` entry: .py paths relative to the suite file, modules as they are."""
    if spec.endswith(".py") or "/" in spec:
        p = Path(spec).expanduser()
        return str(p if p.is_absolute() else (base_dir / p).resolve())
    return spec


def load_suite(path: str | Path, registry: Registry, device: str | None = None,
               timeout: float | str | None = None) -> Suite:
    """Read, validate and expand a suite file. Raises SuiteError naming the file and field.

    ``device`` and ``timeout`` given on the command line override the suite's values.
    """
    path = Path(path)
    data, text = _read_yaml(path)
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


def _settings(data: dict, where0: str, path: Path | None, device: str | None,
              timeout: float | str | None) -> _Settings:
    """The top-level keys, validated (the entry lists are checked to be non-empty lists)."""
    _check_keys(data, TOP_KEYS, where0)
    for key in ("operators", "methods"):
        if not data.get(key):
            raise _err(f"{where0}: {key}", "at least one entry is needed")
        if not isinstance(data[key], list):
            raise _err(f"{where0}: {key}", f"expected a list of entries, got {data[key]!r}")
    name = _scalar(data, "name", str, where0, path.stem if path else "suite")
    if not re.fullmatch(r"[\w.-]+", name):
        raise _err(f"{where0}: name", f"use letters, digits, '-', '_' or '.', got {name!r}")
    repeats = _scalar(data, "repeats", int, where0, 1)
    if repeats < 1:
        raise _err(f"{where0}: repeats", f"must be at least 1, got {repeats}")
    suite_timeout = _limit(data, "timeout", f"{where0}: timeout", default_limit("timeout"))
    if timeout is not None:  # --timeout
        timeout = case_limit("timeout", timeout, "--timeout")
        forced = True
    else:
        forced = False
    dev = device or _scalar(data, "device", str, where0, "auto")
    if dev not in DEVICES:
        raise _err(f"{where0}: device", f"expected one of {', '.join(DEVICES)}, got {dev!r}")
    executor = data.get("executor") or {}
    _check_keys(executor, EXECUTOR_KEYS, f"{where0}: executor")
    return _Settings(
        name=name, seed=_scalar(data, "seed", int, where0, 0), repeats=repeats,
        timeout=timeout if forced else suite_timeout,
        timeout_forced=forced,
        memory_limit=_limit(data, "memory_limit", f"{where0}: memory_limit",
                            default_limit("memory_limit")),
        exact_limit=_scalar(data, "exact_limit", int, where0, 4096), device=dev,
        plugins=list(data.get("plugins") or []), executor=dict(executor))


def _entry(entry: Any, keys: set[str], where: str) -> dict:
    """An operator or method entry: a bare name, or a mapping with a ``name``."""
    if isinstance(entry, str):
        entry = {"name": entry}
    _check_keys(entry, keys, where)
    if "name" not in entry:
        raise _err(where, "missing 'name'")
    return entry


def _sizes(entry: dict, cls: type, gen: Any, where: str) -> list[int]:
    """The sizes of one operator entry, each one the generator accepts."""
    try:
        fixed = gen.sizes()
    except (InvalidParameter, OSError, ValueError) as exc:
        raise _err(f"{where}.params", str(exc)) from None
    sizes = entry.get("sizes")
    if sizes is None:
        if fixed is None:
            raise _err(where, f"'sizes' is required for operator '{cls.name}'")
        sizes = fixed
    if isinstance(sizes, int) and not isinstance(sizes, bool):
        sizes = [sizes]
    if not isinstance(sizes, list) or not sizes:
        raise _err(f"{where}.sizes", f"expected a list of integers, got {sizes!r}")
    out = []
    for j, n in enumerate(sizes):
        try:
            n = coerce(n, int)
        except ValueError as exc:
            raise _err(f"{where}.sizes[{j}]", str(exc)) from None
        if fixed is not None and n not in fixed:
            raise _err(f"{where}.sizes[{j}]",
                       f"operator '{cls.name}' has fixed size {fixed}, got {n}")
        try:
            gen.check_size(n)
        except (InvalidParameter, ValueError) as exc:
            msg = str(exc) if str(exc).startswith(cls.name) else f"{cls.name}: {exc}"
            raise _err(f"{where}.sizes[{j}]", msg) from None
        out.append(n)
    return out


def _operators(entries: list, registry: Registry, where0: str,
               base_dir: Path) -> list[_OperatorInstance]:
    """Every operator entry × its parameter grid × its sizes, each validated."""
    out: list[_OperatorInstance] = []
    for i, entry in enumerate(entries):
        where = f"{where0}: operators[{i}]"
        entry = _entry(entry, OPERATOR_KEYS, where)
        try:
            cls = registry.operator(str(entry["name"]))
        except LubenchError as exc:
            raise _err(f"{where}.name", str(exc)) from None
        for params, given in _grid(cls, entry.get("params"), f"{where}.params", base_dir):
            for n in _sizes(entry, cls, cls(**params), where):
                out.append((cls.name, params, n, given))
    return out


def _methods(entries: list, registry: Registry, where0: str, base_dir: Path,
             settings: _Settings) -> list[_MethodInstance]:
    """Every method entry × its parameter grid, with its budget, limits and resources."""
    out: list[_MethodInstance] = []
    for i, entry in enumerate(entries):
        where = f"{where0}: methods[{i}]"
        entry = _entry(entry, METHOD_KEYS, where)
        try:
            cls = registry.method(str(entry["name"]))
        except LubenchError as exc:
            raise _err(f"{where}.name", str(exc)) from None
        budget = entry.get("budget") or {}
        _check_keys(budget, BUDGET_KEYS, f"{where}.budget")
        budget = {
            "max_steps": _scalar(budget, "max_steps", int, f"{where}.budget", None),
            "max_seconds": _scalar(budget, "max_seconds", float, f"{where}.budget", None),
            "target_loss": _scalar(budget, "target_loss", float, f"{where}.budget", None),
        }
        overrides = {
            "budget": budget,
            "timeout": settings.timeout if settings.timeout_forced else
            _limit(entry, "timeout", f"{where}.timeout", settings.timeout),
            "memory_limit": _limit(entry, "memory_limit", f"{where}.memory_limit",
                                   settings.memory_limit),
            "resources": {**getattr(cls, "resources", {}), **_check_keys(
                entry.get("resources") or {}, {"gpus_per_task", "cpus_per_task", "mem_gb",
                                               "timeout_min"}, f"{where}.resources")},
        }
        for params, given in _grid(cls, entry.get("params"), f"{where}.params", base_dir):
            out.append((cls.name, params, cls.family, overrides, given))
    return out


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


def build_suite(data: dict, registry: Registry, path: Path | None = None, text: str = "",
                device: str | None = None, timeout: float | str | None = None) -> Suite:
    """Validate a suite given as a dict (the parsed YAML) and expand it into cases:
    the settings, then the operators, then the methods, then their product."""
    where0 = str(path) if path else "<suite>"
    base_dir = path.resolve().parent if path else Path.cwd()
    settings = _settings(data, where0, path, device, timeout)
    from lubench.report.spec import parse_spec  # the report: section has the report's schema

    parse_spec(data.get("report"), f"{where0}: report")  # read again by `lubench report`
    operators = _operators(data["operators"], registry, where0, base_dir)
    methods = _methods(data["methods"], registry, where0, base_dir, settings)
    return Suite(path=path, name=settings.name, description=str(data.get("description") or ""),
                 seed=settings.seed, repeats=settings.repeats, timeout=settings.timeout,
                 memory_limit=settings.memory_limit, exact_limit=settings.exact_limit,
                 device=settings.device, plugins=settings.plugins, executor=settings.executor,
                 cases=_expand(settings, operators, methods), raw=data, text=text)
