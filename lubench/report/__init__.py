"""Reports of a run directory: figures, tables (Markdown, LaTeX, HTML) and ``report.html``.

* :func:`render_report` — everything ``lubench report RUN_DIR`` writes;
* :func:`lubench.report.tables.summary_markdown` — the table printed after ``lubench run``;
* :func:`lubench.report.compare.compare_runs` — ``lubench compare RUN_A RUN_B``.

The report only reads the run directory (``results.parquet``, ``histories.parquet``,
``meta.json``; ``records.jsonl`` when the parquet files are missing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["render_report"]


def render_report(run_dir: Path, output: Path | None = None, formats: Any = ("png", "pdf", "svg"),
                  tables: Any = ("md", "latex", "html"), echo: Any = print) -> Path:
    """Write the figures, tables and ``report.html`` of ``run_dir`` into ``output``
    (default ``run_dir/report``) and return that folder."""
    from lubench.report.render import render

    return render(Path(run_dir), None if output is None else Path(output), formats=formats,
                  tables=tables, echo=echo)
