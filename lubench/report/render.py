"""``lubench report RUN_DIR``: read the run, draw the figures, write the tables and the page.

Output folder (default ``RUN_DIR/report/``)::

    error_vs_params.{png,pdf,svg}   error_vs_time.*   scaling.*   training.*
    results.md   results.tex   results.html   report.html

``training`` is drawn only when a case left a training history; no figure is drawn when no
case finished ok (the tables and ``report.html`` still are, and say so).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt  # noqa: E402

from lubench.api import LubenchError  # noqa: E402
from lubench.report import figures as F  # noqa: E402
from lubench.report.html import report_html, standalone_table_html  # noqa: E402
from lubench.report.load import OK, load_run  # noqa: E402
from lubench.report.tables import latex_tables, summarize, summary_markdown  # noqa: E402

__all__ = ["render", "FIGURE_FORMATS", "TABLE_FORMATS"]

FIGURE_FORMATS = ("png", "pdf", "svg")
TABLE_FORMATS = {"md": "results.md", "latex": "results.tex", "tex": "results.tex",
                 "html": "results.html"}


def _check(values: Iterable[str], allowed: Iterable[str], option: str) -> list[str]:
    values = [v.strip().lower() for v in values if v and v.strip()]
    allowed = list(allowed)
    for v in values:
        if v not in allowed:
            raise LubenchError(f"{option}: unknown format '{v}' (choose from "
                               f"{', '.join(allowed)})")
    return list(dict.fromkeys(values))


def render(run_dir: Path, output: Path | None = None, formats: Iterable[str] = FIGURE_FORMATS,
           tables: Iterable[str] = ("md", "latex", "html"),
           echo: Callable[[str], object] = print) -> Path:
    """Write the report of ``run_dir`` into ``output`` (default ``run_dir/report``)."""
    matplotlib.use("Agg")  # drawn into files: chosen here, not on import (a notebook's stays)
    formats = _check([formats] if isinstance(formats, str) else formats, FIGURE_FORMATS,
                     "--format")
    tables = _check([tables] if isinstance(tables, str) else tables, TABLE_FORMATS,
                    "--tables")
    run = load_run(run_dir)
    out = Path(output) if output is not None else Path(run_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    results = run.results
    summary = summarize(results)
    style = F.make_style(summary)
    any_ok = bool((results["status"] == OK).any())

    pngs: dict[str, bytes] = {}
    notes: list[str] = []
    if any_ok:
        drawings = [("error_vs_params", lambda: F.error_vs_params(summary, style)),
                    ("error_vs_time", lambda: F.error_vs_time(summary, style)),
                    ("scaling", lambda: F.scaling(summary, style)),
                    ("training", lambda: F.training(results, run.histories, style))]
        for name, draw in drawings:
            fig = draw()
            if fig is None:
                notes.append(f"No {name} figure: no case of this run saved a training history.")
                continue
            # the rc settings (text as text in SVG, TrueType in PDF) apply when saving
            try:
                with plt.rc_context(F.RC):
                    buf = io.BytesIO()
                    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
                    pngs[name] = buf.getvalue()
                    for fmt in formats:
                        fig.savefig(out / f"{name}.{fmt}", format=fmt, bbox_inches="tight")
            finally:
                plt.close(fig)
        echo(f"figures: {', '.join(pngs)} ({', '.join(formats) or 'embedded only'})")
    else:
        echo("lubench: no case finished ok: no figure drawn (tables list the failures)")

    title = f"lubench results — {results['suite'].dropna().iloc[0]}" \
        if results["suite"].notna().any() else "lubench results"
    written = set()
    for kind in tables:
        name = TABLE_FORMATS[kind]
        if name in written:
            continue
        written.add(name)
        if kind == "md":
            text = summary_markdown(results) + "\n"
        elif kind in ("latex", "tex"):
            text = latex_tables(results)
        else:
            text = standalone_table_html(results, title)
        (out / name).write_text(text, encoding="utf-8")
    if written:
        echo(f"tables: {', '.join(sorted(written))}")
    (out / "report.html").write_text(report_html(run, pngs, notes), encoding="utf-8")
    return out
