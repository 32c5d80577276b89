"""``lubench run`` after parsing: load the plugins and the suite, select the cases, open the
run directory, run the cases, print the summary and exit with the status docs/running.md lists.

Bad input raises :class:`lubench.api.LubenchError` before any directory is created (one line,
exit 2 through :func:`lubench.cli.common.user_errors`).
"""

from __future__ import annotations

import shlex
import signal
import sys
from pathlib import Path
from typing import Any

import click

from lubench.api import LubenchError
from lubench.cli.common import OutputError, load_plugins
from lubench.cli.interrupt import set_hint
from lubench.cli.run_support import (
    check_environment,
    echo_cases,
    echo_report,
    echo_results,
    exit_if_failed,
    resumed_executor,
    run_options,
)
from lubench.rundir.fsafe import FsError


def run_suite(suite_file: Path, *, output: Path | None, selectors: tuple[str, ...],
              device: str | None, timeout: str | None, jobs: int | None,
              executor: str | None, resume: Path | None, retry: str | None,
              columns: str | None, plugin_specs: tuple[str, ...], dry_run: bool, report: bool,
              progress: bool | None, slurm_options: dict[str, Any]) -> None:
    """Everything ``lubench run`` does with its parsed options (see its ``--help``)."""
    # what runs a suite (YAML, pydantic, pandas, SciPy): imported here, not by `lubench list`
    from lubench.execution import executor_settings, make_plan, run_cases
    from lubench.rundir.store import RunStore, run_directory
    from lubench.suite.load import load_suite, read_suite
    from lubench.suite.load import plugin_specs as suite_plugin_specs
    from lubench.suite.selection import select_cases

    forced_timeout, retry_statuses, shown_columns = run_options(
        timeout, retry, columns, resume, slurm_options.get("slurm_time"))
    source = read_suite(suite_file)  # once: SUITE may be a pipe, <(cat s.yaml)
    specs = suite_plugin_specs(suite_file, plugin_specs, source[0])
    registry = load_plugins(specs, Path.cwd())
    suite = load_suite(suite_file, registry, device=device, timeout=forced_timeout,
                       source=source)
    cases = select_cases(suite.cases, selectors)
    if not cases:
        raise LubenchError(f"no case matches -k {' -k '.join(selectors)} in {suite_file}")
    kind = executor or resumed_executor(resume, suite.executor)
    settings = executor_settings(suite.executor, kind, jobs, **slurm_options)
    if dry_run:
        echo_cases(cases, suite.repeats, suite_file, registry)
        return
    check_environment(suite.device, cases, settings.kind)
    run_dir = run_directory(suite.name, output, resume)
    command_line = " ".join(shlex.quote(a) for a in ["lubench", *sys.argv[1:]])
    store = RunStore.open(run_dir, suite, command_line=command_line, resume=resume is not None)
    click.echo(f"lubench: {len(cases)} cases × {suite.repeats} repeat(s) → {run_dir}", err=True)
    slurm = " --executor slurm" if settings.kind == "slurm" else ""
    resume_hint = (f"lubench run {shlex.quote(str(suite_file))}{slurm} "
                   f"--resume {shlex.quote(str(run_dir))}")
    before = len(store.done())
    set_hint(f"every record written is kept; resume with: {resume_hint}")
    plan = make_plan(store, cases, executor=settings.kind, jobs=settings.jobs,
                     options=settings.options, plugin_specs=specs, base_dir=Path.cwd(),
                     registry=registry)
    try:
        outcome = run_cases(cases, store, plan, retry=retry_statuses,
                            show_progress=sys.stderr.isatty() if progress is None else progress)
        results = store.finalize()
    except FsError as exc:  # e.g. a full disk: what is written stays, the run can go on later
        error = FsError(f"{exc}; the {len(store.done())} record(s) written are kept: free "
                        f"the space, then resume with: {resume_hint}", exc.path)
        error.exit_status = 1 if len(store.done()) > before else 2  # 1: cases ran
        raise error from None
    if report and not outcome.interrupted:  # set before "results:" shows: a Ctrl-C from then
        set_hint(f"the records are kept; the report was not rendered, render it with: "
                 f"lubench report {shlex.quote(str(run_dir))}")
    try:
        echo_results(results, run_dir, outcome.summary(), shown_columns)
    except OutputError as exc:  # > /dev/full: the results are safe, the summary is not shown
        error = OutputError(f"{exc}; the results are in {run_dir}")
        error.exit_status = 1 if len(store.done()) > before else 2  # 1: cases ran
        raise error from None
    if outcome.interrupted:
        click.echo(f"lubench: interrupted; resume with: {resume_hint}", err=True)
        sys.exit(128 + (outcome.stop_signal or signal.SIGINT))
    if report:
        echo_report(run_dir)
        set_hint("")
    exit_if_failed(results, cases)
