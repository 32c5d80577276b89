"""Helpers for the runner, store and scale-out tests: a misbehaving plugin, suites, a driver.

The plugin (written into a temporary folder and loaded as a ``.py`` file, like a user's) has
its own operator, so that these tests depend on no built-in plugin, and one method whose
``behave`` parameter makes a case succeed, sleep, allocate, raise, kill itself, or train.

Run as a script, this file is the driver the crash tests start in a subprocess (and then kill):
``python _runner_fixtures.py PLUGIN SUITE RUN_DIR [--resume] [-j N]``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PLUGIN_SOURCE = '''
"""Runner test plugin: one operator, one method that can misbehave on purpose."""

import os
import time
from typing import Literal

import numpy as np
import scipy.linalg as sla

from lubench import hookimpl
from lubench.api import Factorization, Method, Operator, OperatorGenerator, RunContext


class RtOperator(OperatorGenerator):
    """Diagonally dominant random test operator: A = d I + G / sqrt(n), G Gaussian (seeded).

    Parameters
    ----------
    d : float
        Diagonal shift.
    """

    name = "rt_op"

    def __init__(self, d: float = 3.0):
        self.d = d

    def build(self, n: int, seed: int) -> Operator:
        G = np.random.default_rng(seed).standard_normal((n, n))
        A = self.d * np.eye(n) + G / np.sqrt(n)
        return Operator(self.name, A, symmetric=False, spd=False, params=self.get_params())


class _LU(Factorization):
    def __init__(self, A):
        super().__init__()
        self.lu_piv = sla.lu_factor(A)
        self.A = A
        self.n_params = A.size

    def solve(self, B):
        return sla.lu_solve(self.lu_piv, B)

    def apply(self, X):
        P, L, U = sla.lu(self.A)
        return P @ (L @ (U @ X))


class RtMethod(Method):
    """Dense LU that misbehaves on request, for the runner's tests.

    Parameters
    ----------
    behave : str
        ok, sleep, allocate, huge, raise, sigkill or train.
    seconds : float
        How long ``sleep`` sleeps (and ``allocate`` holds its memory).
    mb : int
        MiB that ``allocate`` writes to.
    """

    name = "rt_lu"
    family = "classical"

    def __init__(self, behave: Literal["ok", "sleep", "allocate", "huge", "raise", "sigkill",
                                       "train"] = "ok",
                 seconds: float = 0.0, mb: int = 0):
        self.behave = behave
        self.seconds = seconds
        self.mb = mb

    def factorize(self, op: Operator, ctx: RunContext) -> Factorization:
        if self.behave == "sleep":
            time.sleep(self.seconds)
        elif self.behave == "allocate":
            chunks = [np.ones(2**20 // 8) for _ in range(self.mb)]  # written: resident
            time.sleep(self.seconds)
            del chunks
        elif self.behave == "huge":
            np.ones(2**50 // 8)  # a petabyte: MemoryError at once
        elif self.behave == "raise":
            raise RuntimeError("planted failure")
        elif self.behave == "sigkill":
            os.kill(os.getpid(), 9)
        fact = _LU(op.dense())
        from threadpoolctl import threadpool_info

        fact.info = {"blas_threads": max(p["num_threads"] for p in threadpool_info()),
                     "omp_env": os.environ.get("OMP_NUM_THREADS")}
        if self.behave == "train":
            for step in range(1, 6):
                time.sleep(0.05)
                ctx.progress(step, 5, loss=1.0 / step)
                fact.history.append({"step": step, "seconds": 0.05 * step, "loss": 1.0 / step})
            fact.info.update(iterations=5, final_loss=0.2)
        return fact


@hookimpl
def lubench_operators():
    return [RtOperator]


@hookimpl
def lubench_methods():
    return [RtMethod]
'''


@pytest.fixture(scope="session")
def rt_plugin(tmp_path_factory) -> str:
    """Path of the misbehaving plugin file."""
    path = tmp_path_factory.mktemp("rt_plugin") / "rt_plugin.py"
    path.write_text(PLUGIN_SOURCE)
    return str(path)


@pytest.fixture(autouse=True)
def _only_test_plugins(monkeypatch):
    """Load no built-in plugin (they have their own tests, and PyTorch is slow to import)."""
    monkeypatch.setenv("LUBENCH_DISABLE_PLUGINS", "operators,classical,learned")


def suite_yaml(plugin: str, methods: list[dict], sizes=(8, 12), name: str = "rt",
               **top) -> str:
    """A suite as YAML text: the rt operator at ``sizes`` × the given method entries."""
    import yaml

    data = {"name": name, "seed": 1, "device": "cpu", "plugins": [plugin],
            "operators": [{"name": "rt_op", "sizes": list(sizes)}], "methods": methods, **top}
    return yaml.safe_dump(data, sort_keys=False)


def make_suite(tmp_path: Path, plugin: str, methods: list[dict], **kw):
    """(suite file, Suite) for the rt operator and the given method entries."""
    from lubench.registry import load_registry
    from lubench.suite.load import load_suite

    path = tmp_path / "suite.yaml"
    path.write_text(suite_yaml(plugin, methods, **kw))
    return path, load_suite(path, load_registry([plugin]))


def run_suite(tmp_path: Path, plugin: str, methods: list[dict], run_name: str = "run",
              sizes=(8, 12), submitit_executor=None, **plan_kw):
    """Run a suite end to end in this process; returns (outcome, results, store).
    ``plan_kw`` go to :func:`lubench.execution.make_plan` (executor, jobs, options)."""
    from lubench.execution import SlurmExecutor, make_plan, run_cases
    from lubench.rundir.store import RunStore

    _, suite = make_suite(tmp_path, plugin, methods, sizes=sizes)
    store = RunStore.open(tmp_path / run_name, suite, command_line="test")
    try:
        plan = make_plan(store, suite.cases, plugin_specs=(plugin,), **plan_kw)
        executor = SlurmExecutor(submitit_executor) if submitit_executor else None
        outcome = run_cases(suite.cases, store, plan, executor=executor)
        results = store.finalize()
    finally:
        store.close()
    return outcome, results, store


def start_driver(plugin: str, suite_path: Path, run_dir: Path, *args: str) -> subprocess.Popen:
    """This file as a script in a subprocess (the process the crash tests kill)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def as_from_a_terminal() -> None:
        # An ignored SIGINT is inherited across exec, and lubench run respects it (a
        # background job): start the driver with Ctrl-C live, whatever this process has.
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    return subprocess.Popen([sys.executable, __file__, plugin, str(suite_path), str(run_dir),
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, preexec_fn=as_from_a_terminal)


def wait_for_records(run_dir: Path, count: int, timeout: float = 30.0) -> int:
    """Block until records.jsonl holds ``count`` complete lines; returns how many it holds."""
    path = run_dir / "records.jsonl"
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists():
            lines = path.read_bytes().count(b"\n")
            if lines >= count:
                return lines
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} records in {path} after {timeout} s")


def _drive(argv: list[str]) -> None:
    from lubench.execution import make_plan, run_cases
    from lubench.registry import load_registry
    from lubench.rundir.store import RunStore
    from lubench.suite.load import load_suite

    plugin, suite_path, run_dir = argv[:3]
    resume = "--resume" in argv
    jobs = int(argv[argv.index("-j") + 1]) if "-j" in argv else 1
    suite = load_suite(suite_path, load_registry([plugin]))
    store = RunStore.open(Path(run_dir), suite, command_line=" ".join(argv), resume=resume)
    print("started", flush=True)
    outcome = run_cases(suite.cases, store,
                        make_plan(store, suite.cases, plugin_specs=(plugin,), jobs=jobs))
    store.finalize()
    print(json.dumps({"interrupted": outcome.interrupted, "summary": outcome.summary(),
                      "counts": dict(outcome.counts)}), flush=True)
    sys.exit(130 if outcome.interrupted else 0)


if __name__ == "__main__":
    _drive(sys.argv[1:])
