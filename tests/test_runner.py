"""The runner in real worker processes: every outcome recorded, limits enforced, run goes on."""

from __future__ import annotations

import json
import os
import time

import psutil
import pytest
from _runner_fixtures import _only_test_plugins, make_suite, rt_plugin, run_suite  # noqa: F401

from lubench.api import LubenchError
from lubench.execution import (
    Collect,
    LocalPool,
    RunOutcome,
    RunPlan,
    format_bytes,
    make_plan,
    run_cases,
    threads_per_worker,
)
from lubench.rundir.store import RunStore


def _by_behaviour(results):
    out = {}
    for _, row in results.iterrows():
        params = json.loads(row["method_params"])
        out[(params["behave"], int(row["n"]))] = row
    return out


def test_every_outcome_is_recorded_and_the_run_goes_on(tmp_path, rt_plugin):  # noqa: F811
    t0 = time.monotonic()
    outcome, results, _ = run_suite(tmp_path, rt_plugin, [
        {"name": "rt_lu", "params": {"behave": ["ok", "raise", "sigkill"]}},
        {"name": "rt_lu", "params": {"behave": "sleep", "seconds": 60}, "timeout": 1},
    ], sizes=(8, 12))
    elapsed = time.monotonic() - t0
    rows = _by_behaviour(results)
    assert len(results) == 8 and results["case_id"].is_unique
    for n in (8, 12):
        ok = rows[("ok", n)]
        assert ok["status"] == "ok" and ok["error"] == ""
        assert ok["factor_error"] < 1e-14 and ok["solve_residual"] < 1e-14
        assert rows[("raise", n)]["status"] == "failed"
        assert rows[("raise", n)]["error"] == "RuntimeError: planted failure"
        assert rows[("sigkill", n)]["status"] == "failed"
        assert rows[("sigkill", n)]["error"] == "worker died (signal 9, SIGKILL)"
        sleeper = rows[("sleep", n)]
        assert sleeper["status"] == "timeout"
        assert sleeper["error"] == "exceeded the 1 s timeout"
        assert 1.0 <= sleeper["wall_seconds"] < 10
        assert not psutil.pid_exists(int(sleeper["pid"]))  # the worker was killed, not left
    assert elapsed < 30  # two 60 s sleepers were cut at 1 s
    assert outcome.counts == {"ok": 2, "failed": 4, "timeout": 2}
    assert outcome.summary() == "2 ok, 4 failed, 2 timeout"
    assert not outcome.interrupted
    # each record was written in its own line of records.jsonl
    lines = (tmp_path / "run" / "records.jsonl").read_text().splitlines()
    assert len(lines) == 8 and all(json.loads(line)["case_id"] for line in lines)


def test_traceback_of_a_raising_method_stays_in_the_record(tmp_path, rt_plugin):  # noqa: F811
    run_suite(tmp_path, rt_plugin, [{"name": "rt_lu", "params": {"behave": "raise"}}],
              sizes=(8,))
    rec = json.loads((tmp_path / "run" / "records.jsonl").read_text())
    assert "RuntimeError: planted failure" in rec["traceback"]
    assert "factorize" in rec["traceback"]


def test_memory_limit_records_out_of_memory_and_run_continues(tmp_path, rt_plugin):  # noqa: F811
    outcome, results, _ = run_suite(tmp_path, rt_plugin, [
        {"name": "rt_lu", "params": {"behave": "allocate", "mb": 600, "seconds": 5},
         "memory_limit": "300MiB"},
        {"name": "rt_lu", "params": {"behave": "huge"}, "memory_limit": "300MiB"},
        {"name": "rt_lu", "params": {"behave": "ok"}, "memory_limit": "300MiB"},
    ], sizes=(8,))
    rows = _by_behaviour(results)
    hog = rows[("allocate", 8)]
    assert hog["status"] == "failed"
    assert hog["error"].startswith("out of memory (limit 300.0 MiB")
    assert hog["wall_seconds"] < 5  # killed while holding the memory, not after
    assert hog["peak_memory_bytes"] > 300 * 2**20
    assert rows[("huge", 8)]["status"] == "failed"
    assert rows[("huge", 8)]["error"] == "out of memory (limit 300.0 MiB)"
    ok = rows[("ok", 8)]
    assert ok["status"] == "ok" and 0 < ok["peak_memory_bytes"] < 300 * 2**20
    assert outcome.counts == {"ok": 1, "failed": 2}


