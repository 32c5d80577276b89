"""The fixed part of the suite format, declared once as a pydantic model.

What a suite file may say outside the plugins' own parameters: the top level, the operator
and method entries, ``budget``, ``executor``, ``resources`` and the limits, with their types
and ranges. :func:`validate_suite` checks a parsed YAML mapping against it and reports every
problem at once, each with its path::

    suites/x.yaml: 2 errors
      executor.jobs: expected an integer, got 'two'
      methods[1].timeout: must be positive (say 'none' for no limit), got -1

What this module does not check, because it depends on the plugins: operator and method
names, their ``params`` (validated against each plugin class when the suite expands, see
:mod:`lubench.suite.load`) and the ``report:`` section (a mapping, validated by the report).

Units (:mod:`lubench.suite.values`). A time (``timeout``, ``budget.max_seconds``) is a number of
seconds or a string with units: ``"90s"``, ``"10m"``, ``"1.5h"``, ``"1h30m"``, ``"2d"``. A
memory size is a number of bytes or a string such as ``"512MB"``, ``"4GiB"``. ``none`` (or
YAML ``null``) says "no limit"; 0, negative and NaN are errors.

:func:`json_schema` exports the model as JSON Schema (``lubench schema``), for editors that
complete and check YAML against a schema.
"""

from __future__ import annotations

import re
import typing
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from lubench.errors import SuiteError, printable, shown
from lubench.metrics.cg import MAXITER as CG_MAXITER
from lubench.metrics.cg import TOLERANCES as CG_TOLERANCES
from lubench.params import closest
from lubench.suite.values import (
    DEVICES,
    EXECUTOR_KINDS,
    MIN_MEMORY,
    parse_duration,
    parse_memory,
)

__all__ = ["SuiteModel", "OperatorEntry", "MethodEntry", "BudgetModel", "ExecutorModel",
           "ResourcesModel", "SuiteError", "validate_suite", "check_suite", "suite_error",
           "json_schema", "name_problem"]


_DURATION_SCHEMA = {"anyOf": [
    {"type": "number", "exclusiveMinimum": 0},
    {"type": "string", "pattern": r"^\s*(none|(\d+(\.\d*)?\s*[a-zA-Z]*\s*)+)$",
     "examples": ["90s", "10m", "1h30m", "none"]},
    {"type": "null"}]}
_MEMORY_SCHEMA = {"anyOf": [
    {"type": "integer", "minimum": MIN_MEMORY},
    {"type": "string", "pattern": r"^\s*(none|[0-9.eE+-]+\s*[A-Za-z]*)\s*$",
     "examples": ["512MiB", "4GiB", "none"]},
    {"type": "null"}]}

Duration = Annotated[float | None, BeforeValidator(parse_duration),
                     WithJsonSchema(_DURATION_SCHEMA)]


