"""Watching the tasks of one call until each has a record: result files looked for every
:data:`POLL` seconds, ``squeue`` asked every :data:`SQUEUE_EVERY` seconds, one status line per
array when its counts change (at most every :data:`STATUS_EVERY` seconds) and, without a
progress bar, one line per case as it ends.

A task that ends without a result file (killed by SLURM at its time limit, a node failure, a
cancellation by someone else) is recorded ``failed`` once ``squeue`` has shown it ended for
:data:`RESULT_GRACE` seconds (result files may reach a shared file system late).
"""

from __future__ import annotations

import contextlib
import multiprocessing.connection as mpc
import pickle
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from lubench.execution.slurm.queue import ACTIVE, QUEUED, array_of
from lubench.execution.slurm.tasks import ArrayRun, Task
from lubench.rundir.records import FAILED, base_record
from lubench.suite.cases import Case

__all__ = ["watch", "POLL", "SQUEUE_EVERY", "STATUS_EVERY", "RESULT_GRACE"]

POLL = 0.5  # seconds between two looks for result files
SQUEUE_EVERY = 5.0  # seconds between two squeue calls
STATUS_EVERY = 30.0  # at most one status line per array this often (and when it completes)
RESULT_GRACE = 20.0  # seconds an ended task may take for its result file to appear


def _label(case: Case, repeat: int) -> str:
    return case.label + (f" #{repeat}" if case.repeats > 1 else "")


def _collect(run: ArrayRun, task: Task) -> dict | None:
    """The task's record from its result file, if it is there and complete."""
    if not task.result.exists():
        return None
    from submitit.core.utils import pickle_load

    try:
        outcome, value = pickle_load(task.result)
    except (EOFError, pickle.UnpicklingError):  # being written
        return None
    if outcome == "success" and isinstance(value, dict):
        rec = value
    else:  # execute_case itself raised (value is the traceback)
        rec = _failed(run, task, f"SLURM task {task.job_id} raised: "
                                 f"{str(value).strip().splitlines()[-1:]}")
    rec.setdefault("job_id", task.job_id)
    return rec


def _failed(run: ArrayRun, task: Task, error: str) -> dict:
    rec = base_record(task.case, task.repeat, run.plan.run_id)
    rec.update(status=FAILED, info="{}", history=[], error=error, job_id=task.job_id)
    return rec


def _finish(run: ArrayRun, task: Task, rec: dict) -> None:
    del run.tasks[task.job_id]
    run.collected[array_of(task.job_id)] += 1
    run.sink.record(rec)
    error = f": {rec.get('error')}" if rec.get("status") != "ok" and rec.get("error") else ""
    run.sink.write(f"lubench: {rec.get('status')}: {_label(task.case, task.repeat)}"
                   f" (job {task.job_id}){error}", detail=True)
    _status(run, array_of(task.job_id))


def _status(run: ArrayRun, array: str, force: bool = False) -> None:
    """One line for ``array`` when its counts changed (rate-limited; always when done)."""
    states = Counter("queued" if t.state in QUEUED else "running"
                     for t in run.tasks.values() if array_of(t.job_id) == array)
    done, total = run.collected[array], run.totals[array]
    line = (f"lubench: array {array}: {states['queued']} queued, {states['running']} "
            f"running, {done}/{total} done")
    last, when = run.shown.get(array, ("", -STATUS_EVERY))
    now = time.monotonic()
    if line != last and (force or done == total or now - when >= STATUS_EVERY):
        run.shown[array] = (line, now)
        run.sink.write(line)


def _poll_scheduler(run: ArrayRun) -> None:
    states = run.sched.states()
    if states is None:
        return
    now = time.monotonic()
    for task in list(run.tasks.values()):
        state = states.get(task.job_id)
        if state in ACTIVE:
            task.state, task.ended_at = state, None
            continue
        task.state = state or "gone from squeue"
        task.ended_at = task.ended_at or now
        if now - task.ended_at >= RESULT_GRACE:
            rec = _collect(run, task) or _failed(
                run, task, f"SLURM job {task.job_id} ended ({task.state}) without a result; "
                           f"see {task.result.parent}")
            _finish(run, task, rec)
    for array in sorted(run.totals):
        _status(run, array)


def watch(run: ArrayRun, stop: Callable[[], bool], wakeup: Any) -> bool:
    """Until every task is collected (True) or ``stop()`` (False: the rest cancelled)."""
    next_squeue = 0.0
    while run.tasks:
        if stop():
            run.cancel_all("interrupted")
            return False
        for task in list(run.tasks.values()):
            rec = _collect(run, task)
            if rec is not None:
                _finish(run, task, rec)
        if run.tasks and time.monotonic() >= next_squeue:
            _poll_scheduler(run)
            next_squeue = time.monotonic() + SQUEUE_EVERY
        if run.tasks:
            ready = mpc.wait([wakeup] if wakeup is not None else [], timeout=POLL)
            if ready:
                with contextlib.suppress(OSError):
                    wakeup.recv(4096)
    return True
