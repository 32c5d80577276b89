"""``lubench compare``: planted regressions in a copy of a real run are flagged (exit 1),
round-off and sub-millisecond noise are not, identical runs compare clean (exit 0)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from test_report import make_records, write_run

from lubench.cli import main
from lubench.report.compare import ERROR_FLOOR, TIME_FLOOR, compare_runs


@pytest.fixture(scope="module")
def run_a(tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("cmp") / "a", make_records())


def planted(run_a: Path, dest: Path, edit) -> Path:
    """A copy of run A whose results.parquet went through ``edit(df) -> df``."""
    shutil.copytree(run_a, dest)
    df = pd.read_parquet(dest / "results.parquet")
    edit(df).to_parquet(dest / "results.parquet")
    return dest


def _case(df: pd.DataFrame, method: str, n: int, **params) -> pd.Series:
    mask = (df["method"] == method) & (df["n"] == n) & (df["operator"] == "laplacian_1d")
    if params:
        mask &= df["method_params"].str.contains(f'"steps":{params["steps"]}')
    return mask


def test_identical_runs_flag_nothing(run_a, tmp_path):
    b = planted(run_a, tmp_path / "b", lambda df: df)
    text, flagged = compare_runs(run_a, b)
    assert flagged == 0
    assert "REGRESSION" not in text
    res = CliRunner().invoke(main, ["compare", str(run_a), str(b)])
    assert res.exit_code == 0, res.output


def test_a_slower_case_is_flagged_and_the_cli_exits_1(run_a, tmp_path):
    def slower(df):
        mask = _case(df, "masked_gd", 64, steps=60)
        assert (df.loc[mask, "setup_seconds"] >= TIME_FLOOR).all()  # a time worth comparing
        df.loc[mask, "setup_seconds"] *= 3
        return df

    b = planted(run_a, tmp_path / "b", slower)
    text, flagged = compare_runs(run_a, b, threshold=1.5)
    assert flagged == 1
    line = next(ln for ln in text.splitlines() if "REGRESSION" in ln)
    assert "laplacian_1d n=64 masked_gd[steps=60]" in line and "setup_seconds ×3.00" in line
    res = CliRunner().invoke(main, ["compare", str(run_a), str(b)])
    assert res.exit_code == 1
    assert "REGRESSION" in res.output
    # a higher threshold lets the same run through
    assert compare_runs(run_a, b, threshold=4.0)[1] == 0


def test_a_less_accurate_case_is_flagged(run_a, tmp_path):
    def worse(df):
        df.loc[_case(df, "masked_gd", 32, steps=20), "factor_error"] *= 10
        return df

    b = planted(run_a, tmp_path / "b", worse)
    text, flagged = compare_runs(run_a, b)
    assert flagged == 1
    assert "factor_error ×10.00 less accurate" in text


def test_noise_below_the_floors_is_not_flagged(run_a, tmp_path):
    def values(setup: float, residual: float):
        def edit(df):
            df.loc[_case(df, "plu", 32), ["setup_seconds", "solve_residual"]] = setup, residual
            return df
        return edit

    assert 4e-4 < TIME_FLOOR and 1e-14 < ERROR_FLOOR
    a = planted(run_a, tmp_path / "a", values(1e-4, 1e-16))
    b = planted(run_a, tmp_path / "b", values(4e-4, 1e-14))  # sub-millisecond, round-off
    text, flagged = compare_runs(a, b)
    assert flagged == 0
    row = next(ln for ln in text.splitlines() if "laplacian_1d n=32 plu " in ln)
    assert "| 4.00 |" in row and "| 100.00 |" in row  # the ratios are still shown


def test_ok_in_a_but_failed_in_b_is_flagged_and_one_sided_cases_are_listed(run_a, tmp_path):
    def broken(df):
        mask = _case(df, "plu", 64)
        df.loc[mask, "status"] = "failed"
        df.loc[mask, "error"] = "FactorizationError: zero pivot at 3"
        for col in ("factor_error", "solve_residual", "setup_seconds", "solve_seconds"):
            df.loc[mask, col] = float("nan")
        return df[~_case(df, "cholesky", 16)]  # a case B did not run

    b = planted(run_a, tmp_path / "b", broken)
    text, flagged = compare_runs(run_a, b)
    assert flagged == 1
    assert "ok → failed" in text and "zero pivot" in text
    assert "1 case(s) only in A:" in text and "laplacian_1d n=16 cholesky" in text
    # the other way round, a case that starts working is no regression
    assert compare_runs(b, run_a)[1] == 0
