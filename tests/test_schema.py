"""The fixed part of the suite format (lubench.suite.schema): types, ranges, units, every error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lubench.errors import SuiteError
from lubench.suite.schema import json_schema, validate_suite
from lubench.suite.values import parse_duration, parse_memory

SUITES = sorted((Path(__file__).parent.parent / "suites").glob("*.yaml"))


def _load(text: str):
    return validate_suite(yaml.safe_load(text), "x.yaml")


def _errors(text: str) -> str:
    with pytest.raises(SuiteError) as info:
        _load(text)
    return str(info.value)


BASE = "operators: [laplacian_1d]\nmethods: [plu]\n"


@pytest.mark.parametrize("path", SUITES, ids=lambda p: p.name)
def test_shipped_suites_validate(path):
    model = validate_suite(yaml.safe_load(path.read_text()), str(path))
    assert model.operators and model.methods


@pytest.mark.parametrize("text, seconds", [
    (90, 90.0), (2.5, 2.5), ("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("10 min", 600.0),
    ("1.5h", 5400.0), ("1h30m", 5400.0), ("2d", 172800.0), ("none", None), (None, None),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", [0, -1, float("nan"), float("inf"), "0s", "-5m", "abc",
                                  "10x", "1m30", True, [1]])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("text, nbytes", [
    ("4GiB", 4 * 2**30), ("512MB", 512 * 10**6), ("1e9", 10**9), (2**30, 2**30),
    ("4 gib", 4 * 2**30), ("none", None), (None, None),
])
def test_memory_sizes(text, nbytes):
    assert parse_memory(text) == nbytes


@pytest.mark.parametrize("text", [0, -5, 0.5, "0.5", float("nan"), "4XB", "lots", True])
def test_bad_memory_sizes(text):
    with pytest.raises(ValueError):
        parse_memory(text)


def test_defaults_and_shorthands():
    model = _load("operators: [{name: laplacian_1d, sizes: 16}]\nmethods: [plu]\nexecutor:\n")
    assert model.operators[0].sizes == [16]
    assert model.methods[0].name == "plu" and model.methods[0].params == {}
    assert model.executor.kind == "local" and model.executor.jobs == 1
    assert model.repeats == 1 and model.device == "auto" and model.timeout is None


def test_units_in_the_suite():
    model = _load(BASE.replace("[plu]", "[{name: plu, timeout: 10m, memory_limit: 2GiB, "
                               "budget: {max_seconds: 2m}}]") + "timeout: 1h\n")
    assert model.timeout == 3600.0
    method = model.methods[0]
    assert method.timeout == 600.0 and method.memory_limit == 2 * 2**30
    assert method.budget.max_seconds == 120.0


def test_explicit_none_is_known_apart_from_absent():
    model = _load(BASE.replace("[plu]", "[{name: plu, timeout: none}, cholesky]"))
    assert "timeout" in model.methods[0].model_fields_set
    assert "timeout" not in model.methods[1].model_fields_set


@pytest.mark.parametrize("extra, path, words", [
    ("executor: {jobs: two}", "executor.jobs", "expected an integer, got 'two'"),
    ("executor: {kind: lokal}", "executor.kind", "got 'lokal'"),
    ("timeout: -1", "timeout", "must be positive"),
    ("timeout: 0", "timeout", "must be positive"),
    ("timeout: .nan", "timeout", "must be positive"),
    ("memory_limit: 0.5", "memory_limit", "less than one byte"),
    ("memory_limit: -5", "memory_limit", "must be positive"),
    ("repeats: 0", "repeats", "must be at least 1"),
    ("device: gpu", "device", "got 'gpu'"),
    ("name: 'a b'", "name", "letters, digits"),
    ("executor: {slurm_time: soon}", "executor.slurm_time", "HH:MM"),
    ('executor: {slurm_partition: "gpu\\n#SBATCH --x"}', "executor.slurm_partition",
     "on one line without control characters"),
    ('executor: {folder: "\\0"}', "executor.folder", "got '\\x00'"),
    ("executor: {slurm_account: ' '}", "executor.slurm_account", "on one line"),
    ("report: 3", "report", "expected a mapping"),
    ("exectuor: {}", "", "unknown key 'exectuor'; did you mean 'executor'?"),
    ("executor: {kindd: local}", "executor", "unknown key 'kindd'; did you mean 'kind'?"),
])
def test_each_bad_value_is_named_with_its_path(extra, path, words):
    message = _errors(BASE + extra)
    assert message.startswith(f"x.yaml: {path}: " if path else "x.yaml: ")
    assert words in message
    assert "\n" not in message  # one problem, one line


def test_every_error_is_reported_at_once():
    message = _errors(
        "operators: [{name: laplacian_1d, sizes: [16, 0], sise: 3}]\n"
        "methods: [{name: plu, budget: {max_steps: 0}, resources: {gpus: 1}}]\n"
        "repeats: 0\nexecutor: {jobs: two}\n")
    lines = message.splitlines()
    assert lines[0] == "x.yaml: 6 errors"
    paths = [line.strip().split(": ")[0] for line in lines[1:]]
    assert paths == ["repeats", "executor.jobs", "operators[0].sizes[1]", "operators[0]",
                     "methods[0].budget.max_steps", "methods[0].resources"]
    assert "did you mean 'sizes'?" in message and "did you mean 'gpus_per_task'?" in message


def test_entries_must_be_there():
    message = _errors("operators: []\nmethods: plu\n")
    assert "operators: at least one entry is needed" in message
    assert "methods: expected a list" in message
    assert "operators: missing" in _errors("methods: [plu]\n")


def test_not_a_mapping():
    with pytest.raises(SuiteError, match="a suite is a YAML mapping"):
        validate_suite(["plu"], "x.yaml")


def test_json_schema_describes_the_format():
    schema = json_schema()
    json.dumps(schema)  # serialisable
    top = schema["properties"]
    assert {"operators", "methods", "executor", "timeout", "memory_limit", "report"} <= set(top)
    assert schema["additionalProperties"] is False
    kinds = schema["$defs"]["ExecutorModel"]["properties"]["kind"]["enum"]
    assert kinds == ["local", "inline", "slurm"]
    assert top["operators"]["items"]["anyOf"][0]["type"] == "string"  # `- plu` shorthand
