"""The ``lubench`` command line: the click group and ``lubench run``; the other commands live
in :mod:`lubench.cli` (one module per job) and are added to the group here.

Commands parse, load, and call the library. Every user error (a malformed suite, an unknown
plugin name, a bad parameter) is a :class:`lubench.api.LubenchError`: printed on one line,
exit status 2, no traceback (``--debug`` shows it); see :mod:`lubench.cli.common`.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

import click

from lubench import __version__
from lubench.cli import merge as merge_command
from lubench.cli import plugins as plugin_commands
from lubench.cli import report as report_commands
from lubench.cli.common import (
    CONTEXT_SETTINGS,
    EXIT_BROKEN_PIPE,
    OutputError,
    guarded_stdout,
    plugin_option,
    quiet_stdout,
    user_errors,
)
from lubench.cli.interrupt import SIGNALS, Interrupted, hint, interruptible
from lubench.cli.run_suite import run_suite
from lubench.errors import shown
from lubench.registry.probe import end_detached, subreaper
from lubench.suite.values import DEVICES, EXECUTOR_KINDS


class LubenchGroup(click.Group):
    """The ``lubench`` group, ending the way DESIGN.md's exit statuses say rather than
    click's way: a stop signal outside a run's cases is one line with the phase's hint and
    128 + the signal (:mod:`lubench.execution.signals`; click printed "Aborted!" and exited
    1, which means "a case failed"); standard output must be open, and a failed write to it
    names it (:func:`lubench.cli.common.guarded_stdout`); a broken pipe is 141, quietly."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The console script: once the command has ended, a further Ctrl-C (a third in a
        burst) cannot turn the exit status into a death by SIGINT while Python shuts down,
        and no process a plugin detached from lubench's own process (at import) outlives
        it."""
        subreaper()  # a process a plugin detached while imported here stays below lubench
        try:
            return self.main(*args, **kwargs)
        finally:
            for sig in SIGNALS:
                with contextlib.suppress(ValueError, OSError):
                    signal.signal(sig, signal.SIG_IGN)
            end_detached()  # ... and ends with it

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        given = sys.argv[1:] if args is None else list(args)
        for arg in given:  # a shell cannot pass one; a program calling main() can
            if isinstance(arg, str) and "\x00" in arg:
                click.echo(f"lubench: error: an argument holds a NUL byte: {shown(arg)}",
                           err=True)
                sys.exit(2)
        with interruptible():
            try:
                with guarded_stdout():
                    try:
                        rv = super().main(args, prog_name, complete_var,
                                          standalone_mode=False, **extra)
                    except click.exceptions.Abort as exc:  # click's form of Ctrl-C
                        cause = exc.__cause__ or exc.__context__
                        raise (cause if isinstance(cause, KeyboardInterrupt)
                               else Interrupted(signal.SIGINT)) from None
            except KeyboardInterrupt as exc:
                signum = getattr(exc, "signum", signal.SIGINT)
                said = hint()
                click.echo(f"lubench: interrupted ({signal.Signals(signum).name})"
                           + (f"; {said}" if said else ""), err=True)
                sys.exit(128 + signum)
            except click.ClickException as exc:
                exc.show()
                sys.exit(exc.exit_code)
            except OutputError as exc:
                click.echo(f"lubench: error: {exc}", err=True)
                sys.exit(2)
            except BrokenPipeError:
                quiet_stdout()
                sys.exit(EXIT_BROKEN_PIPE)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=LubenchGroup, context_settings=CONTEXT_SETTINGS)
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
                   "estimate; see docs/running.md).")
@click.option("--slurm-array-parallelism", type=click.IntRange(min=1), default=None,
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
    130 interrupted (Ctrl-C), 143 terminated (SIGTERM); both print the resume command.
    """
    run_suite(suite_file, output=output, selectors=selectors, device=device, timeout=timeout,
              jobs=jobs, executor=executor, resume=resume, retry=retry, columns=columns,
              plugin_specs=plugin_specs, dry_run=dry_run, report=report, progress=progress,
              slurm_options=slurm_options)


for _command in (plugin_commands.list_, plugin_commands.plugins, plugin_commands.check_plugin,
                 plugin_commands.schema, merge_command.merge, report_commands.report,
                 report_commands.compare):
    main.add_command(_command)
