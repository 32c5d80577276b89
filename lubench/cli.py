"""The ``lubench`` command line: thin commands that parse, load, and call the library.

Every user error (a malformed suite, an unknown plugin name, a bad parameter) is a
:class:`lubench.api.LubenchError`: printed on one line, exit status 2, no traceback
(``--debug`` shows it).
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from lubench import __version__
from lubench.api import LubenchError
from lubench.values import DEVICES, EXECUTOR_KINDS

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _debug_enabled() -> bool:
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx else None
    return bool(root and root.obj and root.obj.get("debug"))


def user_errors(func: Callable) -> Callable:
    """Turn a LubenchError (or a YAML/OS error about the user's files) into one line + exit 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except LubenchError as exc:
            if _debug_enabled():
                raise
            click.echo(f"lubench: error: {exc}", err=True)
            sys.exit(getattr(exc, "exit_status", 2))
        except OSError as exc:  # a path of the user's: say which and why, in one line
            if _debug_enabled():
                raise
            from lubench.fsafe import describe

            click.echo(f"lubench: error: {describe(exc)}", err=True)
            sys.exit(2)

    return wrapper


def _registry(plugin_specs: tuple[str, ...] = (), base_dir: Path | None = None):
    from lubench.plugins import load_registry

    reg = load_registry(list(plugin_specs), base_dir)
    for info in reg.broken():
        click.echo(f"lubench: warning: plugin '{info.name}' ({info.origin}) is {info.status}",
                   err=True)
    return reg


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
@click.option("--plugin", "plugin_specs", multiple=True, metavar="MODULE|FILE.py",
              help="Load an extra plugin (repeatable).")
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

    forced_timeout, retry_statuses, shown_columns = _run_options(timeout, retry, columns,
                                                                 resume)
    specs = suite_plugin_specs(suite_file, plugin_specs)
    registry = _registry(specs, Path.cwd())
    suite = load_suite(suite_file, registry, device=device, timeout=forced_timeout)
    cases = select_cases(suite.cases, selectors)
    if not cases:
        raise LubenchError(f"no case matches -k {' -k '.join(selectors)} in {suite_file}")
    if dry_run:
        _echo_cases(cases, suite.repeats, suite_file, registry)
        return
    kind = executor or _resumed_executor(resume, suite.executor)
    settings = executor_settings(suite.executor, kind, jobs, **slurm_options)
    _check_environment(suite.device, cases, settings.kind)
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
    _echo_results(results, run_dir, outcome.summary(), report, shown_columns)
    if outcome.interrupted:
        click.echo(f"lubench: interrupted; resume with: {resume_hint}", err=True)
        sys.exit(128 + (outcome.stop_signal or signal.SIGINT))
    _exit_if_failed(results, cases)


def _run_options(timeout: str | None, retry: str | None, columns: str | None,
                 resume: Path | None) -> tuple[float | str | None, set[str], list[str]]:
    """``--timeout`` (seconds, or ``none``), ``--retry`` statuses and ``--columns``, checked;
    LubenchError naming the option otherwise."""
    from lubench.console import parse_columns
    from lubench.records import STATUSES
    from lubench.values import NO_LIMIT, parse_duration

    try:
        forced = None if timeout is None else (parse_duration(timeout) or NO_LIMIT)
    except ValueError as exc:
        raise LubenchError(f"--timeout: {exc}") from None
    try:
        shown = parse_columns(columns)
    except ValueError as exc:
        raise LubenchError(str(exc)) from None
    statuses = {t.strip() for t in (retry or "").split(",") if t.strip()}
    unknown = sorted(statuses - set(STATUSES))
    if unknown:
        raise LubenchError(f"--retry: unknown status {', '.join(map(repr, unknown))} "
                           f"(statuses: {', '.join(STATUSES)})")
    if statuses and resume is None:
        raise LubenchError("--retry reruns cases of an earlier run: give --resume RUN_DIR too")
    return forced, statuses, shown


def _check_environment(device: str, cases: list, executor: str) -> None:
    """Bad input: ``--executor slurm`` without submitit (the ``slurm`` extra); ``cuda`` asked
    for a case that uses the device where PyTorch sees none (cases that run here: on SLURM
    the compute nodes, not this one, have the GPUs, and sbatch refuses what they lack)."""
    from lubench.availability import missing_modules

    if executor == "slurm" and missing_modules(["submitit"]):
        raise LubenchError('--executor slurm needs submitit: pip install "lubench[slurm]"')
    if device == "cuda" and executor != "slurm" and any(c.family != "classical" for c in cases):
        from lubench.devices import cuda_problem

        problem = cuda_problem()
        if problem:
            raise LubenchError(problem)


def _exit_if_failed(results: Any, cases: list) -> None:
    """Exit status 1, naming them, when a selected case's latest record is ``failed``."""
    from lubench.records import FAILED

    labels = {c.case_id: c.label for c in cases}
    if results is None or len(results) == 0:
        return
    bad = results[(results["status"] == FAILED) & results["case_id"].isin(list(labels))]
    failed = list(dict.fromkeys(labels[i] for i in bad["case_id"]))
    if failed:
        click.echo(f"lubench: {len(failed)} case(s) failed (reasons above): "
                   f"{'; '.join(failed)}", err=True)
        sys.exit(1)


def _resumed_executor(resume: Path | None, suite_executor: dict) -> str | None:
    """``slurm`` when the run being resumed has SLURM jobs (resume adopts them) and neither
    the command line nor the suite names an executor."""
    from lubench.execution.slurm_ledger import LEDGER_FILE

    if resume is None or suite_executor.get("kind") or not (resume / LEDGER_FILE).exists():
        return None
    return "slurm"


def _echo_cases(cases: list, repeats: int, suite_file: Path, registry: Any) -> None:
    """``--dry-run``: the cases that would run (and those that cannot, here)."""
    click.echo(f"{len(cases)} cases × {repeats} repeat(s) in {suite_file}:")
    for c in cases:
        why = registry.unavailable("method", c.method)
        click.echo(f"  {c.case_id}  {c.label}" + (f"  (unavailable: {why})" if why else ""))


def _echo_results(results: Any, run_dir: Path, summary: str, report: bool,
                  columns: list[str]) -> None:
    """The summary table, where the results are, and the report when asked for."""
    from lubench.console import summary_table

    click.echo(summary_table(results, columns))
    click.echo(f"\nresults: {run_dir / 'results.parquet'}  ({summary})")
    if report:
        from lubench.fsafe import no_links_in
        from lubench.report import render_report

        no_links_in(run_dir / "report")
        out = render_report(run_dir)
        click.echo(f"report:  {out / 'report.html'}")


# --------------------------------------------------------------------------------------------
# list
# --------------------------------------------------------------------------------------------
def _complete_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    """Shell completion of operator and method names (the installed plugins)."""
    from lubench.plugins import load_registry

    reg = load_registry()
    return sorted(n for n in [*reg.methods, *reg.operators] if n.startswith(incomplete))


@main.command("list", context_settings=CONTEXT_SETTINGS)
@click.argument("name", required=False, shell_complete=_complete_names)
@click.option("--plugin", "plugin_specs", multiple=True, metavar="MODULE|FILE.py",
              help="Load an extra plugin (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@user_errors
def list_(name: str | None, plugin_specs: tuple[str, ...], as_json: bool) -> None:
    """Operators and methods: parameters, defaults, descriptions and providing plugin.

    With NAME, one operator or method and its whole description.
    """
    from lubench.listing import entries, entry, render

    reg = _registry(plugin_specs, Path.cwd())
    if name is not None:
        one = entry(reg, name)
        if as_json:
            click.echo(json.dumps(one, indent=2, default=str))
            return
        for line in render(one, click.style, details=True):
            click.echo(line)
        return
    table = entries(reg)
    if as_json:
        click.echo(json.dumps(table, indent=2, default=str))
        return
    for title, key in (("Operators", "operators"), ("Methods", "methods")):
        click.secho(f"{title}:", bold=True)
        for e in table[key]:
            for line in render(e, click.style):
                click.echo(line)
        click.echo()


@main.command(context_settings=CONTEXT_SETTINGS)
@user_errors
def schema() -> None:
    """The suite format as JSON Schema, for editors that check and complete YAML.

    \b
    lubench schema > lubench-suite.schema.json
    then, with the YAML language server (VS Code, Neovim, ...), as the first line of a suite:
      # yaml-language-server: $schema=./lubench-suite.schema.json
    """
    from lubench.schema import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("run_dirs", nargs=-1, required=True,
                type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The new run directory (must not exist, or be empty).")
@user_errors
def merge(run_dirs: tuple[Path, ...], output: Path) -> None:
    """One run directory from several (e.g. parts run on different machines).

    One record per case and repeat; when several directories hold one, the newest is kept,
    and duplicates whose status or plugin version differ are reported as conflicts.
    """
    from lubench.merge import merge_runs

    outcome = merge_runs(list(run_dirs), output)
    for line in outcome.conflicts:
        click.echo(f"lubench: conflict: {line}", err=True)
    click.echo(f"merged {len(run_dirs)} run(s) into {output}: {outcome.records} records "
               f"({outcome.duplicates} duplicate(s) dropped, {len(outcome.conflicts)} "
               f"conflict(s))")


# --------------------------------------------------------------------------------------------
# report and compare (lubench.report)
# --------------------------------------------------------------------------------------------
@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN_DIR [RUN_DIR ...]",
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write (default: RUN_DIR/report/; required with several runs).")
@click.option("--columns", default=None, metavar="LIST",
              help="Table columns by result column name, in order, e.g. "
                   "factor_error,precond_iterations,n_params,setup_seconds.")
@click.option("--methods", default=None, metavar="LIST",
              help='Methods to keep, in table order: names or labels, globs '
                   '(plu,ilu,"gfmm_lu[P=32]").')
@click.option("--operators", default=None, metavar="LIST", help="Operators to keep, in order.")
@click.option("--sizes", default=None, metavar="LIST", help="Sizes n to keep, e.g. 1024,4096.")
@click.option("--group", default=None, type=click.Choice(["operator", "blocks"]),
              help="LaTeX: one table per operator, or one table with a block per operator.")
@click.option("--figures", default=None, metavar="LIST",
              help="Figure kinds (error_vs_params, error_vs_time, gmres_vs_params, "
                   "time_to_solution, scaling, training) or 'none'.")
@click.option("--formats", default=None, metavar="LIST",
              help="What to write: png,pdf,svg (figures), md,tex,html (tables) "
                   "[default: png,pdf,md,tex,html].")
@click.option("--preset", default=None, type=click.Choice(["paper", "paper-2col", "slides"]),
              help="Figure and table sizes [default: paper, one column].")
@click.option("--spec", "spec_file", default=None, metavar="FILE.yaml",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read the report: section of this suite file instead of the run's copy.")
@click.option("--format", "figure_formats", default=None, hidden=True)
@click.option("--tables", "table_formats", default=None, hidden=True)
@user_errors
def report(run_dirs: tuple[Path, ...], output: Path | None, columns: str | None,
           methods: str | None, operators: str | None, sizes: str | None, group: str | None,
           figures: str | None, formats: str | None, preset: str | None,
           spec_file: Path | None, figure_formats: str | None,
           table_formats: str | None) -> None:
    """Figures and tables of one run, or of several side by side (a `run` column).

    What to write comes from the run's suite `report:` section (or --spec FILE), each
    option given here replacing its key. E.g. the table of a paper:

    \b
      lubench report reports/pde --columns factor_error,precond_iterations,n_params,setup_seconds
          --methods plu,sparse_lu,ilu,gfmm_lu --formats tex,pdf -o paper/
    """
    from lubench.fsafe import no_links_in
    from lubench.report import render_report
    from lubench.report.render import resolve_spec

    if formats is None and (figure_formats is not None or table_formats is not None):
        # the older --format (figures) and --tables (tables) options, still accepted
        formats = ",".join(x for x in (figure_formats or "png,pdf", table_formats or
                                       "md,tex,html") if x)
    options = {"columns": columns, "methods": methods, "operators": operators,
               "sizes": sizes, "group": group, "figures": figures, "formats": formats,
               "preset": preset}
    spec = resolve_spec(list(run_dirs), options, spec_file)
    no_links_in(output if output is not None else run_dirs[0] / "report")
    out = render_report(list(run_dirs), output, spec=spec, echo=click.echo)
    click.echo(f"report: {out}")


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("run_a", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("run_b", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--threshold", type=float, default=1.5, show_default=True,
              help="Flag a case when B/A of a time or an error exceeds this ratio.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the table to this file, in the format its suffix names "
                   "(.md, .tex or .html), for a report.")
@user_errors
def compare(run_a: Path, run_b: Path, threshold: float, output: Path | None) -> None:
    """Per case, the ratios B/A of times and errors; exit 1 when a regression is flagged."""
    from lubench.report.compare import compare_runs

    text, n_regressions = compare_runs(run_a, run_b, threshold=threshold)
    click.echo(text)
    if output is not None:
        fmt = output.suffix.lstrip(".").lower()
        if fmt not in ("md", "tex", "html"):
            raise LubenchError(f"--output {output}: the suffix must be .md, .tex or .html")
        table = text if fmt == "md" else compare_runs(run_a, run_b, threshold, fmt=fmt)[0]
        output.write_text(table + ("" if table.endswith("\n") else "\n"), encoding="utf-8")
        click.echo(f"compare: wrote {output}", err=True)
    if n_regressions:
        click.echo(f"lubench: {n_regressions} regression(s) beyond ×{threshold}", err=True)
        sys.exit(1)


def _csv(text: str) -> list[str]:
    return [t.strip().lower() for t in text.split(",") if t.strip()]


# --------------------------------------------------------------------------------------------
# plugins and check-plugin (lubench.plugins, lubench.testing)
# --------------------------------------------------------------------------------------------
@main.command(context_settings=CONTEXT_SETTINGS)
@click.option("--plugin", "plugin_specs", multiple=True, metavar="MODULE|FILE.py",
              help="Load an extra plugin (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@user_errors
def plugins(plugin_specs: tuple[str, ...], as_json: bool) -> None:
    """Every plugin: where it comes from, what it adds, and whether it loaded."""
    from lubench.plugins import load_registry

    reg = load_registry(list(plugin_specs), Path.cwd())
    rows = [p.as_dict() for p in reg.plugins.values()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for p in rows:
        color = "green" if p["status"] == "ok" else "red" if p["status"].startswith("broken") \
            else "yellow"
        click.echo(f"{click.style(p['name'], bold=True)}: {click.style(p['status'], fg=color)}")
        click.echo(f"    from: {p['origin']}")
        for kind in ("operators", "methods"):
            if p[kind]:
                click.echo(f"    {kind}: {', '.join(p[kind])}")
    counts = [f"{n} {what}" for what, n in (
        ("unavailable", sum(p["status"].startswith("unavailable") for p in rows)),
        ("broken", sum(p["status"].startswith("broken") for p in rows))) if n]
    click.echo(", ".join([f"{len(rows)} plugins", *counts]))


@main.command("check-plugin", context_settings=CONTEXT_SETTINGS)
@click.argument("names", nargs=-1, required=True)
@click.option("--plugin", "plugin_specs", multiple=True, metavar="MODULE|FILE.py",
              help="Load an extra plugin (repeatable).")
@user_errors
def check_plugin(names: tuple[str, ...], plugin_specs: tuple[str, ...]) -> None:
    """Run the contract checks on methods or operators (by name) or on every name a plugin adds."""
    from lubench.testing import run_checks

    reg = _registry(plugin_specs, Path.cwd())
    failures = run_checks(reg, names, echo=click.echo)
    if failures:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
