"""The body of a worker process: run one case, forward its progress, send its record.

First thing, the worker makes the case's process tree its own (:func:`enter_case`: its own
session, subreaper of its descendants, member of the case's cgroup), and sends its stdout
and stderr (and those of everything it starts) to the case's log file in the run directory.
When the case is done it kills whatever the case left running, then sends the record.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import sys
import time
from typing import Any

from lubench.errors import one_line
from lubench.execution.limits import die_with_parent, limit_threads
from lubench.execution.local.channel import Sender
from lubench.execution.local.proctree import end_descendants, enter_case
from lubench.execution.plan import RunPlan
from lubench.execution.progress import plain_fields
from lubench.execution.worker import run_case
from lubench.suite.cases import Case

PROGRESS_EVERY = 0.2  # seconds between two progress messages of one worker


class _ProgressSender:
    """``ctx.progress`` inside a worker: forwards (step, total, fields) to the parent, at most
    every ``PROGRESS_EVERY`` seconds (and always the last step). Never raises."""

    def __init__(self, sender: Sender):
        self.sender = sender
        self.last = 0.0

    def __call__(self, step: int, total: int | None = None, **fields: Any) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY and not (total is not None and step >= total):
            return
        self.last = now
        with contextlib.suppress(Exception):
            self.sender.send(("progress", {"step": step, "total": total,
                                           **plain_fields(fields)}))


def redirect_output(log_path: str | None) -> None:
    """Point this process's stdout and stderr (file descriptors 1 and 2, inherited by every
    process it starts) at ``log_path``, opened for appending and never through a link."""
    if not log_path:
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK
                     | getattr(os, "O_NOFOLLOW", 0), 0o644)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:  # a FIFO, a hard link to a
            os.close(fd)                                          # file elsewhere: not ours
            raise OSError("not a log of this run")
        os.set_blocking(fd, True)
    except OSError:
        fd = os.open(os.devnull, os.O_WRONLY)  # the record will still be written
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def worker_main(conn: Any, case: Case, repeat: int, plan: RunPlan, parent_pid: int,
                cgroup_path: str | None = None, log_path: str | None = None) -> None:
    """Body of a worker process: run one case, end what it started, send its record, exit.

    The plan's registry is the parent's, inherited through ``fork``; under ``spawn`` the plan
    arrives pickled without it and the worker loads its own (:meth:`RunPlan.plugins`)."""
    enter_case(cgroup_path)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    with contextlib.suppress(ValueError, OSError):
        signal.set_wakeup_fd(-1)  # the parent's wake-up socket is not ours
    die_with_parent(parent_pid)
    redirect_output(log_path)
    sender = Sender(conn)
    threads = plan.threads
    limiter = limit_threads(threads) if threads else None  # noqa: F841 - keep it alive
    rec = run_case(case, repeat, plan=plan, progress=_ProgressSender(sender))
    if threads:
        rec["threads"] = threads
    rec["host"] = socket.gethostname()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    end_descendants()
    try:
        sender.send(("record", rec))
    except Exception as exc:  # a field that does not pickle: keep the row, say why
        rec = {k: v for k, v in rec.items() if k not in ("history", "traceback")}
        rec["info"] = "{}"
        rec["error"] = (rec.get("error") or "") + f" (record incomplete: {one_line(exc)})"
        sender.send(("record", rec))
    sender.close()
