"""The run plan and the executor interface: what every case of one run shares, decided once,
and what an executor is given.

A :class:`RunPlan` is built once by the command (:func:`lubench.execution.run.make_plan`) and
handed down unchanged: to the executor, to each worker process, to each SLURM task (pickled).
An executor (:class:`Executor`) runs work items — (case, repeat) pairs — under a plan and
reports to a :class:`Sink`: a case started, its progress, its record, a message.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from lubench.metrics.grading import GradingCache
from lubench.registry import Registry, load_registry
from lubench.rundir.cache import FolderCache
from lubench.rundir.fits import FITS, FitStore
from lubench.suite.cases import Case

__all__ = ["WorkItem", "RunPlan", "Sink", "Collect", "Executor"]

#: One unit an executor runs: a case and the number of its repeat.
WorkItem = tuple[Case, int]


@dataclass(frozen=True)
class RunPlan:
    """What every case of one run shares, decided once, before any case runs.

    Attributes
    ----------
    run_id, run_dir
        The run's id and its directory (None outside a run directory: a case run on its own
        by ``lubench.testing`` or a test).
    plugin_specs, base_dir
        The plugins beyond the installed ones (``--plugin``, the suite's ``plugins:``) and the
        folder a relative spec is resolved against: what a fresh process loads.
    executor
        Where the cases run: ``inline``, ``local`` or ``slurm`` (:data:`lubench.execution.run.
        EXECUTORS`).
    jobs, threads
        Worker processes at a time, and the BLAS/OpenMP/PyTorch threads of each (the
        ``threads`` column); None where the executor has no such setting.
    device
        What a case's ``device: auto`` means where it runs (``cpu`` or ``cuda``, asked once,
        in a child process); None where the machine that runs the case asks (a SLURM node),
        or when no case needs it.
    cache_dir
        Where grading keeps what it computes once per operator (the run directory's
        ``cache/``; None: nowhere but in memory).
    options
        The executor's own options (the ``slurm_*`` settings, submitit's ``folder``).

    The plan is frozen data and pickles; the registry it names (:meth:`plugins`) is loaded
    at most once per process and is never pickled with it.
    """

    run_id: str = ""
    run_dir: Path | None = None
    plugin_specs: tuple[str, ...] = ()
    base_dir: Path | None = None
    executor: str = "local"
    jobs: int | None = 1
    threads: int | None = None
    device: str | None = None
    cache_dir: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)
    registry: Registry | None = field(default=None, compare=False, repr=False)

    def plugins(self) -> Registry:
        """The plugins of this plan: the registry given, else the installed plugins and
        :attr:`plugin_specs`, loaded on first use — once per process. A forked worker
        inherits them; a process that received the plan pickled (a spawned worker, a SLURM
        task) loads its own."""
        if self.registry is None:
            object.__setattr__(self, "registry", load_registry(
                list(self.plugin_specs), self.base_dir))
        assert self.registry is not None
        return self.registry

    def grading_cache(self) -> GradingCache | None:
        """The cache grading shares between the cases of this run (:attr:`cache_dir`)."""
        return None if self.cache_dir is None else FolderCache(self.cache_dir)

    def fits(self) -> FitStore:
        """Where the methods trained across instances are kept: the run directory's
        ``fits/`` (:mod:`lubench.rundir.fits`), or this process outside a run directory."""
        return FitStore(None if self.run_dir is None else Path(self.run_dir) / FITS)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["registry"] = None  # modules do not pickle; the receiving process loads them
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class Sink:
    """Where an executor reports, in the process that runs it. Every method may be called
    from the executor's loop only (one thread); the defaults do nothing but print messages.
    """

    def started(self, case: Case, repeat: int) -> None:
        """A case (one repeat) started."""

    def progress(self, case: Case, repeat: int, fields: dict[str, Any]) -> None:
        """A training step of a running case: ``step``, ``total`` and the method's fields."""

    def record(self, record: dict[str, Any]) -> None:
        """A case ended: its record (every outcome is one, timeouts and crashes too)."""

    def write(self, message: str, detail: bool = False) -> None:
        """A line for the person watching (a warning, submitted jobs); a ``detail`` line
        only where no live progress bar shows the run."""
        print(message, file=sys.stderr, flush=True)

    def submitted(self, job_ids: list[str]) -> None:
        """The batch jobs this run waited for (SLURM)."""

    def stopped(self, signum: int | None) -> None:
        """The run was stopped early: by ``signum`` (SIGINT, SIGTERM), or None for Ctrl-C
        raised inside a case (the inline executor)."""


class Collect(Sink):
    """A sink that keeps the records (a SLURM task's one case; tests)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def record(self, record: dict[str, Any]) -> None:
        self.records.append(record)


class Executor(Protocol):
    """Runs work items under a plan, reporting to a sink. ``run`` returns True when every item
    ran, False when the run was stopped (after calling ``sink.stopped``); it never raises for
    a case's own failure. The class attributes tell :func:`~lubench.execution.run.make_plan`
    what a plan for it holds."""

    name: ClassVar[str]
    here: ClassVar[bool]  # cases run on this machine: ``device: auto`` is asked here, once

    @staticmethod
    def workers(jobs: int) -> tuple[int | None, int | None]:
        """(worker processes at a time, threads per worker) for ``-j jobs``."""
        ...

    def run(self, items: list[WorkItem], plan: RunPlan, sink: Sink) -> bool: ...
