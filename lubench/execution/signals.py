"""Ctrl-C and SIGTERM stop a run cleanly: the first asks, the second insists."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable
from typing import Any


class StopSignals:
    """While active, the first SIGINT/SIGTERM sets ``requested`` and wakes the loop; the next
    SIGINT raises KeyboardInterrupt as usual. Only in the main thread (else inert)."""

    def __init__(self, on_first: Callable[[], None] = lambda: None):
        self.requested = False
        self.signum: int | None = None  # the signal that asked first (SIGINT or SIGTERM)
        self.on_first = on_first
        self.wakeup: socket.socket | None = None
        self._writer: socket.socket | None = None
        self._old: dict[int, Any] = {}
        self._old_fd: int | None = None

    def __enter__(self) -> StopSignals:
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
        if not self.requested:
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
