"""What every ``lubench`` command shares: one-line user errors, the context settings, the
``--plugin`` option, and the registry loaded with a warning per broken plugin.

Every user error (a malformed suite, an unknown plugin name, a bad parameter) is a
:class:`lubench.api.LubenchError`: printed on one line, exit status 2 (or the error's own
``exit_status``), no traceback (``lubench --debug`` shows it).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from lubench.api import LubenchError
from lubench.errors import printable
from lubench.registry import Registry, load_registry
from lubench.rundir.fsafe import describe

EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
"""141: the output's reader closed the pipe early (``lubench list | head``), as a shell
reports a process killed by SIGPIPE; nothing is printed."""

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

plugin_option = click.option("--plugin", "plugin_specs", multiple=True,
                             metavar="MODULE|FILE.py", help="Load an extra plugin (repeatable).")
"""``--plugin MODULE|FILE.py`` (repeatable), passed to the command as ``plugin_specs``."""


def quiet_stdout() -> None:
    """Point descriptor 1 at /dev/null: nothing more reaches a reader that went away or a
    full output, and the interpreter's last flush does not complain."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)


class OutputError(LubenchError):
    """Standard output cannot be written (a full disk, ``> /dev/full``, a closed descriptor);
    the message says so — it is no file of the user's."""


class _GuardedStdout:
    """``sys.stdout`` whose write errors say that they are about standard output: an
    ``OSError`` other than a broken pipe (141) becomes :class:`OutputError`, remembered in
    ``error`` (so that nothing can swallow it)."""

    def __init__(self, stream: Any):
        self._stream = stream
        self.error: OutputError | None = None

    def _failed(self, exc: OSError) -> OutputError:
        self.error = OutputError(describe(exc, "cannot write to", "standard output"))
        return self.error

    def write(self, text: Any) -> int:
        if isinstance(text, str) and not text:  # click probes a stream with an empty write
            return 0
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise self._failed(exc) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise self._failed(exc) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def guarded_stdout() -> Iterator[None]:
    """While a command runs: standard output must be open (``lubench schema >&-`` printed
    nothing and exited 0) and a failed write names it (:class:`OutputError`)."""
    if sys.stdout is None:
        raise OutputError("standard output is closed; lubench prints its results there "
                          "(redirect it to a file or /dev/null instead)")
    real = sys.stdout
    guard = _GuardedStdout(real)
    sys.stdout = guard
    try:
        yield
        if guard.error is None:
            guard.flush()
        if guard.error is not None:  # raised where something caught it: said here
            raise guard.error
    finally:
        if guard.error is not None:
            quiet_stdout()
        if sys.stdout is guard:
            sys.stdout = real


def _debug_enabled() -> bool:
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx else None
    return bool(root and root.obj and root.obj.get("debug"))


def user_errors(func: Callable) -> Callable:
    """Turn a LubenchError (or a YAML/OS error about the user's files) into one line + exit 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except LubenchError as exc:
            if _debug_enabled():
                raise
            click.echo(f"lubench: error: {printable(str(exc))}", err=True)
            sys.exit(getattr(exc, "exit_status", 2))
        except BrokenPipeError:  # the reader went away (`lubench list | head`): not an error
            # of the user's; say nothing more (stdout to /dev/null so the interpreter's
            # final flush does not complain) and exit as a shell reports SIGPIPE
            quiet_stdout()
            sys.exit(EXIT_BROKEN_PIPE)
        except OSError as exc:  # a path of the user's: say which and why, in one line
            if _debug_enabled():
                raise
            click.echo(f"lubench: error: {describe(exc)}", err=True)
            sys.exit(2)

    return wrapper


def load_plugins(plugin_specs: tuple[str, ...] = (), base_dir: Path | None = None) -> Registry:
    """The installed plugins and ``plugin_specs``; a warning on stderr per broken plugin."""
    reg = load_registry(list(plugin_specs), base_dir)
    for info in reg.plugins.values():
        if info.printed:
            click.echo(f"lubench: warning: plugin '{info.name}' wrote {_size(info.printed)} on "
                       f"stdout/stderr while imported (not shown)", err=True)
    for info in reg.broken():
        click.echo(printable(f"lubench: warning: plugin '{info.name}' ({info.origin}) is "
                             f"{info.status}"), err=True)
    return reg


def _size(nbytes: int) -> str:
    return f"{nbytes} bytes" if nbytes < 1024 else \
        f"{nbytes / 1024:.1f} KiB" if nbytes < 1 << 20 else f"{nbytes / 2**20:.1f} MiB"
