"""What ``lubench report`` and ``lubench compare`` write and print (through
:mod:`lubench.report`): figures and tables of runs, and the ratios of two runs."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from lubench.api import LubenchError
from lubench.cli.common import CONTEXT_SETTINGS, user_errors
from lubench.rundir.fsafe import atomic_write, no_links_in
from lubench.suite.report_spec import FIGURE_KINDS


@click.command(context_settings=CONTEXT_SETTINGS)
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
@click.option("--panel-sizes", default=None, metavar="LIST",
              help="Sizes n of the panel figures (a panel per operator and n), or 'largest' "
                   "(each operator's largest n); tables and scaling keep every size.")
@click.option("--group", default=None, type=click.Choice(["operator", "blocks"]),
              help="LaTeX: one table per operator, or one table with a block per operator.")
@click.option("--figures", default=None, metavar="LIST",
              help=f"Figure kinds ({', '.join(FIGURE_KINDS)}) or 'none'.")
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
           methods: str | None, operators: str | None, sizes: str | None,
           panel_sizes: str | None, group: str | None,
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
    # pandas and matplotlib: imported by the commands that draw, never by `lubench list`
    from lubench.report import render_report
    from lubench.report.render import resolve_spec

    if formats is None and (figure_formats is not None or table_formats is not None):
        # the older --format (figures) and --tables (tables) options, still accepted
        formats = ",".join(x for x in (figure_formats or "png,pdf", table_formats or
                                       "md,tex,html") if x)
    options = {"columns": columns, "methods": methods, "operators": operators,
               "sizes": sizes, "panel_sizes": panel_sizes, "group": group,
               "figures": figures, "formats": formats,
               "preset": preset}
    spec = resolve_spec(list(run_dirs), options, spec_file)
    no_links_in(output if output is not None else run_dirs[0] / "report")
    out = render_report(list(run_dirs), output, spec=spec, echo=click.echo)
    click.echo(f"report: {out}")


#: The first line of a table ``compare -o`` writes: a file holding it may be replaced.
COMPARE_MARK = {"md": "<!-- written by lubench compare -->", "tex": "% written by lubench compare"}


def check_compare_output(path: Path) -> None:
    """``compare -o FILE``: a new file, or one an earlier ``compare -o`` wrote (its first
    line); never a file of the user's, never through a symbolic link."""
    from lubench.rundir.fsafe import no_link

    no_link(path)
    if not path.exists():
        return
    try:
        with open(path, "rb") as fh:
            first = fh.readline(200).decode("utf-8", "replace").strip()
    except OSError as exc:
        raise LubenchError(f"--output {path}: cannot read it ({exc.strerror})") from None
    if not path.is_file() or first not in COMPARE_MARK.values():
        raise LubenchError(f"--output {path}: exists and was not written by lubench compare; "
                           f"choose a new file")


@click.command(context_settings=CONTEXT_SETTINGS)
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
    from lubench.report.compare import compare_runs  # pandas: not for `lubench list`

    text, n_regressions = compare_runs(run_a, run_b, threshold=threshold)
    click.echo(text)
    if output is not None:
        fmt = output.suffix.lstrip(".").lower()
        if fmt not in ("md", "tex", "html"):
            raise LubenchError(f"--output {output}: the suffix must be .md, .tex or .html")
        check_compare_output(output)
        table = text if fmt == "md" else compare_runs(run_a, run_b, threshold, fmt=fmt)[0]
        mark = COMPARE_MARK["tex" if fmt == "tex" else "md"]
        atomic_write(output, f"{mark}\n{table}" + ("" if table.endswith("\n") else "\n"))
        click.echo(f"compare: wrote {output}", err=True)
    if n_regressions:
        click.echo(f"lubench: {n_regressions} regression(s) beyond ×{threshold}", err=True)
        sys.exit(1)
