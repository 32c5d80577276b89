"""The inline executor: every case in this process, one after the other (debugging).

A debugger and ``print`` work; there is no timeout, no memory limit and no thread setting,
so a case that hangs hangs the run. A plugin's ``sys.exit`` is a ``failed`` case (the worker
catches it), not the end of the run; Ctrl-C stops the run between cases.
"""

from __future__ import annotations

import socket
from typing import Any, ClassVar

from lubench.execution.plan import RunPlan, Sink, WorkItem
from lubench.execution.progress import plain_fields
from lubench.execution.worker import run_case
from lubench.suite.cases import Case

__all__ = ["InlineExecutor"]


class InlineExecutor:
    """Run the items in this process (see the module docstring)."""

    name: ClassVar[str] = "inline"
    here: ClassVar[bool] = True

    @staticmethod
    def workers(jobs: int) -> tuple[int | None, int | None]:
        return None, None  # this process: no workers, its threads as they are

    def run(self, items: list[WorkItem], plan: RunPlan, sink: Sink) -> bool:
        for case, repeat in items:
            sink.started(case, repeat)

            def progress(step: int, total: int | None = None, _c: Case = case,
                         _r: int = repeat, **fields: Any) -> None:
                sink.progress(_c, _r, {"step": step, "total": total, **plain_fields(fields)})

            try:
                rec = run_case(case, repeat, plan=plan, progress=progress)
            except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (cli.interrupt)
                sink.stopped(getattr(exc, "signum", None))
                return False
            rec["host"] = socket.gethostname()
            sink.record(rec)
        return True
