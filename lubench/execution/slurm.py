"""SLURM through submitit: one job array per resource request, each task a local supervisor
on one case (:func:`execute_case`), so that timeouts and memory limits mean what they mean
locally.

What a task asks for (CPUs, memory, time, GPUs) is :mod:`lubench.execution.slurm_resources`.
submitit writes the batch scripts, submits them and writes each task's result file; lubench
watches the jobs itself with ``squeue`` (:mod:`lubench.execution.slurm_queue`), which works
without SLURM accounting, and records every submitted job id in the run directory
(:mod:`lubench.execution.slurm_ledger`), so that:

* ``--resume`` adopts: a case whose job finished is collected from its result file, one whose
  job is still queued or running is waited for, and only cases whose jobs failed, were
  cancelled or vanished are submitted again. Each case runs once.
* an ``sbatch`` refusal is one line (:class:`LubenchError`, exit 2): what this call had
  submitted is cancelled, and the ledger says which cases were refused.
* polling is quiet: submitit's own log and warnings go to ``RUN_DIR/slurm.log``; the terminal
  shows one status line per array when its counts change (at most every
  :data:`STATUS_EVERY` seconds) and, without a progress bar, one line per case as it ends.
* Ctrl-C cancels every job of the run that has not ended.

A task that ends without a result file (killed by SLURM at its time limit, a node failure, a
cancellation by someone else) is recorded ``failed`` once ``squeue`` has shown it ended for
:data:`RESULT_GRACE` seconds (result files may reach a shared file system late).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing.connection as mpc
import os
import pickle
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from lubench.cases import Case
from lubench.errors import LubenchError, one_line
from lubench.execution.limits import thread_controller
from lubench.execution.pool import LocalPool, WorkItem
from lubench.execution.progress import Display
from lubench.execution.slurm_ledger import Ledger
from lubench.execution.slurm_queue import ACTIVE, QUEUED, array_of, cancel_jobs, job_states
from lubench.execution.slurm_resources import partition_gpus, submitit_parameters
from lubench.records import FAILED, base_record, canonical_json

__all__ = ["execute_case", "run_submitit", "default_submitit_executor", "submitit_parameters",
           "LOG_FILE"]

LOG_FILE = "slurm.log"  # submitit's log and warnings, sbatch's error output (RUN_DIR)
POLL = 0.5  # seconds between two looks for result files
SQUEUE_EVERY = 5.0  # seconds between two squeue calls
STATUS_EVERY = 30.0  # at most one status line per array this often (and when it completes)
RESULT_GRACE = 20.0  # seconds an ended task may take for its result file to appear


def execute_case(case: Case, repeat: int, run_id: str = "", plugin_specs: tuple[str, ...] = (),
                 base_dir: str | None = None, threads: int | None = None) -> dict:
    """Run one case under the local supervisor (own worker process, hard timeout, memory
    limit) and return its record. The body of a SLURM array task."""
    thread_controller()
    records: list[dict] = []
    LocalPool(1, run_id=run_id, plugin_specs=tuple(plugin_specs), base_dir=base_dir,
              threads=threads, on_record=records.append).run([(case, repeat)])
    rec = records[0]
    job_id = os.environ.get("SLURM_ARRAY_JOB_ID")
    if job_id:
        rec["job_id"] = f"{job_id}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return rec


def default_submitit_executor(folder: Path) -> Any:
    import submitit

    try:
        return submitit.AutoExecutor(folder=folder, cluster="slurm")
    except RuntimeError as exc:
        raise LubenchError(f"--executor slurm: {exc} (use -j N for local workers)") from None


def _describe_jobs(job_ids: list[str]) -> str:
    arrays = sorted({array_of(j) for j in job_ids})
    if all("_" in j for j in job_ids):
        return f"job array {', '.join(arrays)} (cancel with: scancel {' '.join(arrays)})"
    shown = ", ".join(job_ids[:8]) + (" …" if len(job_ids) > 8 else "")
    return f"job {shown}"


def _label(case: Case, repeat: int) -> str:
    return case.label + (f" #{repeat}" if case.repeats > 1 else "")


def result_file(folder: Path, job_id: str) -> Path:
    """Where submitit's task ``job_id`` (``123_4``) run from ``folder`` writes its result."""
    from submitit.core.utils import JobPaths

    return JobPaths(Path(folder) / "%j", job_id=job_id, task_id=0).result_pickle


