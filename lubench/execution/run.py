"""``run_cases``: run what a run directory lacks, under one plan, with one executor.

The command builds the plan once (:func:`make_plan`); :func:`run_cases` skips what the run
directory already holds, records the cases whose plugin cannot run here as ``unavailable``,
and hands the rest to the plan's executor, whose every record goes through one sink into
the store and onto the terminal. It never asks which executor it holds: what differs
between them is theirs (:data:`EXECUTORS`).

Methods trained across instances run in two rounds: every fit first (each a work item like
any case: its own worker, timeout and memory limit, or SLURM task), then the test cases —
those of a fit that ended ``ok`` factorize with the method it kept
(:mod:`lubench.rundir.fits`); those of a fit that did not are recorded ``not_run`` with the
fit's status and reason. A fit recorded ``ok`` by an earlier call is not run again.
"""

from __future__ import annotations

import signal
import socket
import time
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lubench.api import LubenchError
from lubench.execution.devices import auto_device, needs_auto, resolve_auto
from lubench.execution.inline import InlineExecutor
from lubench.execution.local import LocalExecutor
from lubench.execution.plan import Executor, RunPlan, Sink, WorkItem
from lubench.execution.progress import Display
from lubench.execution.slurm import SlurmExecutor
from lubench.registry import Registry
from lubench.rundir.records import NOT_RUN, OK, STATUSES, UNAVAILABLE, base_record
from lubench.rundir.store import RunStore
from lubench.suite.cases import FIT, Case

__all__ = ["EXECUTORS", "RunOutcome", "make_plan", "run_cases"]

#: The executors by name (``--executor``, the suite's ``executor.kind``).
EXECUTORS: dict[str, type[Executor]] = {
    cls.name: cls for cls in (LocalExecutor, InlineExecutor, SlurmExecutor)}


@dataclass
class RunOutcome:
    """What one call of :func:`run_cases` did."""

    total: int = 0  # (case, repeat) pairs this call had to run
    skipped: int = 0  # pairs already recorded in the run directory (resume)
    counts: Counter = field(default_factory=Counter)  # status -> records written
    interrupted: bool = False
    stop_signal: int | None = None  # SIGINT or SIGTERM, when one interrupted the run
    job_ids: list[str] = field(default_factory=list)  # submitit job ids (executor slurm)

    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        """E.g. ``12 ok, 1 failed, 1 timeout`` (+ what was skipped or left undone)."""
        counts = Counter(self.counts)
        statuses = [s for s in STATUSES if counts[s]]
        statuses += sorted(s for s in counts if s not in STATUSES and counts[s])
        parts = [f"{counts[s]} {s}" for s in statuses]
        if self.skipped:
            parts.append(f"{self.skipped} already done")
        if self.interrupted and self.total > self.finished:
            parts.append(f"{self.total - self.finished} not run (interrupted)")
        return ", ".join(parts) or "nothing to run"


def make_plan(store: RunStore, cases: Sequence[Case] = (), *, executor: str = "local",
              jobs: int = 1, options: dict[str, Any] | None = None,
              plugin_specs: Sequence[str] = (), base_dir: str | Path | None = None,
              registry: Registry | None = None) -> RunPlan:
    """The plan of a run of ``cases`` into ``store``, decided once: the run id and
    directory, its plugins (``registry``, when the caller loaded them already: they are not
    loaded again), the executor with its workers and threads (``-j jobs``) and ``options``,
    what ``device: auto`` means where the cases run (asked once, here, when one needs it and
    the executor runs cases on this machine), and grading's cache folder.

    Raises :class:`LubenchError` for an unknown executor or ``jobs`` < 1.
    """
    kind = EXECUTORS.get(executor)
    if kind is None:
        raise LubenchError(f"unknown executor {executor!r} (expected one of "
                           f"{', '.join(EXECUTORS)})")
    if jobs < 1:
        raise LubenchError(f"--jobs must be at least 1, got {jobs}")
    workers, threads = kind.workers(jobs)
    return RunPlan(run_id=store.run_id, run_dir=store.run_dir,
                   plugin_specs=tuple(plugin_specs),
                   base_dir=Path(base_dir) if base_dir is not None else None,
                   executor=executor, jobs=workers, threads=threads,
                   device=auto_device() if kind.here and needs_auto(cases) else None,
                   cache_dir=store.cache_dir, options=dict(options or {}), registry=registry)


