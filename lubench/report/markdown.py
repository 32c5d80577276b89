"""The Markdown table of a run (or of several), as printed after ``lubench run``."""

from __future__ import annotations

import pandas as pd

from lubench.report.cells import best_flags, cell, status_text
from lubench.report.summary import select, summarize, table_columns
from lubench.suite.report_spec import ReportSpec

__all__ = ["summary_markdown"]


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_lines(headers: list[str], rows: list[list[str]], numeric: list[bool]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---:" if r else "---" for r in numeric) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return lines


def summary_markdown(results: pd.DataFrame, spec: ReportSpec | None = None) -> str:
    """The Markdown table (operator × n × method [× run]), as printed after ``lubench run``.

    Every configuration has a row, including those that failed; their metrics are ``–`` and
    the status column gives the reason. With repeats, cells are median (min–max); the best
    value of each (operator, n) is in bold.
    """
    if results is None or len(results) == 0:
        return "(no results)"
    df, _ = select(results, spec)
    table = summarize(df)
    cols = table_columns(table, spec)
    multi = "run" in table.columns
    headers = ["operator", "n", "method"] + (["run"] if multi else []) \
        + [c.header for c in cols] + ["status"]
    best = {c.key: best_flags(table, c) for c in cols}
    rows = []
    for i, row in table.iterrows():
        cells = [row["operator_label"], str(row["n"]), row["method_label"]]
        cells += [row["run"]] if multi else []
        cells += [f"**{cell(row, c)}**" if best[c.key][i] else cell(row, c) for c in cols]
        cells.append(status_text(row))
        rows.append(cells)
    numeric = [False, True, False] + ([False] if multi else []) + [True] * len(cols) + [False]
    lines = md_lines(headers, rows, numeric)
    repeats = int(table["repeats"].max())
    notes = []
    if repeats > 1:
        notes.append(f"Median over {repeats} repeats (min–max where they differ).")
    notes.append("Bold: best value per operator and n. –: not measured; NaN/∞: not finite.")
    return "\n".join(lines + [""] + notes)
