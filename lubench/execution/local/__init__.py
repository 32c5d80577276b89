"""The local executor: every case in a fresh worker process that owns its process tree.

Modules
-------
``pool``      :class:`~lubench.execution.local.pool.LocalPool`: at most ``jobs`` workers, the
              hard timeout and the memory limit of each case
``process``   the body of a worker process (thread limits, its log, progress, its record)
``proctree``  a case's process tree: membership, fair memory (PSS), kill
``cgroups``   a cgroup v2 per case where the system lets lubench create one
``channel``   worker → parent messages, read without ever blocking
"""

from __future__ import annotations

from typing import ClassVar

from lubench.execution.limits import thread_controller, threads_per_worker
from lubench.execution.local.pool import LocalPool
from lubench.execution.plan import RunPlan, Sink, WorkItem
from lubench.execution.signals import StopSignals
from lubench.registry.availability import preload_requirements
from lubench.rundir.store import logs_dir

__all__ = ["LocalExecutor", "LocalPool"]


class LocalExecutor:
    """Every case (every repeat) in a fresh worker process, at most ``plan.jobs`` at a time,
    each with ``plan.threads`` threads; a case's output goes to ``RUN_DIR/logs/``. Ctrl-C or
    SIGTERM stops starting cases and kills those in flight (:class:`LocalPool`)."""

    name: ClassVar[str] = "local"
    here: ClassVar[bool] = True

    @staticmethod
    def workers(jobs: int) -> tuple[int | None, int | None]:
        return jobs, threads_per_worker(jobs)

    def run(self, items: list[WorkItem], plan: RunPlan, sink: Sink) -> bool:
        # once here, not in every forked worker (importing PyTorch takes seconds)
        preload_requirements(plan.plugins(), {c.method for c, _ in items})
        thread_controller()  # scanned once, before the first fork
        log_dir = logs_dir(plan.run_dir) if plan.run_dir is not None else None
        with StopSignals() as stopper:
            done = LocalPool(plan, sink, log_dir=log_dir, stop=stopper,
                             wakeup=stopper.wakeup).run(items)
        if not done:
            sink.stopped(stopper.signum)
        return done
