"""Getting each case a job: adopt the jobs an earlier call of the run directory submitted
(:func:`adopt`), submit the rest as one array per resource request (:func:`submit`), with
submitit quiet (:func:`submitit_logs_to`) and an ``sbatch`` refusal as one line
(:func:`sbatch_message`; what this call had submitted is cancelled)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from lubench.errors import LubenchError, one_line
from lubench.execution.plan import WorkItem
from lubench.execution.slurm.queue import ACTIVE, array_of
from lubench.execution.slurm.resources import partition_gpus, submitit_parameters
from lubench.execution.slurm.tasks import ArrayRun, Task, execute_case, result_file
from lubench.rundir.records import canonical_json

__all__ = ["adopt", "submit", "submitit_logs_to", "sbatch_message", "describe_jobs"]


@contextlib.contextmanager
def submitit_logs_to(path: Path) -> Iterator[TextIO]:
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


def sbatch_message(exc: BaseException) -> str:
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


def describe_jobs(job_ids: list[str]) -> str:
    """``job array 123 (cancel with: scancel 123)``, or the job ids when they are no arrays."""
    arrays = sorted({array_of(j) for j in job_ids})
    if all("_" in j for j in job_ids):
        return f"job array {', '.join(arrays)} (cancel with: scancel {' '.join(arrays)})"
    shown = ", ".join(job_ids[:8]) + (" …" if len(job_ids) > 8 else "")
    return f"job {shown}"


def adopt(run: ArrayRun, items: list[WorkItem]) -> list[WorkItem]:
    """Take over the jobs an earlier call submitted for ``items``; return the items that
    still need a job (theirs failed, was cancelled or vanished, or there was none)."""
    previous = run.ledger.latest() if run.sched.adopts else {}
    known = [(item, previous[(item[0].case_id, item[1])]) for item in items
             if (item[0].case_id, item[1]) in previous]
    if not known:
        return items
    states = run.sched.states()
    finished = waiting = 0
    adopted: set[tuple[str, int]] = set()
    for (case, repeat), entry in known:
        task = Task(entry["job_id"], case, repeat, result_file(entry["folder"], entry["job_id"]))
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
        run.track(task)
        adopted.add(task.key)
    fresh = [item for item in items if (item[0].case_id, item[1]) not in adopted]
    again = len(known) - len(adopted)
    run.sink.write(
        f"lubench: resume: adopted {len(adopted)} case(s) already submitted "
        f"({finished} finished, {waiting} queued or running); {again} to submit again "
        f"(job failed, cancelled or gone), {len(fresh) - again} never submitted")
    return fresh


def submit(run: ArrayRun, items: list[WorkItem]) -> None:
    """One array per distinct resource request. On a refusal: cancel what this call
    submitted, note it in the ledger, raise one line."""
    offered = functools.cache(lambda: partition_gpus(run.options.get("slurm_partition")))
    groups: dict[str, tuple[dict, list[WorkItem]]] = {}
    for item in items:
        params = submitit_parameters(item[0], run.options, offered)
        groups.setdefault(canonical_json(params), (params, []))[1].append(item)
    pending = list(groups.values())
    while pending:
        params, group = pending[0]
        n = len(group)
        try:
            run.executor.update_parameters(**params)
            # each task's threads: the CPUs its array asks for
            plan = dataclasses.replace(run.plan, threads=params["cpus_per_task"])
            with contextlib.redirect_stderr(run.log):  # submitit prints sbatch's stderr
                jobs = run.executor.map_array(
                    execute_case, [c for c, _ in group], [r for _, r in group], [plan] * n)
        except Exception as exc:  # sbatch refused, or submitit refused the parameters
            _refused(run, exc, [it for _, g in pending for it in g], n,
                     params.get("slurm_gpus_per_task"))
        ids = [str(j.job_id) for j in jobs]
        run.ledger.submitted([(j, c.case_id, r) for j, (c, r) in zip(ids, group)], run.folder)
        run.submitted_now.extend(ids)
        run.sched.track(jobs)
        for jid, (case, repeat) in zip(ids, group):
            run.track(Task(jid, case, repeat, result_file(run.folder, jid)))
        gpus = params.get("slurm_gpus_per_task")
        run.sink.write(
            f"lubench: submitted {n} case(s) ({params['cpus_per_task']} CPU, "
            f"{params['mem_gb']:g} GB{f', {gpus} GPU' if gpus else ''} each) as "
            f"{describe_jobs(ids)}; logs in {run.folder}")
        pending.pop(0)


def _refused(run: ArrayRun, exc: BaseException, not_submitted: list[WorkItem], n: int,
             gpus: int | None) -> None:
    message = sbatch_message(exc)
    if gpus:
        message += (f" (they asked for {gpus} GPU each: --device cpu or "
                    f"--slurm-gpus-per-task 0 asks for none)")
    run.log.write(f"sbatch refused an array of {n} case(s):\n{exc}\n")
    run.log.flush()
    run.ledger.refused([(c.case_id, r) for c, r in not_submitted], message)
    if run.submitted_now:
        run.sched.cancel(run.submitted_now)
        run.ledger.cancelled(run.submitted_now, "a later sbatch was refused")
    adopted = len(run.tasks) - len(run.submitted_now)
    still = (f"; {adopted} case(s) adopted from before still have their jobs (--resume "
             f"collects them)") if adopted > 0 else ""
    raise LubenchError(f"sbatch refused {n} case(s): {message}; nothing of this run was "
                       f"left queued{still} (see {run.ledger.path}, {run.log.name})") from None
