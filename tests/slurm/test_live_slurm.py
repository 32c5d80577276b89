"""``lubench run --executor slurm`` against a live single-node SLURM (CPU only, no accounting):
classical and learned cases complete, a SIGKILLed run resumes with each case started once,
Ctrl-C cancels the jobs, and an sbatch refusal is one line with exit 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _cluster import slurm_cluster  # noqa: F401

from lubench.execution.slurm.ledger import LEDGER_FILE
from lubench.execution.slurm.queue import ACTIVE, job_states

pytestmark = pytest.mark.slurm

PROBE = Path(__file__).resolve().parent / "probe_plugin.py"


def _exe() -> str:
    exe = Path(sys.executable).with_name("lubench")
    return str(exe) if exe.exists() else "lubench"


def _suite(tmp_path: Path, methods: list[dict], sizes=(16,), **top) -> Path:
    data = {"name": "live", "seed": 0, "device": "auto", "plugins": [str(PROBE)],
            "operators": [{"name": "laplacian_1d", "sizes": list(sizes)}], "methods": methods,
            **top}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _probes(tags: list[str], seconds: float) -> list[dict]:
    return [{"name": "probe_lu", "params": {"tag": tags, "seconds": seconds}}]


def _env(tmp_path: Path, learned: bool) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "LUBENCH_PROBE_STARTS": str(tmp_path / "starts.txt")}
    if not learned:  # the jobs inherit it: no PyTorch import (3 s a task here)
        env["LUBENCH_DISABLE_PLUGINS"] = "learned"
    return env


def _start(args: list, tmp_path: Path, learned: bool = False) -> subprocess.Popen:
    def ctrl_c_live() -> None:  # an ignored SIGINT would be inherited
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    return subprocess.Popen([_exe(), "run", *map(str, args), "--no-report", "--no-progress"],
                            cwd=tmp_path, env=_env(tmp_path, learned), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_live)


def _run(args: list, tmp_path: Path, learned: bool = False,
         timeout: float = 300) -> subprocess.CompletedProcess:
    proc = _start(args, tmp_path, learned)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _ledger(run_dir: Path) -> list[dict]:
    path = run_dir / LEDGER_FILE
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _submitted(run_dir: Path) -> list[str]:
    return [e["job_id"] for e in _ledger(run_dir) if e["event"] == "submitted"]


def _active(job_ids: list[str]) -> dict[str, str]:
    states = job_states() or {}
    return {j: states[j] for j in job_ids if states.get(j) in ACTIVE}


def _wait(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def run_dir(tmp_path, slurm_cluster):  # noqa: F811
    """The run directory; whatever it submitted is cancelled when the test ends."""
    path = tmp_path / "run"
    yield path
    ids = _submitted(path)
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True)


def _starts(tmp_path: Path) -> Counter:
    path = tmp_path / "starts.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return Counter(line.split()[0] for line in lines)


def test_classical_and_learned_cases_run_on_a_cpu_partition(tmp_path, run_dir, slurm_cluster):  # noqa: F811
    """gfmm_lu asks for a GPU; device auto on a partition without one requests none."""
    suite = _suite(tmp_path, [
        {"name": "plu"},
        {"name": "gfmm_lu", "params": {"P": 8, "init": "identity"},
         "budget": {"max_steps": 20, "max_seconds": 10}},
    ], sizes=(16,))
    out = _run([suite, "--executor", "slurm", "--slurm-partition", slurm_cluster.partition,
                "-o", run_dir], tmp_path, learned=True)
    assert out.returncode == 0, out.stderr
    results = pd.read_parquet(run_dir / "results.parquet")
    assert sorted(results["method"]) == ["gfmm_lu", "plu"]
    assert (results["status"] == "ok").all(), results[["method", "error"]]
    assert set(results["device"]) == {"cpu"}
    assert set(results["job_id"]) <= set(_submitted(run_dir)) and results["job_id"].is_unique
    # quiet: submitit's sacct warnings went to the log, the terminal has a line per case
    assert "sacct" not in out.stderr and "Traceback" not in out.stderr
    assert (run_dir / "slurm.log").exists()
    per_case = [line for line in out.stderr.splitlines() if line.startswith("lubench: ok: ")]
    assert len(per_case) == 2
    assert "GPU" not in out.stderr  # no task asked for one
    # the same request for both methods now: one array, and its line when it completes
    assert any(line.endswith("2/2 done") for line in out.stderr.splitlines())


def test_sigkill_with_jobs_queued_then_resume_runs_each_case_once(tmp_path, run_dir,
                                                                   slurm_cluster):  # noqa: F811
    tags = ["a", "b", "c", "d"]
    suite = _suite(tmp_path, _probes(tags, seconds=3.0))
    args = [suite, "--executor", "slurm", "-o", run_dir]
    first = _start(args, tmp_path)
    try:
        ids = _wait(lambda: len(_submitted(run_dir)) == 4 and _submitted(run_dir), 120,
                    "4 submitted jobs")
        # two CPUs: two tasks run, two wait; kill the parent while some are queued
        _wait(lambda: "RUNNING" in _active(ids).values(), 60, "a running task")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    pending = [j for j, s in _active(ids).items() if s == "PENDING"]
    assert pending, "no task was still queued when the parent died"
    # one queued job is lost meanwhile (cancelled by someone): resume submits that case again
    lost = pending[-1]
    subprocess.run(["scancel", lost], check=True)
    _wait(lambda: lost not in _active([lost]), 30, "the cancelled job to leave the queue")

    # no --executor: resuming a run that has SLURM jobs goes on with SLURM
    second = _run([suite, "--resume", run_dir], tmp_path)
    assert second.returncode == 0, second.stderr
    assert "adopted 3 case(s)" in second.stderr and "1 to submit again" in second.stderr
    results = pd.read_parquet(run_dir / "results.parquet")
    assert len(results) == 4 and results["case_id"].is_unique
    assert (results["status"] == "ok").all(), results[["method_params", "error"]]
    assert _starts(tmp_path) == Counter({t: 1 for t in tags})  # each case started once
    resubmitted = _submitted(run_dir)[4:]
    assert len(resubmitted) == 1 and lost not in resubmitted


def test_ctrl_c_cancels_the_jobs(tmp_path, run_dir, slurm_cluster):  # noqa: F811
    suite = _suite(tmp_path, _probes(["x", "y", "z"], seconds=120))
    proc = _start([suite, "--executor", "slurm", "-o", run_dir], tmp_path)
    try:
        ids = _wait(lambda: len(_submitted(run_dir)) == 3 and _submitted(run_dir), 120,
                    "3 submitted jobs")
        _wait(lambda: "RUNNING" in _active(ids).values(), 60, "a running task")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "--executor slurm --resume" in err and "Traceback" not in err
    _wait(lambda: not _active(ids), 30, "the queue to be empty of the run's jobs")
    cancelled = [e for e in _ledger(run_dir) if e["event"] == "cancelled"]
    assert cancelled and sorted(cancelled[-1]["job_ids"]) == sorted(ids)


def test_an_unknown_partition_is_one_line_and_exit_2(tmp_path, run_dir, slurm_cluster):  # noqa: F811
    suite = _suite(tmp_path, _probes(["p"], seconds=0))
    out = _run([suite, "--executor", "slurm", "--slurm-partition", "no-such-partition",
                "-o", run_dir], tmp_path)
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("lubench: error:")]
    assert len(errors) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "sbatch refused 1 case(s)" in errors[0] and "partition" in errors[0]
    assert len(out.stderr.strip().splitlines()) == 2  # the run's header line, then the error
    refused = [e for e in _ledger(run_dir) if e["event"] == "refused"]
    assert len(refused) == 1 and not _submitted(run_dir)


def test_a_refusal_after_an_accepted_array_leaves_nothing_queued(tmp_path, run_dir,
                                                                 slurm_cluster):  # noqa: F811
    """device cuda: gfmm_lu asks for a GPU the partition lacks; the plu array before it was
    accepted and is cancelled."""
    suite = _suite(tmp_path, [
        {"name": "probe_lu", "params": {"tag": "q", "seconds": 60}},
        {"name": "gfmm_lu", "params": {"P": 8}, "budget": {"max_steps": 5}},
    ], device="cuda")
    out = _run([suite, "--executor", "slurm", "-o", run_dir], tmp_path, learned=True)
    assert out.returncode == 2, out.stderr
    error = [line for line in out.stderr.splitlines() if line.startswith("lubench: error:")]
    assert len(error) == 1 and "gres" in error[0].lower(), out.stderr
    accepted = _submitted(run_dir)
    assert len(accepted) == 1
    _wait(lambda: not _active(accepted), 30, "the accepted array to be cancelled")
    events = [e["event"] for e in _ledger(run_dir)]
    assert events == ["submitted", "refused", "cancelled"]
