"""Orchestration: run cases where they should run, enforce the limits, report as they finish.

Executors
---------
``local`` (default)
    Every case (every repeat) runs in a fresh worker process, at most ``jobs`` at a time. A
    fresh process per case keeps a crash, a hard timeout or an out-of-memory kill confined to
    that case, and makes the peak memory of a case its own (no allocator state inherited from
    earlier cases).
``inline``
    Cases run one after the other in this process, for debugging (a debugger and ``print``
    work). No timeout, no memory limit, no thread setting: a case that hangs hangs the run.
``slurm``
    Cases go to a SLURM job array through ``submitit`` (one array per distinct resource
    request: a method that asks for a GPU gets one, classical ones do not). Each array task
    runs :func:`execute_case`, i.e. the same local supervisor on one case, so timeouts and
    memory limits mean the same thing on the cluster. Records come back through submitit's
    result files into the run directory as tasks finish. The executor class is injectable
    (``submitit_executor``); the tests use ``submitit.AutoExecutor(cluster="local")``.

Why ``fork``
------------
On Linux a worker is started with the ``fork`` start method: the parent has already imported
NumPy, SciPy and the plugins (the registry is loaded once, before the first fork), so starting
a worker costs milliseconds instead of the second or more an interpreter needs to import them
again (``spawn``/``forkserver``), which matters for suites of hundreds of small cases. The
known hazards of ``fork`` do not apply: the parent runs no computation of its own (no OpenMP
pool is live in it), does not initialise CUDA (PyTorch, when a learned plugin needs it, is
imported lazily in the worker, where the thread settings below are already in place), and a
worker ends with ``os._exit`` so no parent ``atexit`` handler runs twice. Elsewhere (macOS,
where ``fork`` is unsafe with system frameworks) workers are spawned.

Each worker puts itself in its own process group (a timeout kills the group, so helper
processes a method started die with it), ignores SIGINT (the parent decides what Ctrl-C
means), and asks the kernel to kill it when the parent dies (``PR_SET_PDEATHSIG``), so that a
``kill -9`` of ``lubench run`` leaves no orphan computing.

Limits
------
*Timeout* (``case.timeout``, seconds): hard. The parent kills the worker's process group at
the deadline and records ``timeout`` / ``exceeded the 10 s timeout``.

*Memory* (``case.memory_limit``, bytes): enforced by an RSS watchdog in the parent, which
samples the worker's resident memory (and its children's) every 50 ms and kills it when what
the case added (RSS minus the parent's RSS at fork, which a forked worker starts with) is above
the limit, recording ``failed`` / ``out of memory (limit 2.0 GiB)``. A case whose own peak
(``ru_maxrss``) ends above the limit between two samples is recorded the same way, and a
``MemoryError`` raised inside the case gets the same message. ``RLIMIT_AS`` was rejected: it
limits *address space*, not memory, and the libraries reserve far more than they touch (on this
machine importing PyTorch alone maps about 2 GB of address space for 0.3 GB resident; a CUDA
context reserves tens of GB, and OpenBLAS reserves buffers per thread), so any limit tight
enough to mean something kills healthy cases at import time. The cost of the watchdog is that
an allocation faster than 50 ms can overshoot the limit briefly; the kernel's OOM killer
remains the backstop, and its SIGKILL is recorded as ``worker died (signal 9, SIGKILL)``.

*Threads*: with ``-j N`` each worker sets its BLAS (threadpoolctl), OpenMP and PyTorch threads
to ``max(1, cores // N)`` before the case starts (environment variables too, so that a
PyTorch imported later inside the worker picks them up); the value is the ``threads`` column.

Interruption
------------
The first Ctrl-C (or SIGTERM) stops starting cases, kills the workers in flight and returns
with ``interrupted=True``; every finished case is already on disk. A second Ctrl-C raises
``KeyboardInterrupt`` at once (workers are still killed on the way out).
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import signal
import socket
import sys
import threading
import time
import warnings
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lubench.api import LubenchError
from lubench.suite import Case, canonical_json
from lubench.worker import base_record, current_rss, get_registry, one_line, run_case

if TYPE_CHECKING:
    from lubench.store import RunStore

__all__ = ["run_cases", "execute_case", "RunOutcome", "LocalPool", "threads_per_worker",
           "limit_threads", "format_bytes", "EXECUTORS"]

EXECUTORS = ("local", "inline", "slurm")
STATUS_ORDER = ("ok", "unsupported", "diverged", "failed", "timeout")
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
MEMORY_POLL = 0.05  # seconds between RSS samples of a worker with a memory limit
TREE_POLL = 0.5  # seconds between scans for a worker's own child processes
EXIT_GRACE = 2.0  # seconds a worker may take to exit after sending its record
PROGRESS_EVERY = 0.2  # seconds between two progress messages of one worker
IDLE_WAKE = 1.0  # the parent wakes at least this often

WorkItem = tuple[Case, int]


# --------------------------------------------------------------------------------------------
# Outcome
# --------------------------------------------------------------------------------------------
@dataclass
class RunOutcome:
    """What one call of :func:`run_cases` did."""

    total: int = 0  # (case, repeat) pairs this call had to run
    skipped: int = 0  # pairs already recorded in the run directory (resume)
    counts: Counter = field(default_factory=Counter)  # status -> records written
    interrupted: bool = False
    job_ids: list[str] = field(default_factory=list)  # submitit job ids (executor slurm)

    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        """E.g. ``12 ok, 1 failed, 1 timeout`` (+ what was skipped or left undone)."""
        counts = Counter(self.counts)
        statuses = [s for s in STATUS_ORDER if counts[s]]
        statuses += sorted(s for s in counts if s not in STATUS_ORDER and counts[s])
        parts = [f"{counts[s]} {s}" for s in statuses]
        if self.skipped:
            parts.append(f"{self.skipped} already done")
        if self.interrupted and self.total > self.finished:
            parts.append(f"{self.total - self.finished} not run (interrupted)")
        return ", ".join(parts) or "nothing to run"


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------
def format_bytes(n: float) -> str:
    """``2.0 GiB``, ``512.0 MiB``, ``900 B``."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def _oom_message(limit: int, peak: int | None = None) -> str:
    extra = f"; peak {format_bytes(peak)}" if peak else ""
    return f"out of memory (limit {format_bytes(limit)}{extra})"


