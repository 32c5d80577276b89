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


# --------------------------------------------------------------------------------------------
# The file itself (lubench.suite.yamlfile): whatever it holds, a suite or one SuiteError
# --------------------------------------------------------------------------------------------
def _load_text(tmp_path, toy_registry, content: bytes):
    path = tmp_path / "t.yaml"
    path.write_bytes(content)
    return load_suite(path, toy_registry)


@pytest.mark.parametrize("content, message", [
    (b"name: t\n\xff\n", "not UTF-8 text (byte 0xff at line 2, offset 8)"),
    ("name: t\n".encode("utf-16"), "not UTF-8 text"),
    (b"x: " + b"[" * 20000 + b"]" * 20000 + b"\n", "nest"),
    (b"name: t\nname: u\n", "line 2, column 1: key 'name' given twice in one mapping "
                            "(first at line 1)"),
    (b"!!python/object/apply:os.system ['true']\n", "malformed YAML"),
])
def test_a_file_that_is_no_suite_is_one_error(tmp_path, toy_registry, content, message):
    with pytest.raises(SuiteError) as err:
        _load_text(tmp_path, toy_registry, content)
    assert str(err.value).startswith(str(tmp_path / "t.yaml"))
    assert message in str(err.value)


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path, toy_registry):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    with pytest.raises(SuiteError, match="expands to more than 1,000,000 values"):
        _load_text(tmp_path, toy_registry, "\n".join(lines).encode())


def test_merge_keys_may_be_overridden(tmp_path, toy_registry):
    text = (b"name: t\nx-base: &base {name: toy_lu}\n"
            b"operators: [{name: toy_tridiag, sizes: [4]}]\n"
            b"methods:\n  - <<: *base\n    name: toy_lu\n")
    with pytest.raises(SuiteError) as err:  # x-base is an unknown key; the merge is fine
        _load_text(tmp_path, toy_registry, text)
    assert "unknown key 'x-base'" in str(err.value) and "twice" not in str(err.value)


def test_a_bom_is_dropped(tmp_path, toy_registry):
    import yaml

    suite = _load_text(tmp_path, toy_registry, b"\xef\xbb\xbf" + yaml.safe_dump(BASE).encode())
    assert len(suite.cases) == 8


@pytest.mark.parametrize("kind", ["device", "fifo", "folder", "large"])
def test_only_files_and_pipes_are_read(tmp_path, toy_registry, kind):
    """/dev/zero would be read forever, a FIFO nobody writes waited on forever."""
    import os

    from lubench.suite.yamlfile import MAX_BYTES

    path = tmp_path / "s.yaml"
    if kind == "device":
        path = "/dev/zero"
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        path.write_bytes(b"# " + b"x" * MAX_BYTES + b"\n")
    with pytest.raises(SuiteError) as err:
        load_suite(path, toy_registry)
    assert str(err.value).startswith(str(path))


@pytest.mark.parametrize("patch, messages", [
    ({"operators": [{"name": "toy_tridiag", "sizes": [4],
                     "params": {"d": float("nan"), "skew": float("-inf")}}]},
     ["operators[0].params.d: expected a finite number, got nan",
      "operators[0].params.skew: expected a finite number, got -inf"]),
    ({"operators": [{"name": "toy_tridiag", "sizes": [True, "8", 4.0]}]},
     ["operators[0].sizes[0]: expected an integer, got True",
      "operators[0].sizes[1]: expected an integer, got '8'",
      "operators[0].sizes[2]: expected an integer, got 4.0"]),
    ({"operators": [{"name": "toy_tridiag", "sizes": []}]},
     ["operators[0].sizes: an empty list gives no case"]),
    ({"operators": [{"name": "toy_tridiag", "sizes": None}]},  # `sizes:` left empty: found
     ["operators[0]: 'sizes' is required for operator 'toy_tridiag'"]),  # by the fuzzer
    ({"repeats": True, "seed": 1.5}, ["repeats: expected an integer, got True",
                                      "seed: expected an integer, got 1.5"]),
    ({"name": "."}, ["name: a name of dots names no folder of its own"]),
    ({"name": "n" * 201}, ["name: at most 200 characters"]),
    ({"memory_limit": "1e30GiB"}, ["memory_limit: is more memory than any machine has"]),
    ({"repeats": 0, "report": {"formats": ["exe"]}},
     ["repeats: must be at least 1", "report.formats"]),
    ({"operators": [{"name": "toy_tridiag", "sizes": [4], "params": {"d": "d" * 10 ** 6}}]},
     ["operators[0].params.d: expected a number, got 'ddd"]),
])
def test_every_value_is_checked_never_coerced(toy_registry, patch, messages):
    with pytest.raises(SuiteError) as err:
        build_suite({**BASE, **patch}, toy_registry)
    text = str(err.value)
    for message in messages:
        assert message in text
    assert len(text) < 2000  # a value is named, never echoed whole
