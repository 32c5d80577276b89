"""The progress display on stderr: a tqdm bar, counts by status, the latest case."""

from __future__ import annotations

import sys
import time
from collections import Counter

from lubench.records import DIVERGED, FAILED, STATUSES, TIMEOUT
from lubench.suite import Case


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


class Display:
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
        if self.bar is not None:
            if status in (FAILED, TIMEOUT, DIVERGED):
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
