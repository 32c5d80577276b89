"""``lubench merge``: one run directory from several (:func:`lubench.rundir.merge.merge_runs`)."""

from __future__ import annotations

from pathlib import Path

import click

from lubench.cli.common import CONTEXT_SETTINGS, user_errors


@click.command(context_settings=CONTEXT_SETTINGS)
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
    from lubench.rundir.merge import merge_runs  # pandas: `lubench list` imports none

    outcome = merge_runs(list(run_dirs), output)
    for line in outcome.conflicts:
        click.echo(f"lubench: conflict: {line}", err=True)
    click.echo(f"merged {len(run_dirs)} run(s) into {output}: {outcome.records} records "
               f"({outcome.duplicates} duplicate(s) dropped, {len(outcome.conflicts)} "
               f"conflict(s))")
