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
"""

from __future__ import annotations

import itertools
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lubench.api import InvalidParameter, LubenchError, has_fit
from lubench.errors import SuiteError
from lubench.params import coerce, param_specs, validate_params
from lubench.registry import Registry
from lubench.suite.cases import (
    FIT,
    Case,
    Suite,
    derive_seed,
    fmt_params,
    instance_seed,
    short_params,
)
from lubench.suite.limits import NO_MEMORY_LIMIT, default_limit
from lubench.suite.report_spec import parse_spec
from lubench.suite.schema import (
    MethodEntry,
    OperatorEntry,
    SuiteModel,
    suite_error,
    validate_suite,
)
from lubench.suite.values import parse_duration

__all__ = ["load_suite", "build_suite", "suite_plugins", "plugin_specs"]


def _is_grid(value: Any, ann: Any) -> bool:
    """A list is a grid axis, except a flat list given for a list- or tuple-typed parameter."""
    if not isinstance(value, list):
        return False
    if typing.get_origin(ann) in (list, tuple) or ann in (list, tuple):
        return bool(value) and all(isinstance(v, (list, tuple)) for v in value)
    return True


def _grid(cls: type, params: dict, where: str, base_dir: Path | None, check: bool,
          problems: list[str]) -> list[tuple[dict, dict]]:
    """Every combination of the grid axes in ``params``, validated against ``cls``: pairs of
    (all parameters with defaults filled in, the parameters the suite set). A combination
    that does not validate is left out and its problem added to ``problems``; ``check`` runs
    the class's ``check_params`` (not for a plugin that cannot run here)."""
    specs = param_specs(cls)
    axes: list[list[tuple[str, Any]]] = []
    for key, value in params.items():
        ann = specs[key].annotation if key in specs else None
        values = value if _is_grid(value, ann) else [value]
        if not values:
            problems.append(f"{where}.{key}: an empty list gives no cases")
            return []
        axes.append([(key, v) for v in values])
    out = []
    for combo in itertools.product(*axes):
        given = dict(combo)
        try:
            valid = validate_params(cls, given, where, base_dir)
            full = cls(**valid).get_params()  # defaults filled in: the row says everything
        except InvalidParameter as exc:
            problems.append(str(exc))
            continue
        except (ValueError, TypeError) as exc:
            problems.append(f"{where}: '{cls.name}' refuses {given}: {exc}")
            continue
        if check:
            try:
                cls.check_params(full)
            except (InvalidParameter, ValueError, TypeError) as exc:
                problems.append(f"{where}: {exc}")
                continue
        out.append((full, dict(valid)))
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
    """Read, validate and expand a suite file. Raises SuiteError naming the file and every
    problem with its path.

    ``device`` and ``timeout`` given on the command line override the suite's values
    (``timeout``: seconds, a time such as ``"10m"``, or ``"none"`` for no limit).
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
    form_limit: int | None
    exact_limit: int
    grade_limit: float | None
    device: str
    plugins: list[str]
    executor: dict
    cg_tolerances: tuple[float, ...] = ()
    cg_maxiter: int = 10_000


# (name, params with defaults, n, params the suite set, (instances, train), the entry's
#  limits, where)
_OperatorInstance = tuple[str, dict, int, dict, tuple[int, int], dict, str]
# (name, params with defaults, family, budget/timeout/memory/resources, params the suite set,
#  trains across instances, where)
_MethodInstance = tuple[str, dict, str, dict, dict, bool, str]


def _settings(model: SuiteModel, path: Path | None, device: str | None,
              timeout: float | str | None, problems: list[str]) -> _Settings:
    """The top-level values (already checked by the schema), command-line overrides applied."""
    name = model.name or (path.stem if path else "suite")
    if not re.fullmatch(r"[\w.-]+", name):
        problems.append(f"name: the file name {name!r} is no run name (letters, digits, '-', "
                        f"'_', '.'); set 'name:'")
    forced = timeout is not None
    if forced and not isinstance(timeout, (int, float)):
        timeout = parse_duration(timeout)
    given = model.model_fields_set
    return _Settings(
        name=name, seed=model.seed, repeats=model.repeats,
        timeout=timeout if forced else _given_limit("timeout", model.timeout, given),
        timeout_forced=forced,
        memory_limit=_given_limit("memory_limit", model.memory_limit, given),
        form_limit=_given_limit("form_limit", model.form_limit, given),
        exact_limit=model.exact_limit,
        grade_limit=_given_limit("grade_limit", model.grade_limit, given),
        device=device or model.device, plugins=list(model.plugins),
        executor=model.executor.model_dump(exclude_unset=True),
        cg_tolerances=tuple(sorted({*model.cg_tolerances, 1e-8}, reverse=True)),
        cg_maxiter=model.cg_maxiter)


def _given_limit(key: str, value: Any, given: set[str]) -> Any:
    """A limit as a case holds it (:mod:`lubench.suite.limits`): the default when the key is
    absent, else its value — an explicit ``none`` (parsed to None by the schema) being no
    timeout, resp. :data:`~lubench.suite.limits.NO_MEMORY_LIMIT`."""
    if key not in given:
        return default_limit(key)
    if value is None and key in ("memory_limit", "form_limit"):
        return NO_MEMORY_LIMIT
    return value


def _sizes(entry: OperatorEntry, cls: type, gen: Any, where: str,
           problems: list[str]) -> list[int]:
    """The sizes of one operator entry that the generator accepts (problems for the others)."""
    try:
        fixed = gen.sizes()
    except (InvalidParameter, OSError, ValueError) as exc:
        problems.append(f"{where}.params: {exc}")
        return []
    sizes = entry.sizes
    if sizes is None:
        if fixed is None:
            problems.append(f"{where}: 'sizes' is required for operator '{cls.name}'")
            return []
        sizes = [coerce(n, int) for n in fixed]
    out = []
    for j, n in enumerate(sizes):
        if fixed is not None and n not in fixed:
            problems.append(f"{where}.sizes[{j}]: operator '{cls.name}' has fixed size "
                            f"{fixed}, got {n}")
            continue
        try:
            gen.check_size(n)
        except (InvalidParameter, ValueError) as exc:
            msg = str(exc) if str(exc).startswith(cls.name) else f"{cls.name}: {exc}"
            problems.append(f"{where}.sizes[{j}]: {msg}")
            continue
        out.append(n)
    return out


def _operators(entries: list[OperatorEntry], registry: Registry, base_dir: Path,
               problems: list[str]) -> list[_OperatorInstance]:
    """Every operator entry × its parameter grid × its sizes, each validated."""
    out: list[_OperatorInstance] = []
    for i, entry in enumerate(entries):
        where = f"operators[{i}]"
        try:
            cls = registry.operator(entry.name)
        except LubenchError as exc:
            problems.append(f"{where}.name: {exc}")
            continue
        runnable = registry.unavailable("operator", cls.name) is None
        limits = {key: _given_limit(key, getattr(entry, key), {key})
                  for key in ("form_limit", "grade_limit") if key in entry.model_fields_set}
        for params, given in _grid(cls, entry.params, f"{where}.params", base_dir, runnable,
                                   problems):
            for n in _sizes(entry, cls, cls(**params), where, problems):
                out.append((cls.name, params, n, given, (entry.instances, entry.train),
                            limits, where))
    return out


def _methods(entries: list[MethodEntry], registry: Registry, base_dir: Path,
             settings: _Settings, problems: list[str]) -> list[_MethodInstance]:
    """Every method entry × its parameter grid, with its budget, limits and resources.

    A method entry's ``timeout``, ``memory_limit`` and ``form_limit`` override the suite's
    (``none`` there lifts the limit for that method; its ``form_limit`` also the operator
    entry's); ``--timeout`` overrides both."""
    out: list[_MethodInstance] = []
    for i, entry in enumerate(entries):
        where = f"methods[{i}]"
        try:
            cls = registry.method(entry.name)
        except LubenchError as exc:
            problems.append(f"{where}.name: {exc}")
            continue
        given = entry.model_fields_set
        overrides = {
            "budget": entry.budget.model_dump(),
            "timeout": settings.timeout if settings.timeout_forced or "timeout" not in given
            else _given_limit("timeout", entry.timeout, given),
            "memory_limit": _given_limit("memory_limit", entry.memory_limit, given)
            if "memory_limit" in given else settings.memory_limit,
            **({"form_limit": _given_limit("form_limit", entry.form_limit, given)}
               if "form_limit" in given else {}),
            "resources": {**getattr(cls, "resources", {}),
                          **entry.resources.model_dump(exclude_unset=True)},
            "fit_budget": entry.fit_budget.model_dump(),
        }
        overrides["fit_timeout"] = overrides["timeout"] if settings.timeout_forced or \
            "fit_timeout" not in given else _given_limit("fit_timeout", entry.fit_timeout,
                                                         given)
        runnable = registry.unavailable("method", cls.name) is None
        for params, given_params in _grid(cls, entry.params, f"{where}.params", base_dir,
                                          runnable, problems):
            out.append((cls.name, params, cls.family, overrides, given_params, has_fit(cls),
                        where))
    return out


def _expand(settings: _Settings, operators: list[_OperatorInstance],
            methods: list[_MethodInstance]) -> list[Case]:
    """Every operator instance × every method instance, in order; a case listed twice once.

    A family (an operator entry with ``instances``) gives a case per test instance; a method
    that trains across instances (``fit``) gives, per family, a fit case first and test cases
    that use it. On an operator without a training split it has nothing to train on: its
    cases are recorded ``unsupported`` with that reason (the worker says so)."""
    cases: list[Case] = []
    seen: set[str] = set()
    seed = settings.seed
    for (op, op_params, n, op_given, (instances, train), op_limits, _where), \
            (me, me_params, family, ov, me_given, fits, _where) in \
            itertools.product(operators, methods):
        form_limit = ov.get("form_limit", op_limits.get("form_limit", settings.form_limit))
        label = f"{op}{fmt_params(short_params(op_given))}[n={n}]"
        common = dict(
            suite=settings.name, operator=op, operator_params=op_params, n=n, method=me,
            method_params=me_params, family=family, suite_seed=seed,
            repeats=settings.repeats, memory_limit=ov["memory_limit"],
            form_limit=form_limit, exact_limit=settings.exact_limit,
            grade_limit=op_limits.get("grade_limit", settings.grade_limit),
            device=settings.device,
            resources=ov["resources"], cg_tolerances=settings.cg_tolerances,
            cg_maxiter=settings.cg_maxiter, instances=instances, train=train)
        fit_id = ""
        if fits and train > 0:
            fit = Case(**{**common, "repeats": 1}, stage=FIT,
                       seed=derive_seed(seed, op, op_params, n, me, me_params, FIT),
                       operator_seed=instance_seed(seed, op, op_params, n, 0),
                       timeout=ov["fit_timeout"], budget=ov["fit_budget"],
                       display=f"fit {me}{fmt_params(me_given)} on {label} × {train} "
                               f"instances")
            fit_id = fit.case_id
            if fit_id not in seen:
                seen.add(fit_id)
                cases.append(fit)
        family_of = instances > 1 or train > 0
        for i in range(train, instances) if family_of else [None]:
            extra = () if i is None else ("instance", i)
            case = Case(**common, instance=i, fit_id=fit_id,
                        seed=derive_seed(seed, op, op_params, n, me, me_params, *extra),
                        operator_seed=instance_seed(seed, op, op_params, n, i),
                        timeout=ov["timeout"], budget=ov["budget"],
                        display=f"{label}{'' if i is None else f' #{i}'} × "
                                f"{me}{fmt_params(me_given)}")
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
    model = validate_suite(data, where0)
    problems: list[str] = []
    settings = _settings(model, path, device, timeout, problems)
    _report_section(model.report, problems)
    operators = _operators(model.operators, registry, base_dir, problems)
    methods = _methods(model.methods, registry, base_dir, settings, problems)
    if problems:
        raise suite_error(where0, list(dict.fromkeys(problems)))
    return Suite(path=path, name=settings.name, description=model.description,
                 seed=settings.seed, repeats=settings.repeats, timeout=settings.timeout,
                 memory_limit=settings.memory_limit, exact_limit=settings.exact_limit,
                 device=settings.device, plugins=settings.plugins, executor=settings.executor,
                 cases=_expand(settings, operators, methods), raw=data, text=text)
