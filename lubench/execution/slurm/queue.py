"""The scheduler's view of our jobs: ``squeue`` states and ``scancel``, without accounting.

submitit asks ``sacct`` for job states; many small clusters run no accounting database, where
``sacct`` fails on every poll (submitit then warns twice per poll and never learns that a job
died). ``squeue`` works everywhere: it lists pending and running jobs, and finished ones for
``MinJobAge`` seconds (300 by default) after they end. A job it no longer lists has ended.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Iterable

__all__ = ["ACTIVE", "job_states", "cancel_jobs", "array_of"]

# States of a job that may still run (squeue's long names); any other state has ended.
ACTIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
                    "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT",
                    "PREEMPTED"})
QUEUED = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                    "SUSPENDED", "PREEMPTED"})


def array_of(job_id: str) -> str:
    """``123_4`` → ``123`` (a job that is not an array task is its own array)."""
    return job_id.split("_", 1)[0]


def job_states(timeout: float = 30.0) -> dict[str, str] | None:
    """State of every job of this user that ``squeue`` lists, by id (array tasks one by one,
    ``123_4``); ``None`` when ``squeue`` does not answer (then nothing can be concluded)."""
    user = pwd.getpwuid(os.getuid()).pw_name
    cmd = ["squeue", "-h", "-r", "-u", user, "-o", "%i %T"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    states = {}
    for line in proc.stdout.splitlines():
        job_id, _, state = line.strip().partition(" ")
        if job_id:
            states[job_id] = state.strip()
    return states


def cancel_jobs(job_ids: Iterable[str], timeout: float = 60.0) -> bool:
    """``scancel`` the given jobs (array tasks as ``123_4``); True when scancel succeeded.
    Jobs that already ended are not an error."""
    ids = sorted(set(job_ids))
    ok = True
    for start in range(0, len(ids), 500):
        try:
            proc = subprocess.run(["scancel", "--quiet", *ids[start:start + 500]],
                                  capture_output=True, text=True, timeout=timeout)
            ok = ok and proc.returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
    return ok
