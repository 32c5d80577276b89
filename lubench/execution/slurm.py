"""SLURM through submitit: one job array per resource request, each task a local supervisor
on one case."""

from __future__ import annotations

import contextlib
import math
import multiprocessing.connection as mpc
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lubench.api import LubenchError
from lubench.errors import one_line
from lubench.execution.limits import thread_controller
from lubench.execution.pool import LocalPool, WorkItem
from lubench.execution.progress import Display
from lubench.records import FAILED, canonical_json
from lubench.suite import Case
from lubench.worker import base_record


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


def _minutes(text: Any) -> int:
    """SLURM time ``MM``, ``HH:MM``, ``HH:MM:SS`` or ``D-HH:MM[:SS]`` → whole minutes."""
    s = str(text).strip()
    try:
        days = 0
        if "-" in s:
            d, s = s.split("-", 1)
            days = int(d)
        parts = [float(p) for p in s.split(":")]
        if len(parts) == 1:
            minutes = parts[0]
        elif len(parts) == 2:
            minutes = parts[0] * 60 + parts[1]
        elif len(parts) == 3:
            minutes = parts[0] * 60 + parts[1] + parts[2] / 60
        else:
            raise ValueError
    except ValueError:
        raise LubenchError(f"--slurm-time: expected HH:MM (or D-HH:MM, or minutes), "
                           f"got {text!r}") from None
    return max(1, math.ceil(days * 1440 + minutes))


_PASS_THROUGH = ("slurm_partition", "slurm_account", "slurm_qos", "slurm_constraint",
                 "slurm_additional_parameters", "slurm_array_parallelism")


def submitit_parameters(case: Case, options: dict) -> dict:
    """submitit ``update_parameters`` for one case: the executor options (``slurm_*``), the
    method's ``resources`` (GPUs only for methods that ask), and a time limit that leaves
    the runner's own hard timeout room to act first."""
    res = case.resources or {}
    cpus = int(res.get("cpus_per_task") or options.get("slurm_cpus_per_task") or 1)
    params: dict[str, Any] = {"name": f"lubench-{case.suite}", "cpus_per_task": cpus}
    if options.get("slurm_time"):
        params["timeout_min"] = _minutes(options["slurm_time"])
    elif res.get("timeout_min"):
        params["timeout_min"] = int(res["timeout_min"])
    elif case.timeout:
        params["timeout_min"] = math.ceil(case.timeout / 60) + 5
    else:
        params["timeout_min"] = 120
    mem = options.get("slurm_mem_gb") or res.get("mem_gb")
    if not mem and case.memory_limit:
        mem = math.ceil(case.memory_limit / 2**30) + 1  # room above the runner's own limit
    if mem:
        params["mem_gb"] = float(mem)
    gpus = int(res.get("gpus_per_task") or 0)
    if gpus:
        params["slurm_gpus_per_task"] = int(options.get("slurm_gpus_per_task") or gpus)
    for key in _PASS_THROUGH:
        if options.get(key) is not None:
            params[key] = options[key]
    return params


def default_submitit_executor(folder: Path) -> Any:
    import submitit

    try:
        return submitit.AutoExecutor(folder=folder, cluster="slurm")
    except RuntimeError as exc:
        raise LubenchError(f"--executor slurm: {exc} (use -j N for local workers)") from None


def _describe_jobs(job_ids: list[str]) -> str:
    arrays = sorted({j.split("_")[0] for j in job_ids})
    if all("_" in j for j in job_ids):
        return f"job array {', '.join(arrays)} (cancel with: scancel {' '.join(arrays)})"
    shown = ", ".join(job_ids[:8]) + (" …" if len(job_ids) > 8 else "")
    return f"jobs {shown}"


def run_submitit(items: list[WorkItem], *, folder: Path, run_id: str,
                  plugin_specs: tuple[str, ...], base_dir: str | None, options: dict,
                  factory: Callable[[Path], Any], on_record: Callable[[dict], None],
                  stop: Callable[[], bool], wakeup: Any, display: Display,
                  job_ids: list[str]) -> bool:
    """Submit one job array per distinct resource request, then gather records as tasks
    finish. Returns False when stopped (unfinished jobs are cancelled)."""
    executor = factory(folder / "%j")
    groups: dict[str, tuple[dict, list[WorkItem]]] = {}
    for item in items:
        params = submitit_parameters(item[0], options)
        groups.setdefault(canonical_json(params), (params, []))[1].append(item)
    submitted: list[tuple[Any, WorkItem]] = []
    for params, group in groups.values():
        executor.update_parameters(**params)
        cases = [c for c, _ in group]
        n = len(group)
        jobs = executor.map_array(execute_case, cases, [r for _, r in group], [run_id] * n,
                                  [tuple(plugin_specs)] * n, [base_dir] * n,
                                  [params["cpus_per_task"]] * n)
        ids = [str(j.job_id) for j in jobs]
        job_ids.extend(ids)
        gpus = params.get("slurm_gpus_per_task")
        display.write(f"lubench: submitted {n} case(s)"
                      f"{f' with {gpus} GPU(s) each' if gpus else ''} as "
                      f"{_describe_jobs(ids)}; logs in {folder}")
        submitted.extend(zip(jobs, group))
    remaining = list(submitted)
    try:
        while remaining:
            if stop():
                return False
            for job, (case, repeat) in list(remaining):
                if not job.done():
                    continue
                try:
                    rec = job.result()
                except Exception as exc:  # the task died: SLURM timeout, node failure, ...
                    rec = base_record(case, repeat, run_id)
                    rec.update(status=FAILED, info="{}", history=[],
                               error=f"submitit job {job.job_id} failed: {one_line(exc)}")
                rec.setdefault("job_id", str(job.job_id))
                on_record(rec)
                remaining.remove((job, (case, repeat)))
            if remaining:
                ready = mpc.wait([wakeup] if wakeup is not None else [], timeout=0.5)
                if ready:
                    with contextlib.suppress(OSError):
                        wakeup.recv(4096)
        return True
    finally:
        for job, _ in remaining:
            with contextlib.suppress(Exception):
                job.cancel(check=False)
