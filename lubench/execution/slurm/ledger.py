"""``RUN_DIR/slurm-jobs.jsonl``: what a run directory submitted to SLURM, so that ``--resume``
adopts jobs instead of running their cases twice.

One JSON object per line, appended and flushed as it happens:

``{"event": "submitted", "job_id": "123_4", "case_id": …, "repeat": 0, "folder": …, "time": …}``
    one line per array task, written as soon as ``sbatch`` returned its id; ``folder`` is
    submitit's folder (the result file is ``folder/123_4/123_4_0_result.pkl``).
``{"event": "refused", "cases": [[case_id, repeat], …], "error": …, "time": …}``
    an array ``sbatch`` refused: those cases were not submitted.
``{"event": "cancelled", "job_ids": […], "reason": …, "time": …}``
    jobs lubench cancelled (Ctrl-C, or the rest of a submission that was refused).

The latest ``submitted`` line of a (case, repeat) is its job; a later resume that resubmits
the case appends a new one.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

__all__ = ["Ledger", "LEDGER_FILE"]

LEDGER_FILE = "slurm-jobs.jsonl"


class Ledger:
    """Append-only record of a run directory's SLURM jobs."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LEDGER_FILE

    def _append(self, entries: list[dict]) -> None:
        now = time.time()
        text = "".join(json.dumps({**e, "time": round(now, 3)}) + "\n" for e in entries)
        with open(self.path, "a") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    def submitted(self, tasks: list[tuple[str, str, int]], folder: Path) -> None:
        """``tasks``: (job id, case id, repeat) of one accepted submission."""
        self._append([{"event": "submitted", "job_id": j, "case_id": c, "repeat": r,
                       "folder": str(Path(folder).resolve())} for j, c, r in tasks])

    def refused(self, items: list[tuple[str, int]], error: str) -> None:
        self._append([{"event": "refused", "cases": [list(i) for i in items], "error": error}])

    def cancelled(self, job_ids: list[str], reason: str) -> None:
        if job_ids:
            self._append([{"event": "cancelled", "job_ids": sorted(job_ids), "reason": reason}])

    def latest(self) -> dict[tuple[str, int], dict]:
        """The latest ``submitted`` entry per (case id, repeat); a torn last line is ignored."""
        out: dict[tuple[str, int], dict] = {}
        if not self.path.exists():
            return out
        for line in self.path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if entry.get("event") == "submitted":
                out[(entry["case_id"], int(entry["repeat"]))] = entry
        return out
