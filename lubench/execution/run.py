"""``run_cases``: run what a run directory lacks, with the executor asked for."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lubench.api import LubenchError
from lubench.execution.devices import resolve_auto
from lubench.execution.limits import thread_controller, threads_per_worker
from lubench.execution.local.pool import LocalPool, WorkItem
from lubench.execution.local.process import plain_fields
from lubench.execution.progress import Display
from lubench.execution.signals import StopSignals
from lubench.execution.slurm import default_submitit_executor, run_submitit
from lubench.execution.worker import run_case
from lubench.metrics.grading import CACHE_DIR_ENV
from lubench.registry import Registry, load_registry
from lubench.registry.availability import preload_requirements
from lubench.rundir.records import STATUSES, UNAVAILABLE, base_record
from lubench.suite.cases import Case

if TYPE_CHECKING:
    from lubench.rundir.store import RunStore

EXECUTORS = ("local", "inline", "slurm")


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


def run_cases(cases: list[Case], store: RunStore, *, plugin_specs: tuple[str, ...] = (),
              base_dir: str | None = None, jobs: int = 1, executor: str = "local",
              executor_options: dict | None = None, show_progress: bool = False,
              submitit_executor: Callable[[Path], Any] | None = None,
              registry: Registry | None = None, retry: Collection[str] = ()) -> RunOutcome:
    """Run every (case, repeat) that ``store`` has no record of; append each record as it
    finishes. Never raises for a case's own failure; returns a :class:`RunOutcome`.

    ``retry``: statuses whose cases run again although recorded (``--retry failed,timeout``);
    ``unavailable`` ones always do. A case whose plugin lacks what it requires is recorded
    ``unavailable`` (with the install command) without running. Every record names the plugin
    of its method and that plugin's version; resuming with another version warns.

    ``executor``: ``local`` (``jobs`` worker processes), ``inline`` (this process, no limits)
    or ``slurm`` (submitit; ``executor_options`` holds the ``slurm_*`` options and ``folder``
    for submitit's files, default ``RUN_DIR/submitit``). ``submitit_executor(folder)`` builds
    the submitit executor; the default is ``submitit.AutoExecutor(folder, cluster="slurm")``.
    ``registry``: the plugins already loaded by the caller (else loaded here from
    ``plugin_specs``, once: every forked worker inherits it).
    """
    if executor not in EXECUTORS:
        raise LubenchError(f"unknown executor {executor!r} (expected one of "
                           f"{', '.join(EXECUTORS)})")
    if jobs < 1:
        raise LubenchError(f"--jobs must be at least 1, got {jobs}")
    options = dict(executor_options or {})
    if executor != "slurm":  # once, here (SLURM: on the compute node, in execute_case)
        cases = resolve_auto(cases)
    done = store.done(retry)
    all_items = [(c, r) for c in cases for r in range(c.repeats)]
    items = [(c, r) for c, r in all_items if (c.case_id, r) not in done]
    outcome = RunOutcome(total=len(items), skipped=len(all_items) - len(items))
    if not items:
        return outcome
    plugin_specs = tuple(plugin_specs)
    if registry is None:
        registry = load_registry(list(plugin_specs), Path(base_dir) if base_dir else None)
    missing = {c.case_id: _unavailable(c, registry) for c, _ in items}
    runnable = [(c, r) for c, r in items if not missing[c.case_id]]
    threads = threads_per_worker(jobs) if executor == "local" else None
    store.update_meta(executor=executor, jobs=jobs if executor == "local" else None,
                      threads_per_worker=threads, n_items=len(items), n_skipped=outcome.skipped)
    labels = {(c.case_id, r): c.label + (f" #{r}" if c.repeats > 1 else "") for c, r in items}
    display = Display(len(items), show_progress)

    for line in _version_changes(store, runnable, registry):
        display.write(f"lubench: warning: {line}")

    def on_record(rec: dict) -> None:
        rec.setdefault("executor", executor)
        plugin, version = registry.provenance("method", rec["method"])
        rec.setdefault("plugin", plugin)
        rec.setdefault("plugin_version", version)
        store.append(rec)
        outcome.counts[rec.get("status", "?")] += 1
        display.finished(rec, labels.get((rec["case_id"], int(rec.get("repeat", 0))),
                                          rec["case_id"]))

    # What grading computes once per operator (plain GMRES) is shared by the cases' forked
    # workers through the run directory (lubench.metrics.grading.plain_gmres).
    cache_before = os.environ.get(CACHE_DIR_ENV)
    os.environ[CACHE_DIR_ENV] = str(store.run_dir / "cache")
    try:
        for case, repeat in items:
            if missing[case.case_id]:
                on_record(_unavailable_record(case, repeat, store.run_id, missing[case.case_id]))
        items = runnable
        if not items:
            return outcome
        if executor == "inline":
            outcome.stop_signal = _run_inline(items, store.run_id, registry, on_record,
                                              display)
            outcome.interrupted = outcome.stop_signal is not None
            return outcome
        if executor == "local":  # once here, not in every forked worker (PyTorch: seconds)
            preload_requirements(registry, {c.method for c, _ in items})
        thread_controller()
        stopper = StopSignals(on_first=lambda: None)
        with stopper:
            if executor == "local":
                completed = LocalPool(
                    jobs, run_id=store.run_id, plugin_specs=plugin_specs, base_dir=base_dir,
                    registry=registry, log_dir=store.logs_dir(),
                    threads=threads, on_record=on_record, on_start=display.started,
                    on_progress=display.progress, stop=stopper, wakeup=stopper.wakeup,
                ).run(items)
            else:
                folder = Path(options.pop("folder", None) or store.run_dir / "submitit")
                completed = run_submitit(
                    items, folder=folder, run_id=store.run_id, plugin_specs=plugin_specs,
                    base_dir=base_dir, options=options,
                    factory=submitit_executor or default_submitit_executor,
                    on_record=on_record, stop=stopper, wakeup=stopper.wakeup,
                    display=display, job_ids=outcome.job_ids, run_dir=store.run_dir)
                store.update_meta(job_ids=outcome.job_ids)
        outcome.interrupted = not completed
        outcome.stop_signal = stopper.signum if outcome.interrupted else None
    except KeyboardInterrupt as exc:  # a signal outside the pool's watch (signals.py)
        outcome.interrupted = True
        outcome.stop_signal = getattr(exc, "signum", signal.SIGINT)
    finally:
        display.close()
        if cache_before is None:
            os.environ.pop(CACHE_DIR_ENV, None)
        else:
            os.environ[CACHE_DIR_ENV] = cache_before
    return outcome


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


def _run_inline(items: list[WorkItem], run_id: str, registry: Registry,
                on_record: Callable[[dict], None],
                display: Display) -> int | None:
    """Run in this process (debugging). No timeout, no memory limit. The signal that
    stopped it (Ctrl-C: SIGINT), or None when every case ran."""
    for case, repeat in items:
        display.started(case, repeat)

        def progress(step: int, total: int | None = None, _c: Case = case, _r: int = repeat,
                     **fields: Any) -> None:
            display.progress(_c, _r, {"step": step, "total": total, **plain_fields(fields)})

        try:
            rec = run_case(case, repeat, run_id=run_id, progress=progress, registry=registry)
        except KeyboardInterrupt as exc:
            return getattr(exc, "signum", signal.SIGINT)
        rec["host"] = socket.gethostname()
        on_record(rec)
    return None
