"""What a run shows while it goes, on stderr.

In a terminal: a tqdm bar (cases done, counts by status, the latest case and its training
step), and one line per case that did not end ``ok``, as it ends. Without one (CI, ``nohup``,
a SLURM log) or with ``--no-progress``: one line per finished case,
``status  case  seconds  error`` (:func:`case_line`), flushed at once.
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter

from lubench.errors import printable
from lubench.rundir.records import OK, STATUSES
from lubench.suite.cases import Case

STATUS_WIDTH = 11  # the longest status, "unavailable"


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def case_line(record: dict, label: str) -> str:
    """``failed       laplacian_1d[n=16] × plu   0.4s  ValueError: ...`` — status, case,
    seconds (the case's wall time), and the reason on the same line when there is one."""
    status = str(record.get("status", "?"))
    seconds = record.get("wall_seconds")
    if not isinstance(seconds, (int, float)) or math.isnan(seconds):
        seconds = record.get("setup_seconds")
    secs = f"{seconds:.1f}s" if isinstance(seconds, (int, float)) and \
        math.isfinite(seconds) else "-"
    error = " ".join(_text(record.get("error")).split())
    line = f"{status:<{STATUS_WIDTH}} {label}  {secs}"
    return printable(f"{line}  {error}" if error else line)  # a plugin's text: no escapes


def plain_fields(fields: dict) -> dict:
    """A training step's fields as plain values (numbers, text) the display can show."""
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


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


class Display:
    """A tqdm bar on stderr (``show``) or one line per finished case (not ``show``).
    Messages (job ids, warnings) are written either way."""

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
        counts = ", ".join(f"{self.counts[s]} {s}" for s in STATUSES if self.counts[s])
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
        if self.bar is None:
            self.write(case_line(rec, label))
            return
        if status != OK:
            self.bar.write(case_line(rec, label), file=sys.stderr)
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
