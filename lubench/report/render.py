"""``lubench report RUN_DIR [RUN_DIR ...]``: read the runs, draw the figures, write the tables
and the page, as a :class:`~lubench.suite.report_spec.ReportSpec` says.

Output folder (default ``RUN_DIR/report/``; required with several runs)::

    error_vs_params.{pdf,png,svg}  error_vs_time.*  gmres_vs_params.*  time_to_solution.*
    cg_vs_tolerance.*  cg_time_to_solution.*  scaling.*  training.*
    results.md  results.tex  results.html  report.html

The specification is the first run's suite ``report:`` section (the copy in
``RUN_DIR/suite.yaml``, or the file given as ``spec_file``) with the command line's options
replacing the keys they set. ``training`` is drawn only when a case left a training history,
the CG figures only when a case was graded with CG;
no figure is drawn when no case finished ok (the tables and ``report.html`` still are, and say
so). Several runs are read into one frame with a ``run`` column (the directory's name, or
enough of its path to tell the runs apart): tables get a ``run`` column, figures a panel per
run.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from lubench.api import LubenchError  # noqa: E402
from lubench.errors import shown
from lubench.report import figures as F  # noqa: E402
from lubench.report.html import report_html, standalone_table_html  # noqa: E402
from lubench.report.latex import latex_tables  # noqa: E402
from lubench.report.load import Run, load_run, prepare_results
from lubench.report.markdown import summary_markdown  # noqa: E402
from lubench.report.summary import select, summarize  # noqa: E402
from lubench.rundir.fsafe import atomic_write, no_link
from lubench.rundir.records import OK
from lubench.suite.report_spec import (  # noqa: E402
    PANEL_FIGURES,
    PANEL_LARGEST,
    TABLE_FORMATS,
    ReportSpec,
    merge,
    parse_spec,
)
from lubench.suite.yamlfile import read_yaml

__all__ = ["render", "resolve_spec", "run_labels", "load_runs", "suite_report_section",
           "panel_summary", "panel_misses"]


# Why a figure function returned None instead of a figure (the report's notes say it).
NOTHING_TO_DRAW = {
    "training": "no case of this run saved a training history",
    "scaling": "every operator ran at one size",
    "cg_vs_tolerance": "no case was graded with CG (no symmetric operator)",
    "cg_time_to_solution": "no case was graded with CG (no symmetric operator)",
}


REPORT_MARKER = ".lubench-report"
"""The file that says a folder holds a report lubench wrote (and may write again)."""


def check_report_folder(out: Path) -> None:
    """``-o DIR`` of a report: a new or empty folder, or one holding a report lubench wrote
    (:data:`REPORT_MARKER`) — never a folder of the user's, whose ``results.md`` or
    ``report.html`` it would replace — and never a symbolic link."""
    no_link(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise LubenchError(f"-o {out}: exists and is not a folder")
    entries = sorted(p.name for p in out.iterdir())
    if entries and REPORT_MARKER not in entries:
        shown_names = ", ".join(entries[:3]) + (", …" if len(entries) > 3 else "")
        raise LubenchError(f"-o {out}: the folder holds files lubench did not write "
                           f"({shown_names}); choose a new or empty folder")


def suite_report_section(path: Path) -> dict:
    """The ``report:`` mapping of a suite file ({} when it has none)."""
    data, _ = read_yaml(path, "suite file")
    if not isinstance(data, dict):
        return {}
    section = data.get("report") or {}
    if not isinstance(section, dict):
        raise LubenchError(f"{path}: report: expected a mapping, got {shown(section)}")
    return section


def resolve_spec(run_dirs: Sequence[Path], options: Mapping[str, Any] | None = None,
                 spec_file: Path | None = None) -> ReportSpec:
    """The specification of a report: ``spec_file``'s (else the first run's suite copy's)
    ``report:`` section, with ``options`` (None values ignored) replacing its keys."""
    source = Path(spec_file) if spec_file is not None else Path(run_dirs[0]) / "suite.yaml"
    base = suite_report_section(source) if (spec_file is not None or source.is_file()) else {}
    replaced = {k for k, v in (options or {}).items() if v is not None}
    kept = {k: v for k, v in base.items() if k not in replaced}
    if kept:  # an error in the file names the file; a key the command line replaces is not read
        try:
            parse_spec(kept, f"{source}: report")
        except LubenchError as exc:
            if spec_file is not None:
                raise
            raise LubenchError(f"{exc} (the run's copy of its suite: replace the key with its "
                               f"option, or the section with --spec FILE)") from None
    return parse_spec(merge(base, options), "--")


def run_labels(paths: Sequence[Path]) -> list[str]:
    """Short names that tell runs apart: the directory names, or more of the path when two
    names are equal."""
    parts = [Path(p).resolve().parts for p in paths]
    for depth in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{i + 1}:{p}" for i, p in enumerate(paths)]


def load_runs(run_dirs: Sequence[Path]) -> tuple[list[tuple[str, Run]], pd.DataFrame,
                                                 pd.DataFrame]:
    """The runs read, and their results and histories in one frame each (with a ``run``
    column when there are several; labels recomputed over all runs)."""
    runs = [load_run(d) for d in run_dirs]
    if len(runs) == 1:
        return [(runs[0].path.name, runs[0])], runs[0].results, runs[0].histories
    labels = run_labels([r.path for r in runs])
    results = prepare_results(pd.concat(
        [r.results.assign(run=label) for label, r in zip(labels, runs)], ignore_index=True))
    hist = [r.histories.assign(run=label) for label, r in zip(labels, runs)
            if r.histories is not None and not r.histories.empty]
    histories = pd.concat(hist, ignore_index=True) if hist else pd.DataFrame()
    return list(zip(labels, runs)), results, histories


def panel_summary(summary: pd.DataFrame, spec: ReportSpec) -> pd.DataFrame:
    """The summary rows a panel figure draws: those of ``spec.panel_sizes`` (every size when
    empty; ``largest``: each operator's largest n among its rows)."""
    if not spec.panel_sizes:
        return summary
    if spec.panel_sizes == PANEL_LARGEST:
        largest = summary.groupby("operator_label", sort=False)["n"].transform("max")
        return summary[summary["n"] == largest]
    return summary[summary["n"].isin(spec.panel_sizes)]


def panel_misses(summary: pd.DataFrame, spec: ReportSpec) -> list[int]:
    """The sizes of ``spec.panel_sizes`` that no summary row has (to warn about)."""
    if not isinstance(spec.panel_sizes, tuple):
        return []
    have = set(summary["n"].dropna().astype(int))
    return [n for n in spec.panel_sizes if n not in have]


def render(run_dirs: Path | Sequence[Path], output: Path | None = None,
           spec: ReportSpec | None = None,
           echo: Callable[[str], object] = print) -> Path:
    """Write the report of ``run_dirs`` into ``output`` and return that folder."""
    matplotlib.use("Agg")  # drawn into files: chosen here, not on import (a notebook's stays)
    run_dirs = [Path(run_dirs)] if isinstance(run_dirs, (str, Path)) else \
        [Path(d) for d in run_dirs]
    if not run_dirs:
        raise LubenchError("give at least one run directory")
    if len(run_dirs) > 1 and output is None:
        raise LubenchError("a report of several runs needs -o OUTPUT (where to write it)")
    spec = spec if spec is not None else resolve_spec(run_dirs)
    runs, results, histories = load_runs(run_dirs)
    out = Path(output) if output is not None else run_dirs[0] / "report"
    if output is not None:  # a folder of its own (a run directory's report/ is the run's)
        check_report_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    if output is not None:
        atomic_write(out / REPORT_MARKER, "written by `lubench report`: it replaces the files "
                                          "here when it writes a report again\n")
    rows, unmatched = select(results, spec)
    for what in unmatched:
        echo(f"lubench: warning: report {what} matched nothing")
    summary = summarize(rows)
    for n in panel_misses(summary, spec):  # such a size would draw empty panels
        echo(f"lubench: warning: report panel_sizes: {n} matched nothing")
    style = F.make_style(summary, spec.size)
    any_ok = bool((rows["status"] == OK).any())

    pngs: dict[str, bytes] = {}
    notes: list[str] = []
    if any_ok and spec.figures:
        for name in spec.figures:
            fig = (F.training(rows, histories, style) if name == "training"
                   else F.ROW_FIGURES[name](rows, style) if name in F.ROW_FIGURES
                   else F.FIGURES[name](panel_summary(summary, spec)
                                        if name in PANEL_FIGURES else summary, style))
            if fig is None:
                notes.append(f"No {name} figure: {NOTHING_TO_DRAW[name]}.")
                continue
            # the rc settings (text as text in SVG, TrueType in PDF) apply when saving
            try:
                with plt.rc_context(style.rc), warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    buf = io.BytesIO()
                    fig.savefig(buf, format="png", dpi=130, bbox_inches="tight")
                    pngs[name] = buf.getvalue()
                    for fmt in spec.figure_formats:
                        fig.savefig(out / f"{name}.{fmt}", format=fmt, bbox_inches="tight")
            finally:
                plt.close(fig)
            # matplotlib's own warnings (a layout it could not fit) become one line that says
            # which figure and what to do, instead of a warning with a source line
            layout = [w for w in caught if "constrained_layout" in str(w.message)]
            for w in caught:
                if w not in layout:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            if layout:
                echo(f"lubench: warning: figure {name}: too many configurations or labels for "
                     "its panels to lay out cleanly; select fewer (--methods, --operators)")
        echo(f"figures: {', '.join(pngs)} ({', '.join(spec.figure_formats) or 'embedded only'})")
    elif not any_ok:
        echo("lubench: no case finished ok: no figure drawn (tables list the failures)")

    suites = list(dict.fromkeys(str(s) for s in rows["suite"].dropna()))
    title = "lubench results" + (f" — {', '.join(suites)}" if suites else "")
    for kind in spec.table_formats:
        if kind == "md":
            text = summary_markdown(rows, spec) + "\n"
        elif kind == "tex":
            text = latex_tables(rows, spec, runs=[str(d) for d in run_dirs])
        else:
            text = standalone_table_html(rows, title, spec)
        (out / TABLE_FORMATS[kind]).write_text(text, encoding="utf-8")
    if spec.table_formats:
        echo(f"tables: {', '.join(TABLE_FORMATS[k] for k in spec.table_formats)}")
    (out / "report.html").write_text(report_html(runs, rows, pngs, notes, spec),
                                     encoding="utf-8")
    return out
