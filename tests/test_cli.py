"""The installed ``lubench`` command, run as a user would: real subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, TOY_PLUGIN


def lubench_exe() -> str:
    exe = Path(sys.executable).with_name("lubench")
    return str(exe) if exe.exists() else (shutil.which("lubench") or "lubench")


def lubench(*args: str, cwd: Path | None = None, timeout: float = 300,
            pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "100"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([lubench_exe(), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def write_suite(tmp_path: Path, data: dict, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


TOY = {
    "name": "toy",
    "plugins": [str(TOY_PLUGIN)],
    "operators": [{"name": "toy_tridiag", "sizes": [8, 16], "params": {"skew": [0.0, 0.5]}}],
    "methods": [{"name": "toy_lu"},
                {"name": "toy_lu", "params": {"mode": ["raise", "refuse_nonsym"]}}],
}


def test_help_names_every_command():
    out = lubench("--help")
    assert out.returncode == 0
    for command in ("run", "list", "report", "compare", "plugins", "check-plugin"):
        assert command in out.stdout
    run_help = lubench("run", "--help").stdout
    for option in ("-k", "--device", "--timeout", "--dry-run", "--resume", "-j, --jobs"):
        assert option in run_help


def test_list_shows_parameters_defaults_and_provider():
    out = lubench("list", "--plugin", TOY_PLUGIN)
    assert out.returncode == 0, out.stderr
    assert "toy_lu [classical]" in out.stdout
    assert "Dense LU with partial pivoting, for the core's tests." in out.stdout
    assert "mode: ok|raise|refuse_nonsym = ok" in out.stdout
    assert "(plugin: toy_plugin)" in out.stdout
    data = json.loads(lubench("list", "--json", "--plugin", TOY_PLUGIN).stdout)
    toy = next(e for e in data["operators"] if e["name"] == "toy_tridiag")
    assert {"name": "d", "type": "float", "default": 2.0,
            "doc": "Diagonal entry; A is SPD when d >= 2 and skew == 0."} in toy["params"]


def test_dry_run_lists_cases_and_runs_nothing(tmp_path):
    suite = write_suite(tmp_path, TOY)
    out = lubench("run", suite, "--dry-run", "-k", "toy_lu[mode=ok]", "-o", tmp_path / "r")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("4 cases × 1 repeat(s)")
    assert "toy_tridiag[skew=0.5][n=16] × toy_lu\n" in out.stdout
    assert not (tmp_path / "r").exists()


def test_run_end_to_end_records_every_outcome(tmp_path):
    suite = write_suite(tmp_path, TOY)
    run_dir = tmp_path / "run"
    out = lubench("run", suite, "-o", run_dir, "--no-report")
    assert out.returncode == 1, out.stderr  # the planted failures: a case failed
    for name in ("records.jsonl", "results.parquet", "meta.json", "suite.yaml"):
        assert (run_dir / name).exists(), name
    df = pd.read_parquet(run_dir / "results.parquet")
    assert len(df) == 12
    counts = df["status"].value_counts().to_dict()
    assert counts == {"ok": 6, "failed": 4, "unsupported": 2}
    assert set(df.loc[df.status == "failed", "error"]) == {"RuntimeError: planted failure"}
    ok = df[df.status == "ok"]
    assert (ok["factor_error"] < 1e-14).all() and (ok["precond_iterations"] == 1).all()
    # the summary table is printed, with the reasons
    assert "toy_tridiag" in out.stdout and "RuntimeError: planted failure" in out.stdout


BAD = [
    ("malformed.yaml", "name: x\noperators: [\n", "malformed YAML at line"),
    ("topkey.yaml", {**TOY, "sizez": 1}, "unknown key 'sizez'"),
    ("unknown_op.yaml", {**TOY, "operators": [{"name": "toy_tridiagx", "sizes": [4]}]},
     "unknown operator 'toy_tridiagx'; did you mean 'toy_tridiag'?"),
    ("unknown_method.yaml", {**TOY, "methods": [{"name": "toy_luu"}]},
     "unknown method 'toy_luu'; did you mean 'toy_lu'?"),
    ("param.yaml", {**TOY, "methods": [{"name": "toy_lu", "params": {"moode": "ok"}}]},
     "methods[0].params: 'toy_lu' takes no parameter 'moode'; did you mean 'mode'?"),
    ("type.yaml", {**TOY, "operators": [{"name": "toy_tridiag", "sizes": [4],
                                          "params": {"d": "two"}}]},
     "operators[0].params.d: expected a number, got 'two'"),
    ("size.yaml", {**TOY, "operators": [{"name": "toy_tridiag", "sizes": [1]}]},
     "operators[0].sizes[0]: toy_tridiag needs n >= 2, got 1"),
    ("mtx.yaml", {**TOY, "operators": [{"name": "matrix_market",
                                         "params": {"path": "missing.mtx"}}]},
     "missing.mtx"),
    ("laplace.yaml", {**TOY, "operators": [{"name": "laplacian_2d", "sizes": [250]}]},
     "operators[0].sizes[0]: laplacian_2d"),
]


@pytest.mark.parametrize("name, content, message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_and_exit_2(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    out = lubench("run", path, "-o", tmp_path / "r")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lubench: error: ")
    assert str(path) in lines[0] and message in lines[0]


def test_debug_shows_the_traceback(tmp_path):
    path = write_suite(tmp_path, {**TOY, "bogus": 1})
    out = lubench("--debug", "run", path)
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_missing_suite_file(tmp_path):
    out = lubench("run", tmp_path / "nope.yaml")
    assert out.returncode == 2
    assert "nope.yaml: suite file not found" in out.stderr


def test_repo_suites_validate(neural_ic_site):
    # suites/preconditioners.yaml needs the example plugin installed (its header says so)
    for suite in sorted((REPO / "suites").glob("*.yaml")):
        out = lubench("run", suite, "--dry-run", pythonpath=neural_ic_site)
        assert out.returncode == 0, f"{suite.name}: {out.stderr}"


def test_smoke_suite_runs_every_method_on_every_operator(tmp_path):
    """The CI-sized suite, as a user runs it: every case ends ok, or unsupported with a reason."""
    run_dir = tmp_path / "smoke"
    out = lubench("run", REPO / "suites" / "smoke.yaml", "-o", run_dir, "-j", "2",
                  "--no-report", timeout=900)
    assert out.returncode == 0, out.stderr
    df = pd.read_parquet(run_dir / "results.parquet")
    assert set(df["method"]) == {"plu", "cholesky", "sparse_lu", "ilu", "dense_masked_lu",
                                 "gfmm_lu", "gfmm_compressed", "hodlr_lu"}
    assert df["operator"].nunique() == 9
    assert set(df["status"]) <= {"ok", "unsupported"}, df.loc[df.status != "ok", "error"]
    unsupported = df[df.status == "unsupported"]
    assert set(unsupported["method"]) == {"cholesky"} and unsupported["error"].str.len().gt(0).all()
    exact = df[(df.family == "classical") & (df.method != "ilu") & (df.status == "ok")]
    assert (exact["factor_error"] < 1e-12).all()  # ilu is classical but declares exact = False
    learned = df[df.family == "learned"]
    assert (learned["status"] == "ok").all() and (learned["iterations"] > 0).all()
    assert (run_dir / "histories.parquet").exists()


def test_a_run_whose_grade_limit_leaves_metrics_out_records_and_reports_them(tmp_path):
    """grade_limit 1 ms: above exact_limit the spectral estimate and plain GMRES are left
    out, each named in not_graded; the run ends normally, results.parquet holds them as
    missing (plain GMRES's converged flag null), and the summary and the report render them
    as not measured."""
    import pandas as pd

    suite = write_suite(tmp_path, {
        "name": "budget", "exact_limit": 16, "grade_limit": 0.001,
        "operators": [{"name": "laplacian_1d", "sizes": [64]}], "methods": ["plu"]})
    out = lubench("run", suite, "-o", tmp_path / "run")
    assert out.returncode == 0, out.stderr
    df = pd.read_parquet(tmp_path / "run" / "results.parquet")
    row = df.iloc[0]
    assert row["status"] == "ok" and row["precond_converged"]  # converged: not stopped
    assert row["not_graded"].startswith("factor_error_2 (10 power steps of ")
    assert "; gmres_iterations (plain GMRES, 500 products with A of " in row["not_graded"]
    assert pd.isna(row["gmres_iterations"]) and pd.isna(row["gmres_converged"])
    assert pd.isna(row["factor_error_2"]) and row["factor_error_2_kind"] == ""
    assert row["grade_seconds"] > 0
    assert (tmp_path / "run" / "report" / "results.md").is_file()


def test_an_argument_with_a_nul_byte_is_one_line_exit_2():
    """No shell passes a NUL byte, a program calling the command's main() can: it was a
    ValueError traceback where a path was resolved (found by the CLI fuzzer)."""
    from click.testing import CliRunner

    from lubench.cli import main

    res = CliRunner().invoke(main, ["run", "s.yaml", "--resume", "x\x00y"])
    assert res.exit_code == 2 and isinstance(res.exception, (SystemExit, type(None)))
    assert res.output == "lubench: error: an argument holds a NUL byte: 'x\\x00y'\n"