def threads_per_worker(jobs: int) -> int:
    """``max(1, cores // jobs)``, cores being those this process may run on."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, jobs))


def limit_threads(threads: int) -> Any:
    """Set BLAS, OpenMP and PyTorch threads of this process to ``threads``.

    Environment variables first (read by an OpenMP runtime or PyTorch loaded later), then
    threadpoolctl for the libraries already loaded, then ``torch.set_num_threads`` when
    PyTorch is already imported (it is not imported here otherwise: that takes seconds).
    Returns the threadpoolctl limiter (keep it alive).
    """
    for var in THREAD_ENV:
        os.environ[var] = str(threads)
    limiter = _thread_controller().limit(limits=threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        with contextlib.suppress(Exception):
            torch.set_num_threads(threads)
    return limiter


_CONTROLLER: Any = None


def _thread_controller() -> Any:
    """threadpoolctl's view of the loaded thread pools. Built once in the parent, before the
    first fork, so that a worker does not rescan the loaded libraries (~5 ms per case)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


def _mp_context() -> mp.context.BaseContext:
    if sys.platform.startswith("linux"):
        return mp.get_context("fork")
    return mp.get_context("spawn")


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no orphans after kill -9)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _plain_fields(fields: dict) -> dict:
    out = {}
    for key, value in fields.items():
        if isinstance(value, (bool, int, float, str)) or value is None:
            out[str(key)] = value
            continue
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError):
            out[str(key)] = str(value)
    return out


# --------------------------------------------------------------------------------------------
# The worker process
# --------------------------------------------------------------------------------------------
class _ProgressSender:
    """``ctx.progress`` inside a worker: forwards (step, total, fields) to the parent, at most
    every ``PROGRESS_EVERY`` seconds (and always the last step). Never raises."""

    def __init__(self, conn: mpc.Connection):
        self.conn = conn
        self.last = 0.0

    def __call__(self, step: int, total: int | None = None, **fields: Any) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY and not (total is not None and step >= total):
            return
        self.last = now
        with contextlib.suppress(Exception):
            self.conn.send(("progress", {"step": step, "total": total,
                                         **_plain_fields(fields)}))