def _given(parse: Any) -> Any:
    """``parse``, but an empty value (YAML ``timeout:`` with nothing after it) is an error:
    a case limit is lifted only by saying ``none`` (lubench.suite.limits)."""
    def check(value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError("empty; give a value, or 'none' for no limit")
        return parse(value)
    return check


#: A case limit: absent → the default (lubench.suite.limits), ``none`` → None (no limit).
LimitDuration = Annotated[float | None, BeforeValidator(_given(parse_duration)),
                          WithJsonSchema(_DURATION_SCHEMA)]
LimitMemory = Annotated[int | None, BeforeValidator(_given(parse_memory)),
                        WithJsonSchema(_MEMORY_SCHEMA)]


def _mapping_or_empty(value: Any) -> Any:
    """``key:`` left empty in YAML (None) means an empty mapping."""
    return {} if value is None else value


def _entry(value: Any) -> Any:
    """``- plu`` is short for ``- name: plu``."""
    return {"name": value} if isinstance(value, str) else value


def _text_of_int(value: Any) -> Any:
    """``slurm_time: 90`` (minutes) is read as the text ``"90"``."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _sizes(value: Any) -> Any:
    """``sizes: 256`` is short for ``sizes: [256]``; ``sizes: []`` gives no case."""
    if isinstance(value, (int, str, float)) and not isinstance(value, bool):
        return [value]
    if isinstance(value, list) and not value:
        raise ValueError("an empty list gives no case; list sizes, or leave 'sizes' out for "
                         "an operator with fixed sizes")
    return value


#: An integer as YAML writes one: ``true`` is no count and ``'16'`` no size (never coerced).
Int = Annotated[int, Strict()]
MAX_NAME = 200  # characters of a suite name: it names a folder


Params = Annotated[dict[str, Any], BeforeValidator(_mapping_or_empty),
                   Field(description="the plugin's parameters; a list is a grid axis")]
_SLURM_TIME = r"^\s*(\d+|(\d+-)?\d+(:\d+){0,2})\s*$"


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------
class _Section(BaseModel):
    """Every section: unknown keys are errors, values are checked and never coerced silently."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class BudgetModel(_Section):
    """A learned method's training budget (soft: the method checks it)."""

    max_steps: Int | None = Field(None, ge=1, description="training steps at most")
    max_seconds: Duration = Field(None, description="training time at most (e.g. 120, '2m')")
    target_loss: float | None = Field(None, ge=0, allow_inf_nan=False,
                                      description="stop once the loss is below this")


class ResourcesModel(_Section):
    """What one case of this method needs from SLURM (ignored by the local executor)."""

    gpus_per_task: Int | None = Field(
        None, ge=0, description="GPUs per task, asked only when the case runs on CUDA")
    cpus_per_task: Int | None = Field(
        None, ge=1, description="CPUs per task (over executor.slurm_cpus_per_task; default 1)")
    mem_gb: float | None = Field(
        None, gt=0, allow_inf_nan=False,
        description="memory per task, GB, when neither slurm_mem_gb nor memory_limit says "
                    "(default 4)")
    timeout_min: Int | None = Field(
        None, ge=1, description="time per task, minutes, when slurm_time does not say "
                                "(default: the case timeout + 5 min, else 2 h)")


class ExecutorModel(_Section):
    """Where and how cases run: ``local`` worker processes, ``inline`` (debugging), ``slurm``."""

    kind: Literal[EXECUTOR_KINDS] = Field(  # type: ignore[valid-type]
        "local", description="local worker processes, inline (in-process), or slurm")
    jobs: Int = Field(1, ge=1, description="local worker processes")
    slurm_partition: str | None = Field(None, description="the SLURM partition")
    slurm_time: Annotated[str | None, BeforeValidator(_text_of_int), WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string"}, {"type": "null"}]}),
        Field(
        None, description="SLURM time per task: minutes, HH:MM, HH:MM:SS or D-HH:MM")] = None
    slurm_gpus_per_task: Int | None = Field(
        None, ge=0, description="GPUs per task for the cases that use CUDA, over the methods' "
                                "own; 0: none")
    slurm_cpus_per_task: Int | None = Field(None, ge=1, description="CPUs per task")
    slurm_mem_gb: float | None = Field(
        None, gt=0, allow_inf_nan=False,
        description="memory per task, GB (default: memory_limit + 1 GB, else the method's "
                    "mem_gb, else 4)")
    slurm_array_parallelism: Int | None = Field(
        None, ge=1, description="at most this many tasks of an array at once")
    slurm_account: str | None = Field(None, description="the SLURM account")
    slurm_qos: str | None = Field(None, description="the SLURM QOS")
    slurm_constraint: str | None = Field(None, description="the SLURM node constraint")
    slurm_additional_parameters: dict[str, Any] | None = Field(
        None, description="more sbatch options, passed to submitit as they are")
    folder: str | None = Field(None, description="submitit's folder (default RUN_DIR/submitit)")

    @field_validator("slurm_partition", "slurm_account", "slurm_qos", "slurm_constraint",
                     "folder")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        """A name sbatch reads from one line of its script (a path for ``folder``): not
        empty, no control character — a newline would start another ``#SBATCH`` line, a NUL
        byte cannot travel to a command or a path."""
        if value is not None and (not value.strip() or any(
                ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in value)):
            raise ValueError(f"expected a name on one line without control characters, "
                             f"got {shown(value)}")
        return value

    @field_validator("slurm_time")
    @classmethod
    def _slurm_time(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(_SLURM_TIME, value) or not any(c in "123456789" for c in value):
            raise ValueError(f"expected minutes, HH:MM, HH:MM:SS or D-HH:MM, got {value!r}")
        return value


class OperatorEntry(_Section):
    """One operator entry: a generator name, its sizes and its parameters (grid axes)."""

    name: str = Field(min_length=1, description="an operator (see `lubench list`)")
    sizes: Annotated[list[Annotated[int, Strict(), Field(ge=1)]] | None, BeforeValidator(_sizes),
                     WithJsonSchema({"anyOf": [
                         {"type": "integer", "minimum": 1},
                         {"type": "array", "items": {"type": "integer", "minimum": 1},
                          "minItems": 1}]}),
                     Field(description="n values (a grid axis)")] = None
    params: Params = {}
    form_limit: LimitMemory = Field(
        None, description="form_limit for this operator's cases (over the suite's)")
    grade_limit: LimitDuration = Field(
        None, description="grade_limit for this operator's cases (over the suite's)")
    instances: Int = Field(1, ge=1, description="seeded instances of the operator (a family: "
                                                "instance i is built from its own seed)")
    train: Int = Field(0, ge=0, description="how many instances (the first) form the "
                                            "training split; the others are the test cases")

    @model_validator(mode="after")
    def _split(self) -> OperatorEntry:
        if self.train >= self.instances and self.train > 0:
            raise ValueError(f"train: {self.train} of {self.instances} instance(s) for "
                             f"training leaves no test instance (train < instances)")
        return self


class MethodEntry(_Section):
    """One method entry: a method name, its parameters (grid axes) and per-method overrides."""

    name: str = Field(min_length=1, description="a method (see `lubench list`)")
    params: Params = {}
    budget: Annotated[BudgetModel, BeforeValidator(_mapping_or_empty), Field(
        description="a learned method's training budget")] = BudgetModel()
    timeout: LimitDuration = Field(None, description="hard limit per case of this method")
    memory_limit: LimitMemory = Field(None, description="memory limit per case of this method")
    form_limit: LimitMemory = Field(
        None, description="form_limit for this method's cases (over the operator's and the "
                          "suite's)")
    resources: Annotated[ResourcesModel, BeforeValidator(_mapping_or_empty), Field(
        description="what a SLURM task of this method asks for")] = ResourcesModel()
    fit_budget: Annotated[BudgetModel, BeforeValidator(_mapping_or_empty), Field(
        description="the budget of training across instances (a method with `fit`)")] = \
        BudgetModel()
    fit_timeout: LimitDuration = Field(
        None, description="hard limit of that training (default: the method's timeout)")


class SuiteModel(_Section):
    """A suite file: what to run (operators × sizes × methods) and under which limits."""

    name: str | None = Field(None, description="names the run directory (default: file stem)")
    description: str = Field("", description="free text")
    seed: Int = Field(0, description="every case's seed derives from this and its identity")
    repeats: Int = Field(1, ge=1, description="timed repeats of each case")
    timeout: LimitDuration = Field(
        None, description="hard limit per case (600, '10m', 'none'; default 1 h)")
    memory_limit: LimitMemory = Field(
        None, description="memory limit per case ('4GiB', 'none'; default: half the RAM of "
                          "the machine that runs the case)")
    form_limit: LimitMemory = Field(
        None, description="the most a dense A formed for a method that needs the matrix may "
                          "take ('2GiB', 'none'; default: a quarter of the memory limit); "
                          "above it that method is unsupported on an operator that is not "
                          "formed")
    exact_limit: Int = Field(4096, ge=0, description="up to this n, errors are exact "
                                                     "(else probe estimates)")
    grade_limit: LimitDuration = Field(
        None, description="grading time per case (600, '10m', 'none'; default 10 min): a "
                          "metric whose predicted cost exceeds what is left — plain GMRES, "
                          "plain CG, the spectral estimate above exact_limit — is not "
                          "computed, and the row's not_graded says why; the preconditioned "
                          "GMRES and CG stop at it")
    cg_tolerances: list[Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]] = Field(
        list(CG_TOLERANCES), min_length=1,
        description="relative residuals CG is graded at (1e-8, the columns', is always added)")
    cg_maxiter: Int = Field(CG_MAXITER, ge=1, description="CG iterations at most")
    device: Literal[DEVICES] = Field(  # type: ignore[valid-type]
        "auto", description="where the learned methods run; auto: CUDA when PyTorch sees a GPU "
                            "(classical methods run on the CPU)")
    plugins: Annotated[list[str], BeforeValidator(lambda v: [] if v is None else v)] = Field(
        [], description="extra plugin modules or .py files (relative to the suite file)")
    executor: Annotated[ExecutorModel, BeforeValidator(_mapping_or_empty), Field(
        description="where and how the cases run")] = ExecutorModel()
    report: Annotated[dict[str, Any] | None, Field(
        None, description="what `lubench report` renders (checked by the report)")] = None
    operators: list[Annotated[OperatorEntry, BeforeValidator(_entry)]] = Field(
        min_length=1, description="operator entries")
    methods: list[Annotated[MethodEntry, BeforeValidator(_entry)]] = Field(
        min_length=1, description="method entries")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        problem = None if value is None else name_problem(value)
        if problem:
            raise ValueError(problem)
        return value


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a run directory (``reports/<name>/<timestamp>``), or None:
    letters, digits, '-', '_', '.', not only dots ('..' would climb out of reports/), at most
    :data:`MAX_NAME` characters."""
    if not re.fullmatch(r"[\w.-]+", name):
        return f"use letters, digits, '-', '_' or '.', got {shown(name)}"
    if set(name) == {"."}:
        return f"a name of dots names no folder of its own, got {name!r}"
    if len(name) > MAX_NAME:
        return f"at most {MAX_NAME} characters (it names a folder), got {len(name)}"
    return None


# --------------------------------------------------------------------------------------------
# Errors: every one, with its path, in words
# --------------------------------------------------------------------------------------------
def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``loc`` (for 'unknown key' messages)."""
    current: Any = SuiteModel
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            return None
        current = _inner_model(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _inner_model(ann: Any) -> Any:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in typing.get_args(ann):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


_PLAIN = {
    "int_parsing": "expected an integer", "int_type": "expected an integer",
    "int_from_float": "expected an integer", "float_parsing": "expected a number",
    "float_type": "expected a number", "string_type": "expected a string",
    "bool_type": "expected true or false", "bool_parsing": "expected true or false",
    "list_type": "expected a list", "dict_type": "expected a mapping",
    "model_type": "expected a mapping", "model_attributes_type": "expected a mapping",
    "finite_number": "expected a finite number",
}


def _message(err: dict) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    got = f", got {shown(value)}"
    if kind == "missing":
        return "missing (required)"
    if kind == "extra_forbidden":
        key = str(err["loc"][-1])
        model = _model_at(tuple(err["loc"][:-1]))
        allowed = sorted(model.model_fields) if model else []
        starts = [a for a in allowed if a.startswith(key)]
        hint = closest(key, allowed) or (f"; did you mean '{starts[0]}'?"
                                          if len(starts) == 1 else "")
        return f"unknown key '{key}'{hint}" + (f" (allowed: {', '.join(allowed)})"
                                                if allowed else "")
    if kind == "too_short":
        return "at least one entry is needed" if ctx.get("min_length", 1) == 1 else \
            f"at least {ctx['min_length']} entries are needed{got}"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return f"expected one of {', '.join(choices)}{got}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}{got}"
    if kind == "greater_than":
        return f"must be greater than {ctx.get('gt')}{got}"
    if kind == "value_error":
        return str(ctx.get("error") or err["msg"].removeprefix("Value error, "))
    if kind in _PLAIN:
        return _PLAIN[kind] + got
    return f"{err['msg']}{got}"


def _errors(exc: ValidationError) -> list[str]:
    out: list[str] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        message = _message({**err, "loc": loc})
        if err["type"] == "extra_forbidden":  # said of the mapping that holds the key
            loc = loc[:-1]
        line = f"{_path(loc)}: {message}" if loc else message
        if line not in out:
            out.append(line)
    return out


MAX_PROBLEM = 400  # characters of one problem line (a plugin's 5 MB message is cut)


def suite_error(where: str, problems: list[str]) -> SuiteError:
    """One SuiteError for every problem: one line when there is one, a list otherwise. Each
    problem is one printable line of at most :data:`MAX_PROBLEM` characters."""
    problems = [_cut(printable(" ".join(p.split("\n")))) for p in problems]
    if len(problems) == 1:
        return SuiteError(f"{where}: {problems[0]}")
    lines = "\n".join(f"  {p}" for p in problems)
    return SuiteError(f"{where}: {len(problems)} errors\n{lines}")


def _cut(text: str) -> str:
    return text if len(text) <= MAX_PROBLEM else f"{text[:MAX_PROBLEM - 20]}… ({len(text)} " \
        f"characters)"


def validate_suite(data: Any, where: str = "<suite>") -> SuiteModel:
    """``data`` (a parsed suite file) as a :class:`SuiteModel`; every error at once.

    Raises :class:`SuiteError` whose message starts with ``where`` (the file) and lists each
    problem as ``path: what was wrong, got VALUE``.
    """
    model, problems = check_suite(data)
    if model is None:
        raise suite_error(where, problems)
    return model


def check_suite(data: Any) -> tuple[SuiteModel | None, list[str]]:
    """``(model, [])`` for a valid suite mapping, ``(None, problems)`` otherwise: every
    problem as ``path: what was wrong, got VALUE``."""
    if not isinstance(data, dict):
        return None, [f"a suite is a YAML mapping (name:, operators:, methods:, ...), got "
                      f"{type(data).__name__}"]
    try:
        return SuiteModel.model_validate(data), []
    except ValidationError as exc:
        return None, _errors(exc)


def json_schema() -> dict:
    """The suite format as JSON Schema (draft 2020-12), for editors and ``lubench schema``."""
    schema = SuiteModel.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "lubench suite"
    for key, ref in (("operators", "OperatorEntry"), ("methods", "MethodEntry")):
        items = schema["properties"][key]["items"]
        schema["properties"][key]["items"] = {"anyOf": [
            {"type": "string", "description": f"short for {{name: ...}} ({ref})"}, items]}
    return schema
