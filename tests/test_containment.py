"""Contain every case, through the installed ``lubench`` command and real processes.

The method ``escape_lu`` (tests/fixtures/contain_plugin.py) starts processes that detach,
hang, allocate, print megabytes or exit; every descendant writes its pid into a folder, so
that each test can check that none is left running. The timeout and memory tests run with a
cgroup per case (when this machine lets us create one) and with the fallback sweep
(``LUBENCH_CGROUP=0``).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import yaml
from test_cli import lubench_exe

from lubench.execution.local.cgroups import cgroup_root

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PLUGIN = FIXTURES / "contain_plugin.py"
BAD = FIXTURES / "plugins_bad"

MECHANISMS = [
    pytest.param("1", id="cgroup", marks=pytest.mark.skipif(
        cgroup_root() is None, reason="cannot create a cgroup v2 here")),
    pytest.param("0", id="sweep"),
]


def _env(cgroup: str = "1", **extra: str) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "100", "LUBENCH_CGROUP": cgroup,
            "LUBENCH_DISABLE_PLUGINS": "operators,classical,learned", **extra}


def _suite(tmp_path: Path, methods: list[dict], sizes=(8,), **top) -> Path:
    data = {"name": "esc", "seed": 1, "device": "cpu", "plugins": [str(PLUGIN)],
            "operators": [{"name": "esc_op", "sizes": list(sizes)}], "methods": methods, **top}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _run(*args, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([lubench_exe(), *map(str, args)], capture_output=True, text=True,
                          env=env or _env(), timeout=timeout)


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]


def _left_running(pid_dir: Path) -> list[int]:
    """The descendants that wrote their pid and still run. A process started after the pid
    file was written is not one of them (its pid was reused): never touch it."""
    left = []
    for f in pid_dir.glob("*.pid"):
        try:
            proc = psutil.Process(int(f.read_text()))
            if proc.create_time() <= f.stat().st_mtime + 0.5 and \
                    proc.status() != psutil.STATUS_ZOMBIE:
                left.append(proc.pid)
        except (psutil.NoSuchProcess, ValueError):
            continue
    return left


@pytest.fixture
def pid_dir(tmp_path):
    folder = tmp_path / "pids"
    folder.mkdir()
    yield folder
    for pid in _left_running(folder):  # never leave one behind, even when a test fails
        os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------------------------
# A case owns its process tree
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cgroup", MECHANISMS)
def test_a_detached_hanging_child_ends_with_its_case_at_the_timeout(tmp_path, pid_dir, cgroup):
    suite = _suite(tmp_path, [{"name": "escape_lu", "timeout": 3, "params": {
        "behave": "detach_hang", "pid_dir": str(pid_dir)}}])
    t0 = time.monotonic()
    out = _run("run", suite, "-o", tmp_path / "run", "--no-report", "--no-progress",
               env=_env(cgroup))
    elapsed = time.monotonic() - t0
    assert out.returncode == 0, out.stderr
    (rec,) = _records(tmp_path / "run")
    assert rec["status"] == "timeout" and rec["error"] == "exceeded the 3 s timeout"
    assert 3 <= rec["wall_seconds"] < 5
    assert list(pid_dir.glob("*.pid")), "the grandchild never started"
    assert _left_running(pid_dir) == []
    assert elapsed < 30  # load + report; was 14 s of blocking before


@pytest.mark.parametrize("cgroup", MECHANISMS)
def test_a_detached_child_does_not_outlive_a_case_that_ended_ok(tmp_path, pid_dir, cgroup):
    suite = _suite(tmp_path, [{"name": "escape_lu", "params": {
        "behave": "detach_exit", "pid_dir": str(pid_dir)}}])
    proc = subprocess.Popen([lubench_exe(), "run", str(suite), "-o", str(tmp_path / "run"),
                             "--no-report", "--no-progress"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(cgroup))
    # An orphan holding stdout used to keep `lubench run … | cat` open for its lifetime.
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert _records(tmp_path / "run")[0]["status"] == "ok"
    assert _left_running(pid_dir) == []


def test_a_neighbour_case_is_not_delayed(tmp_path, pid_dir):
    suite = _suite(tmp_path, [
        {"name": "escape_lu", "timeout": 4,
         "params": {"behave": "detach_hang", "pid_dir": str(pid_dir)}},
        {"name": "escape_lu", "timeout": 20,
         "params": {"behave": "sleep", "seconds": [0.3, 0.31, 0.32]}},
    ])
    out = _run("run", suite, "-o", tmp_path / "run", "-j", "2", "--no-report", "--no-progress")
    assert out.returncode == 0, out.stderr
    recs = _records(tmp_path / "run")
    statuses = [r["status"] for r in recs]
    assert statuses.count("ok") == 3 and statuses.count("timeout") == 1
    # The three short cases ran in the other worker while the first one hung.
    assert statuses[-1] == "timeout"
    hung = recs[-1]
    ends = [r["started_at"] + r["wall_seconds"] for r in recs[:-1]]
    assert max(ends) < hung["started_at"] + 4
    assert _left_running(pid_dir) == []


# --------------------------------------------------------------------------------------------
# Fair memory
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cgroup", MECHANISMS)
def test_a_detached_child_that_allocates_past_the_limit_fails_the_case(tmp_path, pid_dir,
                                                                       cgroup):
    suite = _suite(tmp_path, [{"name": "escape_lu", "timeout": 120, "memory_limit": "512MiB",
                               "params": {"behave": "detach_alloc", "mb": 900,
                                          "pid_dir": str(pid_dir)}}])
    out = _run("run", suite, "-o", tmp_path / "run", "--no-report", "--no-progress",
               env=_env(cgroup))
    assert out.returncode in (0, 1), out.stderr
    (rec,) = _records(tmp_path / "run")
    assert rec["status"] == "failed" and rec["error"].startswith("out of memory (limit 512.0 MiB")
    assert rec["wall_seconds"] < 100
    assert _left_running(pid_dir) == []


@pytest.mark.parametrize("cgroup", MECHANISMS)
def test_four_idle_forked_helpers_do_not_trip_the_limit(tmp_path, pid_dir, cgroup):
    suite = _suite(tmp_path, [{"name": "escape_lu", "memory_limit": "512MiB", "params": {
        "behave": "idle_helpers", "seconds": 1.0, "pid_dir": str(pid_dir)}}])
    out = _run("run", suite, "-o", tmp_path / "run", "--no-report", "--no-progress",
               env=_env(cgroup))
    assert out.returncode == 0, out.stderr
    (rec,) = _records(tmp_path / "run")
    assert rec["status"] == "ok", rec["error"]
    assert len(list(pid_dir.glob("*.pid"))) == 4
    assert _left_running(pid_dir) == []


# --------------------------------------------------------------------------------------------
# Output, strict JSON, sys.exit, SIGTERM
# --------------------------------------------------------------------------------------------
def test_a_chatty_method_writes_to_its_log_not_to_the_summary(tmp_path):
    suite = _suite(tmp_path, [{"name": "escape_lu", "params": {"behave": "chatty", "mb": 2}}])
    out = _run("run", suite, "-o", tmp_path / "run", "--no-report", "--no-progress")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout) < 20_000 and "xxxxxxxx" not in out.stdout + out.stderr
    (rec,) = _records(tmp_path / "run")
    log = tmp_path / "run" / rec["log"]
    text = log.read_text()
    assert len(text) >= 2 * 2**20 and "a line on stderr" in text
    assert log.parent.name == "logs"


def test_records_are_strict_json_and_read_back_non_finite_numbers(tmp_path):
    suite = _suite(tmp_path, [{"name": "escape_lu", "params": {"behave": "nonfinite"}}])
    out = _run("run", suite, "-o", tmp_path / "run", "--no-report", "--no-progress")
    assert out.returncode == 0, out.stderr

    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")

    for line in (tmp_path / "run" / "records.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=refuse)
    from lubench.rundir.records import read_records

    (rec,) = list(read_records(tmp_path / "run"))
    info = json.loads(rec["info"], parse_constant=refuse)
    assert info  # the info column is strict JSON text too
    from lubench.rundir.records import decode_json

    decoded = decode_json(rec["info"])
    assert math.isnan(decoded["nan"]) and decoded["inf"] == math.inf
    assert decoded["ninf"] == -math.inf and math.isnan(decoded["f32"])


def test_the_inline_executor_survives_sys_exit_in_a_plugin(tmp_path):
    suite = _suite(tmp_path, [{"name": "escape_lu", "params": {"behave": "sys_exit"}},
                              {"name": "escape_lu"}])
    out = _run("run", suite, "-o", tmp_path / "run", "--executor", "inline", "--no-report",
               "--no-progress")
    recs = _records(tmp_path / "run")
    assert [r["status"] for r in recs] == ["failed", "ok"]
    assert "sys.exit(0)" in recs[0]["error"]
    assert "results:" in out.stdout
    assert out.returncode in (0, 1)  # (1 once a failed case sets the exit status: issue 11)


def test_sigterm_ends_like_ctrl_c_with_its_own_status(tmp_path):
    suite = _suite(tmp_path, [{"name": "escape_lu", "params": {"behave": "sleep",
                                                               "seconds": 30}}])
    proc = subprocess.Popen([lubench_exe(), "run", str(suite), "-o", str(tmp_path / "run"),
                             "--no-report", "--no-progress"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if psutil.Process(proc.pid).children():  # the worker started: a case is running
            break
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert "--resume" in stderr and "Traceback" not in stderr


def _started(proc: subprocess.Popen, timeout: float = 60) -> None:
    """Wait until ``proc`` has a worker (a case is running), then a second."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not psutil.Process(proc.pid).children():
        time.sleep(0.05)
    time.sleep(1.0)