@dataclass
class _Task:
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


# --------------------------------------------------------------------------------------------
# Quiet submitit
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _submitit_logs_to(path: Path) -> Iterator[TextIO]:
    """submitit's logger and Python warnings into ``path`` (appended) while in the block."""
    stream = open(path, "a")  # noqa: SIM115 (closed below)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("submitit")
    saved = (logger.handlers[:], logger.propagate)
    logger.handlers, logger.propagate = [handler], False

    def to_log(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
               line: Any = None) -> None:
        stream.write(warnings.formatwarning(message, category, filename, lineno, line))
        stream.flush()

    try:
        with warnings.catch_warnings():
            warnings.showwarning = to_log
            yield stream
    finally:
        logger.handlers, logger.propagate = saved
        stream.close()


def _sbatch_message(exc: BaseException) -> str:
    """sbatch's error output (submitit puts it in the exception) as one line."""
    lines = []
    for raw in str(exc).splitlines():
        text = raw.strip()
        for prefix in ("sbatch: error: ", "sbatch: "):
            if text.startswith(prefix):
                text = text[len(prefix):]
        if text and text not in lines:
            lines.append(text)
    return "; ".join(lines) or one_line(exc)


# --------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------
class _ArrayRun:
    """Submit, adopt, watch and collect the job arrays of one call."""

    def __init__(self, *, folder: Path, run_dir: Path, run_id: str,
                 plugin_specs: tuple[str, ...], base_dir: str | None, options: dict,
                 executor: Any, on_record: Callable[[dict], None], display: Display,
                 job_ids: list[str], log: TextIO):
        self.folder, self.run_id = Path(folder), run_id
        self.plugin_specs, self.base_dir, self.options = plugin_specs, base_dir, options
        self.executor, self.on_record, self.display = executor, on_record, display
        self.job_ids, self.log = job_ids, log
        self.ledger = Ledger(run_dir)
        is_slurm = getattr(executor, "cluster", "slurm") == "slurm"
        self.sched: _Slurm | _SubmititJobs = _Slurm() if is_slurm else _SubmititJobs()
        self.tasks: dict[str, _Task] = {}  # not collected yet, by job id
        self.totals: Counter = Counter()  # array -> tasks
        self.collected: Counter = Counter()  # array -> tasks collected
        self.shown: dict[str, tuple[str, float]] = {}  # array -> (status line, when)
        self.submitted_now: list[str] = []

    # -- adopt ---------------------------------------------------------------------------------
    def adopt(self, items: list[WorkItem]) -> list[WorkItem]:
        """Take over the jobs an earlier call submitted for ``items``; return the items that
        still need a job (theirs failed, was cancelled or vanished, or there was none)."""
        previous = self.ledger.latest() if self.sched.adopts else {}
        known = [(item, previous[(item[0].case_id, item[1])]) for item in items
                 if (item[0].case_id, item[1]) in previous]
        if not known:
            return items
        states = self.sched.states()
        finished = waiting = 0
        adopted: set[tuple[str, int]] = set()
        for (case, repeat), entry in known:
            task = _Task(entry["job_id"], case, repeat, result_file(entry["folder"],
                                                                    entry["job_id"]))
            if task.result.exists():
                finished += 1
            elif states is None:
                raise LubenchError("squeue does not answer: cannot tell which jobs of this run "
                                   "still run, so nothing was submitted; try --resume again")
            elif states.get(task.job_id) in ACTIVE:
                task.state = states[task.job_id]
                waiting += 1
            else:
                continue
            self._track(task)
            adopted.add(task.key)
        fresh = [item for item in items if (item[0].case_id, item[1]) not in adopted]
        again = len(known) - len(adopted)
        self.display.write(
            f"lubench: resume: adopted {len(adopted)} case(s) already submitted "
            f"({finished} finished, {waiting} queued or running); {again} to submit again "
            f"(job failed, cancelled or gone), {len(fresh) - again} never submitted")
        return fresh

    def _track(self, task: _Task) -> None:
        self.tasks[task.job_id] = task
        self.totals[array_of(task.job_id)] += 1
        self.job_ids.append(task.job_id)

    # -- submit --------------------------------------------------------------------------------
    def submit(self, items: list[WorkItem]) -> None:
        """One array per distinct resource request. On a refusal: cancel what this call
        submitted, note it in the ledger, raise one line."""
        offered = functools.cache(lambda: partition_gpus(self.options.get("slurm_partition")))
        groups: dict[str, tuple[dict, list[WorkItem]]] = {}
        for item in items:
            params = submitit_parameters(item[0], self.options, offered)
            groups.setdefault(canonical_json(params), (params, []))[1].append(item)
        pending = list(groups.values())
        while pending:
            params, group = pending[0]
            n = len(group)
            try:
                self.executor.update_parameters(**params)
                with contextlib.redirect_stderr(self.log):  # submitit prints sbatch's stderr
                    jobs = self.executor.map_array(
                        execute_case, [c for c, _ in group], [r for _, r in group],
                        [self.run_id] * n, [self.plugin_specs] * n, [self.base_dir] * n,
                        [params["cpus_per_task"]] * n)
            except Exception as exc:  # sbatch refused, or submitit refused the parameters
                self._refused(exc, [it for _, g in pending for it in g], n,
                              params.get("slurm_gpus_per_task"))
            ids = [str(j.job_id) for j in jobs]
            self.ledger.submitted([(j, c.case_id, r) for j, (c, r) in zip(ids, group)],
                                  self.folder)
            self.submitted_now.extend(ids)
            self.sched.track(jobs)
            for jid, (case, repeat) in zip(ids, group):
                self._track(_Task(jid, case, repeat, result_file(self.folder, jid)))
            gpus = params.get("slurm_gpus_per_task")
            self.display.write(
                f"lubench: submitted {n} case(s) ({params['cpus_per_task']} CPU, "
                f"{params['mem_gb']:g} GB{f', {gpus} GPU' if gpus else ''} each) as "
                f"{_describe_jobs(ids)}; logs in {self.folder}")
            pending.pop(0)

    def _refused(self, exc: BaseException, not_submitted: list[WorkItem], n: int,
                 gpus: int | None) -> None:
        message = _sbatch_message(exc)
        if gpus:
            message += (f" (they asked for {gpus} GPU each: --device cpu or "
                        f"--slurm-gpus-per-task 0 asks for none)")
        self.log.write(f"sbatch refused an array of {n} case(s):\n{exc}\n")
        self.log.flush()
        self.ledger.refused([(c.case_id, r) for c, r in not_submitted], message)
        if self.submitted_now:
            self.sched.cancel(self.submitted_now)
            self.ledger.cancelled(self.submitted_now, "a later sbatch was refused")
        adopted = len(self.tasks) - len(self.submitted_now)
        still = (f"; {adopted} case(s) adopted from before still have their jobs (--resume "
                 f"collects them)") if adopted > 0 else ""
        raise LubenchError(f"sbatch refused {n} case(s): {message}; nothing of this run was "
                           f"left queued{still} (see {self.ledger.path}, {self.log.name})"
                           ) from None

    # -- watch ---------------------------------------------------------------------------------
    def _collect(self, task: _Task) -> dict | None:
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
            rec = self._failed(task, f"SLURM task {task.job_id} raised: "
                                     f"{str(value).strip().splitlines()[-1:]}")
        rec.setdefault("job_id", task.job_id)
        return rec

    def _failed(self, task: _Task, error: str) -> dict:
        rec = base_record(task.case, task.repeat, self.run_id)
        rec.update(status=FAILED, info="{}", history=[], error=error, job_id=task.job_id)
        return rec

    def _finish(self, task: _Task, rec: dict) -> None:
        del self.tasks[task.job_id]
        self.collected[array_of(task.job_id)] += 1
        self.on_record(rec)
        if self.display.bar is None:
            error = f": {rec.get('error')}" if rec.get("status") != "ok" and rec.get("error") \
                else ""
            self.display.write(f"lubench: {rec.get('status')}: {_label(task.case, task.repeat)}"
                               f" (job {task.job_id}){error}")
        self._status(array_of(task.job_id))

    def _status(self, array: str, force: bool = False) -> None:
        """One line for ``array`` when its counts changed (rate-limited; always when done)."""
        states = Counter("queued" if t.state in QUEUED else "running"
                         for t in self.tasks.values() if array_of(t.job_id) == array)
        done, total = self.collected[array], self.totals[array]
        line = (f"lubench: array {array}: {states['queued']} queued, {states['running']} "
                f"running, {done}/{total} done")
        last, when = self.shown.get(array, ("", -STATUS_EVERY))
        now = time.monotonic()
        if line != last and (force or done == total or now - when >= STATUS_EVERY):
            self.shown[array] = (line, now)
            self.display.write(line)

    def _poll_scheduler(self) -> None:
        states = self.sched.states()
        if states is None:
            return
        now = time.monotonic()
        for task in list(self.tasks.values()):
            state = states.get(task.job_id)
            if state in ACTIVE:
                task.state, task.ended_at = state, None
                continue
            task.state = state or "gone from squeue"
            task.ended_at = task.ended_at or now
            if now - task.ended_at >= RESULT_GRACE:
                rec = self._collect(task) or self._failed(
                    task, f"SLURM job {task.job_id} ended ({task.state}) without a result; "
                          f"see {task.result.parent}")
                self._finish(task, rec)
        for array in sorted(self.totals):
            self._status(array)

    def cancel_all(self, reason: str) -> None:
        """Cancel every job not collected yet (and say so in the ledger and the terminal)."""
        left = sorted(self.tasks)
        if not left:
            return
        self.sched.cancel(left)
        self.ledger.cancelled(left, reason)
        self.tasks.clear()
        self.display.write(f"lubench: cancelled {len(left)} job(s) of array(s) "
                           f"{', '.join(sorted({array_of(j) for j in left}))}")

    def watch(self, stop: Callable[[], bool], wakeup: Any) -> bool:
        """Until every task is collected (True) or ``stop()`` (False: the rest cancelled)."""
        next_squeue = 0.0
        while self.tasks:
            if stop():
                self.cancel_all("interrupted")
                return False
            for task in list(self.tasks.values()):
                rec = self._collect(task)
                if rec is not None:
                    self._finish(task, rec)
            if self.tasks and time.monotonic() >= next_squeue:
                self._poll_scheduler()
                next_squeue = time.monotonic() + SQUEUE_EVERY
            if self.tasks:
                ready = mpc.wait([wakeup] if wakeup is not None else [], timeout=POLL)
                if ready:
                    with contextlib.suppress(OSError):
                        wakeup.recv(4096)
        return True


