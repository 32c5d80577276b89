"""The local pool: every case in a fresh worker process, at most ``jobs`` at a time; each case
owns its process tree (:mod:`lubench.execution.local.proctree`), which ends with it, within a hard
timeout and a memory limit on what the whole tree adds (see :mod:`lubench.execution`).

The loop never blocks on one case: it waits on every worker's exit sentinel and message pipe
at once, with a timeout set by the next deadline or memory sample, reads pipes without
blocking (:mod:`lubench.execution.local.channel`) and stops reading a case once its record came,
and never joins a process that is not known to have exited.
"""

from __future__ import annotations

import contextlib
import multiprocessing.connection as mpc
import os
import socket
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lubench.execution.limits import mp_context, oom_message, signal_name
from lubench.execution.local.channel import Receiver
from lubench.execution.local.process import worker_main
from lubench.execution.local.proctree import SAMPLE_EVERY, CaseTree, sample_interval
from lubench.execution.plan import RunPlan, Sink, WorkItem
from lubench.rundir.records import FAILED, OK, TIMEOUT, base_record
from lubench.suite.cases import Case
from lubench.suite.limits import effective_memory_limit

EXIT_GRACE = 2.0  # seconds a worker may take to exit after sending its record
REAP_GRACE = 5.0  # seconds a killed worker may take to die before the pool stops waiting
IDLE_WAKE = 1.0  # the parent wakes at least this often
MEMBERS_EVERY = 0.5  # seconds between looks at the tree of a case without a memory limit
KERNEL_HEADROOM = 0.25  # memory.max (kernel backstop) = limit × (1 + this) + 256 MiB

def log_name(case: Case, repeat: int) -> str:
    """The file, in the run directory's ``logs/``, that holds a case's stdout and stderr."""
    return f"{case.case_id}-{repeat}.log"


@dataclass
class _Running:
    case: Case
    repeat: int
    process: Any
    receiver: Receiver
    tree: CaseTree
    started: float  # monotonic
    started_wall: float
    deadline: float | None
    limit: int | None = None  # memory limit on this machine, bytes (None: none)
    log_path: Path | None = None
    next_sample: float = 0.0
    record: dict | None = None
    exit_by: float | None = None  # after the record: kill the tree if still alive then
    killed_at: float | None = None  # the tree was killed: waiting for the worker to exit


