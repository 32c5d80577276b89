"""The exceptions of lubench, and how an exception becomes one line of a record or a message.

``LubenchError`` (and ``InvalidParameter``, ``PluginError``) are the user's mistakes: the CLI
prints them on one line and exits with status 2. ``Unsupported``, ``FactorizationError`` and
``Diverged`` are a case's outcomes: the worker records them with status ``unsupported``,
``failed`` and ``diverged``. They are re-exported by :mod:`lubench.api` (plugins import them
from there) and :mod:`lubench.registry.manager` (``PluginError``).
"""

from __future__ import annotations

import re

__all__ = ["LubenchError", "InvalidParameter", "SuiteError", "PluginError", "Unsupported",
           "FactorizationError", "Diverged", "one_line", "printable", "shown"]


class LubenchError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits with status 2."""


class InvalidParameter(LubenchError, ValueError):
    """A parameter value (or a size) that a plugin cannot take; the message names it.

    ``param``, when given, is the parameter's name: a suite error then says where it is
    (``methods[0].params.P: ...``), not only which entry."""

    def __init__(self, message: str = "", param: str | None = None):
        super().__init__(message)
        self.param = param


class SuiteError(LubenchError):
    """A suite file that cannot be used; the message names the file and every bad field."""


class PluginError(LubenchError):
    """A plugin could not be loaded or broke the contract; names the plugin and the rule."""

    def __init__(self, message: str, plugin: str | None = None):
        super().__init__(message)
        self.plugin = plugin


class Unsupported(Exception):  # noqa: N818 - the status it produces is called "unsupported"
    """Raised by ``Method.check`` or ``Method.factorize`` when the method does not apply.

    The runner records the case with status ``unsupported`` and ``reason`` as its error.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class FactorizationError(Exception):
    """The factorization broke down numerically (zero pivot, not positive definite, ...).

    Recorded as status ``failed`` with the message as reason.
    """


class Diverged(Exception):  # noqa: N818 - the status it produces is called "diverged"
    """A training run reached NaN or Inf. Recorded as status ``diverged``.

    ``step`` is the step at which the loss stopped being finite; ``history`` the training
    curve up to there, saved like any other.
    """

    def __init__(self, step: int, history: list[dict] | None = None, message: str = ""):
        super().__init__(message or f"loss is not finite at step {step}")
        self.step = step
        self.history = history or []


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (``Type`` alone when there is no message): how an
    exception is shown in the ``error`` column and in one-line messages."""
    text = str(exc).strip().splitlines()
    first = text[0].strip() if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    r"""``text`` safe to print on a terminal: control characters other than newline and tab
    (ESC, BEL, CR, DEL, the C1 range) written as ``\xNN``, so that a plugin's message cannot
    move the cursor, retitle the window or hide what came before.

    >>> printable("\x1b[31mred\x07")
    '\\x1b[31mred\\x07'
    """
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def shown(value: object, width: int = 80) -> str:
    """``repr(value)`` as an error message shows it: printable, at most ``width`` characters
    (a 1 MB string in a suite is named, not echoed)."""
    import reprlib

    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother = 3, width, width
    short.maxlist = short.maxtuple = short.maxdict = short.maxset = 8
    try:
        text = short.repr(value)  # bounded work, however large the value
    except Exception:  # noqa: BLE001 - a value whose repr fails is still named
        text = f"<{type(value).__name__}>"
    text = printable(text)
    return text if len(text) <= width else f"{text[:width - 5]}...{text[-2:]}"
