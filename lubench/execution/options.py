"""Which executor, how many jobs, which options: the command line over the suite's ``executor:``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lubench.errors import LubenchError

__all__ = ["ExecutorSettings", "executor_settings"]


@dataclass
class ExecutorSettings:
    """What :func:`lubench.execution.run_cases` is called with."""

    kind: str = "local"
    jobs: int = 1
    options: dict[str, Any] = field(default_factory=dict)  # slurm_* options, folder


def executor_settings(suite_executor: dict | None, kind: str | None = None,
                      jobs: int | None = None, **overrides: Any) -> ExecutorSettings:
    """Merge the suite's ``executor:`` mapping with the command line: ``kind`` (``--executor``)
    and ``jobs`` (``-j``) win over the suite's ``kind`` and ``jobs``; each ``slurm_*`` option
    given (not None) wins over the suite's. Raises LubenchError when jobs < 1, and for the
    inline executor with more than one job (it runs cases in this process, one at a time:
    ``--executor inline -j 2`` was silently one job)."""
    options = dict(suite_executor or {})
    suite_kind = options.pop("kind", None)
    suite_jobs = options.pop("jobs", None)
    n_jobs = jobs if jobs is not None else int(suite_jobs or 1)
    if n_jobs < 1:
        raise LubenchError(f"--jobs must be at least 1, got {n_jobs}")
    chosen = kind or suite_kind or "local"
    if chosen == "inline" and n_jobs > 1:
        raise LubenchError(f"the inline executor runs one case at a time, in lubench's own "
                           f"process; -j/jobs {n_jobs} needs --executor local")
    options.update({k: v for k, v in overrides.items() if v is not None})
    return ExecutorSettings(kind=chosen, jobs=n_jobs, options=options)
