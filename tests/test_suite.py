"""Suite validation and expansion into cases (with the toy plugin)."""

from __future__ import annotations

import pytest

from lubench.errors import SuiteError
from lubench.suite.load import build_suite, load_suite
from lubench.suite.selection import select_cases
from lubench.suite.values import parse_memory

BASE = {
    "name": "t",
    "operators": [{"name": "toy_tridiag", "sizes": [4, 8], "params": {"d": [2.0, 3.0]}}],
    "methods": [{"name": "toy_lu"}, {"name": "toy_lu", "params": {"mode": "refuse_nonsym"}}],
}


def test_cases_are_the_product(toy_registry):
    suite = build_suite(BASE, toy_registry)
    assert len(suite.cases) == 2 * 2 * 2
    ids = {c.case_id for c in suite.cases}
    assert len(ids) == 8
    c = suite.cases[0]
    assert c.operator_params == {"d": 2.0, "skew": 0.0}  # defaults filled in
    assert c.method_params == {"mode": "ok"}


def test_seeds_depend_on_identity_not_position(toy_registry):
    a = build_suite(BASE, toy_registry)
    more = dict(BASE, operators=[{"name": "toy_tridiag", "sizes": [16]}] + BASE["operators"])
    b = build_suite(more, toy_registry)
    seeds_a = {c.case_id: (c.seed, c.operator_seed) for c in a.cases}
    seeds_b = {c.case_id: (c.seed, c.operator_seed) for c in b.cases}
    assert all(seeds_b[k] == v for k, v in seeds_a.items())
    # every method sees the same random operator
    op_seeds = {(c.operator, c.n, c.operator_params["d"]): set() for c in a.cases}
    for c in a.cases:
        op_seeds[(c.operator, c.n, c.operator_params["d"])].add(c.operator_seed)
    assert all(len(s) == 1 for s in op_seeds.values())


@pytest.mark.parametrize("patch, message", [
    ({"colour": 1}, "t.yaml: unknown key 'colour'"),
    ({"operators": [{"name": "toy_tridiagg", "sizes": [4]}]},
     "operators[0].name: unknown operator 'toy_tridiagg'; did you mean 'toy_tridiag'?"),
    ({"methods": [{"name": "toy_lu", "params": {"mood": "ok"}}]},
     "methods[0].params: 'toy_lu' takes no parameter 'mood'; did you mean 'mode'?"),
    ({"methods": [{"name": "toy_lu", "params": {"mode": 3}}]}, "methods[0].params.mode"),
    ({"operators": [{"name": "toy_tridiag", "sizes": [1]}]},
     "operators[0].sizes[0]: toy_tridiag needs n >= 2, got 1"),
    ({"operators": [{"name": "toy_tridiag", "sizes": ["x"]}]}, "sizes[0]: expected an integer"),
    ({"operators": [{"name": "toy_tridiag"}]}, "'sizes' is required"),
    ({"methods": []}, "methods: at least one entry is needed"),
    ({"methods": [{"name": "toy_lu", "budget": {"max_step": 3}}]},
     "budget: unknown key 'max_step'; did you mean 'max_steps'?"),
    ({"device": "tpu"}, "device: expected one of auto, cpu, cuda"),
    ({"memory_limit": "lots"}, "memory_limit: expected a size"),
])
def test_bad_suites_name_file_and_field(toy_registry, tmp_path, patch, message):
    import yaml

    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({**BASE, **patch}))
    with pytest.raises(SuiteError) as info:
        load_suite(path, toy_registry)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_malformed_yaml_names_line(toy_registry, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\noperators: [\n  - {name: a\n")
    with pytest.raises(SuiteError, match=r"bad.yaml: malformed YAML at line \d+"):
        load_suite(path, toy_registry)


def test_missing_suite_file(toy_registry, tmp_path):
    with pytest.raises(SuiteError, match="suite file not found"):
        load_suite(tmp_path / "nope.yaml", toy_registry)


def test_selectors(toy_registry):
    cases = build_suite(BASE, toy_registry).cases
    assert len(select_cases(cases, ["toy_lu[mode=refuse_nonsym]"])) == 4
    assert len(select_cases(cases, ["toy_tridiag[n=8]"])) == 4
    assert len(select_cases(cases, ["toy_tridiag[d=3,n=4]"])) == 2
    assert len(select_cases(cases, ["toy_*"])) == 8
    assert len(select_cases(cases, ["nothing"])) == 0
    assert len(select_cases(cases, ["toy_lu[mode=ok]", "toy_tridiag[n=4]"])) == 6


def test_parse_memory():
    assert parse_memory("4GiB") == 4 * 2**30
    assert parse_memory("512MB") == 512 * 10**6
    assert parse_memory(2**20) == 2**20
    assert parse_memory(None) is None