class _RunSink(Sink):
    """Every record into the store (with its executor and plugin provenance) and onto the
    display; the outcome counted."""

    def __init__(self, store: RunStore, plan: RunPlan, display: Display,
                 labels: dict[tuple[str, int], str], outcome: RunOutcome):
        self.store, self.plan, self.display = store, plan, display
        self.labels, self.outcome = labels, outcome

    def started(self, case: Case, repeat: int) -> None:
        self.display.started(case, repeat)

    def progress(self, case: Case, repeat: int, fields: dict[str, Any]) -> None:
        self.display.progress(case, repeat, fields)

    def record(self, record: dict[str, Any]) -> None:
        record.setdefault("executor", self.plan.executor)
        plugin, version = self.plan.plugins().provenance("method", record["method"])
        record.setdefault("plugin", plugin)
        record.setdefault("plugin_version", version)
        self.store.append(record)
        self.outcome.counts[record.get("status", "?")] += 1
        key = (record["case_id"], int(record.get("repeat", 0)))
        self.display.finished(record, self.labels.get(key, record["case_id"]))

    def write(self, message: str, detail: bool = False) -> None:
        if not (detail and self.display.bar is not None):
            self.display.write(message)

    def submitted(self, job_ids: list[str]) -> None:
        # every round of this run (the fits, then the cases) adds its jobs
        self.outcome.job_ids += [j for j in job_ids if j not in self.outcome.job_ids]
        self.store.update_meta(job_ids=self.outcome.job_ids)

    def stopped(self, signum: int | None) -> None:
        self.outcome.stop_signal = signum


def run_cases(cases: Sequence[Case], store: RunStore, plan: RunPlan, *,
              executor: Executor | None = None, show_progress: bool = False,
              retry: Collection[str] = ()) -> RunOutcome:
    """Run every (case, repeat) that ``store`` has no record of, under ``plan``; append each
    record as it finishes. Never raises for a case's own failure; returns a
    :class:`RunOutcome`.

    ``retry``: statuses whose cases run again although recorded (``--retry failed,timeout``);
    ``unavailable`` ones always do. A case whose plugin lacks what it requires is recorded
    ``unavailable`` (with the install command) without running. Every record names the plugin
    of its method and that plugin's version; resuming with another version warns.
    ``executor``: the executor to run them (default: a new one of the plan's kind; the tests
    give the SLURM executor submitit's local one).
    """
    if plan.device is not None:
        cases = resolve_auto(cases, plan.device)
    done = store.done(retry)
    all_items = [(c, r) for c in cases for r in range(c.repeats)]
    items = [(c, r) for c, r in all_items if (c.case_id, r) not in done]
    outcome = RunOutcome(total=len(items), skipped=len(all_items) - len(items))
    if not items:
        return outcome
    registry = plan.plugins()
    missing = {c.case_id: _unavailable(c, registry) for c, _ in items}
    runnable = [(c, r) for c, r in items if not missing[c.case_id]]
    store.update_meta(executor=plan.executor, jobs=plan.jobs, threads_per_worker=plan.threads,
                      n_items=len(items), n_skipped=outcome.skipped)
    labels = {(c.case_id, r): c.label + (f" #{r}" if c.repeats > 1 else "") for c, r in items}
    display = Display(len(items), show_progress)
    sink = _RunSink(store, plan, display, labels, outcome)
    for line in _version_changes(store, runnable, registry):
        display.write(f"lubench: warning: {line}")
    try:
        for case, repeat in items:
            if missing[case.case_id]:
                sink.record(_unavailable_record(case, repeat, plan.run_id,
                                                missing[case.case_id]))
        if runnable:
            executor = executor or EXECUTORS[plan.executor]()
            fits = [(c, r) for c, r in runnable if c.stage == FIT]
            if fits:
                outcome.interrupted = not executor.run(fits, plan, sink)
            rest = [(c, r) for c, r in runnable if c.stage != FIT]
            if rest and not outcome.interrupted:
                blocked = _blocked_by_fits(rest, store)
                for case, repeat in rest:
                    if case.case_id in blocked:
                        sink.record(_not_run_record(case, repeat, plan.run_id,
                                                    blocked[case.case_id]))
                rest = [(c, r) for c, r in rest if c.case_id not in blocked]
                if rest:
                    outcome.interrupted = not executor.run(rest, plan, sink)
    except KeyboardInterrupt as exc:  # a signal outside an executor's watch (cli.interrupt)
        outcome.interrupted = True
        outcome.stop_signal = getattr(exc, "signum", signal.SIGINT)
    finally:
        display.close()
    return outcome


