"""Scale-out and robustness with real processes and real signals: -j N, SIGKILL and resume,
Ctrl-C, and the submitit path (its local executor standing in for SLURM)."""

from __future__ import annotations

import json
import signal
import time

import numpy as np
import pandas as pd
import psutil
import pytest
from _runner_fixtures import (  # noqa: F401
    _only_test_plugins,
    make_suite,
    rt_plugin,
    run_suite,
    start_driver,
    wait_for_records,
)

from lubench.execution import make_plan, run_cases
from lubench.rundir.store import RunStore

COMPARED = ["status", "error", "n_params", "factor_error", "factor_error_2", "solve_residual",
            "forward_error", "precond_iterations"]
MIXED = [{"name": "rt_lu", "params": {"behave": ["ok", "raise", "sigkill"]}}]


def _comparable(results: pd.DataFrame) -> pd.DataFrame:
    return results.set_index(["case_id", "repeat"]).sort_index()[COMPARED]


def _assert_same_results(a: pd.DataFrame, b: pd.DataFrame) -> None:
    a, b = _comparable(a), _comparable(b)
    assert a.index.equals(b.index)
    for col in ("status", "error", "n_params", "precond_iterations"):
        assert a[col].tolist() == b[col].tolist(), col
    for col in ("factor_error", "factor_error_2", "solve_residual", "forward_error"):
        # another BLAS thread count may change the rounding, never the result
        np.testing.assert_allclose(a[col].astype(float), b[col].astype(float), rtol=1e-6,
                                   atol=1e-15, equal_nan=True, err_msg=col)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _in_flight(pid: int, timeout: float = 5.0) -> list[psutil.Process]:
    """The driver's worker processes, once there is one."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        procs = _descendants(pid)
        if procs:
            return procs
        time.sleep(0.01)
    raise AssertionError("no worker in flight")


def _all_gone(procs: list[psutil.Process], timeout: float = 10.0) -> bool:
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def test_two_jobs_give_the_same_results_as_one(tmp_path, rt_plugin):  # noqa: F811
    _, one, _ = run_suite(tmp_path, rt_plugin, MIXED, run_name="j1", sizes=(8, 12, 16))
    _, two, _ = run_suite(tmp_path, rt_plugin, MIXED, run_name="j2", sizes=(8, 12, 16),
                          jobs=2)
    assert len(one) == 9
    _assert_same_results(one, two)
    assert (one["status"] == "ok").sum() == 3


def test_sigkill_mid_suite_then_resume_runs_each_case_once(tmp_path, rt_plugin):  # noqa: F811
    suite_path, suite = make_suite(
        tmp_path, rt_plugin, [{"name": "rt_lu", "params": {"behave": "sleep", "seconds": 0.3}}],
        sizes=(8, 9, 10, 11, 12, 13))
    run_dir = tmp_path / "run"
    driver = start_driver(rt_plugin, suite_path, run_dir)
    try:
        wait_for_records(run_dir, 2)
        workers = _in_flight(driver.pid)
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=10)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == -signal.SIGKILL
    assert _all_gone(workers)  # the worker in flight died with its parent, no orphan
    # a crash mid-write, for good measure: half a record at the end
    with open(run_dir / "records.jsonl", "a") as fh:
        fh.write('{"case_id": "deadbeef", "status": "o')
    done_before = [json.loads(line)["case_id"]
                   for line in (run_dir / "records.jsonl").read_text().splitlines()[:-1]]
    assert 2 <= len(done_before) < 6

    with RunStore.open(run_dir, suite, resume=True) as store:
        outcome = run_cases(suite.cases, store, make_plan(store, plugin_specs=(rt_plugin,)))
        results = store.finalize()
    assert outcome.skipped == len(done_before)
    assert outcome.total == 6 - len(done_before)
    assert sorted(results["case_id"]) == sorted(c.case_id for c in suite.cases)
    assert results["case_id"].is_unique and (results["status"] == "ok").all()
    assert (run_dir / "records.jsonl.partial").exists()


def test_ctrl_c_stops_cleanly_and_keeps_finished_cases(tmp_path, rt_plugin):  # noqa: F811
    suite_path, suite = make_suite(
        tmp_path, rt_plugin, [{"name": "rt_lu", "params": {"behave": "sleep", "seconds": 30}},
                              {"name": "rt_lu"}], sizes=(8, 9))
    run_dir = tmp_path / "run"
    # the two quick cases are ordered after the sleepers by the suite; -j 2 lets one
    # sleeper run while the others go through the second slot
    driver = start_driver(rt_plugin, suite_path, run_dir, "-j", "2")
    try:
        wait_for_records(run_dir, 1)
        workers = _in_flight(driver.pid)
        t0 = time.monotonic()
        driver.send_signal(signal.SIGINT)
        out, err = driver.communicate(timeout=20)
        stopped_in = time.monotonic() - t0
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130, err
    assert stopped_in < 10  # not the 30 s of the sleepers
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["interrupted"] is True
    assert "not run (interrupted)" in summary["summary"]
    assert "Traceback" not in err
    assert _all_gone(workers)
    finished = pd.read_parquet(run_dir / "results.parquet")
    assert len(finished) == sum(summary["counts"].values()) >= 1
    assert set(finished["status"]) <= {"ok"}  # killed sleepers are not recorded as results


@pytest.mark.slow
def test_submitit_local_executor_matches_local_pool(tmp_path, rt_plugin):  # noqa: F811
    import submitit

    def local_cluster(folder):
        return submitit.AutoExecutor(folder=folder, cluster="local")

    methods = [{"name": "rt_lu", "params": {"behave": ["ok", "raise"]}},
               {"name": "rt_lu", "params": {"behave": "sleep", "seconds": 60}, "timeout": 1}]
    _, local, _ = run_suite(tmp_path, rt_plugin, methods, run_name="local", sizes=(8,))
    outcome, slurm, _ = run_suite(tmp_path, rt_plugin, methods, run_name="slurm", sizes=(8,),
                                  executor="slurm", submitit_executor=local_cluster,
                                  options={"slurm_partition": "ignored-locally"})
    _assert_same_results(local, slurm)
    assert sorted(slurm["status"]) == ["failed", "ok", "timeout"]
    assert len(outcome.job_ids) == 3 and set(slurm["job_id"]) == set(outcome.job_ids)
    assert (tmp_path / "slurm" / "submitit").is_dir()
    meta = json.loads((tmp_path / "slurm" / "meta.json").read_text())
    assert meta["sessions"][-1]["job_ids"] == outcome.job_ids
