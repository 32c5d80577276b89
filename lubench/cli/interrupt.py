"""Ctrl-C, SIGTERM and SIGHUP outside a run's cases: one policy for the ``lubench`` process.

A signal raises :class:`Interrupted` — a ``KeyboardInterrupt``, so every ``finally`` runs (a
plugin probe's child is killed with what it started, a temporary file removed) — and the
command line ends with one line, the hint of the phase it was in (:func:`set_hint`: how to
resume, how to render the report), and the exit status 128 + the signal (130, 143, 129);
never click's "Aborted!" with 1, which means "a case failed". While cases run,
:class:`lubench.execution.signals.StopSignals` takes over. Only in lubench's own process: a
process forked from it that still has the handler dies of the signal as it would have.
(Here, not in :mod:`lubench.execution`, so that ``lubench list`` stays light.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["Interrupted", "interruptible", "set_hint", "hint", "SIGNALS"]

#: The signals that stop lubench: Ctrl-C, ``kill``/``scancel``/a batch time limit, a closed
#: terminal.
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived outside a run's cases; ``signum`` says which."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_owner = {"pid": -1}
_hint = {"text": ""}


def _raise(signum: int, frame: Any) -> None:
    if os.getpid() != _owner["pid"]:  # a forked child that kept the handler
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """While active (main thread only), SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted`
    in this process; a signal the process was told to ignore (``nohup``, a background job's
    SIGINT) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old: dict[int, Any] = {}
    before = dict(_owner), dict(_hint)
    _owner["pid"], _hint["text"] = os.getpid(), ""
    try:
        for sig in SIGNALS:
            if signal.getsignal(sig) is not signal.SIG_IGN:
                old[sig] = signal.signal(sig, _raise)
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        _owner.update(before[0])
        _hint.update(before[1])


def set_hint(text: str) -> None:
    """What to tell the user if a signal ends the command from now on (e.g. how to resume)."""
    _hint["text"] = text


def hint() -> str:
    return _hint["text"]
