"""Import a plugin first in a throw-away child, so that a plugin that crashes or hangs at
import is reported as broken instead of taking ``lubench`` down with it.

Running a suite runs its plugin code, as pytest runs a ``conftest.py``: lubench does not
sandbox plugins. What this module bounds is only the *import*: the parent imports a plugin
file or module given by a suite (``plugins:``) or ``--plugin`` once a forked child has done
so and come back. A child that dies of a signal (a segfault in an extension), exits the
process (``os._exit``), or has not finished after :func:`import_timeout` seconds is killed
with everything it started, and the plugin is recorded as ``broken`` with that reason; the
parent never imports it. An exception at import is left to the parent's own import, which
reports it as before. Installed plugins (entry points) are imported directly.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable

__all__ = ["probe_import", "import_timeout", "TIMEOUT_VAR", "DEFAULT_IMPORT_TIMEOUT"]

TIMEOUT_VAR = "LUBENCH_PLUGIN_IMPORT_TIMEOUT"
DEFAULT_IMPORT_TIMEOUT = 60.0  # seconds


def import_timeout() -> float:
    """Seconds a plugin's import may take (``LUBENCH_PLUGIN_IMPORT_TIMEOUT``, default 60)."""
    try:
        value = float(os.environ.get(TIMEOUT_VAR, DEFAULT_IMPORT_TIMEOUT))
    except ValueError:
        return DEFAULT_IMPORT_TIMEOUT
    return value if value > 0 and value == value else DEFAULT_IMPORT_TIMEOUT


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _last_line(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 4096))
            lines = [ln.strip() for ln in fh.read().decode(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [ln for ln in lines if ln]
    return lines[-1][:200] if lines else ""


def probe_import(do_import: Callable[[], object], timeout: float | None = None) -> str | None:
    """Run ``do_import()`` in a forked child. None when it returned or raised an exception
    (the caller then imports in this process); else the reason it is broken, one line.

    Only where ``fork`` is safe (Linux); elsewhere returns None at once.
    """
    if not sys.platform.startswith("linux"):
        return None
    timeout = import_timeout() if timeout is None else timeout
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with tempfile.NamedTemporaryFile(prefix="lubench-import-", suffix=".log",
                                     delete=False) as log:
        log_path = log.name
    done_r, done_w = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:  # the child: import, then say "finished" on the pipe
            try:
                os.close(done_r)
                os.setsid()  # its own group: a timeout kills what it started too
                fd = os.open(log_path, os.O_WRONLY | os.O_TRUNC)
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.dup2(fd, 2)
                with contextlib.suppress(Exception):
                    import faulthandler

                    faulthandler.disable()  # it may point at the parent's terminal
                try:
                    do_import()
                except BaseException:  # noqa: BLE001, S110 - the parent's import reports it
                    pass
                os.write(done_w, b"1")
            finally:
                os._exit(0)
        os.close(done_w)
        done_w = -1
        deadline = time.monotonic() + timeout
        exited = False
        while time.monotonic() < deadline:
            # WNOWAIT: leave it a zombie, so that its pid (its group's id) stays reserved
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                exited = True
                break
            time.sleep(0.01)
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)  # the child, and what the import started
        _, status = os.waitpid(pid, 0)
        if not exited:
            return f"import did not finish within {timeout:g} s (killed; set " \
                   f"{TIMEOUT_VAR} to allow longer)"
        if os.WIFSIGNALED(status):
            return f"import crashed ({_signal_name(os.WTERMSIG(status))})"
        finished = False
        with contextlib.suppress(OSError):
            os.set_blocking(done_r, False)
            finished = os.read(done_r, 1) == b"1"
        if not finished:  # os._exit or sys.exit from a thread... at import
            tail = _last_line(log_path)
            return f"import ended the process (exit status {os.WEXITSTATUS(status)})" + \
                (f": {tail}" if tail else "")
        return None
    finally:
        for fd in (done_r, done_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(log_path)
