"""What every ``lubench`` command shares: one-line user errors, the context settings, the
``--plugin`` option, and the registry loaded with a warning per broken plugin.

Every user error (a malformed suite, an unknown plugin name, a bad parameter) is a
:class:`lubench.api.LubenchError`: printed on one line, exit status 2 (or the error's own
``exit_status``), no traceback (``lubench --debug`` shows it).
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from lubench.api import LubenchError
from lubench.registry import Registry, load_registry
from lubench.rundir.fsafe import describe

EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
"""141: the output's reader closed the pipe early (``lubench list | head``), as a shell
reports a process killed by SIGPIPE; nothing is printed."""

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

plugin_option = click.option("--plugin", "plugin_specs", multiple=True,
                             metavar="MODULE|FILE.py", help="Load an extra plugin (repeatable).")
"""``--plugin MODULE|FILE.py`` (repeatable), passed to the command as ``plugin_specs``."""


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
            click.echo(f"lubench: error: {exc}", err=True)
            sys.exit(getattr(exc, "exit_status", 2))
        except BrokenPipeError:  # the reader went away (`lubench list | head`): not an error
            # of the user's; say nothing more (stdout to /dev/null so the interpreter's
            # final flush does not complain) and exit as a shell reports SIGPIPE
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
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
    for info in reg.broken():
        click.echo(f"lubench: warning: plugin '{info.name}' ({info.origin}) is {info.status}",
                   err=True)
    return reg
