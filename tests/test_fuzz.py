"""Fuzzers that keep issue 25's catalogue closed: generated and mutated suites, Matrix Market
files, records, report specifications and command-line options. Every input ends in a
result or in one error of lubench's (exit 2, one line naming the file or option, printable),
never in another exception, and nothing is written beside the input.

In-process properties run the library's readers on many inputs; a small sweep sends inputs
of every kind through the installed ``lubench``. Counts are bounded so that CI stays within
its time; examples are derandomized (the same every run, so that a red CI is about the
change). ``LUBENCH_FUZZ_EXAMPLES=N`` runs N random examples per fuzzer instead (a deep
session: ``LUBENCH_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cli import lubench_exe

from lubench.errors import InvalidParameter, LubenchError, SuiteError, printable
from lubench.suite import report_spec

DEEP = int(os.environ.get("LUBENCH_FUZZ_EXAMPLES", "0") or 0)
REPO = Path(__file__).resolve().parent.parent


def fuzz(examples: int):
    """Bounded, derandomized settings for CI; ``LUBENCH_FUZZ_EXAMPLES`` for more."""
    return settings(max_examples=DEEP or examples, derandomize=not DEEP, database=None,
                    deadline=timedelta(seconds=20), print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much,
                                           HealthCheck.function_scoped_fixture])


@contextlib.contextmanager
def folder():
    with tempfile.TemporaryDirectory(prefix="lubench-fuzz-") as name:
        yield Path(name)


def _one_error(text: str, prefix: str) -> None:
    """An error of lubench's: starts with ``prefix`` (the file or option), a header line and
    indented problem lines, printable, each line bounded."""
    lines = text.split("\n")
    assert lines[0].startswith(prefix), text[:300]
    assert all(line.startswith("  ") for line in lines[1:]), text[:300]
    assert printable(text) == text
    assert all(len(line) < 700 for line in lines), max(map(len, lines))


# --------------------------------------------------------------------------------------------
# Values YAML can hold, hostile ones included
# --------------------------------------------------------------------------------------------
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-3, max_value=70),
    st.sampled_from([0, -1, 2 ** 31, 2 ** 63, 2 ** 70, 10 ** 30]),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from(["none", "10m", "1h30m", "4GiB", "512MB", "", " ", "1e999s", "nan", "inf",
                     "true", "16", "-1", "auto", "cpu", "cuda", "local", "inline", "slurm",
                     "\x1b[31m", "a" * 300, "..", ".", "x/y"]),
    TEXT)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)), max_leaves=8)

OPERATOR_PARAMS = {
    "laplacian_1d": ["scale"], "convdiff_1d": ["eps", "beta", "boundary", "normalize"],
    "rbf_kernel": ["length_scale"], "matrix_market": ["path"], "toy_tridiag": ["d", "skew"],
}
METHOD_PARAMS = {"plu": ["check_finite"], "ilu": ["drop_tol", "fill_factor"],
                 "gfmm_compressed": ["P", "M", "rank", "tol", "pivoting"],
                 "toy_lu": ["mode"]}


def _entry(kind: str, names: dict) -> st.SearchStrategy:
    name = st.one_of(st.sampled_from(sorted(names)), TEXT)

    @st.composite
    def build(draw):
        chosen = draw(name)
        entry: dict = {"name": chosen}
        keys = names.get(chosen, []) + ["nope"]
        params = draw(st.dictionaries(st.sampled_from(keys), st.one_of(
            VALUES, st.lists(SCALARS, min_size=1, max_size=3)), max_size=3))
        if params or draw(st.booleans()):
            entry["params"] = params
        if kind == "operator" and draw(st.integers(0, 5)) == 0:
            entry[draw(st.sampled_from(["form_limit", "grade_limit"]))] = draw(VALUES)
        if kind == "operator" and draw(st.integers(0, 4)):
            entry["sizes"] = draw(st.one_of(
                st.lists(st.integers(min_value=-2, max_value=40), max_size=3),
                st.integers(min_value=-2, max_value=40), VALUES))
        if kind == "method" and draw(st.integers(0, 3)) == 0:
            entry[draw(st.sampled_from(["budget", "timeout", "memory_limit", "form_limit",
                                        "resources", "bogus"]))] = draw(VALUES)
        return entry if draw(st.integers(0, 9)) else draw(VALUES)

    return build()


@st.composite
def suites(draw) -> dict:
    """A mapping shaped like a suite: the schema's keys with hostile values, entries naming
    real and unknown plugins' classes with hostile parameters."""
    data: dict = {}
    for key in ("name", "seed", "repeats", "timeout", "memory_limit", "form_limit",
                "exact_limit", "grade_limit", "device", "executor", "report", "description"):
        if draw(st.integers(0, 3)) == 0:
            data[key] = draw(VALUES)
    if draw(st.integers(0, 9)):
        data["operators"] = draw(st.lists(_entry("operator", OPERATOR_PARAMS), max_size=2))
    if draw(st.integers(0, 9)):
        data["methods"] = draw(st.lists(_entry("method", METHOD_PARAMS), max_size=2))
    if draw(st.integers(0, 7)) == 0:
        data[draw(TEXT)] = draw(VALUES)
    return data