def _blocked_by_fits(items: list[WorkItem], store: RunStore) -> dict[str, str]:
    """case_id → why, for the test cases whose fit has no ``ok`` record (it failed, timed
    out, diverged, was unsupported or unavailable, or never ran)."""
    wanted = {c.fit_id for c, _ in items if c.fit_id}
    if not wanted:
        return {}
    latest = {r["case_id"]: r for r in store.records()
              if r["case_id"] in wanted and int(r.get("repeat", 0)) == 0}
    why: dict[str, str] = {}
    for case, _ in items:
        if not case.fit_id:
            continue
        fit = latest.get(case.fit_id)
        if fit is None:
            why[case.case_id] = f"its fit ({case.fit_id}) has no record"
        elif fit.get("status") != OK:
            reason = f": {fit['error']}" if fit.get("error") else ""
            why[case.case_id] = f"its fit ({case.fit_id}) {fit.get('status')}{reason}"
    return why


def _not_run_record(case: Case, repeat: int, run_id: str, reason: str) -> dict:
    rec = base_record(case, repeat, run_id)
    rec.update(status=NOT_RUN, error=f"not run: {reason}", fit_id=case.fit_id,
               started_at=time.time(), wall_seconds=0.0, host=socket.gethostname())
    return rec


def _unavailable(case: Case, registry: Registry) -> str:
    """Why ``case`` cannot run here ('' when it can): its method's or operator's plugin
    lacks a module it requires."""
    return registry.unavailable("method", case.method) or \
        registry.unavailable("operator", case.operator) or ""


def _unavailable_record(case: Case, repeat: int, run_id: str, reason: str) -> dict:
    rec = base_record(case, repeat, run_id)
    rec.update(status=UNAVAILABLE, error=reason, started_at=time.time(), wall_seconds=0.0,
               host=socket.gethostname())
    return rec


def _version_changes(store: RunStore, items: list[WorkItem], registry: Registry) -> list[str]:
    """One line per method whose earlier records in ``store`` were made by another version
    of its plugin than the one loaded now (a resumed run mixes them)."""
    methods = {c.method for c, _ in items}
    before: dict[str, set] = {}
    for rec in store.records():
        if rec.get("method") in methods and rec.get("status") != UNAVAILABLE:
            before.setdefault(rec["method"], set()).add(rec.get("plugin_version"))
    lines = []
    for method in sorted(before):
        plugin, now = registry.provenance("method", method)
        old = sorted(str(v) for v in before[method] if v != now)
        if old:
            lines.append(f"{store.run_dir}: records of '{method}' were made by plugin "
                         f"'{plugin}' version {', '.join(old)}, it is {now} now; the new "
                         f"records mix with them (--retry, or a new run directory, to redo)")
    return lines
