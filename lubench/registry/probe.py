"""Plugin code that lubench runs while loading, run in a throw-away child process, so that a
crash, an exit or a hang is reported as that plugin's error instead of taking ``lubench``
down with it.

Running a suite runs its plugin code, as pytest runs a ``conftest.py``: lubench does not
sandbox plugins. What this module bounds is the plugin code that runs *while loading*, before
any case: the first import of a plugin file or module (``plugins:``, ``--plugin``) with its
hooks, and everything a suite's entries call — constructors, ``get_params``,
``check_params``, ``sizes``, ``check_size`` (:mod:`lubench.suite.load`).

:func:`contained` runs a call in a forked child: its own session, subreaper of what it
starts, stdout and stderr onto a pipe (counted; the last line kept), faulthandler off. The
call announces each plugin call it makes (:meth:`Channel.crumb`) and may report problems as
it finds them (:meth:`Channel.problem`); its return value comes back pickled. The child is
killed with everything it started when it dies (a signal: ``crashed (SIGSEGV)``), ends the
process without an answer (``ended the process (exit status 0)``), or has not announced
anything new for :func:`import_timeout` seconds (``did not finish within 60 s``) — each
plugin call is bounded, not the whole load. The parent's wait is interruptible: Ctrl-C or
SIGTERM kills the child and its descendants before the interruption goes on.

:func:`probe_import` is the import probe built on it: None when the import (and the
plugin's registration in a scratch registry) came back, the reason otherwise. Installed
plugins (entry points) are imported directly, as pytest imports its installed plugins.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import select
import signal
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lubench.errors import LubenchError, one_line, printable

__all__ = ["probe_import", "import_timeout", "contained", "Channel", "InlineChannel", "Contained",
           "subreaper", "end_detached", "stop_then_kill",
           "TIMEOUT_VAR", "DEFAULT_IMPORT_TIMEOUT", "ProbeOutput"]

TIMEOUT_VAR = "LUBENCH_PLUGIN_IMPORT_TIMEOUT"
DEFAULT_IMPORT_TIMEOUT = 60.0  # seconds
_TAIL = 4096  # bytes of the child's output kept for the reason


def import_timeout() -> float:
    """Seconds one plugin call at load may take (``LUBENCH_PLUGIN_IMPORT_TIMEOUT``, default
    60; ``none`` for no limit). :class:`LubenchError` naming the variable for a value that is
    not a positive number of seconds (it was silently 60 before)."""
    raw = os.environ.get(TIMEOUT_VAR, "").strip()
    if not raw:
        return DEFAULT_IMPORT_TIMEOUT
    if raw.lower() == "none":
        return math.inf
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise LubenchError(f"{TIMEOUT_VAR}={raw!r}: expected a positive number of seconds "
                           f"(or 'none' for no limit)")
    return value


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


# --------------------------------------------------------------------------------------------
# The child's side
# --------------------------------------------------------------------------------------------
_CRUMB, _PROBLEM, _RESULT, _ERROR, _UNPICKLABLE = b"C", b"P", b"R", b"E", b"U"


class Channel:
    """What a contained call tells its parent: which plugin call it is in, and problems."""

    def __init__(self, fd: int):
        self._fd = fd

    def _send(self, kind: bytes, payload: bytes) -> None:
        view = memoryview(kind + struct.pack(">I", len(payload)) + payload)
        while view:
            view = view[os.write(self._fd, view):]

    def crumb(self, text: str) -> None:
        """Say which plugin call comes next (the parent names it if the child dies there,
        and the timeout starts again)."""
        self._send(_CRUMB, text.encode("utf-8", "replace"))

    def problem(self, text: str) -> None:
        """A problem found (kept by the parent even if the child dies later)."""
        self._send(_PROBLEM, text.encode("utf-8", "replace"))


class InlineChannel(Channel):
    """The channel of a call run in this process (no fork where fork is unsafe)."""

    def __init__(self) -> None:
        super().__init__(-1)
        self.problems: list[str] = []

    def crumb(self, text: str) -> None:
        return None

    def problem(self, text: str) -> None:
        self.problems.append(text)


def end_detached() -> int:
    """SIGKILL every descendant of this process that left its session (``setsid``: a
    daemon a plugin started while imported in lubench's own process), so that none outlives
    ``lubench``; its own session's children (helpers that end with it) are left alone.
    Effective for double-forked ones when this process is a subreaper (:func:`subreaper`).
    Returns how many were killed."""
    import psutil

    try:
        mine = os.getsid(0)
        detached = [p for p in psutil.Process().children(recursive=True)
                    if p.status() != psutil.STATUS_ZOMBIE and os.getsid(p.pid) != mine]
    except (psutil.Error, OSError):
        return 0
    stop_then_kill(detached)
    return len(detached)


def stop_then_kill(procs: Sequence[Any]) -> None:
    """SIGSTOP every process of ``procs`` (psutil processes), then SIGKILL them: a stopped
    process cannot fork, so none starts another while the others are killed. One that is
    gone already is skipped."""
    import psutil

    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGSTOP)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()


def subreaper() -> None:
    """Become the subreaper of this process's descendants (Linux), so that one that
    detaches (double fork, setsid) stays below it and is ended with it."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _end_tree(pid: int | None = None) -> None:
    """SIGKILL every descendant of ``pid`` (this process when None), stopped first so that
    none forks away while the others are killed."""
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return
    for _ in range(3):
        try:
            live = [c for c in root.children(recursive=True)
                    if c.status() != psutil.STATUS_ZOMBIE]
        except psutil.Error:
            return
        if not live:
            return
        stop_then_kill(live)


def _child(call: Callable[[Channel], Any], data_w: int, out_w: int) -> None:
    """The body of the forked child; never returns."""
    try:
        os.setsid()  # its own session: the terminal's Ctrl-C goes to lubench, not here
        subreaper()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
            with contextlib.suppress(Exception):
                signal.signal(sig, signal.SIG_DFL)
        with contextlib.suppress(Exception):
            import faulthandler

            faulthandler.disable()  # it may point at lubench's terminal
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        channel = Channel(data_w)
        try:
            value = call(channel)
        except BaseException as exc:  # noqa: BLE001 - said to the parent, whatever it is
            with contextlib.suppress(BaseException):
                channel._send(_ERROR, printable(one_line(exc))[:500].encode("utf-8", "replace"))
        else:
            try:
                payload = pickle.dumps(value)
            except Exception as exc:  # noqa: BLE001 - a value that cannot travel
                channel._send(_UNPICKLABLE, one_line(exc)[:500].encode("utf-8", "replace"))
            else:
                channel._send(_RESULT, payload)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
        _end_tree()
    finally:
        os._exit(0)


# --------------------------------------------------------------------------------------------
# The parent's side
# --------------------------------------------------------------------------------------------
@dataclass
class ProbeOutput:
    """What a contained child wrote on its stdout and stderr: how much, and its last line."""

    nbytes: int = 0
    tail: bytes = b""

    def add(self, chunk: bytes) -> None:
        self.nbytes += len(chunk)
        self.tail = (self.tail + chunk)[-_TAIL:]

    @property
    def last_line(self) -> str:
        lines = [ln.strip() for ln in self.tail.decode("utf-8", "replace").splitlines()]
        lines = [ln for ln in lines if ln]
        return printable(lines[-1])[:200] if lines else ""


@dataclass
class Contained:
    """The outcome of :func:`contained`.

    ``value`` is the call's return value when it came back; else ``failure`` says why
    (``crashed (SIGSEGV)``, ``ended the process (exit status 0)``, ``did not finish within
    60 s …``, ``raised …``) and ``crumb`` which plugin call the child was in; or
    ``unpicklable`` says why the value could not come back (the caller may call again in its
    own process). ``problems`` are what the call reported on the way, ``output`` what it
    printed.
    """

    value: Any = None
    failure: str | None = None
    crumb: str = ""
    problems: list[str] = field(default_factory=list)
    output: ProbeOutput = field(default_factory=ProbeOutput)
    unpicklable: str | None = None  # the call returned, but its value cannot be pickled

    @property
    def ok(self) -> bool:
        return self.failure is None


class _Frames:
    """Length-prefixed frames read from a non-blocking pipe."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, chunk: bytes) -> list[tuple[bytes, bytes]]:
        self.buf += chunk
        out = []
        while len(self.buf) >= 5:
            (size,) = struct.unpack(">I", self.buf[1:5])
            if len(self.buf) < 5 + size:
                break
            out.append((self.buf[:1], self.buf[5:5 + size]))
            self.buf = self.buf[5 + size:]
        return out


def _read_some(fd: int) -> bytes | None:
    """What is there to read now; b"" at end of file; None when nothing is ready."""
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def contained(call: Callable[[Channel], Any], timeout: float | None = None) -> Contained:
    """Run ``call(channel)`` in a forked child (see the module docstring) and return what
    became of it. Where ``fork`` is not safe (not Linux) the call runs in this process."""
    if not sys.platform.startswith("linux"):
        inline = InlineChannel()
        return Contained(value=call(inline), problems=inline.problems)
    timeout = import_timeout() if timeout is None else timeout
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    data_r, data_w = os.pipe()
    out_r, out_w = os.pipe()
    outcome = Contained()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child (covered through the parent's view)
        os.close(data_r)
        os.close(out_r)
        _child(call, data_w, out_w)
    reaped = False
    try:
        os.close(data_w)
        os.close(out_w)
        for fd in (data_r, out_r):
            os.set_blocking(fd, False)
        frames = _Frames()
        answered: float | bool = False
        exited = False
        last = time.monotonic()
        open_fds = [data_r, out_r]
        while True:
            if not exited and os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG
                                        | os.WNOWAIT) is not None:
                exited = True  # a zombie until waitpid below: its pid stays reserved
            if open_fds:
                ready = select.select(open_fds, [], [], 0 if exited else 0.05)[0]
            else:  # both pipes closed: only the exit is left to wait for
                ready = []
                time.sleep(0 if exited else 0.05)
            for fd in ready:
                chunk = _read_some(fd)
                if chunk is None:
                    continue
                if not chunk:
                    open_fds.remove(fd)
                    continue
                if fd == out_r:
                    outcome.output.add(chunk)
                    continue
                for kind, payload in frames.feed(chunk):
                    text = payload.decode("utf-8", "replace")
                    if kind == _CRUMB:
                        outcome.crumb, last = text, time.monotonic()
                    elif kind == _PROBLEM:
                        outcome.problems.append(text)
                    elif kind == _RESULT:
                        outcome.value, answered = pickle.loads(payload), time.monotonic()
                    elif kind == _ERROR:
                        outcome.failure, answered = f"raised {text}", time.monotonic()
                    elif kind == _UNPICKLABLE:
                        outcome.unpicklable, answered = text, time.monotonic()
            if exited and not ready:
                break  # what the child wrote before it ended is read
            if answered and time.monotonic() - answered > 5:
                break  # it answered but does not end: ended below
            if not exited and time.monotonic() - last > timeout:
                outcome.failure = (f"did not finish within {timeout:g} s (killed; set "
                                   f"{TIMEOUT_VAR} to allow longer)")
                break
        if outcome.failure is None and outcome.unpicklable is None and not answered:
            _end_tree(pid)
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            reaped = True
            if os.WIFSIGNALED(status):
                outcome.failure = f"crashed ({_signal_name(os.WTERMSIG(status))})"
            else:
                outcome.failure = f"ended the process (exit status {os.WEXITSTATUS(status)})"
            if outcome.output.last_line:
                outcome.failure += f": {outcome.output.last_line}"
        return outcome
    finally:
        if not reaped:  # timeout, an answer, or an interruption (Ctrl-C): end it all
            _end_tree(pid)
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        for fd in (data_r, out_r):
            with contextlib.suppress(OSError):
                os.close(fd)


def probe_import(do_import: Callable[[], object], timeout: float | None = None,
                 output: ProbeOutput | None = None) -> str | None:
    """Run ``do_import()`` in a contained child. None when it returned or raised an
    exception (the caller then imports in this process and reports the exception as
    before); else why the plugin is broken, one line (``import crashed (SIGSEGV)``, ``import
    ended the process …``, ``import did not finish within 60 s …``). ``output``, when given,
    gets what the import wrote on stdout and stderr (counted, not shown)."""
    def call(channel: Channel) -> None:
        channel.crumb("import")
        try:
            do_import()
        except BaseException:  # noqa: BLE001, S110 - the parent's own import reports it
            pass

    outcome = contained(call, timeout)
    if output is not None:
        output.nbytes, output.tail = outcome.output.nbytes, outcome.output.tail
    if outcome.ok:
        return None
    return f"import {outcome.failure}"
