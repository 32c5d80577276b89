"""Methods trained across instances (``Method.fit``): a family's instances and its split in
the suite, the fit before its test cases, what is recorded, a failing or timed-out fit, and
a kill followed by ``--resume`` (training neither lost nor repeated)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lubench.registry import load_registry
from lubench.suite.load import build_suite

PLUGIN = '''
"""Test plugin: an SPD family, and a method that trains across its instances."""

import os
import time
from typing import Literal

import numpy as np

from lubench import hookimpl
from lubench.api import Factorization, Method, Operator, OperatorGenerator


class FamSPD(OperatorGenerator):
    """Random SPD tridiagonal family: diag 2 + u (u uniform on [0, 1), seeded), off-diagonal -1.
    """

    name = "fam_spd"

    def build(self, n: int, seed: int) -> Operator:
        u = np.random.default_rng(seed).uniform(0.0, 1.0, n)
        A = np.diag(2.0 + u) - np.eye(n, k=1) - np.eye(n, k=-1)
        return Operator(self.name, A, symmetric=True, spd=True, params={})


class Scaled(Factorization):
    """M = c I: it gives M^-1 only."""

    def __init__(self, n: int, c: float):
        super().__init__()
        self.c, self.n_params = c, 1

    def solve(self, B):
        return np.asarray(B, dtype=float) / self.c


class MeanDiag(Method):
    """Learns the mean diagonal entry of its training operators; M = (that mean) I.

    Parameters
    ----------
    behave : str
        ok, fail (fit raises) or sleep (fit sleeps ``seconds`` first).
    seconds : float
        How long fit sleeps for ``sleep``.
    case_seconds : float
        How long factorize sleeps (slow test cases).
    log : str
        A file every fit call appends a line to ("" for none).
    """

    name = "mean_diag"
    family = "learned"
    exact = False

    def __init__(self, behave: Literal["ok", "fail", "sleep"] = "ok", seconds: float = 0.0,
                 case_seconds: float = 0.0, log: str = ""):
        self.behave = behave
        self.seconds = seconds
        self.case_seconds = case_seconds
        self.log = log

    def fit(self, train, ctx):
        if self.log:
            with open(self.log, "a") as fh:
                fh.write(f"fit {len(train)}\\n")
        if self.behave == "fail":
            raise RuntimeError("fit refuses to learn")
        if self.behave == "sleep":
            time.sleep(self.seconds)
        self.mean_ = float(np.mean([train[i].diagonal().mean() for i in range(len(train))]))
        self.history_ = [{"step": i + 1, "loss": 1.0 / (i + 1)} for i in range(len(train))]
        self.fit_info_ = {"mean": self.mean_, "steps": len(train), "final_loss": 0.5}

    def factorize(self, op, ctx):
        time.sleep(self.case_seconds)
        return Scaled(op.n, getattr(self, "mean_", 1.0))


@hookimpl
def lubench_operators():
    return [FamSPD]


@hookimpl
def lubench_methods():
    return [MeanDiag]
'''


@pytest.fixture
def plugin(tmp_path) -> Path:
    path = tmp_path / "fitplug.py"
    path.write_text(textwrap.dedent(PLUGIN))
    return path


def suite(plugin: Path, method_params: dict | None = None, extra: dict | None = None,
          instances: int = 6, train: int = 3) -> dict:
    return {"name": "fam", "plugins": [str(plugin)], "cg_tolerances": [1e-3, 1e-6],
            "operators": [{"name": "fam_spd", "sizes": [16], "instances": instances,
                           "train": train}],
            "methods": [{"name": "mean_diag", "params": method_params or {}, **(extra or {})},
                        {"name": "jacobi"}]}


def lubench(*args: object, timeout: float = 300) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lubench")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LUBENCH_DISABLE_PLUGINS": "learned"}
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def records(run_dir: Path) -> list[dict]:
    path = run_dir / "records.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_family_expands_into_a_fit_and_its_test_cases(plugin):
    s = build_suite(suite(plugin), load_registry([str(plugin)]))
    fits = [c for c in s.cases if c.stage == "fit"]
    assert len(fits) == 1 and fits[0].method == "mean_diag" and fits[0].repeats == 1
    tests = {m: [c for c in s.cases if c.method == m and c.stage == "case"]
             for m in ("mean_diag", "jacobi")}
    assert [c.instance for c in tests["mean_diag"]] == [3, 4, 5]
    assert all(c.fit_id == fits[0].case_id for c in tests["mean_diag"])
    assert [c.instance for c in tests["jacobi"]] == [3, 4, 5]
    assert not any(c.fit_id for c in tests["jacobi"])
    # every method meets the same instance i; the instances differ; training ones are others
    seeds = [c.operator_seed for c in tests["jacobi"]]
    assert seeds == [c.operator_seed for c in tests["mean_diag"]] and len(set(seeds)) == 3
    assert not set(fits[0].training_seeds) & set(seeds) and len(fits[0].training_seeds) == 3
    assert len({c.case_id for c in s.cases}) == len(s.cases)


@pytest.mark.parametrize("change", [{"train": 6}, {"train": 7, "instances": 6},
                                    {"train": 1, "instances": 1}])
def test_a_split_that_leaves_no_test_instance_is_a_load_error(tmp_path, plugin, change):
    data = suite(plugin)
    data["operators"][0].update(change)
    out = lubench("run", write(tmp_path, data), "--dry-run")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "operators[0]: train: " in lines[0], out.stderr
    assert "leaves no test instance" in lines[0]


def test_without_a_training_split_a_fitted_method_is_unsupported(tmp_path, plugin):
    data = suite(plugin, instances=2, train=0)
    out = lubench("run", write(tmp_path, data), "-o", tmp_path / "run", "--no-report")
    assert out.returncode == 0, out.stderr
    df = pd.read_parquet(tmp_path / "run" / "results.parquet")
    mine = df[df.method == "mean_diag"]
    assert len(mine) == 2 and (mine.status == "unsupported").all()
    assert mine.error.str.contains("has no training split").all()
    assert (df[df.method == "jacobi"].status == "ok").all()


def test_the_fit_runs_once_before_its_test_cases(tmp_path, plugin):
    log = tmp_path / "fits.log"
    out = lubench("run", write(tmp_path, suite(plugin, {"log": str(log)})), "-o",
                  tmp_path / "run", "--no-report")
    assert out.returncode == 0, out.stderr
    assert log.read_text() == "fit 3\n"
    df = pd.read_parquet(tmp_path / "run" / "results.parquet")
    fit = df[df.stage == "fit"].iloc[0]
    assert fit.status == "ok" and fit.train_seconds > 0 and pd.isna(fit.instance)
    assert json.loads(fit["info"])["mean"] > 2 and fit.iterations == 3
    tests = df[(df.stage == "case") & (df.method == "mean_diag")]
    assert len(tests) == 3 and (tests.status == "ok").all()
    assert (tests.fit_id == fit.case_id).all()
    assert tests.train_seconds.eq(fit.train_seconds).all()
    assert tests.train_share_seconds.sub(fit.train_seconds / 3).abs().max() < 1e-12
    assert tests.factor_error.isna().all()  # M⁻¹ only: not measured
    assert tests.cg_converged.all() and (tests.cg_iterations > 0).all()
    jac = df[df.method == "jacobi"]
    assert (jac.train_seconds == 0).all() and jac.fit_id.isna().all()
    hist = pd.read_parquet(tmp_path / "run" / "histories.parquet")
    assert list(hist.loc[hist.case_id == fit.case_id, "step"]) == [1, 2, 3]
    assert (tmp_path / "run" / "fits" / f"{fit.case_id}.pkl").is_file()


def test_a_failing_fit_is_one_failed_row_and_its_cases_are_not_run(tmp_path, plugin):
    out = lubench("run", write(tmp_path, suite(plugin, {"behave": "fail"})), "-o",
                  tmp_path / "run", "--no-report")
    assert out.returncode == 1
    df = pd.read_parquet(tmp_path / "run" / "results.parquet")
    fit = df[df.stage == "fit"]
    assert len(fit) == 1 and fit.status.iloc[0] == "failed"
    assert fit.error.iloc[0] == "RuntimeError: fit refuses to learn"
    tests = df[(df.method == "mean_diag") & (df.stage == "case")]
    assert len(tests) == 3 and (tests.status == "not_run").all()
    assert tests.error.str.contains("failed: RuntimeError: fit refuses to learn").all()
    assert (df[df.method == "jacobi"].status == "ok").all()


def test_a_fit_past_its_timeout_is_killed(tmp_path, plugin):
    data = suite(plugin, {"behave": "sleep", "seconds": 60}, {"fit_timeout": "2s"})
    out = lubench("run", write(tmp_path, data), "-o", tmp_path / "run", "--no-report")
    assert out.returncode == 0, out.stderr  # a timeout is an outcome
    df = pd.read_parquet(tmp_path / "run" / "results.parquet")
    assert df[df.stage == "fit"].status.tolist() == ["timeout"]
    tests = df[(df.method == "mean_diag") & (df.stage == "case")]
    assert (tests.status == "not_run").all() and tests.error.str.contains("timeout").all()


def _kill_when(run_dir: Path, proc: subprocess.Popen, done, limit: float = 120) -> None:
    t0 = time.monotonic()
    try:
        while not done(records(run_dir)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() - t0 < limit, "the run did not get there"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()


def _start(path: Path, run_dir: Path) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("lubench")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LUBENCH_DISABLE_PLUGINS": "learned"}
    return subprocess.Popen([str(exe), "run", str(path), "-o", str(run_dir), "--no-report"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def test_a_kill_after_the_fit_resumes_without_training_again(tmp_path, plugin):
    log = tmp_path / "fits.log"
    path = write(tmp_path, suite(plugin, {"log": str(log), "case_seconds": 1.5}))
    run_dir = tmp_path / "run"
    _kill_when(run_dir, _start(path, run_dir),
               lambda recs: any(r.get("stage") == "fit" for r in recs))
    assert log.read_text() == "fit 3\n"
    out = lubench("run", path, "--resume", run_dir, "--no-report")
    assert out.returncode == 0, out.stderr
    assert log.read_text() == "fit 3\n"  # the kept fit, not a new one
    recs = records(run_dir)
    assert sum(r["stage"] == "fit" for r in recs) == 1
    df = pd.read_parquet(run_dir / "results.parquet")
    assert len(df) == 7 and (df.status == "ok").all()


def test_a_kill_during_the_fit_trains_again_on_resume(tmp_path, plugin):
    log = tmp_path / "fits.log"
    path = write(tmp_path, suite(plugin, {"log": str(log), "behave": "sleep", "seconds": 3}))
    run_dir = tmp_path / "run"
    _kill_when(run_dir, _start(path, run_dir),
               lambda recs: log.exists())  # the fit started: kill it mid-training
    assert not any(r.get("stage") == "fit" for r in records(run_dir))
    out = lubench("run", path, "--resume", run_dir, "--no-report")
    assert out.returncode == 0, out.stderr
    assert log.read_text() == "fit 3\nfit 3\n"  # it never finished: it trains again
    df = pd.read_parquet(run_dir / "results.parquet")
    assert len(df) == 7 and (df.status == "ok").all()


def test_the_slurm_executor_runs_the_fit_then_its_cases(tmp_path, plugin):
    """Through submitit's local executor standing in for SLURM: a task for the fit, then
    tasks for the test cases, which load the fit it kept in the run directory."""
    submitit = pytest.importorskip("submitit")
    from lubench.execution import SlurmExecutor, make_plan, run_cases
    from lubench.rundir.store import RunStore

    log = tmp_path / "fits.log"
    data = suite(plugin, {"log": str(log)}, instances=4, train=2)
    s = build_suite(data, load_registry([str(plugin)]), path=write(tmp_path, data))
    with RunStore.open(tmp_path / "slurm", s, command_line="test") as store:
        plan = make_plan(store, s.cases, executor="slurm", plugin_specs=(str(plugin),),
                         options={"slurm_partition": "ignored-locally"})
        executor = SlurmExecutor(lambda folder: submitit.AutoExecutor(folder=folder,
                                                                      cluster="local"))
        outcome = run_cases(s.cases, store, plan, executor=executor)
        df = store.finalize()
    assert log.read_text() == "fit 2\n" and len(outcome.job_ids) == len(s.cases)
    assert (df.status == "ok").all() and len(df) == 5
    fit = df[df.stage == "fit"].iloc[0]
    assert (df[(df.method == "mean_diag") & (df.stage == "case")].fit_id == fit.case_id).all()
