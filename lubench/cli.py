"""The ``lubench`` command line: the click group and ``lubench run``; the other commands live
in :mod:`lubench.commands` (one module per job) and are added to the group here.

Commands parse, load, and call the library. Every user error (a malformed suite, an unknown
plugin name, a bad parameter) is a :class:`lubench.api.LubenchError`: printed on one line,
exit status 2, no traceback (``--debug`` shows it); see :mod:`lubench.commands.common`.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

import click

from lubench import __version__
from lubench.api import LubenchError
from lubench.commands import merge as merge_command
from lubench.commands import plugins as plugin_commands
from lubench.commands import report as report_commands
from lubench.commands.common import CONTEXT_SETTINGS, load_plugins, plugin_option, user_errors
from lubench.commands.run_support import (
    check_environment,
    echo_cases,
    echo_results,
    exit_if_failed,
    resumed_executor,
    run_options,
)
from lubench.values import DEVICES, EXECUTOR_KINDS


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="lubench")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Benchmark factorizations of linear operators: accuracy, parameters and time.

    \b
    Typical use:
      lubench list                      operators and methods you can name in a suite
      lubench run suites/smoke.yaml     run a suite, write a run directory, print a summary
      lubench report RUN_DIR            figures and tables from a run directory
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


# --------------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------------
@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("suite_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", "output", type=click.Path(file_okay=False, path_type=Path),
              help="Run directory (default: reports/<suite name>/<timestamp>/).")
@click.option("-k", "selectors", multiple=True, metavar="SELECTOR",
              help='Only cases whose method or operator matches, e.g. -k plu, '
                   '-k "gfmm_lu[P=16]", -k "laplacian_*[n=256]". Repeat to OR.')
@click.option("--device", type=click.Choice(DEVICES),
              help="Override the suite's device (auto: CUDA when available).")
@click.option("--timeout", metavar="TIME",
              help="Hard per-case limit, overriding the suite's: seconds, '90s', '10m', '1h30m', "
                   "or 'none'.")
@click.option("-j", "--jobs", type=int, default=None, metavar="N",
              help="Parallel local workers (default: the suite's executor.jobs, else 1).")
@click.option("--executor", type=click.Choice(EXECUTOR_KINDS), default=None,
              help="Where cases run (default: the suite's executor.kind, else local).")
@click.option("--slurm-partition", default=None, help="SLURM partition (executor slurm).")
@click.option("--slurm-time", default=None, metavar="HH:MM", help="SLURM time per task.")
@click.option("--slurm-gpus-per-task", type=click.IntRange(min=0), default=None,
              help="GPUs per task for methods that use one, when the case runs on CUDA "
                   "(device cuda, or auto: default what the partition offers); 0: none.")
@click.option("--slurm-mem-gb", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Memory per task, GB (default: from memory_limit or the method's "
                   "estimate; see DESIGN.md).")
@click.option("--slurm-array-parallelism", type=int, default=None,
              help="At most this many array tasks at once.")
@click.option("--resume", "resume", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Continue the run in this directory: run only missing cases.")
@click.option("--retry", metavar="STATUSES", default=None,
              help="With --resume: also run again the cases recorded with one of these "
                   "statuses, e.g. failed,timeout (the new record supersedes the old).")
@click.option("--columns", metavar="COLUMNS", default=None,
              help="Metric columns of the summary table, comma-separated, or 'all' (default: "
                   "factor_error,solve_residual,n_params,setup_seconds).")
@plugin_option
@click.option("--dry-run", is_flag=True, help="List the cases and run nothing.")
@click.option("--report/--no-report", default=True, show_default=True,
              help="Render the report into RUN_DIR/report when the run ends.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar (default: when the output is a terminal).")
@user_errors
def run(suite_file: Path, output: Path | None, selectors: tuple[str, ...], device: str | None,
        timeout: str | None, jobs: int | None, executor: str | None, resume: Path | None,
        retry: str | None, columns: str | None, plugin_specs: tuple[str, ...], dry_run: bool,
        report: bool, progress: bool | None, **slurm_options: Any) -> None:
    """Run the cases of SUITE_FILE and print a summary table.

    Every case runs in a worker process with a hard timeout; each finished case is appended
    to RUN_DIR/records.jsonl before the next is reported, so a crash loses only the cases in
    flight (continue with --resume RUN_DIR).

    \b
    Exit status: 0 every case ended ok, unsupported, unavailable, diverged or timeout;
    1 a case failed (the summary says which); 2 bad input (nothing run, nothing written);
    130 interrupted.
    """
    from lubench.execution import executor_settings, run_cases
    from lubench.fsafe import FsError
    from lubench.selection import select_cases
    from lubench.store import RunStore, run_directory
    from lubench.suite import load_suite
    from lubench.suite import plugin_specs as suite_plugin_specs

    forced_timeout, retry_statuses, shown_columns = run_options(timeout, retry, columns, resume)
    specs = suite_plugin_specs(suite_file, plugin_specs)
    registry = load_plugins(specs, Path.cwd())
    suite = load_suite(suite_file, registry, device=device, timeout=forced_timeout)
    cases = select_cases(suite.cases, selectors)
    if not cases:
        raise LubenchError(f"no case matches -k {' -k '.join(selectors)} in {suite_file}")
    if dry_run:
        echo_cases(cases, suite.repeats, suite_file, registry)
        return
    kind = executor or resumed_executor(resume, suite.executor)
    settings = executor_settings(suite.executor, kind, jobs, **slurm_options)
    check_environment(suite.device, cases, settings.kind)
    run_dir = run_directory(suite.name, output, resume)
    command_line = " ".join(shlex.quote(a) for a in ["lubench", *sys.argv[1:]])
    store = RunStore.open(run_dir, suite, command_line=command_line, resume=resume is not None)
    click.echo(f"lubench: {len(cases)} cases × {suite.repeats} repeat(s) → {run_dir}", err=True)
    slurm = " --executor slurm" if settings.kind == "slurm" else ""
    resume_hint = (f"lubench run {shlex.quote(str(suite_file))}{slurm} "
                   f"--resume {shlex.quote(str(run_dir))}")
    before = len(store.done())
    try:
        outcome = run_cases(cases, store, plugin_specs=specs, base_dir=str(Path.cwd()),
                            jobs=settings.jobs, executor=settings.kind,
                            executor_options=settings.options, registry=registry,
                            show_progress=sys.stderr.isatty() if progress is None else progress,
                            retry=retry_statuses)
        results = store.finalize()
    except FsError as exc:  # e.g. a full disk: what is written stays, the run can go on later
        error = FsError(f"{exc}; the {len(store.done())} record(s) written are kept: free "
                        f"the space, then resume with: {resume_hint}", exc.path)
        error.exit_status = 1 if len(store.done()) > before else 2  # 1: cases ran
        raise error from None
    echo_results(results, run_dir, outcome.summary(), report, shown_columns)
    if outcome.interrupted:
        click.echo(f"lubench: interrupted; resume with: {resume_hint}", err=True)
        sys.exit(128 + (outcome.stop_signal or signal.SIGINT))
    exit_if_failed(results, cases)


for _command in (plugin_commands.list_, plugin_commands.plugins, plugin_commands.check_plugin,
                 plugin_commands.schema, merge_command.merge, report_commands.report,
                 report_commands.compare):
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
