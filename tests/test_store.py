"""The run directory: records appended and read back, truncated lines, dedupe, meta, tables."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest
from _runner_fixtures import _only_test_plugins, make_suite, rt_plugin  # noqa: F401

from lubench.api import LubenchError
from lubench.rundir.records import (
    HISTORY_KEY_COLUMNS,
    RESULT_COLUMNS,
    base_record,
    dedupe_records,
    read_records,
)
from lubench.rundir.store import RunStore


@pytest.fixture
def suite(tmp_path, rt_plugin):  # noqa: F811
    return make_suite(tmp_path, rt_plugin, [{"name": "rt_lu", "params": {"behave": "ok"}}])[1]


def _record(case, repeat=0, status="ok", **fields):
    rec = base_record(case, repeat, run_id="r")
    rec.update(status=status, factor_error=1e-16, history=[], info="{}")
    rec.update(fields)
    return rec


def test_open_writes_suite_copy_and_environment(tmp_path, suite):
    store = RunStore.open(tmp_path / "run", suite, command_line="lubench run suite.yaml")
    store.close()
    run = tmp_path / "run"
    assert (run / "suite.yaml").read_text() == suite.text
    meta = json.loads((run / "meta.json").read_text())
    for key in ("lubench_version", "git_commit", "python", "numpy", "scipy", "pytorch", "blas",
                "cpu_model", "cpu_cores_logical", "gpu", "suite_sha256", "command_line",
                "started_at", "ended_at"):
        assert key in meta, key
    assert meta["suite_sha256"] == suite.sha256
    assert meta["command_line"] == "lubench run suite.yaml"
    assert meta["blas"] and all("num_threads" in b for b in meta["blas"])


def test_records_round_trip_and_finalize_builds_tables(tmp_path, suite):
    case_a, case_b = suite.cases[:2]
    with RunStore.open(tmp_path / "run", suite) as store:
        store.append(_record(case_a, traceback="Traceback ...", threads=2,
                             history=[{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.25}]))
        store.append(_record(case_b, status="failed", error="RuntimeError: boom"))
        assert store.done() == {(case_a.case_id, 0), (case_b.case_id, 0)}
        results = store.finalize()
    assert list(results.columns[:len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    assert "traceback" not in results and "history" not in results
    assert results["status"].tolist() == ["ok", "failed"]
    on_disk = pd.read_parquet(tmp_path / "run" / "results.parquet")
    assert on_disk["case_id"].tolist() == results["case_id"].tolist()
    hist = pd.read_parquet(tmp_path / "run" / "histories.parquet")
    assert list(hist.columns[:len(HISTORY_KEY_COLUMNS)]) == HISTORY_KEY_COLUMNS
    assert hist["loss"].tolist() == [0.5, 0.25]
    assert set(hist["case_id"]) == {case_a.case_id}
    # the traceback stays in records.jsonl, for --debug
    assert next(read_records(tmp_path / "run"))["traceback"] == "Traceback ..."
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["ended_at"] is not None and meta["n_records"] == 2


def test_existing_records_need_resume(tmp_path, suite):
    with RunStore.open(tmp_path / "run", suite) as store:
        store.append(_record(suite.cases[0]))
    with pytest.raises(LubenchError, match="already holds records.*--resume"):
        RunStore.open(tmp_path / "run", suite)
    with RunStore.open(tmp_path / "run", suite, resume=True) as store:
        assert store.done() == {(suite.cases[0].case_id, 0)}
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert len(meta["sessions"]) == 2


def test_resume_needs_a_run_directory(tmp_path, suite):
    with pytest.raises(LubenchError, match="no such run directory"):
        RunStore.open(tmp_path / "missing", suite, resume=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(LubenchError, match="not a run directory"):
        RunStore.open(tmp_path / "empty", suite, resume=True)


def test_a_second_writer_is_refused(tmp_path, suite):
    with RunStore.open(tmp_path / "run", suite):
        with pytest.raises(LubenchError, match="another lubench process"):
            RunStore.open(tmp_path / "run", suite, resume=True)


def test_truncated_last_line_is_skipped_with_a_warning(tmp_path, suite, caplog):
    with RunStore.open(tmp_path / "run", suite) as store:
        store.append(_record(suite.cases[0]))
    path = tmp_path / "run" / "records.jsonl"
    whole = json.dumps(_record(suite.cases[1]))
    with open(path, "a") as fh:
        fh.write(whole[: len(whole) // 2])  # a crash mid-write
    with caplog.at_level(logging.WARNING, logger="lubench"):
        records = list(read_records(path))
    assert [r["case_id"] for r in records] == [suite.cases[0].case_id]
    assert "truncated" in caplog.text and "records.jsonl:2" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lubench"):
        with RunStore.open(tmp_path / "run", suite, resume=True) as store:
            assert store.done() == {(suite.cases[0].case_id, 0)}
            store.append(_record(suite.cases[1]))  # must start on its own line
            results = store.finalize()
    assert "moved it to records.jsonl.partial" in caplog.text
    assert results["case_id"].tolist() == [c.case_id for c in suite.cases[:2]]
    assert (tmp_path / "run" / "records.jsonl.partial").read_text().strip() == \
        whole[: len(whole) // 2]


def test_a_corrupt_middle_line_is_set_aside_alike_by_the_store_and_the_report(tmp_path, suite,
                                                                             caplog):
    """One reader (lubench.rundir.records) for both: the line is skipped with a warning naming it,
    the records around it are kept."""
    from lubench.report.load import load_run

    with RunStore.open(tmp_path / "run", suite) as store:
        store.append(_record(suite.cases[0]))
    path = tmp_path / "run" / "records.jsonl"
    with open(path, "a") as fh:
        fh.write('{"case_id": "garbled\n')  # a whole line that is not JSON
        fh.write(json.dumps(_record(suite.cases[1])) + "\n")
    with caplog.at_level(logging.WARNING, logger="lubench"):
        with RunStore.open(tmp_path / "run", suite, resume=True) as store:
            from_store = [r["case_id"] for r in store.records()]
    assert "records.jsonl:2: skipping an unreadable record" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lubench"):
        from_report = load_run(tmp_path / "run").results["case_id"].tolist()
    assert "records.jsonl:2: skipping an unreadable record" in caplog.text
    assert from_store == from_report == [c.case_id for c in suite.cases[:2]]


def test_duplicates_keep_the_last_record(tmp_path, suite):
    case = suite.cases[0]
    with RunStore.open(tmp_path / "run", suite) as store:
        store.append(_record(case, status="failed", error="first try"))
        store.append(_record(case, repeat=1))
        store.append(_record(case, status="ok"))
        results = store.finalize()
    assert len(results) == 2
    assert results.set_index("repeat").loc[0, "status"] == "ok"
    assert len(dedupe_records(read_records(tmp_path / "run"))) == 2


def test_resume_with_an_edited_suite_warns(tmp_path, rt_plugin, caplog):  # noqa: F811
    _, first = make_suite(tmp_path, rt_plugin, [{"name": "rt_lu"}], sizes=(8,))
    with RunStore.open(tmp_path / "run", first) as store:
        store.append(_record(first.cases[0]))
    _, second = make_suite(tmp_path, rt_plugin, [{"name": "rt_lu"}], sizes=(8, 12))
    with caplog.at_level(logging.WARNING, logger="lubench"):
        with RunStore.open(tmp_path / "run", second, resume=True) as store:
            assert store.done() == {(first.cases[0].case_id, 0)}
    assert "another version of the suite" in caplog.text
    assert (tmp_path / "run" / "suite.yaml").read_text() == second.text
    assert [p.name for p in (tmp_path / "run").glob("suite.*.yaml")]  # the old copy is kept


def test_done_leaves_out_the_statuses_to_retry_and_unavailable(tmp_path, toy_registry):
    from lubench.rundir.store import RunStore
    from lubench.suite.load import build_suite

    suite = build_suite({"name": "retry", "methods": ["toy_lu"],
                         "operators": [{"name": "toy_tridiag", "sizes": [4, 8, 16]}]},
                        toy_registry)
    a, b, c = suite.cases
    with RunStore.open(tmp_path / "run", suite) as store:
        for case, status in ((a, "ok"), (b, "failed"), (c, "unavailable")):
            store.append({"case_id": case.case_id, "repeat": 0, "status": status})
        assert store.done() == {(a.case_id, 0), (b.case_id, 0)}
        assert store.done({"failed"}) == {(a.case_id, 0)}
        store.append({"case_id": b.case_id, "repeat": 0, "status": "ok"})  # supersedes
        assert store.done({"failed"}) == {(a.case_id, 0), (b.case_id, 0)}


@pytest.mark.parametrize("line, why", [
    ('{"case_id": "x", "repeat": "x"}', "repeat is 'x'"),
    ('{"case_id": "x", "repeat": -5}', "repeat is -5"),
    ('{"case_id": 5}', "no case_id"),
    ('{"case_id": "x", "n": 1000000000000000000000000000000}', "n is 10000000"),
    ('{"case_id": "x", "method": [1, 2]}', "method is [1, 2]"),
    ('{"case_id": "x", "history": "abc"}', "history is 'abc'"),
    ("[" * 100_000 + "]" * 100_000, "not JSON"),
    ('{"case_id": "\xff"}', "not JSON"),
    ("[1, 2, 3]", "not a JSON object"),
])
def test_a_line_that_is_no_record_is_skipped_and_the_tables_still_build(tmp_path, suite,
                                                                       caplog, line, why):
    """Whatever a line of records.jsonl holds, the readers (store, report, compare) keep the
    records around it and never fail on it (issue 25: n = 10**30 and repeat 'x' broke the
    tables, a line nested 100 000 deep the reader)."""
    from lubench.report.compare import compare_frames
    from lubench.report.load import load_run

    with RunStore.open(tmp_path / "run", suite) as store:
        store.append(_record(suite.cases[0]))
    path = tmp_path / "run" / "records.jsonl"
    with open(path, "ab") as fh:
        fh.write(line.encode("latin-1") + b"\n")
        fh.write(json.dumps(_record(suite.cases[1])).encode() + b"\n")
    with caplog.at_level(logging.WARNING, logger="lubench"):
        results = load_run(tmp_path / "run").results
    assert f"records.jsonl:2: skipping an unreadable record ({why}" in caplog.text
    assert results["case_id"].tolist() == [c.case_id for c in suite.cases[:2]]
    table, _, _ = compare_frames(results, results)
    assert len(table) == 2


def test_foreign_metric_values_read_as_missing(tmp_path, suite):
    """A metric of the wrong type or out of range is a missing value, not an error."""
    from lubench.rundir.records import records_to_frames

    rec = _record(suite.cases[0], n_params=10 ** 30, setup_seconds={"$float": "bogus"},
                  precond_converged="yes", iterations=2.5, solve_seconds="1e-3")
    results, _ = records_to_frames([rec])
    row = results.iloc[0]
    assert pd.isna(row["n_params"]) and pd.isna(row["setup_seconds"])
    assert pd.isna(row["precond_converged"]) and pd.isna(row["iterations"])
    assert row["solve_seconds"] == 1e-3