def test_inline_executor_runs_in_this_process(tmp_path, rt_plugin):  # noqa: F811
    outcome, results, _ = run_suite(tmp_path, rt_plugin, [
        {"name": "rt_lu", "params": {"behave": ["ok", "raise"]}}], sizes=(8,),
        executor="inline")
    assert set(results["pid"]) == {os.getpid()}
    assert sorted(results["status"]) == ["failed", "ok"]
    assert set(results["executor"]) == {"inline"}


def test_progress_is_forwarded_and_history_stored(tmp_path, rt_plugin):  # noqa: F811
    _, suite = make_suite(tmp_path, rt_plugin, [{"name": "rt_lu",
                                                  "params": {"behave": "train"}}], sizes=(8,))
    seen = []

    class Seen(Collect):
        def progress(self, case, repeat, fields):
            seen.append(fields)

    sink = Seen()
    LocalPool(RunPlan(plugin_specs=(rt_plugin,)), sink).run([(suite.cases[0], 0)])
    records = sink.records
    assert seen[0]["step"] == 1 and seen[-1] == {"step": 5, "total": 5, "loss": 0.2}
    assert len(seen) < 5  # throttled: the 50 ms steps do not each send a message
    assert records[0]["status"] == "ok" and records[0]["iterations"] == 5
    assert [h["loss"] for h in records[0]["history"]] == [1.0, 0.5, 1 / 3, 0.25, 0.2]


def test_threads_follow_jobs_and_reach_the_worker(tmp_path, rt_plugin):  # noqa: F811
    _, results, _ = run_suite(tmp_path, rt_plugin, [{"name": "rt_lu"}], sizes=(8, 12),
                              jobs=2)
    expected = threads_per_worker(2)
    assert expected == max(1, len(os.sched_getaffinity(0)) // 2)
    assert set(results["threads"]) == {expected}
    for info in results["info"]:
        info = json.loads(info)
        assert info["blas_threads"] == expected and info["omp_env"] == str(expected)


def test_resume_skips_finished_pairs(tmp_path, rt_plugin):  # noqa: F811
    _, suite = make_suite(tmp_path, rt_plugin, [{"name": "rt_lu"}], sizes=(8, 12),
                          repeats=2)
    with RunStore.open(tmp_path / "run", suite) as store:
        first = run_cases(suite.cases[:1], store, make_plan(store, plugin_specs=(rt_plugin,)))
    assert first.counts == {"ok": 2} and first.total == 2
    with RunStore.open(tmp_path / "run", suite, resume=True) as store:
        second = run_cases(suite.cases, store, make_plan(store, plugin_specs=(rt_plugin,)))
        results = store.finalize()
    assert second.total == 2 and second.skipped == 2
    assert second.summary() == "2 ok, 2 already done"
    assert sorted(zip(results["n"], results["repeat"])) == [(8, 0), (8, 1), (12, 0), (12, 1)]


def test_bad_executor_arguments_are_user_errors(tmp_path, rt_plugin):  # noqa: F811
    _, suite = make_suite(tmp_path, rt_plugin, [{"name": "rt_lu"}], sizes=(8,))
    with RunStore.open(tmp_path / "run", suite) as store:
        with pytest.raises(LubenchError, match="unknown executor 'dask'"):
            make_plan(store, suite.cases, executor="dask")
        with pytest.raises(LubenchError, match="at least 1"):
            make_plan(store, suite.cases, jobs=0)


def test_the_executor_names_the_command_line_offers_are_the_executors():
    """suite/values.py names them for the CLI and the schema without importing execution."""
    from lubench.execution import EXECUTORS
    from lubench.suite.values import EXECUTOR_KINDS

    assert tuple(EXECUTORS) == tuple(EXECUTOR_KINDS)


def test_summary_and_sizes_read_well():
    out = RunOutcome(total=5, counts={"ok": 2, "timeout": 1}, interrupted=True)
    assert out.summary() == "2 ok, 1 timeout, 2 not run (interrupted)"
    assert RunOutcome().summary() == "nothing to run"
    assert format_bytes(2 * 2**30) == "2.0 GiB" and format_bytes(900) == "900 B"
