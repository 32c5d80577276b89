"""``lubench run`` as a user and a log see it: exit statuses, bad input caught before anything
is written, one line per case without a terminal, retry, merge, unavailable plugins, list NAME.

Everything goes through the installed ``lubench`` command in real subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, TOY_PLUGIN
from test_cli import lubench, lubench_exe, write_suite

TOY = {
    "name": "toy",
    "plugins": [str(TOY_PLUGIN)],
    "operators": [{"name": "toy_tridiag", "sizes": [8, 16]}],
    "methods": [{"name": "toy_lu"}, {"name": "toy_lu", "params": {"mode": "refuse_nonsym"}}],
}

# A method whose behaviour a variable switches: raises with SWITCH=raise, else dense LU.
SWITCH_PLUGIN = '''
import os
import scipy.linalg as sla
from lubench import hookimpl
from lubench.api import Factorization, Method


class _LU(Factorization):
    def __init__(self, A):
        super().__init__()
        self.A, self.lu, self.n_params = A, sla.lu_factor(A), A.size

    def solve(self, B):
        return sla.lu_solve(self.lu, B)

    def apply(self, X):
        return self.A @ X


class Switch(Method):
    """Dense LU, or a RuntimeError when SWITCH=raise."""

    name = "switch"

    def factorize(self, op, ctx):
        if os.environ.get("SWITCH") == "raise":
            raise RuntimeError("switched to raise: " + "a long explanation " * 8)
        return _LU(op.dense())


@hookimpl
def lubench_methods():
    return [Switch]
'''

# A plugin that needs a module this machine does not have.
NEEDY_PLUGIN = '''
from lubench import hookimpl
from lubench.api import Method

requires = ["lubench_test_no_such_module"]
install_hint = 'pip install "needy[extra]"'


class Needy(Method):
    """Needs a module that is not installed."""

    name = "needy"

    def factorize(self, op, ctx):
        import lubench_test_no_such_module  # noqa: F401


@hookimpl
def lubench_methods():
    return [Needy]
'''


def _switch_suite(tmp_path: Path) -> Path:
    (tmp_path / "switch.py").write_text(SWITCH_PLUGIN)
    return write_suite(tmp_path, {**TOY, "plugins": [str(TOY_PLUGIN), "switch.py"],
                                  "methods": ["toy_lu", "switch"]}, "switch.yaml")


def _run(*args: object, env: dict | None = None) -> subprocess.CompletedProcess:
    if env is None:
        return lubench(*args)
    full = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([lubench_exe(), *map(str, args)], capture_output=True, text=True,
                          env=full, timeout=300)


# --------------------------------------------------------------------------------------------
# Exit status 2: bad input, caught before any case runs and before anything is written
# --------------------------------------------------------------------------------------------
BAD_SUITES = [
    ("jobs", {"executor": {"jobs": "two"}}, "executor.jobs: expected an integer, got 'two'"),
    ("kind", {"executor": {"kind": "lokal"}},
     "executor.kind: expected one of local, inline, slurm, got 'lokal'"),
    ("timeout", {"timeout": -1}, "timeout: must be positive (say 'none' for no limit)"),
    ("zero_timeout", {"timeout": 0}, "timeout: must be positive"),
    ("memory", {"memory_limit": 0.5}, "memory_limit: is less than one byte"),
    ("gfmm_M", {"operators": [{"name": "laplacian_1d", "sizes": [16]}],
                "methods": [{"name": "gfmm_lu", "params": {"M": 3, "P": 4}}]},
     "methods[0].params: gfmm_lu: M must be a power of two"),
    ("gfmm_compressed_P", {"operators": [{"name": "laplacian_1d", "sizes": [16]}],
                           "methods": [{"name": "gfmm_compressed", "params": {"P": [0, -3]}}]},
     "2 errors"),  # issue 25, item 8: both at load, not two failed cases and a run directory
]


@pytest.mark.parametrize("name, patch, message", BAD_SUITES, ids=[b[0] for b in BAD_SUITES])
@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "run"])
def test_each_bad_suite_is_one_line_exit_2_and_writes_nothing(tmp_path, name, patch, message,
                                                              dry_run):
    suite = write_suite(tmp_path, {**TOY, **patch})
    run_dir = tmp_path / "run"
    out = lubench("run", suite, "-o", run_dir, *(["--dry-run"] if dry_run else []))
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines[0].startswith(f"lubench: error: {suite}: {message}")
    if name == "gfmm_compressed_P":
        assert lines[1:] == ["  methods[0].params.P: gfmm_compressed: P must be at least 1, "
                             "got 0",
                             "  methods[0].params.P: gfmm_compressed: P must be at least 1, "
                             "got -3"]
    else:
        assert len(lines) == 1
    assert "Traceback" not in out.stderr
    assert not run_dir.exists()


def _toy_text(**patch: object) -> str:
    return yaml.safe_dump({**TOY, **patch}, sort_keys=False)


# Issue 25: what a suite file may hold that used to run, drop part of itself, or print a
# traceback — each is one line (a header and a line per problem), exit 2, nothing written.
BAD_SUITE_FILES = [
    ("not_utf8", lambda: b"name: t\xff\n", ["not UTF-8 text (byte 0xff at line 1"]),
    ("key_twice", lambda: (_toy_text() + "methods:\n  - name: toy_lu\n").encode(),
     ["key 'methods' given twice in one mapping (first at line"]),
    ("non_finite", lambda: _toy_text(operators=[{"name": "convdiff_1d", "sizes": [16],
                                                 "params": {"eps": float("nan"),
                                                            "beta": float("inf")}}]).encode(),
     ["operators[0].params.eps: expected a finite number, got nan",
      "operators[0].params.beta: expected a finite number, got inf"]),
    ("sizes_true", lambda: _toy_text(operators=[{"name": "toy_tridiag", "sizes": [True]}]
                                     ).encode(),
     ["operators[0].sizes[0]: expected an integer, got True"]),
    ("name_dots", lambda: _toy_text(name="..").encode(), ["name: a name of dots"]),
    ("report_too", lambda: _toy_text(repeats=0, report={"columns": ["nope"]}).encode(),
     ["repeats: must be at least 1", "report.columns: unknown column 'nope'"]),
    ("mtx_0x0", lambda: _toy_text(operators=[{"name": "matrix_market",
                                              "params": {"path": "empty.mtx"}}]).encode(),
     ["operators[0].params.path: ", "empty.mtx: holds a 0×0 matrix: nothing to factor"]),
]


@pytest.mark.parametrize("name, content, messages", BAD_SUITE_FILES,
                         ids=[b[0] for b in BAD_SUITE_FILES])
def test_each_bad_suite_file_is_exit_2_every_problem_named(tmp_path, name, content, messages):
    suite = tmp_path / "s.yaml"
    suite.write_bytes(content())
    (tmp_path / "empty.mtx").write_text("%%MatrixMarket matrix coordinate real general\n"
                                        "0 0 0\n")
    out = lubench("run", suite, cwd=tmp_path)  # no -o: nothing may appear next to the suite
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines[0].startswith(f"lubench: error: {suite}: ")
    assert len(lines) == (1 if len(messages) == 1 or name == "mtx_0x0" else 1 + len(messages))
    for message in messages:
        assert message in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.mtx", "s.yaml"]


def test_a_suite_read_from_a_pipe_is_read_once(tmp_path):
    """``lubench run <(cat s.yaml)``: the plugins and the cases come from one read (the
    second read of the pipe found it empty)."""
    write_suite(tmp_path, TOY)
    out = subprocess.run(["bash", "-c", f"{lubench_exe()} run <(cat s.yaml) -o run "
                          "--no-report --no-progress"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert len((tmp_path / "run" / "records.jsonl").read_text().splitlines()) == 4


def test_standard_output_that_cannot_be_written_is_named(tmp_path):
    """Issue 25, 10i/10j: ``run > /dev/full`` exited 2 naming nothing; ``schema >&-`` exited
    0 having printed nothing. The results of a run are kept and said where."""
    suite = write_suite(tmp_path, TOY)
    with open("/dev/full", "w") as full:
        out = subprocess.run([lubench_exe(), "run", str(suite), "-o", str(tmp_path / "run"),
                              "--no-report", "--no-progress"], stdout=full,
                             stderr=subprocess.PIPE, text=True, timeout=300)
    assert out.returncode == 1  # cases were recorded (DESIGN: an OS error after cases: 1)
    assert out.stderr.strip().splitlines()[-1] == (
        "lubench: error: cannot write to standard output: No space left on device; the "
        f"results are in {tmp_path / 'run'}")
    assert len((tmp_path / "run" / "records.jsonl").read_text().splitlines()) == 4
    closed = subprocess.run([lubench_exe(), "schema"], stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: os.close(1), timeout=120)
    assert closed.returncode == 2
    assert closed.stderr.startswith("lubench: error: standard output is closed")


def test_a_plugins_terminal_escapes_never_reach_the_terminal(tmp_path):
    hostile = Path(__file__).resolve().parent / "fixtures" / "hostile_plugin.py"
    suite = write_suite(tmp_path, {"name": "h", "plugins": [str(hostile)],
                                   "operators": [{"name": "h_op", "sizes": [8]}],
                                   "methods": [{"name": "h_lu"}]})
    out = _run("run", suite, "-o", tmp_path / "run", "--no-report", "--no-progress",
               env={"HOSTILE_WHERE": "factorize", "HOSTILE_WHAT": "ansi"})
    assert out.returncode == 1
    assert "\x1b" not in out.stdout + out.stderr and "\x07" not in out.stdout + out.stderr
    assert "\\x1b[31mRED" in out.stdout  # shown, escaped


@pytest.mark.parametrize("args, message", [
    (["--timeout", "0"], "--timeout: must be positive"),
    (["--timeout", "soon"], "--timeout: expected a time such as 600"),
    (["--retry", "failed"], "--retry reruns cases of an earlier run: give --resume"),
    (["--columns", "eror"], "--columns: unknown column 'eror'"),
    (["-k", "nothing_matches"], "no case matches -k nothing_matches"),
    (["--executor", "inline", "-j", "2"],  # issue 25, 10f: was silently one job
     "the inline executor runs one case at a time, in lubench's own process; -j/jobs 2 "
     "needs --executor local"),
    (["--executor", "slurm", "--slurm-time", "garbage"],  # was said after a run directory
     "--slurm-time: expected minutes, HH:MM, HH:MM:SS or D-HH:MM, got 'garbage'"),
])
def test_bad_options_are_one_line_exit_2(tmp_path, args, message):
    suite = write_suite(tmp_path, TOY)
    out = lubench("run", suite, "-o", tmp_path / "run", *args)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]
    assert message in out.stderr
    assert not (tmp_path / "run").exists()


def test_device_cuda_without_cuda_is_bad_input(tmp_path):
    from lubench.execution.devices import cuda_problem

    if cuda_problem() is None:
        pytest.skip("this machine has a CUDA device")
    out = lubench("run", REPO / "suites" / "smoke.yaml", "-k", "gfmm_lu", "--device", "cuda",
                  "-o", tmp_path / "run")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lubench: error: --device cuda: ")
    assert not (tmp_path / "run").exists()


def test_a_method_of_a_disabled_plugin_says_it_was_disabled(tmp_path):
    """Issue 25, 10l: it was reported as unknown, without a word of LUBENCH_DISABLE_PLUGINS."""
    suite = write_suite(tmp_path, {**TOY, "methods": [{"name": "plu"}]})
    out = _run("run", suite, "--dry-run", env={"LUBENCH_DISABLE_PLUGINS": "classical"})
    assert out.returncode == 2
    assert "unknown method 'plu'" in out.stderr  # (then a close name another plugin has)
    assert "; LUBENCH_DISABLE_PLUGINS disabled 'classical', which may provide it" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_device_cuda_for_classical_cases_only_says_so(tmp_path):
    """Issue 25, 10m: classical methods run on the CPU; asking for CUDA did so without a
    word."""
    suite = write_suite(tmp_path, {**TOY, "operators": [{"name": "laplacian_1d",
                                                         "sizes": [8]}],
                                   "methods": [{"name": "plu"}]})
    out = lubench("run", suite, "--device", "cuda", "-o", tmp_path / "run", "--no-report")
    assert out.returncode == 0, out.stderr
    assert "lubench: warning: device cuda: every selected case is a classical method, which " \
           "runs on the CPU" in out.stderr


def test_every_problem_of_a_suite_at_once(tmp_path):
    suite = write_suite(tmp_path, {**TOY, "repeats": 0, "executor": {"jobs": "two"},
                                   "methods": [{"name": "toy_luu"},
                                               {"name": "toy_lu", "params": {"moode": 1}}]})
    out = lubench("run", suite, "--dry-run")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert lines[0] == f"lubench: error: {suite}: 2 errors"  # the fixed part first ...
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["repeats", "executor.jobs"]
    out = lubench("run", write_suite(tmp_path, {**TOY, "methods": [
        {"name": "toy_luu"}, {"name": "toy_lu", "params": {"moode": 1}}]}), "--dry-run")
    lines = out.stderr.strip().splitlines()  # ... then every entry against its plugin
    assert lines[0].endswith(": 2 errors")
    assert "methods[0].name: unknown method 'toy_luu'" in lines[1]
    assert "methods[1].params: 'toy_lu' takes no parameter 'moode'" in lines[2]


# --------------------------------------------------------------------------------------------
# Exit status 0 and 1, the summary, and one line per case in a log
# --------------------------------------------------------------------------------------------
def test_outcomes_of_methods_exit_0(tmp_path):
    skewed = [{"name": "toy_tridiag", "sizes": [8], "params": {"skew": [0.0, 0.5]}}]
    out = lubench("run", write_suite(tmp_path, {**TOY, "operators": skewed}), "-o",
                  tmp_path / "run", "--no-report")
    assert out.returncode == 0, out.stderr
    df = pd.read_parquet(tmp_path / "run" / "results.parquet")
    assert set(df["status"]) == {"ok", "unsupported"}


def test_a_raising_plugin_exits_1_and_the_summary_names_it(tmp_path):
    suite = _switch_suite(tmp_path)
    out = _run("run", suite, "-o", tmp_path / "run", "--no-report", env={"SWITCH": "raise"})
    assert out.returncode == 1, out.stderr
    reason = "RuntimeError: switched to raise: " + ("a long explanation " * 8).strip()
    assert reason in out.stdout  # the full reason under the table, not cut
    assert "failed [1]" in out.stdout
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("lubench: 2 case(s) failed (reasons above): ")
    assert "toy_tridiag[n=8] × switch" in last


def test_without_a_terminal_the_log_has_one_line_per_case(tmp_path):
    suite = _switch_suite(tmp_path)
    log = tmp_path / "log"
    with open(log, "w") as err:  # `lubench run ... 2>log`: stderr is a file, not a terminal
        proc = subprocess.run([lubench_exe(), "run", str(suite), "-o", str(tmp_path / "run"),
                               "--no-report"], stdout=subprocess.DEVNULL, stderr=err,
                              env={**os.environ, "SWITCH": "raise"}, timeout=300)
    assert proc.returncode == 1
    lines = log.read_text().splitlines()
    case_lines = [line for line in lines if line.split()[0] in ("ok", "failed")]
    assert len(case_lines) == 4  # 2 sizes × 2 methods, in the order they finished
    for line in case_lines:
        status, label_and_rest = line.split(None, 1)
        assert " × " in label_and_rest and "s" in label_and_rest.split("  ")[1]
        if status == "failed":
            assert "RuntimeError: switched to raise" in line
    assert sum(line.startswith("ok ") for line in case_lines) == 2


def test_columns_choose_the_summary(tmp_path):
    out = lubench("run", write_suite(tmp_path, TOY), "-o", tmp_path / "run", "--no-report",
                  "--columns", "n_params,solve_seconds")
    header = out.stdout.splitlines()[0].split()
    assert header == ["operator", "n", "method", "n_params", "solve_seconds", "status"]


# --------------------------------------------------------------------------------------------
# Resume that retries, plugin versions, merge
# --------------------------------------------------------------------------------------------
def test_resume_retries_the_statuses_asked_for(tmp_path):
    suite, run_dir = _switch_suite(tmp_path), tmp_path / "run"
    first = _run("run", suite, "-o", run_dir, "--no-report", env={"SWITCH": "raise"})
    assert first.returncode == 1
    again = _run("run", suite, "--resume", run_dir, "--no-report", env={"SWITCH": "ok"})
    assert again.returncode == 1 and "4 already done" in again.stdout  # resume alone: done
    fixed = _run("run", suite, "--resume", run_dir, "--retry", "failed,timeout", "--no-report",
                 env={"SWITCH": "ok"})
    assert fixed.returncode == 0, fixed.stderr
    assert "2 ok, 2 already done" in fixed.stdout
    records = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    assert len(records) == 6  # the failed records stay in the log ...
    df = pd.read_parquet(run_dir / "results.parquet")
    assert len(df) == 4 and set(df["status"]) == {"ok"}  # ... superseded by the new ones


def test_records_carry_the_plugin_version_and_a_changed_version_warns(tmp_path):
    suite, run_dir = write_suite(tmp_path, {**TOY, "methods": ["toy_lu", "plu"]}), \
        tmp_path / "run"
    first = lubench("run", suite, "-o", run_dir, "--no-report", "-k", "*[n=8]")
    assert first.returncode == 0, first.stderr
    records = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    by_method = {r["method"]: r for r in records}
    from importlib.metadata import version

    assert by_method["plu"]["plugin"] == "classical"
    assert by_method["plu"]["plugin_version"] == version("lubench")
    assert by_method["toy_lu"]["plugin"] == "toy_plugin"  # a file: no distribution version
    for r in records:
        r["plugin_version"] = "0.0.0-old"
    (run_dir / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    resumed = lubench("run", suite, "--resume", run_dir, "--no-report")
    assert resumed.returncode == 0, resumed.stderr
    warnings = [line for line in resumed.stderr.splitlines() if "warning" in line]
    assert any("records of 'plu' were made by plugin 'classical' version 0.0.0-old" in w
               for w in warnings), resumed.stderr


def test_merge_keeps_the_newest_and_reports_conflicts(tmp_path):
    suite = _switch_suite(tmp_path)
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "merged"
    assert _run("run", suite, "-o", a, "--no-report", env={"SWITCH": "raise"}).returncode == 1
    assert _run("run", suite, "-o", b, "--no-report", "-k", "switch",
                env={"SWITCH": "ok"}).returncode == 0
    merged = lubench("merge", a, b, "-o", out)
    assert merged.returncode == 0, merged.stderr
    conflicts = [line for line in merged.stderr.splitlines() if "conflict" in line]
    assert len(conflicts) == 2  # the two switch cases: failed in a, ok in b
    assert all("status 'failed' in" in c and "kept the newest" in c for c in conflicts)
    assert "4 records (2 duplicate(s) dropped, 2 conflict(s))" in merged.stdout
    df = pd.read_parquet(out / "results.parquet")
    assert len(df) == 4 and set(df["status"]) == {"ok"}
    meta = json.loads((out / "meta.json").read_text())
    assert [m["records"] for m in meta["merged_from"]] == [2, 2]
    assert lubench("report", out).returncode == 0
    again = lubench("merge", a, b, "-o", out)  # nothing is overwritten
    assert again.returncode == 2 and "not an empty folder" in again.stderr


# --------------------------------------------------------------------------------------------
# Unavailable plugins, list NAME, schema
# --------------------------------------------------------------------------------------------
def test_an_unavailable_plugin_is_listed_with_its_install_command_and_skipped(tmp_path):
    (tmp_path / "needy.py").write_text(NEEDY_PLUGIN)
    needy = str(tmp_path / "needy.py")
    plugins = lubench("plugins", "--plugin", needy)
    assert plugins.returncode == 0
    assert ('needy: unavailable: needs lubench_test_no_such_module: pip install "needy[extra]"'
            in plugins.stdout)
    assert "warning" not in plugins.stderr  # unavailable is not broken
    listed = lubench("list", "needy", "--plugin", needy)
    assert listed.returncode == 0 and 'pip install "needy[extra]"' in listed.stdout
    suite = write_suite(tmp_path, {**TOY, "plugins": [str(TOY_PLUGIN), "needy.py"],
                                   "methods": ["toy_lu", "needy"]})
    out = lubench("run", suite, "-o", tmp_path / "run", "--no-report")
    assert out.returncode == 0, out.stderr
    df = pd.read_parquet(tmp_path / "run" / "results.parquet")
    skipped = df[df.method == "needy"]
    assert len(skipped) == 2 and set(skipped["status"]) == {"unavailable"}
    assert set(skipped["error"]) == {
        'needs lubench_test_no_such_module: pip install "needy[extra]"'}
    assert set(df.loc[df.method == "toy_lu", "status"]) == {"ok"}
    assert 'unavailable [1]' in out.stdout and 'pip install "needy[extra]"' in out.stdout


def test_list_name_shows_one_entry_as_plain_text():
    out = lubench("list", "gfmm_lu")
    assert out.returncode == 0, out.stderr
    assert out.stdout.lstrip().startswith("gfmm_lu [learned]")
    assert "M: int | None = None" in out.stdout and "parameters:" in out.stdout
    assert "``" not in out.stdout and ":class:" not in out.stdout  # no raw RST
    assert "laplacian_1d" not in out.stdout  # one entry only
    whole = lubench("list").stdout
    assert "``" not in whole and ":class:" not in whole
    typo = lubench("list", "gfmm_l")
    assert typo.returncode == 2 and "did you mean 'gfmm_lu'?" in typo.stderr


def test_schema_command_prints_json_schema():
    out = lubench("schema")
    assert out.returncode == 0
    schema = json.loads(out.stdout)
    assert schema["title"] == "lubench suite"
    assert {"operators", "methods", "executor", "timeout"} <= set(schema["properties"])


def test_suites_of_the_repo_still_validate_with_units(tmp_path):
    suite = yaml.safe_load((REPO / "suites" / "smoke.yaml").read_text())
    suite.update(timeout="2m", memory_limit="4GiB")
    suite["methods"][-1]["budget"] = {"max_steps": 5, "max_seconds": "10s"}
    path = tmp_path / "smoke.yaml"
    (tmp_path / "data").symlink_to(REPO / "suites" / "data")
    path.write_text(yaml.safe_dump(suite))
    out = lubench("run", path, "--dry-run")
    assert out.returncode == 0, out.stderr
