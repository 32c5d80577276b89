"""Reports of run directories: figures, tables (Markdown, LaTeX, HTML) and ``report.html``.

* :func:`render_report` — everything ``lubench report RUN_DIR [RUN_DIR ...]`` writes, as a
  :class:`lubench.suite.report_spec.ReportSpec` says (columns, methods, operators, sizes, grouping,
  figures, formats, size preset);
* :func:`lubench.report.markdown.summary_markdown` — the table printed after ``lubench run``;
* :func:`lubench.report.frame_text.frame_text` — any DataFrame as a Markdown, LaTeX or HTML
  table;
* :func:`lubench.report.compare.compare_runs` — ``lubench compare RUN_A RUN_B``.

The report only reads run directories (``results.parquet``, ``histories.parquet``,
``meta.json``, ``suite.yaml``; ``records.jsonl`` when the parquet files are missing).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lubench.suite.report_spec import ReportSpec

__all__ = ["render_report"]


def render_report(run_dirs: Path | str | Sequence[Path | str], output: Path | None = None,
                  spec: ReportSpec | None = None, echo=print) -> Path:
    """Write the figures, tables and ``report.html`` of ``run_dirs`` into ``output``
    (default ``RUN_DIR/report`` for one run) and return that folder. Without ``spec``, the
    run's suite ``report:`` section (else the defaults) says what to write."""
    from lubench.report.render import render  # matplotlib: only when a report is drawn

    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    return render([Path(d) for d in run_dirs], None if output is None else Path(output),
                  spec=spec, echo=echo)
