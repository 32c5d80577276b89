"""The ``lubench run`` command's steps besides parsing: its options checked, the environment
checked, and what it prints (the dry-run list, the summary, the failed cases).

Each function raises :class:`lubench.api.LubenchError` (one line, exit 2 through
:func:`lubench.cli.common.user_errors`) for bad input, naming the option.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import click

from lubench.api import LubenchError
from lubench.registry.availability import missing_modules
from lubench.rundir.fsafe import no_links_in
from lubench.suite.values import NO_LIMIT, parse_duration


def run_options(timeout: str | None, retry: str | None, columns: str | None,
                resume: Path | None, slurm_time: str | None = None
                ) -> tuple[float | str | None, set[str], list[str]]:
    """``--timeout`` (seconds, or ``none``), ``--retry`` statuses, ``--columns`` and
    ``--slurm-time``, checked before anything is written; LubenchError naming the option
    otherwise."""
    from lubench.report.console import parse_columns  # pandas: not for `lubench list`
    from lubench.rundir.records import STATUSES  # (pandas too)

    try:
        forced = None if timeout is None else (parse_duration(timeout) or NO_LIMIT)
    except ValueError as exc:
        raise LubenchError(f"--timeout: {exc}") from None
    try:
        shown = parse_columns(columns)
    except ValueError as exc:
        raise LubenchError(str(exc)) from None
    statuses = {t.strip() for t in (retry or "").split(",") if t.strip()}
    if slurm_time is not None:
        from pydantic import ValidationError

        from lubench.suite.schema import ExecutorModel

        try:
            ExecutorModel(slurm_time=slurm_time)
        except ValidationError as exc:
            why = exc.errors()[0]["msg"].removeprefix("Value error, ")
            raise LubenchError(f"--slurm-time: {why}") from None
    unknown = sorted(statuses - set(STATUSES))
    if unknown:
        raise LubenchError(f"--retry: unknown status {', '.join(map(repr, unknown))} "
                           f"(statuses: {', '.join(STATUSES)})")
    if statuses and resume is None:
        raise LubenchError("--retry reruns cases of an earlier run: give --resume RUN_DIR too")
    return forced, statuses, shown


def check_environment(device: str, cases: list, executor: str) -> None:
    """Bad input: ``--executor slurm`` without submitit (the ``slurm`` extra); ``cuda`` asked
    for a case that uses the device where PyTorch sees none (cases that run here: on SLURM
    the compute nodes, not this one, have the GPUs, and sbatch refuses what they lack)."""
    if executor == "slurm" and missing_modules(["submitit"]):
        raise LubenchError('--executor slurm needs submitit: pip install "lubench[slurm]"')
    if executor == "slurm" and not shutil.which("sbatch"):
        raise LubenchError("--executor slurm: no SLURM here (sbatch is not on PATH); run on "
                           "a cluster's login node, or use -j N for local workers")
    if device == "cuda" and not any(c.family != "classical" for c in cases):
        click.echo("lubench: warning: device cuda: every selected case is a classical "
                   "method, which runs on the CPU; nothing here uses the GPU", err=True)
    if device == "cuda" and executor != "slurm" and any(c.family != "classical" for c in cases):
        from lubench.execution.devices import cuda_problem  # the executors come with it

        problem = cuda_problem()
        if problem:
            raise LubenchError(problem)


def resumed_executor(resume: Path | None, suite_executor: dict) -> str | None:
    """``slurm`` when the run being resumed has SLURM jobs (resume adopts them) and neither
    the command line nor the suite names an executor."""
    from lubench.execution.slurm.ledger import LEDGER_FILE  # the executors come with it

    if resume is None or suite_executor.get("kind") or not (resume / LEDGER_FILE).exists():
        return None
    return "slurm"


def echo_cases(cases: list, repeats: int, suite_file: Path, registry: Any) -> None:
    """``--dry-run``: the cases that would run (and those that cannot, here)."""
    click.echo(f"{len(cases)} cases × {repeats} repeat(s) in {suite_file}:")
    for c in cases:
        why = registry.unavailable("method", c.method)
        click.echo(f"  {c.case_id}  {c.label}" + (f"  (unavailable: {why})" if why else ""))


def echo_results(results: Any, run_dir: Path, summary: str, columns: list[str]) -> None:
    """The summary table and where the results are."""
    from lubench.report.console import summary_table

    click.echo(summary_table(results, columns))
    click.echo(f"\nresults: {run_dir / 'results.parquet'}  ({summary})")


def echo_report(run_dir: Path) -> None:
    """Render the run's report into RUN_DIR/report and say where it is."""
    from lubench.report import render_report

    no_links_in(run_dir / "report")
    out = render_report(run_dir)
    click.echo(f"report:  {out / 'report.html'}")


def exit_if_failed(results: Any, cases: list) -> None:
    """Exit status 1, naming them, when a selected case's latest record is ``failed``."""
    from lubench.rundir.records import FAILED  # pandas: not for `lubench list`

    labels = {c.case_id: c.label for c in cases}
    if results is None or len(results) == 0:
        return
    bad = results[(results["status"] == FAILED) & results["case_id"].isin(list(labels))]
    failed = list(dict.fromkeys(labels[i] for i in bad["case_id"]))
    if failed:
        click.echo(f"lubench: {len(failed)} case(s) failed (reasons above): "
                   f"{'; '.join(failed)}", err=True)
        sys.exit(1)