class LocalPool:
    """Run work items in fresh worker processes, at most ``plan.jobs`` at a time, reporting to
    ``sink`` (in this process, in this thread).

    ``stop()`` is checked between events; when it returns True the pool kills its workers and
    :meth:`run` returns False. ``wakeup`` (an object with ``fileno``) wakes the pool when
    readable (a signal arrived). ``log_dir``: where each case's stdout and stderr go
    (:func:`log_name`); None leaves them on this process's streams.
    ``use_cgroup``: a cgroup per case where possible (else the session sweep only).
    """

    def __init__(self, plan: RunPlan, sink: Sink, *, log_dir: Path | None = None,
                 use_cgroup: bool = True, stop: Callable[[], bool] = lambda: False,
                 wakeup: Any = None):
        self.plan = plan
        self.jobs = max(1, int(plan.jobs or 1))
        self.sink = sink
        self.log_dir = log_dir
        self.use_cgroup = use_cgroup
        self.stop = stop
        self.wakeup = wakeup
        self.ctx = mp_context()
        self._closing: list[_Running] = []  # reaped, cgroup not yet removed
        if self.ctx.get_start_method() == "fork":
            plan.plugins()  # loaded here, once, before the first fork: every worker inherits it

    # -- lifecycle of one worker ---------------------------------------------------------
    def _start(self, case: Case, repeat: int) -> _Running:
        limit = effective_memory_limit(case.memory_limit)
        backstop = int(limit * (1 + KERNEL_HEADROOM)) + 2**28 if limit else None
        tree = CaseTree.create(use_cgroup=self.use_cgroup, memory_max=backstop)
        log_path = self.log_dir / log_name(case, repeat) if self.log_dir is not None else None
        reader, writer = self.ctx.Pipe(duplex=False)
        process = self.ctx.Process(
            target=worker_main, name=f"lubench-{case.case_id}-{repeat}", daemon=False,
            args=(writer, case, repeat, self.plan, os.getpid(), tree.cgroup_path,
                  str(log_path) if log_path else None))
        with warnings.catch_warnings():  # Python >= 3.12 warns about fork with threads alive
            warnings.simplefilter("ignore", DeprecationWarning)
            process.start()
        writer.close()
        tree.attach(process.pid)
        now = time.monotonic()
        run = _Running(case, repeat, process, Receiver(reader), tree, now, time.time(),
                       now + case.timeout if case.timeout else None, limit=limit,
                       log_path=log_path, next_sample=now + SAMPLE_EVERY)
        self.sink.started(case, repeat)
        return run

    def _messages(self, run: _Running) -> None:
        """Handle what the worker sent so far (never waits)."""
        if run.receiver.closed:
            return
        for message in run.receiver.receive():
            try:
                kind, payload = message
            except (TypeError, ValueError):
                continue
            if kind == "progress" and run.record is None:
                self.sink.progress(run.case, run.repeat, payload)
            elif kind == "record" and run.record is None and isinstance(payload, dict):
                self._report(run, self._checked(run, payload))
                run.exit_by = time.monotonic() + EXIT_GRACE
                run.receiver.close()  # the case is over: a descendant may hold the pipe
                break

    def _report(self, run: _Running, rec: dict) -> None:
        run.record = rec
        if run.log_path is not None:
            with contextlib.suppress(OSError):
                if run.log_path.stat().st_size > 0:
                    rec.setdefault("log", f"logs/{run.log_path.name}")
        self.sink.record(rec)

    def _checked(self, run: _Running, rec: dict) -> dict:
        """The worker's record, with the memory limit applied to what it reports."""
        limit = run.limit
        if limit and rec.get("status") == FAILED and \
                str(rec.get("error", "")).startswith("out of memory"):
            rec["error"] = oom_message(limit)
        peak = rec.get("peak_memory_bytes") or 0
        if limit and rec.get("status") == OK and max(peak, run.tree.peak) > limit:
            rec["status"], rec["error"] = FAILED, oom_message(limit, max(peak, run.tree.peak))
        return rec

    def _synthetic(self, run: _Running, status: str, error: str) -> dict:
        """A record for a case whose worker could not report: timeout, killed, died."""
        rec = base_record(run.case, run.repeat, self.plan.run_id)
        rec.update(status=status, error=error, info="{}", history=[],
                   peak_memory_bytes=run.tree.peak or None, threads=self.plan.threads,
                   pid=run.process.pid, started_at=run.started_wall,
                   wall_seconds=time.monotonic() - run.started, host=socket.gethostname())
        if run.case.family == "classical":
            rec["device"] = "cpu"
        return rec

    def _kill(self, run: _Running) -> None:
        """End the case's whole tree now; its worker is reaped by the loop when it exits."""
        if run.killed_at is None:
            run.killed_at = time.monotonic()
        run.tree.kill()

    def _fail(self, run: _Running, status: str, error: str) -> None:
        """The case ran out of time or memory: kill its tree, record why (unless its own
        record arrived in the meantime)."""
        self._kill(run)
        self._messages(run)
        if run.record is None:
            self._report(run, self._synthetic(run, status, error))
        run.receiver.close()

    def _exited(self, run: _Running) -> None:
        """The worker exited: end what is left of its tree, make sure the case has a record."""
        self._messages(run)
        run.tree.kill()  # what it left behind; before the reap, while its pid is still held
        run.process.join(1.0)  # the sentinel fired: it has exited or is about to
        run.receiver.close()
        if run.record is None:
            code = run.process.exitcode
            limit = run.limit
            if code is not None and code < 0:
                if limit and (run.tree.oom_killed() or run.tree.peak > 0.9 * limit):
                    error = oom_message(limit, run.tree.peak or None) + \
                        f": worker killed by {signal_name(-code)}"
                else:
                    error = f"worker died (signal {-code}, {signal_name(-code)})"
            else:
                error = f"worker exited with status {code} before reporting a result"
            self._report(run, self._synthetic(run, FAILED, error))
        self._retire(run)

    def _retire(self, run: _Running) -> None:
        if run.log_path is not None:
            with contextlib.suppress(OSError):
                if run.log_path.stat().st_size == 0:
                    run.log_path.unlink()
        if not run.tree.close():
            self._closing.append(run)

    def _sample(self, run: _Running, now: float) -> bool:
        """Sample the memory of the case's tree; True when it is above the limit. Without a
        limit, only look at the tree (without a cgroup, so that a descendant is remembered
        even if the worker dies before the case ends)."""
        limit = run.limit
        if run.record is not None or run.killed_at is not None or now < run.next_sample:
            return False
        try:
            if limit:
                current = run.tree.memory()
                run.next_sample = now + sample_interval(current, limit)
                return current > limit
            run.next_sample = now + MEMBERS_EVERY
            if run.tree.cgroup is None:
                run.tree.pids()
        except Exception:  # a process of the tree vanished mid-sample
            pass
        return False

    # -- the loop ----------------------------------------------------------------------------
    def run(self, items: Iterable[WorkItem]) -> bool:
        """Run every item; True when all ran, False when ``stop()`` ended the loop early."""
        pending = deque(items)
        running: list[_Running] = []
        try:
            while pending or running:
                if self.stop():
                    return False
                while pending and len(running) < self.jobs:
                    running.append(self._start(*pending.popleft()))
                now = time.monotonic()
                wake = now + IDLE_WAKE
                for run in running:
                    for t in (run.deadline if run.record is None else None,
                              run.exit_by if run.killed_at is None else None,
                              run.next_sample,
                              run.killed_at + REAP_GRACE if run.killed_at else None):
                        if t is not None:
                            wake = min(wake, t)
                handles: list[Any] = [run.process.sentinel for run in running]
                handles += [run.receiver for run in running if not run.receiver.closed]
                if self.wakeup is not None:
                    handles.append(self.wakeup)
                ready = mpc.wait(handles, timeout=max(0.0, wake - now))
                if self.wakeup is not None and self.wakeup in ready:
                    with contextlib.suppress(OSError):
                        self.wakeup.recv(4096)
                now = time.monotonic()
                for run in list(running):
                    self._messages(run)
                    if run.process.sentinel in ready or run.process.exitcode is not None:
                        self._exited(run)
                    elif run.killed_at is not None:
                        if now - run.killed_at < REAP_GRACE:
                            continue  # SIGKILL sent: it will exit; the sentinel wakes us
                        self._abandon(run)
                    elif run.record is not None:
                        if run.exit_by is not None and now >= run.exit_by:
                            self._kill(run)  # it reported but does not exit (stray thread)
                        continue
                    elif run.deadline is not None and now >= run.deadline:
                        self._fail(run, TIMEOUT, f"exceeded the {run.case.timeout:g} s timeout")
                        continue
                    elif self._sample(run, now):
                        self._fail(run, FAILED, oom_message(run.limit,
                                                            run.tree.peak))
                        continue
                    else:
                        continue
                    running.remove(run)
                self._closing = [r for r in self._closing if not r.tree.close()]
            return True
        finally:
            for run in running:
                self._kill(run)
            end = time.monotonic() + REAP_GRACE
            for run in running:
                run.process.join(max(0.0, end - time.monotonic()))
                with contextlib.suppress(Exception):  # (not when a write just failed)
                    self._messages(run)  # a record that arrived just before the kill is kept
                run.receiver.close()
                if run.process.exitcode is not None:
                    run.tree.kill()  # (the session sweep is skipped once the pid is reaped)
                    self._retire(run)
            for run in self._closing:
                run.tree.close()

    def _abandon(self, run: _Running) -> None:
        """A worker that does not die within REAP_GRACE of SIGKILL (uninterruptible sleep in
        the kernel): its case is recorded; the pool stops waiting for it."""
        if run.record is None:
            self._report(run, self._synthetic(run, FAILED, "worker did not die after SIGKILL"))
        run.receiver.close()