def run_submitit(items: list[WorkItem], *, folder: Path, run_id: str,
                 plugin_specs: tuple[str, ...], base_dir: str | None, options: dict,
                 factory: Callable[[Path], Any], on_record: Callable[[dict], None],
                 stop: Callable[[], bool], wakeup: Any, display: Display,
                 job_ids: list[str], run_dir: Path | None = None) -> bool:
    """Run ``items`` as SLURM array tasks (module docstring): adopt the jobs an earlier call
    of this run directory submitted, submit the rest, collect records as tasks finish.
    Returns False when stopped (the jobs not ended are cancelled); raises
    :class:`LubenchError` (one line) when ``sbatch`` refuses a submission."""
    run_dir = Path(run_dir) if run_dir is not None else Path(folder).parent
    run_dir.mkdir(parents=True, exist_ok=True)
    executor = factory(Path(folder) / "%j")
    with _submitit_logs_to(run_dir / LOG_FILE) as log:
        arrays = _ArrayRun(folder=folder, run_dir=run_dir, run_id=run_id,
                           plugin_specs=tuple(plugin_specs), base_dir=base_dir,
                           options=options, executor=executor, on_record=on_record,
                           display=display, job_ids=job_ids, log=log)
        try:
            fresh = arrays.adopt(items)
            if fresh:
                arrays.submit(fresh)
            return arrays.watch(stop, wakeup)
        except KeyboardInterrupt:  # a second Ctrl-C: still cancel what has not ended
            arrays.cancel_all("interrupted")
            raise
