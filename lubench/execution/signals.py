"""Ctrl-C, SIGTERM and SIGHUP while a run's cases run: :class:`StopSignals`.

The first signal asks the runner to stop (it kills the cases in flight, keeps every record,
prints how to resume); further signals change nothing — they never raise in the middle of
the runner's cleanup. Outside the cases the command line's policy holds
(:mod:`lubench.cli.interrupt`: the signal ends the command with one line and 128 + the
signal). Only in lubench's own process: a process forked from it that still has the handler
dies of the signal as it would have without lubench.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["StopSignals", "SIGNALS"]

#: The signals that stop a run: Ctrl-C, ``kill``/``scancel``/a batch time limit, a closed
#: terminal (the same as :data:`lubench.cli.interrupt.SIGNALS`).
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopSignals:
    """While active, the first SIGINT/SIGTERM/SIGHUP sets ``requested`` and wakes the loop;
    later ones are noted (``count``) and nothing more: the runner is already stopping, and an
    exception in the middle of its cleanup would leave cases running. Only in the main thread
    (else inert)."""

    def __init__(self, on_first: Callable[[], None] = lambda: None):
        self.requested = False
        self.signum: int | None = None  # the signal that asked first
        self.count = 0
        self.on_first = on_first
        self.wakeup: socket.socket | None = None
        self._writer: socket.socket | None = None
        self._old: dict[int, Any] = {}
        self._old_fd: int | None = None
        self._pid = os.getpid()

    def __enter__(self) -> StopSignals:
        self._pid = os.getpid()
        if threading.current_thread() is not threading.main_thread():
            return self
        self.wakeup, self._writer = socket.socketpair()
        self.wakeup.setblocking(False)
        self._writer.setblocking(False)
        self._old_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        for sig in SIGNALS:
            if signal.getsignal(sig) is signal.SIG_IGN:
                continue  # e.g. SIGINT in a background job of a script: keep ignoring it
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._pid:  # a forked child that kept the handler
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.count += 1
        if self.requested:
            return
        self.signum = signum
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