def test_a_second_ctrl_c_still_ends_with_130_and_the_resume_hint(tmp_path):
    """Issue 25, item 6: the second of two Ctrl-C in a row raised in the middle of the
    runner's cleanup, and click printed "Aborted!" with exit 1 ("a case failed")."""
    suite = _suite(tmp_path, [{"name": "escape_lu", "params": {"behave": "sleep",
                                                               "seconds": 30}}])
    proc = subprocess.Popen([lubench_exe(), "run", str(suite), "-o", str(tmp_path / "run"),
                             "--no-report", "--no-progress"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(),
                            start_new_session=True)  # a terminal's Ctrl-C: the whole group
    _started(proc)
    for _ in range(3):
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.03)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr
    assert "Aborted!" not in stderr and "Traceback" not in stderr


def test_a_closed_terminal_ends_the_run_like_sigterm_with_129(tmp_path):
    """SIGHUP (the terminal closed) killed lubench outright: now the cases end, the records
    stay, and the status says which signal."""
    suite = _suite(tmp_path, [{"name": "escape_lu", "params": {"behave": "sleep",
                                                               "seconds": 30}}])
    proc = subprocess.Popen([lubench_exe(), "run", str(suite), "-o", str(tmp_path / "run"),
                             "--no-report", "--no-progress"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())
    _started(proc)
    workers = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGHUP)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 129, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]


