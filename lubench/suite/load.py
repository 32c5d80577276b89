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
from dataclasses import dataclass
from pathlib import Path

from lubench.api import LubenchError
from lubench.errors import SuiteError, shown
from lubench.metrics.cg import MAXITER as CG_MAXITER
from lubench.metrics.cg import graded_tolerances
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
from lubench.suite.entries import MethodInstance, OperatorInstance, expand_entries
from lubench.suite.limits import given_limit
from lubench.suite.report_spec import parse_spec
from lubench.suite.schema import (
    SuiteModel,
    check_suite,
    name_problem,
    suite_error,
)
from lubench.suite.values import parse_duration
from lubench.suite.yamlfile import read_yaml

__all__ = ["load_suite", "build_suite", "read_suite", "suite_plugins", "plugin_specs"]


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
    for i, spec in enumerate(plugins):  # a NUL byte was a ValueError traceback in resolve()
        if not spec.strip() or any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in spec):
            raise SuiteError(f"{path}: plugins[{i}]: expected a module name or a .py path, "
                             f"got {shown(spec)}")
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
    form_limit: int | None
    exact_limit: int
    grade_limit: float | None
    device: str
    plugins: list[str]
    executor: dict
    cg_tolerances: tuple[float, ...] = ()
    cg_maxiter: int = CG_MAXITER


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
        timeout=timeout if forced else given_limit("timeout", model.timeout, given),
        timeout_forced=forced,
        memory_limit=given_limit("memory_limit", model.memory_limit, given),
        form_limit=given_limit("form_limit", model.form_limit, given),
        exact_limit=model.exact_limit,
        grade_limit=given_limit("grade_limit", model.grade_limit, given),
        device=device or model.device, plugins=list(model.plugins),
        executor=model.executor.model_dump(exclude_unset=True),
        cg_tolerances=tuple(graded_tolerances(model.cg_tolerances)),
        cg_maxiter=model.cg_maxiter)


def _expand(settings: _Settings, operators: list[OperatorInstance],
            methods: list[MethodInstance]) -> list[Case]:
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
    model, problems = check_suite(data)
    if model is None:  # the report section too, so that every problem is said at once
        report = data.get("report") if isinstance(data, dict) else None
        if isinstance(report, dict):
            _report_section(report, problems)
        raise suite_error(where0, list(dict.fromkeys(problems)))
    settings = _settings(model, path, device, timeout, problems)
    _report_section(model.report, problems)
    operators, methods = expand_entries(model, registry, base_dir, settings, where0,
                                            problems)
    if problems:
        raise suite_error(where0, list(dict.fromkeys(problems)))
    return Suite(path=path, name=settings.name, description=model.description,
                 seed=settings.seed, repeats=settings.repeats, timeout=settings.timeout,
                 memory_limit=settings.memory_limit, exact_limit=settings.exact_limit,
                 device=settings.device, plugins=settings.plugins, executor=settings.executor,
                 cases=_expand(settings, operators, methods), raw=data, text=text)