def _dump(data: object) -> bytes:
    try:
        return yaml.safe_dump(data, allow_unicode=True).encode("utf-8", "surrogatepass")
    except (yaml.YAMLError, ValueError, UnicodeEncodeError):
        return b"name: t\n"


@st.composite
def mutated(draw, original: bytes) -> bytes:
    """``original`` with a few byte-level mutations: flip, insert, delete, duplicate or swap
    a line."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "dup_line", "swap_lines"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from(
                [b"\xff", b"\x00", b"\t", b"- ", b": ", b"[", b"{", b"&a ", b"*a", b"!!python",
                 b"\n", b"nan", b".inf", b"\x1b[2J", b"'", b'"', b"#", b"<<: *a\n", b"%"]))
        elif op == "delete" and data:
            del data[pos:pos + draw(st.integers(1, 8))]
        else:
            lines = bytes(data).split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            if op == "dup_line":
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            data = bytearray(b"\n".join(lines))
    return bytes(data)


SMOKE = (REPO / "suites" / "smoke.yaml").read_bytes()
TOY_SUITE = (b"name: toy\nseed: 1\nrepeats: 1\ntimeout: 10m\n"
             b"operators:\n  - {name: toy_tridiag, sizes: [4, 8], params: {d: [2.0, 3.0]}}\n"
             b"  - {name: laplacian_1d, sizes: 16}\n"
             b"methods:\n  - toy_lu\n  - {name: gfmm_compressed, params: {P: [4, 8]}}\n"
             b"report: {columns: [factor_error], formats: [md]}\n")


# --------------------------------------------------------------------------------------------
# The suite loader
# --------------------------------------------------------------------------------------------
def _load_property(registry, content: bytes) -> None:
    from lubench.rundir.records import canonical_json
    from lubench.suite.load import load_suite

    with folder() as tmp:
        path = tmp / "s.yaml"
        path.write_bytes(content)
        try:
            suite = load_suite(path, registry)
        except SuiteError as exc:
            _one_error(str(exc), f"{path}: ")
        else:
            assert suite.cases
            for case in suite.cases:
                assert type(case.n) is int and case.n >= 1
                assert isinstance(case.method_params, dict)
                assert isinstance(case.operator_params, dict)
                canonical_json(case.method_params)
                canonical_json(case.operator_params)
        assert [p.name for p in tmp.iterdir()] == ["s.yaml"]


@fuzz(120)
@given(data=suites())
def test_fuzz_suite_loader_generated(registry, data):
    _load_property(registry, _dump(data))


@fuzz(120)
@given(content=st.one_of(mutated(SMOKE), mutated(TOY_SUITE)))
def test_fuzz_suite_loader_mutated(registry, content):
    _load_property(registry, content)


# --------------------------------------------------------------------------------------------
# The Matrix Market reader
# --------------------------------------------------------------------------------------------
@st.composite
def mtx_files(draw) -> bytes:
    fmt = draw(st.sampled_from(["coordinate", "array", "coordinat", ""]))
    field = draw(st.sampled_from(["real", "integer", "pattern", "complex", "double", ""]))
    symmetry = draw(st.sampled_from(["general", "symmetric", "skew-symmetric", "hermitian",
                                     ""]))
    head = f"%%MatrixMarket matrix {fmt} {field} {symmetry}".strip()
    n = draw(st.one_of(st.integers(-1, 6), st.sampled_from([10 ** 5, 2 ** 64])))
    m = draw(st.one_of(st.just(n), st.integers(-1, 6)))
    number = st.one_of(
        st.floats(allow_nan=True, allow_infinity=True, width=64).map(repr),
        st.integers(-9, 9).map(str),
        st.sampled_from(["1e999", "-1e999", "nan", "inf", "1,5", "x", "", "0x10", "1e-400"]))
    lines = [head] + draw(st.lists(st.sampled_from(["% a comment", "%", ""]), max_size=2))
    if fmt == "array":
        lines.append(f"{n} {m}")
        count = draw(st.integers(0, 40))
        lines += draw(st.lists(number, min_size=count, max_size=count))
    else:
        entries = draw(st.lists(st.tuples(st.integers(-1, 8), st.integers(-1, 8), number),
                                max_size=12))
        declared = draw(st.one_of(st.just(len(entries)), st.integers(0, 14)))
        lines.append(f"{n} {m} {declared}")
        lines += [f"{i} {j}" + ("" if field == "pattern" else f" {v}") for i, j, v in entries]
    text = "\n".join(lines) + draw(st.sampled_from(["\n", "", "\r\n"]))
    return text.encode()


GOOD_MTX = (REPO / "suites" / "data" / "tutorial_4x4.mtx").read_bytes()


def _mtx_property(content: bytes) -> None:
    from lubench_operators.files import MatrixMarket

    with folder() as tmp:
        path = tmp / "m.mtx"
        path.write_bytes(content)
        gen = MatrixMarket(path=path)
        try:
            (n,) = gen.sizes()
        except InvalidParameter as exc:  # one line naming the file (made printable where
            text = str(exc)                 # it is shown: suite errors, the CLI)
            assert text.startswith(f"{path}: ") and "\n" not in text and len(text) < 700
        else:
            assert type(n) is int and n >= 1
            if n <= 10 ** 5:
                op = gen.build(n, seed=0)
                A = op.dense() if n <= 200 else None
                assert op.n == n
                if A is not None:
                    assert A.shape == (n, n) and np.isfinite(A).all()
        assert [p.name for p in tmp.iterdir()] == ["m.mtx"]


@fuzz(150)
@given(content=st.one_of(mtx_files(), mutated(GOOD_MTX)))
def test_fuzz_matrix_market_reader(content):
    _mtx_property(content)


# --------------------------------------------------------------------------------------------
# The records reader, and what reads records back (store, report, compare, summary)
# --------------------------------------------------------------------------------------------
TEMPLATE = {"run_id": "r", "suite": "s", "case_id": "abc", "operator": "laplacian_1d",
            "operator_params": "{}", "n": 16, "method": "plu", "family": "classical",
            "method_params": "{}", "seed": 1, "repeat": 0, "device": "cpu", "status": "ok",
            "error": "", "factor_error": 1e-16, "factor_error_kind": "exact",
            "solve_residual": 1e-16, "precond_iterations": 1, "precond_converged": True,
            "precond_seconds": 1e-3, "n_params": 256, "setup_seconds": 1e-3,
            "solve_seconds": 1e-4, "history": [], "info": "{}"}


@st.composite
def record_lines(draw) -> bytes:
    kind = draw(st.integers(0, 5))
    if kind <= 2:  # a record with some fields replaced
        rec = dict(TEMPLATE, case_id=draw(st.sampled_from(["abc", "def", "ghi"])),
                   repeat=draw(st.integers(0, 2)))
        for key in draw(st.lists(st.sampled_from(sorted(TEMPLATE) + ["history", "x"]),
                                 max_size=3)):
            rec[key] = draw(st.one_of(VALUES, st.sampled_from(
                [10 ** 30, {"$float": "NaN"}, {"$float": "bogus"}, [[1]], {"a": 1}])))
        try:
            return json.dumps(rec, allow_nan=True).encode()
        except (ValueError, TypeError, RecursionError):
            return b"{}"
    if kind == 3:
        try:
            return json.dumps(draw(VALUES)).encode()
        except (ValueError, TypeError):
            return b"[]"
    if kind == 4:
        return draw(st.binary(max_size=40))
    depth = draw(st.integers(1, 50_000))
    return b"[" * depth + b"]" * draw(st.integers(0, depth))


def _records_property(lines: list[bytes], cut: bool) -> None:
    from lubench.report.compare import compare_frames
    from lubench.report.console import summary_table
    from lubench.report.load import load_run
    from lubench.rundir.records import dedupe_records, read_records, records_to_frames

    with folder() as tmp:
        run = tmp / "run"
        run.mkdir()
        data = b"\n".join(line.replace(b"\n", b" ") for line in lines) + (b"" if cut else b"\n")
        (run / "records.jsonl").write_bytes(data)
        records = list(read_records(run / "records.jsonl"))
        for rec in records:
            assert isinstance(rec["case_id"], str) and rec["case_id"]
            assert type(rec.get("repeat", 0)) is int and rec.get("repeat", 0) >= 0
        records_to_frames(dedupe_records(records))
        try:
            results = load_run(run).results
        except LubenchError as exc:
            _one_error(str(exc), str(run))
            return
        compare_frames(results, results)
        summary_table(results)


@fuzz(100)
@given(lines=st.lists(record_lines(), max_size=6), cut=st.booleans())
def test_fuzz_records_reader(lines, cut):
    _records_property(lines, cut)


# --------------------------------------------------------------------------------------------
# The report specification
# --------------------------------------------------------------------------------------------
SPEC_KEYS = sorted(report_spec.SPEC_KEYS)  # every key the parser knows, new ones included
SPEC_VALUES = st.one_of(VALUES, st.sampled_from(
    ["factor_error,n_params", "plu,ilu", "gfmm_lu[P=32]", "[", "laplacian_*[n=256]", "16,x",
     "operator", "blocks", "png,pdf", "md,tex,gif", "paper", "slides", "none", "all", "",
     "largest", "largest,16", "0,16"]))


@fuzz(200)
@given(spec=st.one_of(st.dictionaries(st.one_of(st.sampled_from(SPEC_KEYS), TEXT), SPEC_VALUES,
                                      max_size=4), VALUES),
       options=st.dictionaries(st.sampled_from(SPEC_KEYS), st.one_of(st.none(), TEXT,
                                                                     SPEC_VALUES), max_size=3))
def test_fuzz_report_spec(spec, options):
    from lubench.suite.report_spec import ReportSpec, merge, parse_spec

    for where, value in (("s.yaml: report", spec), ("--", None)):
        try:
            if value is None:
                base = spec if isinstance(spec, dict) else {}
                got = parse_spec(merge(base, {k: v for k, v in options.items()
                                              if isinstance(v, str)}), "--")
            else:
                got = parse_spec(value, where)
        except LubenchError as exc:
            text = str(exc)
            assert "\n" not in text and len(text) < 2000 and printable(text) == text, text
        else:
            assert isinstance(got, ReportSpec)


# --------------------------------------------------------------------------------------------
# Command-line options (click, in this process)
# --------------------------------------------------------------------------------------------
OPTIONS = ["-j", "--timeout", "--columns", "--retry", "-k", "--device", "--executor",
           "--slurm-time", "--slurm-mem-gb", "--slurm-gpus-per-task",
           "--slurm-array-parallelism", "--slurm-partition", "--plugin", "--resume", "-o"]
OPTION_VALUES = st.one_of(TEXT, st.sampled_from(
    ["0", "-1", "2", "nan", "inf", "1e999", "", "none", "10m", "all", "factor_error,,",
     "failed", "plu", "plu[", "[=1]", "gfmm_lu[P=16]", "cpu", "cuda", "inline", "slurm",
     "local", "01:00", "garbage", "10" * 30, "\x1b[2J", "missing.py", "no.such.module"]))


@fuzz(80)
@given(args=st.lists(st.tuples(st.sampled_from(OPTIONS), OPTION_VALUES), max_size=3),
       flags=st.lists(st.sampled_from(["--no-report", "--progress", "--report"]), max_size=2))
def test_fuzz_cli_options(args, flags):
    from click.testing import CliRunner

    from lubench.cli import main

    with folder() as tmp:
        suite = tmp / "s.yaml"
        suite.write_bytes(b"name: t\ndevice: cpu\noperators: [{name: laplacian_1d, sizes: [8]}]"
                          b"\nmethods: [plu]\n")
        argv = ["run", str(suite), "--dry-run", *[x for pair in args for x in pair], *flags]
        res = CliRunner().invoke(main, argv, catch_exceptions=True)
        assert res.exception is None or isinstance(res.exception, SystemExit), \
            f"{argv}: {res.exception!r}"
        assert res.exit_code in (0, 2), (argv, res.output)
        if res.exit_code == 2:
            errors = [ln for ln in res.output.splitlines()
                      if ln.startswith(("lubench: error:", "Error: "))]
            assert len(errors) == 1, (argv, res.output)
        assert sorted(p.name for p in tmp.iterdir()) == ["s.yaml"], argv


# --------------------------------------------------------------------------------------------
# Through the installed `lubench`: a few inputs of every kind
# --------------------------------------------------------------------------------------------
@st.composite
def cli_inputs(draw) -> tuple[str, dict[str, bytes], list[str]]:
    """(what, files to write, argv after `lubench`)."""
    kind = draw(st.sampled_from(["suite", "mutated", "mtx", "spec", "options"]))
    ok_suite = b"name: t\ndevice: cpu\noperators: [{name: laplacian_1d, sizes: [8]}]\n" \
               b"methods: [plu]\n"
    if kind == "suite":
        return kind, {"s.yaml": _dump(draw(suites()))}, ["run", "s.yaml", "--dry-run"]
    if kind == "mutated":
        return kind, {"s.yaml": draw(mutated(SMOKE))}, ["run", "s.yaml", "--dry-run"]
    if kind == "mtx":
        return kind, {"s.yaml": b"name: t\noperators: [{name: matrix_market, params: "
                                b"{path: m.mtx}}]\nmethods: [plu]\n",
                      "m.mtx": draw(mtx_files())}, ["run", "s.yaml", "--dry-run"]
    if kind == "spec":
        spec = {"report": draw(st.dictionaries(st.sampled_from(SPEC_KEYS), SPEC_VALUES,
                                               max_size=3))}
        return kind, {"s.yaml": ok_suite + _dump(spec)}, ["run", "s.yaml", "--dry-run"]
    args = draw(st.lists(st.tuples(st.sampled_from(OPTIONS[:8]), OPTION_VALUES), max_size=2))
    return kind, {"s.yaml": ok_suite}, ["run", "s.yaml", "--dry-run",
                                        *[x for pair in args for x in pair]]


@pytest.mark.slow
@fuzz(10)
@given(case=cli_inputs())
def test_fuzz_through_the_installed_lubench(case):
    what, files, argv = case
    with folder() as tmp:
        for name, content in files.items():
            (tmp / name).write_bytes(content)
        out = subprocess.run([lubench_exe(), *argv], cwd=tmp, capture_output=True,
                             timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
        stderr = out.stderr.decode("utf-8", "replace")
        assert out.returncode in (0, 2), (what, argv, stderr[-2000:])
        assert "Traceback" not in stderr and "Aborted!" not in stderr, stderr[-2000:]
        if out.returncode == 2:
            errors = [ln for ln in stderr.splitlines()
                      if ln.startswith(("lubench: error:", "Error: "))]
            assert len(errors) == 1, stderr[-2000:]
            assert printable(stderr) == stderr
        assert sorted(p.name for p in tmp.iterdir()) == sorted(files), (what, argv)