def test_ctrl_c_while_the_report_renders_says_how_to_render_it(tmp_path):
    suite = _suite(tmp_path, [{"name": "escape_lu"}])
    proc = subprocess.Popen([lubench_exe(), "run", str(suite), "-o", str(tmp_path / "run"),
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(), start_new_session=True)
    for line in proc.stdout:  # the summary is printed, then the report renders
        if line.startswith("results:"):
            break
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert f"render it with: lubench report {tmp_path / 'run'}" in stderr
    assert "Aborted!" not in stderr and "Traceback" not in stderr
    assert len(_records(tmp_path / "run")) == 1  # the result stays


# --------------------------------------------------------------------------------------------
# Limits: explicit none, errors at load, defaults
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("key", "value"), [("timeout", 0), ("timeout", float("nan")),
                                            ("timeout", -1), ("memory_limit", 0.5),
                                            ("memory_limit", -5)])
def test_limits_that_mean_nothing_are_input_errors(tmp_path, key, value):
    suite = _suite(tmp_path, [{"name": "escape_lu"}], **{key: value})
    out = _run("run", suite, "-o", tmp_path / "run", "--dry-run")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and key in out.stderr and "none" in out.stderr
    assert not (tmp_path / "run").exists()


def test_timeout_option_zero_is_an_input_error(tmp_path):
    suite = _suite(tmp_path, [{"name": "escape_lu"}])
    out = _run("run", suite, "--timeout", "0", "--dry-run")
    assert out.returncode == 2 and "--timeout" in out.stderr and "Traceback" not in out.stderr


def test_defaults_apply_and_none_is_said_explicitly(tmp_path):
    from lubench.registry import load_registry
    from lubench.suite.limits import DEFAULT_TIMEOUT, NO_MEMORY_LIMIT
    from lubench.suite.load import load_suite

    reg = load_registry([str(PLUGIN)], entry_points=False)
    plain = load_suite(_suite(tmp_path, [{"name": "escape_lu"}]), reg)
    assert plain.cases[0].timeout == DEFAULT_TIMEOUT
    assert plain.cases[0].memory_limit is None  # the default, resolved where the case runs
    free = load_suite(_suite(tmp_path, [{"name": "escape_lu"}], timeout="none",
                             memory_limit="none"), reg)
    assert free.cases[0].timeout is None and free.cases[0].memory_limit == NO_MEMORY_LIMIT


# --------------------------------------------------------------------------------------------
# Plugin trust, bounded
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("plugin", "reason"), [
    ("import_segfault.py", "import crashed (SIGSEGV)"),
    ("import_hang.py", "import did not finish within 2 s"),
    ("import_exit.py", "import ended the process"),
])
def test_a_plugin_that_crashes_or_hangs_at_import_is_broken_and_the_tool_goes_on(
        tmp_path, plugin, reason):
    suite = _suite(tmp_path, [{"name": "escape_lu"}])
    data = yaml.safe_load(suite.read_text())
    data["plugins"].append(str(BAD / plugin))
    suite.write_text(yaml.safe_dump(data))
    t0 = time.monotonic()
    out = _run("run", suite, "--dry-run", env=_env(LUBENCH_PLUGIN_IMPORT_TIMEOUT="2"))
    assert out.returncode == 0, out.stderr
    assert reason in out.stderr and Path(plugin).stem in out.stderr
    assert "1 cases" in out.stdout
    assert time.monotonic() - t0 < 30