def _worker_main(conn: mpc.Connection, case: Case, repeat: int, run_id: str,
                 plugin_specs: tuple[str, ...], base_dir: str | None, threads: int | None,
                 parent_pid: int) -> None:
    """Body of a worker process: run one case, send its record, exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with contextlib.suppress(ValueError, OSError):
        signal.set_wakeup_fd(-1)  # the parent's wake-up socket is not ours
    _die_with_parent(parent_pid)
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    limiter = limit_threads(threads) if threads else None  # noqa: F841 - keep it alive
    rec = run_case(case, repeat, run_id=run_id, plugin_specs=plugin_specs, base_dir=base_dir,
                   progress=_ProgressSender(conn))
    if threads:
        rec["threads"] = threads
    rec["host"] = socket.gethostname()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        conn.send(("record", rec))
    except Exception as exc:  # a field that does not pickle: keep the row, say why
        rec = {k: v for k, v in rec.items() if k not in ("history", "traceback")}
        rec["info"] = "{}"
        rec["error"] = (rec.get("error") or "") + f" (record incomplete: {one_line(exc)})"
        conn.send(("record", rec))
    conn.close()


# --------------------------------------------------------------------------------------------
# The local pool
# --------------------------------------------------------------------------------------------
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
                 on_record: Callable[[dict], None] = lambda rec: None,
                 on_start: Callable[[Case, int], None] = lambda case, repeat: None,
                 on_progress: Callable[[Case, int, dict], None] = lambda c, r, f: None,
                 stop: Callable[[], bool] = lambda: False, wakeup: Any = None):
        self.jobs = max(1, int(jobs))
        self.run_id = run_id
        self.plugin_specs = tuple(plugin_specs)
        self.base_dir = base_dir
        self.threads = threads
        self.base_rss = 0
        self.on_record, self.on_start, self.on_progress = on_record, on_start, on_progress
        self.stop = stop
        self.wakeup = wakeup
        self.ctx = _mp_context()

    # -- lifecycle of one worker ---------------------------------------------------------
    def _start(self, case: Case, repeat: int) -> _Running:
        # A forked worker starts with the parent's pages resident (shared, copy-on-write):
        # the memory limit applies to what the case adds on top of them.
        self.base_rss = current_rss() if self.ctx.get_start_method() == "fork" else 0
        reader, writer = self.ctx.Pipe(duplex=False)
        process = self.ctx.Process(
            target=_worker_main, name=f"lubench-{case.case_id}-{repeat}", daemon=False,
            args=(writer, case, repeat, self.run_id, self.plugin_specs, self.base_dir,
                  self.threads, os.getpid()))
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
        if limit and rec.get("status") == "failed" and \
                str(rec.get("error", "")).startswith("out of memory"):
            rec["error"] = _oom_message(limit)
        peak = rec.get("peak_memory_bytes") or 0
        if limit and rec.get("status") == "ok" and peak > limit:
            rec["status"], rec["error"] = "failed", _oom_message(limit, peak)
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
                error = _oom_message(limit, run.peak_rss) + \
                    f": worker killed by {_signal_name(-code)}"
            else:
                error = f"worker died (signal {-code}, {_signal_name(-code)})"
        else:
            error = f"worker exited with status {code} before reporting a result"
        run.record = self._synthetic(run, "failed", error)
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
                        self._fail(run, "timeout",
                                   f"exceeded the {run.case.timeout:g} s timeout")
                    elif self._watch_memory(run, now):
                        self._fail(run, "failed", _oom_message(run.case.memory_limit))
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


# --------------------------------------------------------------------------------------------
# Signals: Ctrl-C and SIGTERM stop the run cleanly
# --------------------------------------------------------------------------------------------
class _StopSignals:
    """While active, the first SIGINT/SIGTERM sets ``requested`` and wakes the loop; the next
    SIGINT raises KeyboardInterrupt as usual. Only in the main thread (else inert)."""

    def __init__(self, on_first: Callable[[], None] = lambda: None):
        self.requested = False
        self.on_first = on_first
        self.wakeup: socket.socket | None = None
        self._writer: socket.socket | None = None
        self._old: dict[int, Any] = {}
        self._old_fd: int | None = None

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self
        self.wakeup, self._writer = socket.socketpair()
        self.wakeup.setblocking(False)
        self._writer.setblocking(False)
        self._old_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) is signal.SIG_IGN:
                continue  # e.g. SIGINT in a background job of a script: keep ignoring it
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.on_first()

    def __call__(self) -> bool:
        return self.requested

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        if self._old_fd is not None:
            signal.set_wakeup_fd(self._old_fd)
        for s in (self.wakeup, self._writer):
            if s is not None:
                s.close()


# --------------------------------------------------------------------------------------------
# Progress display
# --------------------------------------------------------------------------------------------
def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


class _Display:
    """A tqdm bar on stderr: cases done, counts by status, the latest case and its training
    step/loss. Messages (job ids, failures) are written even when the bar is hidden."""

    def __init__(self, total: int, show: bool):
        self.show = show
        self.counts: Counter = Counter()
        self.label = ""
        self.detail = ""
        self.last_refresh = 0.0
        self.bar = None
        if show:
            from tqdm import tqdm

            self.bar = tqdm(total=total, file=sys.stderr, unit="case", dynamic_ncols=True,
                            smoothing=0.1, leave=True)

    def _refresh(self) -> None:
        if self.bar is None:
            return
        counts = ", ".join(f"{self.counts[s]} {s}" for s in STATUS_ORDER if self.counts[s])
        parts = [p for p in (counts, _short(self.label), self.detail) if p]
        self.bar.set_postfix_str(" | ".join(parts), refresh=False)
        now = time.monotonic()
        if now - self.last_refresh >= self.bar.mininterval:
            self.last_refresh = now
            self.bar.refresh()

    def started(self, case: Case, repeat: int) -> None:
        self.label = case.label + (f" #{repeat}" if case.repeats > 1 else "")
        self.detail = ""
        self._refresh()

    def progress(self, case: Case, repeat: int, fields: dict) -> None:
        self.label = case.label + (f" #{repeat}" if case.repeats > 1 else "")
        step, total = fields.get("step"), fields.get("total")
        text = f"step {step}" + (f"/{total}" if total else "")
        for key, value in fields.items():
            if key in ("step", "total"):
                continue
            text += f" {key}={value:.3g}" if isinstance(value, float) else f" {key}={value}"
        self.detail = text
        self._refresh()

    def finished(self, rec: dict, label: str) -> None:
        status = rec.get("status", "?")
        self.counts[status] += 1
        if self.bar is not None:
            if status in ("failed", "timeout", "diverged"):
                self.bar.write(f"{status}: {label}: {rec.get('error', '')}", file=sys.stderr)
            self.bar.update(1)
            self._refresh()

    def write(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------------------------
# SLURM through submitit
# --------------------------------------------------------------------------------------------
def execute_case(case: Case, repeat: int, run_id: str = "", plugin_specs: tuple[str, ...] = (),
                 base_dir: str | None = None, threads: int | None = None) -> dict:
    """Run one case under the local supervisor (own worker process, hard timeout, memory
    limit) and return its record. The body of a SLURM array task."""
    get_registry(tuple(plugin_specs), base_dir)  # loaded once here, inherited by the worker
    _thread_controller()
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


def _default_submitit_executor(folder: Path) -> Any:
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


def _run_submitit(items: list[WorkItem], *, folder: Path, run_id: str,
                  plugin_specs: tuple[str, ...], base_dir: str | None, options: dict,
                  factory: Callable[[Path], Any], on_record: Callable[[dict], None],
                  stop: Callable[[], bool], wakeup: Any, display: _Display,
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
                    rec.update(status="failed", info="{}", history=[],
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


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------
def run_cases(cases: list[Case], store: RunStore, *, plugin_specs: tuple[str, ...] = (),
              base_dir: str | None = None, jobs: int = 1, executor: str = "local",
              executor_options: dict | None = None, show_progress: bool = False,
              submitit_executor: Callable[[Path], Any] | None = None) -> RunOutcome:
    """Run every (case, repeat) that ``store`` has no record of; append each record as it
    finishes. Never raises for a case's own failure; returns a :class:`RunOutcome`.

    ``executor``: ``local`` (``jobs`` worker processes), ``inline`` (this process, no limits)
    or ``slurm`` (submitit; ``executor_options`` holds the ``slurm_*`` options and ``folder``
    for submitit's files, default ``RUN_DIR/submitit``). ``submitit_executor(folder)`` builds
    the submitit executor; the default is ``submitit.AutoExecutor(folder, cluster="slurm")``.
    """
    if executor not in EXECUTORS:
        raise LubenchError(f"unknown executor {executor!r} (expected one of "
                           f"{', '.join(EXECUTORS)})")
    if jobs < 1:
        raise LubenchError(f"--jobs must be at least 1, got {jobs}")
    options = dict(executor_options or {})
    done = store.done()
    all_items = [(c, r) for c in cases for r in range(c.repeats)]
    items = [(c, r) for c, r in all_items if (c.case_id, r) not in done]
    outcome = RunOutcome(total=len(items), skipped=len(all_items) - len(items))
    if not items:
        return outcome
    plugin_specs = tuple(plugin_specs)
    threads = threads_per_worker(jobs) if executor == "local" else None
    store.update_meta(executor=executor, jobs=jobs if executor == "local" else None,
                      threads_per_worker=threads, n_items=len(items), n_skipped=outcome.skipped)
    labels = {(c.case_id, r): c.label + (f" #{r}" if c.repeats > 1 else "") for c, r in items}
    display = _Display(len(items), show_progress)

    def on_record(rec: dict) -> None:
        rec.setdefault("executor", executor)
        store.append(rec)
        outcome.counts[rec.get("status", "?")] += 1
        display.finished(rec, labels.get((rec["case_id"], int(rec.get("repeat", 0))),
                                          rec["case_id"]))

    try:
        if executor == "inline":
            outcome.interrupted = not _run_inline(items, store.run_id, plugin_specs, base_dir,
                                                  on_record, display)
            return outcome
        get_registry(plugin_specs, base_dir)  # once here: every forked worker inherits it
        _thread_controller()
        stopper = _StopSignals(on_first=lambda: None)
        with stopper:
            if executor == "local":
                completed = LocalPool(
                    jobs, run_id=store.run_id, plugin_specs=plugin_specs, base_dir=base_dir,
                    threads=threads, on_record=on_record, on_start=display.started,
                    on_progress=display.progress, stop=stopper, wakeup=stopper.wakeup,
                ).run(items)
            else:
                folder = Path(options.pop("folder", None) or store.run_dir / "submitit")
                completed = _run_submitit(
                    items, folder=folder, run_id=store.run_id, plugin_specs=plugin_specs,
                    base_dir=base_dir, options=options,
                    factory=submitit_executor or _default_submitit_executor,
                    on_record=on_record, stop=stopper, wakeup=stopper.wakeup,
                    display=display, job_ids=outcome.job_ids)
                store.update_meta(job_ids=outcome.job_ids)
        outcome.interrupted = not completed
    except KeyboardInterrupt:  # a second Ctrl-C: workers were killed on the way out
        outcome.interrupted = True
    finally:
        display.close()
    return outcome


def _run_inline(items: list[WorkItem], run_id: str, plugin_specs: tuple[str, ...],
                base_dir: str | None, on_record: Callable[[dict], None],
                display: _Display) -> bool:
    """Run in this process (debugging). No timeout, no memory limit. False on Ctrl-C."""
    for case, repeat in items:
        display.started(case, repeat)

        def progress(step: int, total: int | None = None, _c: Case = case, _r: int = repeat,
                     **fields: Any) -> None:
            display.progress(_c, _r, {"step": step, "total": total, **_plain_fields(fields)})

        try:
            rec = run_case(case, repeat, run_id=run_id, plugin_specs=plugin_specs,
                           base_dir=base_dir, progress=progress)
        except KeyboardInterrupt:
            return False
        rec["host"] = socket.gethostname()
        on_record(rec)
    return True
