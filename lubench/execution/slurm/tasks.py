"""The array tasks of one :func:`~lubench.execution.slurm.run_submitit` call: the body each
task runs on its node (:func:`execute_case`), where it writes its result (:func:`result_file`),
what the driver knows of it (:class:`Task`), and who tells the tasks' states (a scheduler).

:class:`ArrayRun` is the state the submission (:mod:`lubench.execution.slurm.submit`) and the
polling (:mod:`lubench.execution.slurm.poll`) share: the tasks not collected yet, per array
how many tasks it has and how many are collected.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from lubench.execution.devices import resolve_auto
from lubench.execution.limits import thread_controller
from lubench.execution.local import LocalPool
from lubench.execution.plan import Collect, RunPlan, Sink
from lubench.execution.slurm.ledger import Ledger
from lubench.execution.slurm.queue import array_of, cancel_jobs, job_states
from lubench.suite.cases import Case

__all__ = ["execute_case", "result_file", "Task", "ArrayRun"]


def execute_case(case: Case, repeat: int, plan: RunPlan) -> dict:
    """Run one case under the local supervisor (own worker process, hard timeout, memory
    limit) and return its record. The body of a SLURM array task: the plan arrives pickled,
    so the plugins are loaded here, once, before the worker is forked."""
    thread_controller()
    # on the node that runs it (the plan's device is None): every row names its device
    case = resolve_auto([case], plan.device)[0]
    sink = Collect()
    LocalPool(plan, sink).run([(case, repeat)])
    rec = sink.records[0]
    job_id = os.environ.get("SLURM_ARRAY_JOB_ID")
    if job_id:
        rec["job_id"] = f"{job_id}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return rec


def result_file(folder: Path, job_id: str) -> Path:
    """Where submitit's task ``job_id`` (``123_4``) run from ``folder`` writes its result."""
    from submitit.core.utils import JobPaths

    return JobPaths(Path(folder) / "%j", job_id=job_id, task_id=0).result_pickle


@dataclass
class Task:
    """One submitted (or adopted) case and what is known of its job."""

    job_id: str
    case: Case
    repeat: int
    result: Path
    state: str = "PENDING"
    ended_at: float | None = None  # when squeue first showed it ended (or not at all)

    @property
    def key(self) -> tuple[str, int]:
        return (self.case.case_id, self.repeat)


# --------------------------------------------------------------------------------------------
# The scheduler: squeue/scancel for SLURM; submitit's own job objects for anything else (the
# tests' local executor)
# --------------------------------------------------------------------------------------------
class _Slurm:
    adopts = True

    def states(self) -> dict[str, str] | None:
        return job_states()

    def track(self, jobs: list[Any]) -> None:
        return None

    def cancel(self, job_ids: list[str]) -> None:
        cancel_jobs(job_ids)


class _SubmititJobs:
    """Another submitit executor (``cluster="local"`` in the tests): ask the job objects."""

    adopts = False

    def __init__(self) -> None:
        self.jobs: dict[str, Any] = {}

    def track(self, jobs: list[Any]) -> None:
        self.jobs.update({str(j.job_id): j for j in jobs})

    def states(self) -> dict[str, str] | None:
        return {jid: ("COMPLETED" if job.done() else "RUNNING") for jid, job in self.jobs.items()}

    def cancel(self, job_ids: list[str]) -> None:
        for jid in job_ids:
            with contextlib.suppress(Exception):
                self.jobs[jid].cancel(check=False)


class ArrayRun:
    """What one call knows of its job arrays: its settings, the tasks not collected yet (by job
    id), per array how many tasks it has and how many are collected, the scheduler."""

    def __init__(self, *, plan: RunPlan, sink: Sink, folder: Path, run_dir: Path,
                 options: dict, executor: Any, log: TextIO):
        self.plan, self.sink = plan, sink
        self.folder, self.options = Path(folder), options
        self.executor, self.log = executor, log
        self.job_ids: list[str] = []  # every job this call waits for, adopted ones too
        self.ledger = Ledger(run_dir)
        is_slurm = getattr(executor, "cluster", "slurm") == "slurm"
        self.sched: _Slurm | _SubmititJobs = _Slurm() if is_slurm else _SubmititJobs()
        self.tasks: dict[str, Task] = {}  # not collected yet, by job id
        self.totals: Counter = Counter()  # array -> tasks
        self.collected: Counter = Counter()  # array -> tasks collected
        self.shown: dict[str, tuple[str, float]] = {}  # array -> (status line, when)
        self.submitted_now: list[str] = []

    def track(self, task: Task) -> None:
        """Wait for ``task`` (submitted or adopted) and count it in its array."""
        self.tasks[task.job_id] = task
        self.totals[array_of(task.job_id)] += 1
        self.job_ids.append(task.job_id)

    def cancel_all(self, reason: str) -> None:
        """Cancel every job not collected yet (and say so in the ledger and the terminal)."""
        left = sorted(self.tasks)
        if not left:
            return
        self.sched.cancel(left)
        self.ledger.cancelled(left, reason)
        self.tasks.clear()
        self.sink.write(f"lubench: cancelled {len(left)} job(s) of array(s) "
                           f"{', '.join(sorted({array_of(j) for j in left}))}")
