"""The local pool: every case in a fresh worker process, at most ``jobs`` at a time, with a
hard timeout and an RSS watchdog (see :mod:`lubench.execution`)."""

from __future__ import annotations

import contextlib
import multiprocessing.connection as mpc
import os
import signal
import socket
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lubench.execution.limits import mp_context, oom_message, signal_name
from lubench.execution.process import worker_main
from lubench.plugins import Registry, load_registry
from lubench.records import FAILED, OK, TIMEOUT
from lubench.suite import Case
from lubench.worker import base_record, current_rss

MEMORY_POLL = 0.05  # seconds between RSS samples of a worker with a memory limit
TREE_POLL = 0.5  # seconds between scans for a worker's own child processes
EXIT_GRACE = 2.0  # seconds a worker may take to exit after sending its record
IDLE_WAKE = 1.0  # the parent wakes at least this often

WorkItem = tuple[Case, int]


@dataclass
class _Running:
    case: Case
    repeat: int
    process: Any
    conn: mpc.Connection | None
    started: float  # monotonic
    started_wall: float
    deadline: float | None
    proc: Any = None  # psutil.Process, when a memory limit is watched
    base_rss: int = 0  # the parent's RSS at fork: pages the worker starts with, not the case's
    peak_rss: int = 0  # peak RSS above base_rss
    tree_check: float = 0.0
    children_rss: int = 0
    record: dict | None = None
    exit_by: float | None = None  # after the record: kill if still alive then

    @property
    def key(self) -> WorkItem:
        return (self.case, self.repeat)


class LocalPool:
    """Run work items in fresh worker processes, at most ``jobs`` at a time.

    Callbacks (all called in this process, in this thread):
    ``on_start(case, repeat)``, ``on_progress(case, repeat, fields)``, ``on_record(record)``.
    ``stop()`` is checked between events; when it returns True the pool kills its workers and
    :meth:`run` returns False. ``wakeup`` (an object with ``fileno``) wakes the pool when
    readable (a signal arrived).
    """

    def __init__(self, jobs: int = 1, *, run_id: str = "", plugin_specs: tuple[str, ...] = (),
                 base_dir: str | None = None, threads: int | None = None,
                 registry: Registry | None = None,
                 on_record: Callable[[dict], None] = lambda rec: None,
                 on_start: Callable[[Case, int], None] = lambda case, repeat: None,
                 on_progress: Callable[[Case, int, dict], None] = lambda c, r, f: None,
                 stop: Callable[[], bool] = lambda: False, wakeup: Any = None):
        self.jobs = max(1, int(jobs))
        self.run_id = run_id
        self.plugin_specs = tuple(plugin_specs)
        self.base_dir = base_dir
        self.registry = registry
        self.threads = threads
        self.base_rss = 0
        self.on_record, self.on_start, self.on_progress = on_record, on_start, on_progress
        self.stop = stop
        self.wakeup = wakeup
        self.ctx = mp_context()

    def _worker_registry(self) -> Registry | None:
        """The registry a worker inherits: loaded once here, before the first fork, so that a
        worker does not load the plugins again. A spawned worker loads its own."""
        if self.ctx.get_start_method() != "fork":
            return None
        if self.registry is None:
            self.registry = load_registry(list(self.plugin_specs),
                                          Path(self.base_dir) if self.base_dir else None)
        return self.registry

    # -- lifecycle of one worker ---------------------------------------------------------
    def _start(self, case: Case, repeat: int) -> _Running:
        # A forked worker starts with the parent's pages resident (shared, copy-on-write):
        # the memory limit applies to what the case adds on top of them.
        self.base_rss = current_rss() if self.ctx.get_start_method() == "fork" else 0
        reader, writer = self.ctx.Pipe(duplex=False)
        process = self.ctx.Process(
            target=worker_main, name=f"lubench-{case.case_id}-{repeat}", daemon=False,
            args=(writer, case, repeat, self.run_id, self._worker_registry(), self.plugin_specs,
                  self.base_dir, self.threads, os.getpid()))
        with warnings.catch_warnings():  # Python >= 3.12 warns about fork with threads alive
            warnings.simplefilter("ignore", DeprecationWarning)
            process.start()
        writer.close()
        with contextlib.suppress(OSError):
            os.setpgid(process.pid, process.pid)  # both sides set it: no race with a kill
        now = time.monotonic()
        run = _Running(case, repeat, process, reader, now, time.time(),
                       now + case.timeout if case.timeout else None, base_rss=self.base_rss)
        if case.memory_limit:
            with contextlib.suppress(Exception):
                import psutil

                run.proc = psutil.Process(process.pid)
        self.on_start(case, repeat)
        return run

    @staticmethod
    def _kill(run: _Running) -> None:
        pid = run.process.pid
        if run.process.exitcode is None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                with contextlib.suppress(Exception):
                    run.process.kill()
        run.process.join(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # helpers the case left behind

    def _drain(self, run: _Running) -> None:
        """Read every message the worker has sent so far."""
        while run.conn is not None:
            try:
                if not run.conn.poll():
                    return
                kind, payload = run.conn.recv()
            except (EOFError, OSError):
                run.conn.close()
                run.conn = None
                return
            if kind == "progress":
                self.on_progress(run.case, run.repeat, payload)
            elif kind == "record" and run.record is None:
                run.record = self._checked(run, payload)
                run.exit_by = time.monotonic() + EXIT_GRACE
                self.on_record(run.record)

    def _checked(self, run: _Running, rec: dict) -> dict:
        """The worker's record, with the memory limit applied to what it reports."""
        limit = run.case.memory_limit
        if limit and rec.get("status") == FAILED and \
                str(rec.get("error", "")).startswith("out of memory"):
            rec["error"] = oom_message(limit)
        peak = rec.get("peak_memory_bytes") or 0
        if limit and rec.get("status") == OK and peak > limit:
            rec["status"], rec["error"] = FAILED, oom_message(limit, peak)
        return rec

    def _synthetic(self, run: _Running, status: str, error: str) -> dict:
        """A record for a case whose worker could not report: timeout, killed, died."""
        rec = base_record(run.case, run.repeat, self.run_id)
        rec.update(status=status, error=error, info="{}", history=[],
                   peak_memory_bytes=run.peak_rss or None, threads=self.threads,
                   pid=run.process.pid, started_at=run.started_wall,
                   wall_seconds=time.monotonic() - run.started, host=socket.gethostname())
        if run.case.family == "classical":
            rec["device"] = "cpu"
        return rec

    def _fail(self, run: _Running, status: str, error: str) -> None:
        if run.proc is None:  # not watched: one sample for the record's peak memory
            with contextlib.suppress(Exception):
                import psutil

                rss = psutil.Process(run.process.pid).memory_info().rss
                run.peak_rss = max(0, rss - run.base_rss)
        self._kill(run)
        self._drain(run)  # it may have finished just now: its own record wins
        if run.record is None:
            run.record = self._synthetic(run, status, error)
            self.on_record(run.record)

    def _reap(self, run: _Running) -> None:
        """The worker exited: make sure its case has a record."""
        self._drain(run)
        run.process.join(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(run.process.pid, signal.SIGKILL)
        if run.record is not None:
            return
        code = run.process.exitcode
        limit = run.case.memory_limit
        if code is not None and code < 0:
            if limit and run.peak_rss > 0.9 * limit:
                error = oom_message(limit, run.peak_rss) + \
                    f": worker killed by {signal_name(-code)}"
            else:
                error = f"worker died (signal {-code}, {signal_name(-code)})"
        else:
            error = f"worker exited with status {code} before reporting a result"
        run.record = self._synthetic(run, FAILED, error)
        self.on_record(run.record)

    def _watch_memory(self, run: _Running, now: float) -> bool:
        """Sample the worker's RSS; True when it is above its limit."""
        if run.proc is None or run.record is not None:
            return False
        try:
            rss = run.proc.memory_info().rss
            if now >= run.tree_check:
                run.tree_check = now + TREE_POLL
                run.children_rss = sum(c.memory_info().rss
                                       for c in run.proc.children(recursive=True))
        except Exception:  # it just exited
            return False
        total = rss - run.base_rss + run.children_rss
        run.peak_rss = max(run.peak_rss, total)
        return total > run.case.memory_limit

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
                    for t in (run.deadline if run.record is None else None, run.exit_by,
                              now + MEMORY_POLL if run.proc is not None else None):
                        if t is not None:
                            wake = min(wake, t)
                handles: list[Any] = [run.process.sentinel for run in running]
                handles += [run.conn for run in running if run.conn is not None]
                if self.wakeup is not None:
                    handles.append(self.wakeup)
                ready = mpc.wait(handles, timeout=max(0.0, wake - now))
                if self.wakeup is not None and self.wakeup in ready:
                    with contextlib.suppress(OSError):
                        self.wakeup.recv(4096)
                now = time.monotonic()
                for run in list(running):
                    self._drain(run)
                    if run.process.sentinel in ready or run.process.exitcode is not None:
                        self._reap(run)  # a ready sentinel: exiting; join waits it out
                    elif run.record is not None:
                        if run.exit_by is not None and now >= run.exit_by:
                            self._kill(run)  # it reported but does not exit (stray thread)
                        else:
                            continue
                    elif run.deadline is not None and now >= run.deadline:
                        self._fail(run, TIMEOUT,
                                   f"exceeded the {run.case.timeout:g} s timeout")
                    elif self._watch_memory(run, now):
                        self._fail(run, FAILED, oom_message(run.case.memory_limit))
                    else:
                        continue
                    running.remove(run)
            return True
        finally:
            for run in running:
                self._kill(run)
                with contextlib.suppress(Exception):
                    self._drain(run)  # a record that arrived just before the kill is kept
                if run.conn is not None:
                    run.conn.close()
